"""Model Gradient Field extraction (DESIGN §1): integrated-gradient curves along baseline->anchor paths.

    g_ik   = grad_x t_f(x0 + a_k (x_i - x0))          one forward+backward per (i, k), batched
    Phi_ik = (x_i - x0) * sum_{j<=k} w_j g_ij          the curve; Phi_iK is captum's IG attribution
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from .device import available_host_bytes, resolve_device, tf32_mode
from .errors import UserError, check_choice
from .models import ModelHandle, batched_outputs, first_tensor
from .progress import Progress
from .sketch import projection

# Names and nodes follow captum's `approximation_methods`, so our last curve point is its IG.
METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
BASELINES = ("black", "gray", "blur", "noise", "shuffle")
TARGETS = ("predicted", "label", "feature-max", "sum")
# Precision of the forward+backward. None/"none": full fp32 everywhere (TF32 off on GPUs, so a GPU
# field equals the CPU one); "tf32": fp32 with TF32 matrix units (GPU only); bf16/fp16: autocast.
AUTOCAST = {None: None, "none": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class FieldConfig:
    """What a field is computed with. `key()` covers everything that changes the numbers."""

    steps: int = 50  # K: the paper's 50 Gauss-Legendre points
    method: str = "gausslegendre"  # quadrature: one of METHODS
    baseline: str = "black"  # x0: one of BASELINES; black = zeros in pixel space, as the paper
    target: str = "predicted"  # t_f: one of TARGETS; predicted = the model's own argmax at the anchor
    labels: tuple[int, ...] | None = None  # class per anchor for target="label" (else the anchor set's)
    seed: int = 0  # for the noise and shuffle baselines
    device: str = "auto"  # auto: CUDA, then MPS, then CPU (not in the key: same numbers anywhere)
    autocast: str | None = None  # none (full fp32), "tf32", "bf16" or "fp16" on GPU; the curve sums in fp32
    memory_mb: int | None = None  # activation budget per chunk (None: sized for the device)
    sketch: int | None = None  # m: each Phi_ik projected to m dims on the device (engine/sketch.py); None = full


    def __post_init__(self) -> None:
        check_choice("quadrature method", self.method, METHODS)
        check_choice("baseline", self.baseline, BASELINES)
        check_choice("target", self.target, TARGETS)
        if self.autocast not in AUTOCAST:
            raise UserError(f"Unknown autocast {self.autocast!r}; choose one of none, tf32, bf16, fp16.")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise UserError(f"steps must be a positive integer; got {self.steps!r}.")
        if self.method.startswith("riemann") and self.steps < 2:
            raise UserError("Riemann quadrature needs at least 2 steps.")
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(int(v) for v in self.labels))
        if self.sketch in (0, None):
            object.__setattr__(self, "sketch", None)
        elif isinstance(self.sketch, bool) or not isinstance(self.sketch, int) or self.sketch < 0:
            raise UserError(f"sketch must be a positive number of dims (0 for the full field); got {self.sketch!r}.")

    def key(self) -> str:
        """Stable hex key of the semantic settings (device and memory budget do not change results)."""
        semantic = {k: v for k, v in self.to_dict().items() if k not in ("device", "memory_mb")}
        if self.sketch is None:
            semantic.pop("sketch")  # full fields keep the keys they had before sketches existed
        if self.baseline not in ("noise", "shuffle") and self.sketch is None:
            semantic.pop("seed")  # with a sketch, the seed also picks the projection
        if self.autocast in (None, "none"):
            semantic["autocast"] = None
        return hashlib.sha256(json.dumps(semantic, sort_keys=True).encode()).hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = list(self.labels) if self.labels is not None else None
        return d


# ----------------------------------------------------------------------------------- quadrature


def quadrature(method: str, steps: int) -> tuple[list[float], list[float]]:
    """Nodes a_k (ascending) and weights w_k, exactly as captum's approximation_parameters."""
    check_choice("quadrature method", method, METHODS)
    n = steps
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return (0.5 * (1 + nodes)).tolist(), (0.5 * weights).tolist()
    if n < 2:
        raise UserError("Riemann quadrature needs at least 2 steps.")
    weights = [1 / n] * n
    kind = method.split("_")[1]
    if kind == "trapezoid":
        weights[0] /= 2  # captum halves the end weights of 1/n (its sum is 1 - 1/n)
        weights[-1] /= 2
    # torch.linspace in float32, as captum, so that nodes agree to the last bit.
    start, end = {"left": (0, 1 - 1 / n), "right": (1 / n, 1), "middle": (1 / (2 * n), 1 - 1 / (2 * n)),
                  "trapezoid": (0, 1)}[kind]
    return torch.linspace(start, end, n).tolist(), weights


