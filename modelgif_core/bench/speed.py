"""`modelgif bench speed`: our extraction vs the paper's procedure vs the bare gradient floor, side by side.

Everything is timed in one process on one device, interleaved round by round, and reported as
ratios of medians: absolute seconds on a shared machine are not comparable across runs.
"""

from __future__ import annotations

import gc
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from ..engine.device import resolve_device, tf32_mode
from ..engine.distance import distance_matrix
from ..engine.fields import FieldConfig, choose_batch, extract_field, frozen_module, quadrature
from ..engine.models import InputConfig, ModelHandle
from ..engine.store import FieldStore


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def paper_procedure(model: ModelHandle, images: torch.Tensor, steps: int, device: torch.device) -> torch.Tensor:
    """The reference code's way: captum-style IG on 2 anchors x K steps per backward, a cumulative
    sum over the steps, parameters left trainable (so autograd keeps their graph)."""
    module = model.module.to(device)
    flags = [(p, p.requires_grad) for p in module.parameters()]
    module.requires_grad_(True)
    try:
        alphas, weights = quadrature("gausslegendre", steps)
        alpha = torch.tensor(alphas, device=device).view(-1, 1, 1, 1, 1)  # [K, 1, 1, 1, 1]
        weight = torch.tensor(weights, device=device).view(-1, 1, 1)  # [K, 1, 1]
        out = []
        for s in range(0, images.shape[0], 2):
            x = images[s:s + 2].to(device)  # [2, 3, H, W]
            base = torch.zeros_like(x)
            scaled = (base + alpha * (x - base)).reshape(-1, *x.shape[1:])  # [K*2, 3, H, W]
            scaled.requires_grad_(True)
            logits = model(scaled)
            with torch.no_grad():
                target = model(x).argmax(1).repeat(steps)  # [K*2]
            grads = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), scaled)[0]
            grads = grads.reshape(steps, x.shape[0], -1) * weight  # [K, 2, D]
            curve = torch.cumsum(grads, dim=0) * (x - base).reshape(1, x.shape[0], -1)
            out.append(curve.transpose(0, 1).cpu())
        return torch.cat(out)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def gradient_floor(model: ModelHandle, images: torch.Tensor, steps: int, device: torch.device,
                   batch: int) -> None:
    """Bare forward+backward w.r.t. the inputs over the same N x K points, nothing else, in the
    arithmetic of our default (full fp32: TF32 off on GPUs)."""
    module = model.module.to(device)
    total = images.shape[0] * steps
    points = images.to(device).repeat_interleave(steps, 0)  # [N*K, 3, H, W] stand-ins for path points
    with frozen_module(module), tf32_mode(device, False):
        for s in range(0, total, batch):
            x = points[s:s + batch].clone().requires_grad_(True)
            torch.autograd.grad(model(x).amax(1).sum(), x)


def _cases(quick: bool, device: torch.device) -> list[dict[str, Any]]:
    if quick:
        return [{"arch": "test_resnet", "input": (3, 32, 32), "anchors": 16, "steps": 20}]
    cases = [
        {"arch": "test_resnet", "input": (3, 32, 32), "anchors": 64, "steps": 50},  # the digits zoo
        {"arch": "resnet18", "input": (3, 64, 64), "anchors": 8, "steps": 50},
    ]
    if device.type == "cuda":  # the paper's ImageNet setting: too slow for a CPU bench
        cases.append({"arch": "resnet50", "input": (3, 224, 224), "anchors": 16, "steps": 50})
    return cases


# Reduced-precision variants timed beside ours on GPUs, and their error against our fp32 field.
_GPU_VARIANTS = ("tf32", "bf16")


def _bench_case(case: dict[str, Any], dev: torch.device, rounds: int) -> dict[str, Any]:
    model = _model(case["arch"], case["input"])
    images = torch.rand(case["anchors"], *case["input"], generator=torch.Generator().manual_seed(0))
    steps = case["steps"]
    cfg = FieldConfig(steps=steps, device=str(dev))
    total = case["anchors"] * steps
    model.module.to(dev)  # every contender starts from a model already on the device
    ours_batch = choose_batch(model, images.to(dev), dev, None, total)
    floor_batches = sorted({b for b in (32, 64, 128, 256, ours_batch) if b <= total})
    variants = {f"ours-{v}": FieldConfig(steps=steps, device=str(dev), autocast=v)
                for v in (_GPU_VARIANTS if dev.type == "cuda" else ())}
    runs: dict[str, Callable[[], Any]] = {
        "ours": lambda: extract_field(model, images, cfg),
        **{name: (lambda c=c: extract_field(model, images, c)) for name, c in variants.items()},
        "paper": lambda: paper_procedure(model, images, steps, dev),
        **{f"floor@{b}": (lambda b=b: gradient_floor(model, images, steps, dev, b)) for b in floor_batches},
    }
    reference = extract_field(model, images, cfg)  # also the warm-up
    errors = {}
    for name, c in variants.items():  # ||phi_variant - phi|| / ||phi|| over the whole field
        errors[name] = float((extract_field(model, images, c) - reference).norm() / reference.norm())
    del reference
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):  # interleaved, so a burst of load hits every contender alike
        for name, fn in runs.items():
            times[name].append(_timed(fn, dev))
    med = {k: statistics.median(v) for k, v in times.items()}
    best_floor = min((k for k in med if k.startswith("floor@")), key=med.get)
    return {
        **{k: v for k, v in case.items() if k != "input"}, "input": "x".join(map(str, case["input"])),
        "points": total, "ours_batch": ours_batch, "best_floor": best_floor,
        "seconds": {k: round(v, 4) for k, v in med.items()},
        "ours_over_floor": round(med["ours"] / med[best_floor], 3),
        "paper_over_ours": round(med["paper"] / med["ours"], 3),
        **({"paper_over_variant": {k: round(med["paper"] / med[k], 3) for k in variants},
            "variant_relative_error": {k: float(f"{v:.3g}") for k, v in errors.items()}} if variants else {}),
    }


