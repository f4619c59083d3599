"""Output probes: points near the victim's own decision boundary, and how far two models' outputs differ there.

The probes need only forwards (and input gradients) of the victim to place their points, and are
undefined for a suspect with another label space (None):

    boundary_points             anchor pairs of different (victim) classes, the mixup coefficient bisected
                                until the victim's two logits tie (where a student copies the victim)
    segment_gap                 a model's logit gap between a segment's two classes at points on it
    boundary_shift              how far a model's own boundary lies from the victim's tie points (labels only)
    far_share                   the share of those points from which it lies more than SHIFT_NEAR away
    adversarial_boundary_points the victim's own signed-gradient steps from each anchor toward its second
                                class, bisected onto the boundary between its top two classes (IPGuard-style)
    boundary_mixups             class-boundary mixups with a random coefficient in [0.35, 0.65]
    output_js, output_kl        the divergence of the two softmax outputs at the points
    output_handle               the model answering log-probabilities or logit margins (a field's target)
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterator

import numpy as np
import torch

from ..engine.errors import UserError
from ..engine.models import ModelHandle, batched_outputs, first_tensor

FIELD_OUTPUTS = ("logit", "logprob", "margin")  # what the field differentiates (see output_handle)


class _Output(torch.nn.Module):
    """A classifier's logits turned into log-probabilities or logit margins (the field's target)."""

    def __init__(self, inner: torch.nn.Module, kind: str) -> None:
        super().__init__()
        self.inner, self.kind = inner, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = first_tensor(self.inner(x))  # [B, C]
        if self.kind == "logprob":
            return torch.log_softmax(logits, dim=1)
        # margin: each logit minus the largest *other* logit (the top class keeps its lead)
        top2 = logits.topk(2, dim=1).values  # [B, 2]
        other = torch.where(logits == top2[:, :1], top2[:, 1:], top2[:, :1])  # [B, C]
        return logits - other


def output_handle(handle: ModelHandle, kind: str) -> ModelHandle:
    """The same model answering log-probabilities ("logprob") or logit margins ("margin"), with its
    own fingerprint (so the store keeps these fields apart from the logit fields of the weights)."""
    if kind == "logit":
        return handle
    if kind not in FIELD_OUTPUTS:
        raise UserError(f"Unknown field output {kind!r}; choose from {', '.join(FIELD_OUTPUTS)}.")
    tag = "log-softmax" if kind == "logprob" else "logit-margin"
    fp = hashlib.sha256(f"{handle.fingerprint}:{tag}".encode()).hexdigest()
    # (extract_field restores each submodule's own mode, so the wrapper's leaves the model's alone)
    return dataclasses.replace(handle, module=_Output(handle.module, kind), fingerprint=fp,
                               name=f"{handle.name} ({kind})")


def log_prob_handle(handle: ModelHandle) -> ModelHandle:
    """The same model answering log-probabilities (`output_handle(handle, "logprob")`)."""
    return output_handle(handle, "logprob")


def _pair_stream(classes: torch.Tensor, rng: np.random.Generator, what: str) -> Iterator[tuple[int, int]]:
    """Endless index pairs (i, j), i != j, classes[i] != classes[j], drawn from `rng` (callers may draw
    more from the same rng between pairs): the one pair sampler of every probe."""
    m = len(classes)
    if m < 2 or len(set(classes.tolist())) < 2:
        raise UserError(f"{what} need anchors of at least two classes; use more anchors.")

    def stream() -> Iterator[tuple[int, int]]:
        while True:
            i, j = (int(v) for v in rng.choice(m, 2, replace=False))
            if classes[i] != classes[j]:
                yield i, j

    return stream()


def class_pairs(classes: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n seeded index pairs (i, j) with classes[i] != classes[j]: two index tensors [n]."""
    pairs = _pair_stream(classes, np.random.default_rng(seed), "Boundary points")
    first, second = zip(*(next(pairs) for _ in range(n)), strict=True) if n else ((), ())
    return torch.tensor(first, dtype=torch.long), torch.tensor(second, dtype=torch.long)