# ----------------------------------------------------------------------------------- baselines


def make_baseline(name: str, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """x0 per anchor [N, 3, H, W] in pixel space."""
    check_choice("baseline", name, BASELINES)
    n = images.shape[0]
    if name == "black":
        return torch.zeros_like(images)
    if name == "gray":
        return torch.full_like(images, 0.5)
    if name == "blur":
        from torchvision.transforms.functional import gaussian_blur

        # A strong blur keeps the colours and removes the shapes (sigma = 1/8 of the side).
        sigma = max(images.shape[-2:]) / 8
        kernel = int(2 * round(3 * sigma) + 1)
        kernel = min(kernel, 2 * (min(images.shape[-2:]) // 2) - 1) if min(images.shape[-2:]) > 2 else 1
        return gaussian_blur(images, [kernel, kernel], [sigma, sigma]) if kernel > 1 else images.clone()
    generator = torch.Generator().manual_seed(int(seed))
    if name == "noise":
        return torch.rand(images.shape, generator=generator, dtype=images.dtype)
    # shuffle: another anchor of the set, never itself (a random derangement by a cyclic shift)
    if n < 2:
        raise UserError("The shuffle baseline needs at least 2 anchors.")
    perm = torch.randperm(n, generator=generator)
    shift = int(torch.randint(1, n, (1,), generator=generator))
    partner = torch.empty(n, dtype=torch.long)
    partner[perm] = perm.roll(-shift)
    return images[partner].clone()


# ----------------------------------------------------------------------------------- targets


def _forward(model: Any, x: torch.Tensor) -> torch.Tensor:
    return first_tensor(model(x))


# Clean-anchor outputs (which fix the targets) use one batch size on every budget, so a near tie
# between two logits cannot resolve differently when only the memory budget changed.
_TARGET_BATCH = 16


def _make_target(model: Any, images: torch.Tensor, labels: torch.Tensor | None, cfg: FieldConfig,
                 per_channel: bool = False) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], int]:
    """t_f as a function (outputs [B, ...], anchor index [B]) -> scalars [B], fixed at the clean anchors,
    and 1; per_channel (feature-max only): each output channel's own target, [B, C], and C."""
    if per_channel and cfg.target != "feature-max":
        raise UserError(f"Per-channel fields need target 'feature-max' (one field per output channel); "
                        f"got {cfg.target!r}.")
    if cfg.target == "sum":
        return (lambda out, i: out.flatten(1).sum(1)), 1
    clean = batched_outputs(model, images, _TARGET_BATCH)  # [N, ...] outputs at a=1
    if cfg.target in ("predicted", "label"):
        if clean.dim() != 2:
            raise UserError(f"Target {cfg.target!r} needs class scores [N, classes] but the model outputs "
                            f"shape {tuple(clean.shape[1:])}; use target 'feature-max' or 'sum'.")
        if cfg.target == "predicted":
            cls = clean.argmax(dim=1)  # [N]
        else:
            if labels is None:
                raise UserError("Target 'label' needs a class per anchor: use a labelled anchor set "
                                "(digits, cutmix of digits) or pass FieldConfig(labels=...).")
            cls = labels.to(torch.long).cpu()
            if cls.shape != (images.shape[0],):
                raise UserError(f"Target 'label' needs {images.shape[0]} labels, got {tuple(cls.shape)}.")
            if int(cls.min()) < 0 or int(cls.max()) >= clean.shape[1]:
                raise UserError(f"Labels must lie in [0, {clean.shape[1] - 1}] for this model; "
                                f"got {int(cls.min())}..{int(cls.max())}.")
        cls_dev = cls.to(images.device)
        return (lambda out, i: out.gather(1, cls_dev[i][:, None])[:, 0]), 1
    # feature-max: per output channel the position of its max at the clean anchor, the value there,
    # then (the field) the sum over channels.
    channels: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # -> [B, C]
    if clean.dim() == 2:
        channels = lambda out, i: out
    elif clean.dim() == 3:  # [N, L, C] tokens: channel last
        pos = clean.argmax(dim=1).to(images.device)  # [N, C]
        channels = lambda out, i: out.gather(1, pos[i][:, None, :])[:, 0]
    else:
        pos = clean.flatten(2).argmax(dim=2).to(images.device)  # [N, C] over H*W
        channels = lambda out, i: out.flatten(2).gather(2, pos[i][:, :, None])[:, :, 0]
    if per_channel:
        return channels, clean.shape[-1] if clean.dim() == 3 else clean.shape[1]
    return (lambda out, i: channels(out, i).sum(1)), 1


# ----------------------------------------------------------------------------------- batching


def _activation_bytes_per_sample(model: Any, sample: torch.Tensor) -> int:
    """Bytes of all module outputs for one input: what autograd keeps for the backward pass."""
    module = model.module if isinstance(model, ModelHandle) else model
    total = [0]

    def hook(_mod: torch.nn.Module, _inp: Any, out: Any) -> None:
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                total[0] += t.numel() * t.element_size()

    handles = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            _forward(model, sample)
    finally:
        for h in handles:
            h.remove()
    return max(total[0] + 4 * sample[0].numel(), 1)


def _default_budget_mb(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.4) >> 20
    return 512


def choose_batch(model: Any, images: torch.Tensor, device: torch.device, memory_mb: int | None,
                 total: int) -> int:
    """Points per forward+backward: as many as fit the activation budget (x3 for the backward)."""
    per_sample = _activation_bytes_per_sample(model, images[:1])
    budget = (memory_mb or _default_budget_mb(device)) << 20
    batch = budget // (3 * per_sample)
    if memory_mb is None:
        # Measured on a 2-core CPU (`modelgif bench speed`, docs/PERFORMANCE.md): the bare gradient
        # is fastest near 128 points per call for the zoo's models and flat from 32 to 256 for
        # resnet18 at 64x64; below ~16 points per-operator overhead dominates on every device.
        batch = max(16, min(batch, 128) if device.type == "cpu" else batch)
    return int(max(1, min(total, batch)))


@contextlib.contextmanager
def frozen_module(module: torch.nn.Module) -> Iterator[None]:
    """Parameters never receive gradients; restore the caller's flags afterwards."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    # Each submodule's own mode: `module.train(flag)` would push a wrapper's mode onto the model
    # inside it (a fresh wrapper is in training mode, and BatchNorm would then update its stats).
    modes = [(m, m.training) for m in module.modules()]
    module.requires_grad_(False)
    module.eval()
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, training in modes:
            m.training = training


def _autocast(device: torch.device, autocast: str | None) -> contextlib.AbstractContextManager:
    dtype = AUTOCAST[autocast]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _module_place(module: torch.nn.Module) -> tuple[torch.device, bool]:
    """Where the module's parameters live, and whether its conv weights are channels_last."""
    tensors = [*module.parameters(), *module.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    four_d = [t for t in tensors if t.dim() == 4]
    channels_last = bool(four_d) and four_d[0].is_contiguous(memory_format=torch.channels_last) \
        and not four_d[0].is_contiguous()
    return device, channels_last


# ----------------------------------------------------------------------------------- extraction


def _images_and_labels(anchors: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    images = getattr(anchors, "images", anchors)
    labels = getattr(anchors, "labels", None)
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise UserError(f"Anchors must be RGB images [N, 3, H, W] in [0, 1]; got {shape}.")
    if images.shape[0] == 0:
        raise UserError("The anchor set is empty; give at least one anchor image.")
    if not torch.isfinite(images).all():
        raise UserError("The anchor images contain NaN or infinite values.")
    return images.float().contiguous(), labels


def extract_field(model: ModelHandle | torch.nn.Module, anchors: Any, cfg: FieldConfig | None = None,
                  progress: Progress | None = None, *, per_channel: bool = False) -> torch.Tensor:
    """The ModelGiF of `model` on `anchors`: float32 [N, K, 3*H*W] on the CPU (DESIGN §1);
    [N, K, m] with cfg.sketch=m (projected on the extraction device, chunk by chunk).

    `model` is a ModelHandle (its preprocessing runs inside the gradient) or a plain module that
    takes pixel-space images. `anchors` is an AnchorSet or a tensor [N, 3, H, W] in [0, 1].
    per_channel (target feature-max): one field per output channel instead of their sum,
    [N, K, C, 3*H*W], summing over C to the ordinary field. For analyses of encoders with a few dozen
    channels (the relatedness bench); the store keeps ordinary fields only.
    """
    cfg = cfg or FieldConfig()
    images, anchor_labels = _images_and_labels(anchors)
    labels = torch.tensor(cfg.labels) if cfg.labels is not None else anchor_labels
    device = resolve_device(cfg.device)
    module = model.module if isinstance(model, ModelHandle) else model
    if not isinstance(module, torch.nn.Module):
        raise UserError(f"Expected a loaded model (load_model(...)), got {type(model).__name__}.")
    if cfg.autocast == "fp16" and device.type == "cpu":
        raise UserError("fp16 autocast needs a GPU; use autocast bf16 or none on the CPU.")
    if cfg.autocast == "tf32" and device.type != "cuda":
        raise UserError("TF32 exists on NVIDIA GPUs only; use autocast none (full fp32) here.")

    alphas, weights = quadrature(cfg.method, cfg.steps)
    x0 = make_baseline(cfg.baseline, images, cfg.seed)  # [N, 3, H, W]
    home, home_channels_last = _module_place(module)
    # channels_last on CUDA for the tensor-core precisions only: on an NVIDIA H200 a full-fp32 resnet50
    # extraction took 1.06 s in NHWC and 0.89 s in NCHW (docs/PERFORMANCE.md).
    fast = device.type == "cuda" and cfg.autocast in ("tf32", "bf16", "fp16")
    layout = torch.channels_last if fast else torch.preserve_format
    module.to(device, memory_format=layout)
    try:
        field = _integrate(model, images, x0, labels, cfg, device, layout, alphas, weights, progress,
                           per_channel)
    finally:  # leave the caller's model where it was: extraction on a GPU must not strand it there
        module.to(home, memory_format=torch.channels_last if home_channels_last else torch.contiguous_format)
    return field


def _integrate(model: Any, images: torch.Tensor, x0: torch.Tensor, labels: torch.Tensor | None,
               cfg: FieldConfig, device: torch.device, layout: torch.memory_format,
               alphas: list[float], weights: list[float], progress: Progress | None,
               per_channel: bool = False) -> torch.Tensor:
    """The chunked forward+backward over all (anchor, step) points, then the running sums.
    Rows (i, k) of C channel fields each: [N, K, D], or [N, K, C, D] per channel."""
    module = model.module if isinstance(model, ModelHandle) else model
    n, k = images.shape[0], cfg.steps
    d = images[0].numel()
    total = n * k
    # A sketch projects each chunk on the device: the field is [N, K, m] from the start, and the
    # running sums and the (x_i - x0) factor are taken before the (linear) projection.
    proj = projection(d, cfg.sketch, cfg.seed) if cfg.sketch is not None else None
    width = proj.m if proj is not None else d
    with frozen_module(module), tf32_mode(device, False):  # targets fixed in full fp32 whatever the path's precision
        x_dev, x0_dev = images.to(device), x0.to(device)
        delta = x_dev - x0_dev  # [N, 3, H, W] the path direction, as captum's (inputs - baselines)
        target, c = _make_target(model, x_dev, labels, cfg, per_channel)
        # The field always ends up in host memory: refuse one that cannot fit before minutes of work
        # (the allocator's own error is a C++ trace, or the kernel kills the process later).
        nbytes, free = 4 * total * c * width, available_host_bytes()  # float32
        if free is not None and nbytes > free:
            size = f"{n} anchors x {k} steps x " + (f"{c} channels x " if per_channel else "") + f"{width} values"
            raise UserError(f"The field would take {nbytes / 2**30:.1f} GiB ({size}, float32) but "
                            f"{free / 2**30:.1f} GiB of memory is free; use fewer anchors or steps, or smaller "
                            "anchor images.")
        # On a GPU the field stays there while it takes at most a quarter of the free memory, so the
        # running sums run on the device too and one copy brings the result back.
        on_device = device.type == "cuda" and nbytes <= torch.cuda.mem_get_info(device)[0] // 4
        # Host memory for a GPU's field is page-locked: copies into pageable memory ran at ~1.8 GB/s on
        # an NVIDIA H200 and took 30% of a resnet50 extraction (docs/PERFORMANCE.md).
        pin = device.type == "cuda"
        field = torch.empty(total, c, width, dtype=torch.float32, device=device if on_device else "cpu",
                            pin_memory=pin and not on_device)  # rows (i, k), k fastest
        batch = choose_batch(model, x_dev, device, cfg.memory_mb, total)
        alpha_dev = torch.tensor(alphas, dtype=torch.float32, device=device)  # [K]
        weight_dev = torch.tensor(weights, dtype=torch.float32, device=device)  # [K]
        with tf32_mode(device, cfg.autocast == "tf32"):  # for the forward and the backward of every chunk
            for start in range(0, total, batch):
                idx = torch.arange(start, min(total, start + batch), device=device)  # [B]
                i, step = idx // k, idx % k
                # points' dim -> (B x 3 x H x W): x0_i + a_k (x_i - x0_i)
                points = x0_dev[i] + alpha_dev[step].view(-1, 1, 1, 1) * delta[i]
                points = points.contiguous(memory_format=layout).requires_grad_(True)
                with _autocast(device, cfg.autocast):
                    scalars = target(_forward(model, points), i)  # [B], or [B, C] per channel
                if not scalars.requires_grad:
                    raise UserError("The model's output does not depend differentiably on its input "
                                    "(no gradient); ModelGiF needs a differentiable model.")
                if per_channel:  # one backward per channel: on the CPU faster than batched grad outputs
                    grad = torch.stack([torch.autograd.grad(scalars[:, j].float().sum(), points,
                                                            retain_graph=j < c - 1)[0] for j in range(c)], 1)
                else:
                    (grad,) = torch.autograd.grad(scalars.float().sum(), points)
                scaled = grad.float().reshape(len(idx), c, d) * weight_dev[step][:, None, None]  # [B, C, D]
                if proj is not None:  # (x_i - x0) * w_k g_ik, projected: [B, C, m]
                    scaled = scaled * delta.reshape(n, 1, d)[i]
                    with tf32_mode(device, False):
                        scaled = proj.apply(scaled.reshape(-1, d)).reshape(len(idx), c, width)
                field[start:start + len(idx)].copy_(scaled, non_blocking=pin)
                if progress is not None:
                    progress(start + len(idx), total)
    if pin and not field.is_cuda:
        torch.cuda.synchronize(device)  # the chunks' asynchronous copies have landed
    field = field.view(n, k, c, width)
    for step in range(1, k):  # running partial integrals sum_{j<=k} w_j g_ij, in place
        field[:, step].add_(field[:, step - 1])
    if proj is None:  # a sketch took (x_i - x0) in already
        field.mul_(delta.reshape(n, 1, 1, d).to(field.device))  # times (x_i - x0), as captum's attribution
    if not per_channel:
        field = field.view(n, k, width)
    if field.is_cuda:
        field = torch.empty(field.shape, dtype=field.dtype, pin_memory=True).copy_(field, non_blocking=True)
        torch.cuda.synchronize(device)
    return field
