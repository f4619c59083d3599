"""`modelgif bench scale`: how much sketches and signatures cost in accuracy, and how fast they are.

sketch:    the built-in zoo's fields (digits) and 224-px timm models (random init + perturbed copies,
           natural anchors), full and sketched: max |d_sketch - d_full| over all pairs, and the
           stored size ratio at 3x224x224. The sketched fields are the seeded projection applied to
           the full ones, which is what `extract_field(..., FieldConfig(sketch=m))` stores (up to float32
           rounding: tests/test_sketch.py), so one extraction per model serves both.
signature: 1 - <s_A, s_B> against d(A, B) on the zoo's full fields; recall of the exact top 10 through
           the signature shortlist; the Gram of M synthetic unit signatures and a top-10 query among M,
           at growing M. The "cluster" section comes from the service layer (the CLI adds it).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..analysis.nearest import NEAREST_MARGIN, shortlist
from ..engine.anchors import load_anchors
from ..engine.cache import cached_field
from ..engine.device import available_host_bytes
from ..engine.distance import distance_matrix
from ..engine.errors import UserError
from ..engine.fields import FieldConfig, extract_field
from ..engine.models import InputConfig, ModelHandle, load_model
from ..engine.sketch import (
    QUERY_FOLD,
    SIGNATURE_DIMS,
    SignatureIndex,
    fold_signatures,
    gram_kind,
    projection,
    signature_gram,
)
from ..engine.store import FieldStore
from ..zoo import ensure_zoo, list_zoo

SIZES = {
    # zoo anchors/steps; 224-px archs, anchors, steps; signature counts for the Gram and the query
    "small": {"zoo_anchors": "digits:64", "zoo_steps": 8, "archs": ("resnet18", "mobilenetv3_small_100"),
              "natural": "natural:8", "steps_224": 4, "gram": (1000,), "query": (1000, 10000)},
    "full": {"zoo_anchors": "digits:64", "zoo_steps": 20,
             "archs": ("resnet18", "resnet50", "mobilenetv3_small_100", "vit_tiny_patch16_224"),
             "natural": "natural:16", "steps_224": 4, "gram": (1000, 10000), "query": (1000, 10000, 100000)},
}
SKETCH_DIMS = 2048
FOLD_DIMS = 1024  # folded signatures for the Gram at 10k (engine.sketch.fold_signatures)


def _pairs(a: np.ndarray) -> np.ndarray:
    return a[np.triu_indices(a.shape[0], 1)]


def _sketched(fields: list[torch.Tensor], m: int) -> list[torch.Tensor]:
    out = []
    for f in fields:
        n, k, d = f.shape
        out.append(projection(d, m).apply(f.reshape(-1, d)).reshape(n, k, m))
    return out


def _perturbed(module: torch.nn.Module, scale: float, seed: int) -> torch.nn.Module:
    import copy

    other = copy.deepcopy(module)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            if p.numel() > 1:
                p.add_(scale * p.std() * torch.randn(p.shape, generator=g))
    return other


def _timm_224(archs: tuple[str, ...]) -> list[tuple[str, ModelHandle]]:
    """Random-init timm models at 224 px and copies with small and large weight noise."""
    import timm

    cfg = InputConfig(input_size=(3, 224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    out = []
    for i, arch in enumerate(archs):
        torch.manual_seed(i)
        base = timm.create_model(arch, pretrained=False, num_classes=100).eval()
        for label, module in (("", base), ("+noise0.05", _perturbed(base, 0.05, i)),
                              ("+noise0.5", _perturbed(base, 0.5, 100 + i))):
            name = f"{arch}{label}"
            out.append((name, ModelHandle.from_module(module, arch, cfg, name, name)))
    return out


def _sketch_224(size: dict, note: Callable[[str], None]) -> dict[str, Any]:
    anchors = load_anchors(size["natural"])
    models = _timm_224(size["archs"])
    cfg = FieldConfig(steps=size["steps_224"])
    full, seconds = [], []
    for name, handle in models:
        note(f"224 px: {name}")
        t = time.perf_counter()
        full.append(extract_field(handle, anchors, cfg))
        seconds.append(time.perf_counter() - t)
    t = time.perf_counter()
    sketched = _sketched(full, SKETCH_DIMS)
    sketch_s = time.perf_counter() - t
    d_full, d_sketch = distance_matrix(full), distance_matrix(sketched)
    err = np.abs(_pairs(d_sketch) - _pairs(d_full))
    n, k, d = full[0].shape
    return {"models": [m for m, _ in models], "anchors": anchors.spec, "steps": cfg.steps, "sketch": SKETCH_DIMS,
            "max_abs_error": round(float(err.max()), 5), "mean_abs_error": round(float(err.mean()), 5),
            "distance_range": [round(float(_pairs(d_full).min()), 4), round(float(_pairs(d_full).max()), 4)],
            "compression": round(d / SKETCH_DIMS, 2), "extract_cpu_s_per_field": round(float(np.mean(seconds)), 2),
            "sketch_cpu_s_per_field": round(sketch_s / len(full), 3)}


def _zoo_fields(size: dict, store: FieldStore, note: Callable[[str], None]) -> tuple[list[str], list[Any]]:
    ensure_zoo("small")
    anchors = load_anchors(size["zoo_anchors"])
    cfg = FieldConfig(steps=size["zoo_steps"])
    names, fields = [], []
    for row in list_zoo("small"):
        note(f"zoo: {row['name']}")
        names.append(row["name"])
        fields.append(cached_field(load_model(row["spec"]), anchors, cfg, store))
    return names, fields


def _timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _synthetic(m: int, dims: int, seed: int = 0) -> np.ndarray:
    """m unit signatures in families of 10 (a parent and noisy children), float32, made in chunks."""
    g = torch.Generator().manual_seed(seed)
    out = np.empty((m, dims), np.float32)
    for r0 in range(0, m, 2000):
        r1 = min(m, r0 + 2000)
        parents = torch.randn((r1 - r0 + 9) // 10, dims, generator=g)
        rows = parents.repeat_interleave(10, 0)[: r1 - r0] + 0.7 * torch.randn(r1 - r0, dims, generator=g)
        rows /= rows.norm(dim=1, keepdim=True)
        out[r0:r1] = rows.numpy()
    return out


def _speed(size: dict, note: Callable[[str], None]) -> dict[str, Any]:
    gram, query, index_s, gram_folded, skipped = {}, {}, {}, {}, {}
    same = True
    for m in sorted({*size["gram"], *size["query"], 10000}):
        free = available_host_bytes()
        # the matrix, the chunks it is made from, its fold, and the Gram where one is timed
        need = 1.3 * m * SIGNATURE_DIMS * 4 + (8 * m * m if m in size["gram"] or m == 10000 else 0) + 5e8
        if free is not None and need > free:
            need = m * SIGNATURE_DIMS * 4 / 1e9
            skipped[str(m)] = f"{m} x {SIGNATURE_DIMS} float32 signatures need {need:.1f} GB; {free / 1e9:.1f} GB free"
            continue
        note(f"signatures: {m}")
        sigs = _synthetic(m, SIGNATURE_DIMS, seed=m)
        if m in size["gram"]:
            gram[m] = _timed(lambda s=sigs: signature_gram(s), repeat=1 if m >= 10000 else 2)
        if m == 10000:
            folded = fold_signatures(sigs, FOLD_DIMS)
            gram_folded[m] = _timed(lambda f=folded: signature_gram(f), repeat=2)
        if m in size["query"]:
            q = sigs[7] + 0.01 * np.random.default_rng(0).standard_normal(SIGNATURE_DIMS).astype(np.float32)
            q /= np.linalg.norm(q)
            t = time.perf_counter()
            index = SignatureIndex(sigs)
            index_s[m] = time.perf_counter() - t
            # what a query does once the index is in memory: fold the query, the folded pass, exact
            # products on the rows that pass, the shortlist (k = 10, the nearest command's margin)
            query[m] = _timed(lambda i=index, q=q: i.shortlist(q, 10, NEAREST_MARGIN))
            exact = 1.0 - sigs @ q  # the full pass, for the check that the fold changed nothing
            want = np.flatnonzero(exact <= np.partition(exact, 9)[9] + NEAREST_MARGIN)
            same = same and np.array_equal(np.sort(index.shortlist(q, 10, NEAREST_MARGIN)[0]), want)
            del index
        del sigs
        gc.collect()
    out: dict[str, Any] = {
        "dims": SIGNATURE_DIMS, "threads": torch.get_num_threads(), "gram_kind": gram_kind(),
        "gram_s": {str(k): round(v, 3) for k, v in gram.items()},
        "query_s": {str(k): round(v, 4) for k, v in query.items()},
        "query_index_build_s": {str(k): round(v, 3) for k, v in index_s.items()},
        "query_fold": QUERY_FOLD, "query_shortlist_same_as_full_pass": bool(same),
        f"gram_folded_{FOLD_DIMS}_s": {str(k): round(v, 3) for k, v in gram_folded.items()},
    }
    if skipped:
        out["skipped"] = skipped
    out["gram_10k_s"] = out["gram_s"].get("10000")
    out["query_100k_s"] = out["query_s"].get("100000")
    return out


def measure_scale(size: str = "small", store: FieldStore | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """{"sketch": {...}, "signature": {...}} measured here, side by side in this process."""
    if size not in SIZES:
        raise UserError(f"Unknown bench size {size!r}; choose one of {', '.join(SIZES)}.")
    conf = SIZES[size]
    note = progress or (lambda _msg: None)
    store = store if store is not None else FieldStore()

    names, stored = _zoo_fields(conf, store, note)
    full = [f.field() for f in stored]
    d_full = distance_matrix(stored)
    sketch_zoo: dict[str, Any] = {"models": len(names), "anchors": conf["zoo_anchors"], "steps": conf["zoo_steps"]}
    for m in (512, SKETCH_DIMS):
        err = np.abs(_pairs(distance_matrix(_sketched(full, m))) - _pairs(d_full))
        sketch_zoo[f"max_abs_error_{m}"] = round(float(err.max()), 5)
        sketch_zoo[f"mean_abs_error_{m}"] = round(float(err.mean()), 5)
    del full
    gc.collect()
    s224 = _sketch_224(conf, note)
    sketch = {"dims": SKETCH_DIMS,
              "max_abs_error": max(sketch_zoo[f"max_abs_error_{SKETCH_DIMS}"], s224["max_abs_error"]),
              "compression_224": round(3 * 224 * 224 / SKETCH_DIMS, 2), "zoo": sketch_zoo, "timm_224": s224}

    note("signatures of the zoo")
    sigs = np.stack([store.signature(f.key) for f in stored])
    est = 1.0 - signature_gram(sigs, exact=True)
    err = np.abs(_pairs(est) - _pairs(d_full))
    k = min(10, len(names) - 1)
    hits = 0
    for q in range(len(names)):
        others = [j for j in range(len(names)) if j != q]
        exact = [others[j] for j in np.argsort(d_full[q, others], kind="stable")[:k]]
        picked = [others[j] for j in shortlist(sigs[q], sigs[others], k)]
        reranked = sorted(picked, key=lambda j: (d_full[q, j], j))[:k]
        hits += len(set(reranked) & set(exact))
    signature_section = {"mean_abs_error": round(float(err.mean()), 5), "max_abs_error": round(float(err.max()), 5),
                         "pairs": int(err.size), f"recall_top{k}": round(hits / (k * len(names)), 4),
                         **_speed(conf, note)}
    return {"size": size, "sketch": sketch, "signature": signature_section}


def format_scale(result: dict[str, Any]) -> str:
    s, g = result["sketch"], result["signature"]
    zoo_err = s["zoo"][f"max_abs_error_{s['dims']}"]
    lines = [f"sketch m={s['dims']}: max |d_sketch - d_full| {s['max_abs_error']:.4f} "
             f"(zoo {zoo_err:.4f}, 224 px {s['timm_224']['max_abs_error']:.4f}); "
             f"at 3x224x224 {s['compression_224']:.1f}x smaller",
             f"signature S={g['dims']}: mean |error| {g['mean_abs_error']:.4f}, max {g['max_abs_error']:.4f} "
             f"over {g['pairs']} zoo pairs; recall {[v for k, v in g.items() if k.startswith('recall')][0]:.2f}",
             f"gram (s, {g['gram_kind']}, {g['threads']} thread(s)): {g['gram_s']}; folded to {FOLD_DIMS}: "
             f"{g[f'gram_folded_{FOLD_DIMS}_s']}",
             f"top-10 query (s, first pass folded to {g['query_fold']}): {g['query_s']}; index build (s): "
             f"{g['query_index_build_s']}; shortlist = full pass: {g['query_shortlist_same_as_full_pass']}"]
    if "cluster" in result:
        lines.append(f"cluster: {result['cluster']}")
    return "\n".join(lines)