def boundary_mixups(images: torch.Tensor, classes: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """n mixups of anchor pairs from different classes (lam in [0.35, 0.65]): points near decision
    boundaries, where a model's idiosyncrasies are not pinned down by the training data."""
    rng = np.random.default_rng(seed)
    pairs = _pair_stream(classes, rng, "Boundary mixups")
    out = []
    for _ in range(n):
        i, j = next(pairs)
        lam = float(rng.uniform(0.35, 0.65))
        out.append(lam * images[i] + (1 - lam) * images[j])
    return torch.stack(out)  # [n, 3, H, W]


_OUTPUT_BATCH = 256  # images per forward when only outputs are needed


def log_probs(handle: ModelHandle, images: torch.Tensor) -> torch.Tensor:
    """The model's log-softmax outputs [n, C] on `images`, without gradients."""
    return torch.log_softmax(batched_outputs(handle, images, _OUTPUT_BATCH), dim=1)  # [n, C]


@torch.no_grad()
def _bisect(handle: ModelHandle, a: torch.Tensor, b: torch.Tensor, ca: torch.Tensor, cb: torch.Tensor,
            iters: int) -> torch.Tensor:
    """Points lam*a + (1-lam)*b where the handle's logits of classes ca and cb tie (bisection on lam,
    lam = 1 on a's side): [n, 3, H, W]."""
    lo, hi = torch.zeros(len(a)), torch.ones(len(a))  # [n]
    for _ in range(iters):
        mid = (lo + hi) / 2
        x = mid[:, None, None, None] * a + (1 - mid[:, None, None, None]) * b
        z = batched_outputs(handle, x, _OUTPUT_BATCH)  # [n, C]
        a_wins = z.gather(1, ca[:, None])[:, 0] > z.gather(1, cb[:, None])[:, 0]  # [n]
        hi, lo = torch.where(a_wins, mid, hi), torch.where(a_wins, lo, mid)
    lam = ((lo + hi) / 2)[:, None, None, None]
    return lam * a + (1 - lam) * b


@dataclasses.dataclass(frozen=True)
class BoundarySegments:
    """The victim's tie points on anchor-pair segments, with what a second model is probed along."""

    points: torch.Tensor  # [n, 3, H, W] where the victim's logits of classes first and second tie
    direction: torch.Tensor  # [n, 3, H, W] the segment a - b (toward the first class's anchor)
    first: torch.Tensor  # [n] the class of anchor a
    second: torch.Tensor  # [n] the class of anchor b


def boundary_segments(victim: ModelHandle, images: torch.Tensor, classes: torch.Tensor, n: int,
                      seed: int = 0, iters: int = 14) -> BoundarySegments:
    """`boundary_points` with the segments they lie on (for `boundary_shift`)."""
    i, j = class_pairs(classes, n, seed)  # [n], [n]
    a, b = images[i].float(), images[j].float()
    return BoundarySegments(_bisect(victim, a, b, classes[i], classes[j], iters), a - b, classes[i], classes[j])


def boundary_points(victim: ModelHandle, images: torch.Tensor, classes: torch.Tensor, n: int,
                    seed: int = 0, iters: int = 14) -> torch.Tensor:
    """n points on the victim's own decision boundary: for anchor pairs of different classes, the
    mixup coefficient is bisected until the victim's logits of the two classes tie. A student
    that learned from the victim's answers places its boundary there too; independent models
    do not (a random coefficient, as in boundary_mixups, mostly misses the boundary)."""
    return boundary_segments(victim, images, classes, n, seed, iters).points  # [n, 3, H, W]


SHIFT_STEP = 0.02  # the finite-difference step of boundary_shift, in mixup coefficient
# A boundary within this much mixup coefficient of the victim's tie point counts as placed where the victim's is
# (fixed before research/27 chose the share of points beyond it over the mean, median and geometric mean shift)
SHIFT_NEAR = 0.05


def segment_gap(z: torch.Tensor, seg: BoundarySegments) -> torch.Tensor:
    """Each point's logit (or log-probability: the same difference) of the first class minus the second's [n],
    from a model's outputs z [n, C] at points on the segments."""
    z = z.float()
    return z.gather(1, seg.first[:, None])[:, 0] - z.gather(1, seg.second[:, None])[:, 0]


@torch.no_grad()
def boundary_shift(handle: ModelHandle, seg: BoundarySegments, step: float = SHIFT_STEP,
                   at_points: torch.Tensor | None = None) -> torch.Tensor | None:
    """How far along each segment the model's own boundary between the two classes lies from the victim's
    tie point, in mixup coefficient [n]: one Newton step of the model's logit gap g (first minus second
    class), |g| / (dg/dlam), the slope from a forward difference of `step`; 1 (the whole segment) where g
    does not rise toward the first class's anchor. It reads only which side of the boundary a point falls
    on, so it sees students that learned the victim's labels alone (their softmax is their own).
    at_points: the model's logits or log-probabilities at seg.points if the caller has them (the gap is the
    same in both; it saves a forward). None for a model with another label space."""
    z0 = batched_outputs(handle, seg.points, _OUTPUT_BATCH) if at_points is None else at_points
    if z0.shape[1] <= int(max(seg.first.max(), seg.second.max())):
        return None
    z1 = batched_outputs(handle, seg.points + step * seg.direction, _OUTPUT_BATCH)
    g0 = segment_gap(z0, seg)
    slope = (segment_gap(z1, seg) - g0) / step
    shift = torch.where(slope > 0, g0.abs() / slope.clamp_min(1e-12), torch.ones(len(g0)))
    return shift.clamp(max=1.0)


def far_share(shift: torch.Tensor, near: float = SHIFT_NEAR) -> float:
    """The share of tie points where the model's own boundary lies farther than `near` from the victim's
    (`boundary_shift`'s [n]): 0 for a model whose boundary runs through every tie point. It counts where a
    student placed its boundary at all, where a mean would be led by the segments on which every model's
    boundary lies far (research/27)."""
    return float((shift > near).double().mean())


def adversarial_boundary_points(victim: ModelHandle, images: torch.Tensor, step: float = 0.01,
                                max_steps: int = 60, iters: int = 14) -> torch.Tensor:
    """From each image, signed-gradient steps on the victim toward its second most likely class
    until the victim's decision flips, then a bisection on the segment from the image to that
    point: one point per image on the boundary between the victim's top two classes."""
    x0 = images.float()  # [n, 3, H, W]
    with torch.no_grad():
        top2 = batched_outputs(victim, x0, _OUTPUT_BATCH).topk(2, 1)
    c1, c2 = top2.indices[:, 0], top2.indices[:, 1]  # [n]
    x, end = x0.clone(), x0.clone()
    crossed = torch.zeros(len(x0), dtype=torch.bool)
    for _ in range(max_steps):
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            z = victim(xg).float()  # [n, C]
            gap = (z.gather(1, c2[:, None]) - z.gather(1, c1[:, None])).sum()
            (grad,) = torch.autograd.grad(gap, xg)
        with torch.no_grad():
            x = (x + step * grad.sign()).clamp(0.0, 1.0)
            z = victim(x).float()
            now = (z.gather(1, c2[:, None]) > z.gather(1, c1[:, None]))[:, 0] & ~crossed  # [n]
            end[now] = x[now]
            crossed |= now
        if bool(crossed.all()):
            break
    end[~crossed] = x[~crossed]  # never flipped: the furthest point (the bisection ends there)
    return _bisect(victim, x0, end, c1, c2, iters)  # [n, 3, H, W]


def output_kl(victim_logp: torch.Tensor, logp: torch.Tensor) -> float | None:
    """Mean KL(victim || model) over the points; None for another label space."""
    if victim_logp.shape != logp.shape:
        return None
    return float((victim_logp.exp() * (victim_logp - logp)).sum(1).mean())


def output_js(victim_logp: torch.Tensor, logp: torch.Tensor) -> float | None:
    """Mean Jensen-Shannon divergence of the two softmax outputs over the points (bounded by ln 2,
    so one confidently wrong point cannot dominate as in KL); None for another label space."""
    if victim_logp.shape != logp.shape:
        return None
    mid = torch.logaddexp(victim_logp, logp) - math.log(2.0)  # [n, C] log of the mean distribution
    js = 0.5 * (victim_logp.exp() * (victim_logp - mid)).sum(1) + 0.5 * (logp.exp() * (logp - mid)).sum(1)
    return float(js.mean())