def _model(arch: str, input_size: tuple[int, int, int]) -> ModelHandle:
    import timm

    torch.manual_seed(0)
    module = timm.create_model(arch, pretrained=False, num_classes=10)
    cfg = InputConfig(input_size=input_size, mean=(0.5,) * 3, std=(0.25,) * 3)
    return ModelHandle.from_module(module, arch, cfg, arch, arch)


def run_speed_bench(device: str = "auto", quick: bool = False, rounds: int | None = None) -> dict[str, Any]:
    """Time ours, the paper's procedure and the floor per case; then the distance matrix of stored fields."""
    dev = resolve_device(device)
    rounds = rounds or (2 if quick else 3)
    results: dict[str, Any] = {"device": str(dev), "torch_threads": torch.get_num_threads(), "cases": []}
    for case in _cases(quick, dev):
        results["cases"].append(_bench_case(case, dev, rounds))
        gc.collect()
    results["distance_matrix"] = _distance_bench(n_models=40 if quick else 200)
    return results


def _distance_bench(n_models: int, n_anchors: int = 64, steps: int = 50, d: int = 3 * 32 * 32) -> dict[str, Any]:
    """distance_matrix over stored fields of digits:64 x 50 steps: seconds, peak memory, field size."""
    with tempfile.TemporaryDirectory() as root:
        store = FieldStore(root)
        generator = torch.Generator().manual_seed(0)
        shared = torch.randn(n_anchors, steps, d, generator=generator)
        keys = []
        for m in range(n_models):
            # fields that share a common part, like a zoo's: realistic, not orthogonal noise
            phi = shared + 0.5 * torch.randn(n_anchors, steps, d, generator=generator)
            key = f"{m:064x}"
            store.put(key, phi, {"model_name": f"bench-{m}"})
            keys.append(key)
        field_bytes = (store.root / "fields" / f"{keys[0]}.safetensors").stat().st_size
        del shared, phi
        gc.collect()
        rss_before = _peak_rss_mb()
        start = time.perf_counter()
        fields = [store.get(k) for k in keys]
        loaded = time.perf_counter()
        matrix = distance_matrix(fields)
        done = time.perf_counter()
        return {"models": n_models, "field_shape": [n_anchors, steps, d],
                "field_mb_on_disk": round(field_bytes / 1e6, 2),
                "load_seconds": round(loaded - start, 2), "matrix_seconds": round(done - loaded, 2),
                "total_seconds": round(done - start, 2),
                "peak_rss_mb": round(_peak_rss_mb(), 1), "peak_rss_mb_before": round(rss_before, 1),
                "mean_distance": round(float(matrix[~torch.eye(n_models, dtype=torch.bool).numpy()].mean()), 4)}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def format_speed(result: dict[str, Any]) -> str:
    lines = [f"device: {result['device']} ({result['torch_threads']} threads)", ""]
    header = f"{'case':<34}{'points':>7}{'ours s':>9}{'floor s':>9}{'paper s':>9}{'ours/floor':>12}{'paper/ours':>12}"
    lines += [header, "-" * len(header)]
    for c in result["cases"]:
        name = f"{c['arch']} {c['input']} N={c['anchors']} K={c['steps']}"
        s = c["seconds"]
        lines.append(f"{name:<34}{c['points']:>7}{s['ours']:>9.2f}{s[c['best_floor']]:>9.2f}{s['paper']:>9.2f}"
                     f"{c['ours_over_floor']:>12.3f}{c['paper_over_ours']:>12.3f}")
        lines.append(f"{'':<34}ours batch {c['ours_batch']}, fastest floor {c['best_floor']}")
        for name, ratio in c.get("paper_over_variant", {}).items():
            lines.append(f"{'':<34}{name}: {s[name]:.3f} s, paper/{name} {ratio:.3f}, "
                         f"error vs ours {c['variant_relative_error'][name]:.2e}")
    dm = result["distance_matrix"]
    lines += ["", f"distance_matrix over {dm['models']} stored fields {dm['field_shape']}: "
              f"{dm['matrix_seconds']} s (+{dm['load_seconds']} s loading), peak RSS {dm['peak_rss_mb']} MB, "
              f"one field {dm['field_mb_on_disk']} MB on disk"]
    return "\n".join(lines)
