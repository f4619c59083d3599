"""Triage evidence for many (victim, model) pairs at once: the component distances as matrices.

`pair_components(models, victims)` gives, for each victim row and every model column, the distances
triage's components measure (`analysis.triage`): the margin field distance (one field per model from
the store, every pair from one Gram product), and the Jensen-Shannon divergences of the softmax
outputs at points on each victim's own boundary (`boundary-js`) and at its adversarial boundary
points (`adversarial-js`), one batched forward per (victim, model) and the divergences of all models
at once; the share of the victim's tie points from which each model's own boundary lies away
(`boundary-shift`, one forward more); and the weight-space distance of two models of one architecture
(`weights`, NaN across architectures). The bench's verdict rates, the null pairs (every independent model
as a pseudo-victim) and the family graph of a workspace all read these matrices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..engine.anchors import load_anchors
from ..engine.cache import cached_field
from ..engine.distance import distance_matrix
from ..engine.fields import FieldConfig
from ..engine.models import ModelHandle, as_handle
from ..engine.progress import Progress, sub_progress
from .calibration import SHIFT_COMPONENT  # at how many of the victim's tie points a model's boundary lies elsewhere
from .probes import (
    BoundarySegments,
    adversarial_boundary_points,
    boundary_segments,
    boundary_shift,
    far_share,
    log_probs,
    output_handle,
)

# Output probe points: all 500 held-out digits (a superset of digits:64:0, the field's anchors); the
# probes are forwards only, so they cost little. 500 over 256 and 128: research/22, on the choice set.
DEFAULT_POINTS = "digits:500:0"
FIELD_ANCHORS = "digits:64:0"
FIELD_CFG = FieldConfig(steps=50, method="gausslegendre", baseline="black", target="predicted")
OUTPUT_COMPONENTS = ("boundary-js", "adversarial-js", SHIFT_COMPONENT)
# What a cached row of these components means: raised whenever one is computed differently (3: the boundary
# shift is the share of tie points beyond SHIFT_NEAR, research/27; 2: its mean), so caches keyed on it recompute.
EVIDENCE_VERSION = 3
WEIGHT_COMPONENT = "weights"


def weight_distance(a: ModelHandle, b: ModelHandle) -> float:
    """1 - cosine of the parameters present with equal name and shape in both models; NaN across
    architectures or when none is shared. A copy (fine-tuned, pruned, shifted, transferred) keeps most of
    its parent's weights; two independent models start from different random weights."""
    if a.arch != b.arch:
        return float("nan")
    pb = dict(b.module.named_parameters())
    dot = na = nb = 0.0
    for name, p in a.module.named_parameters():
        q = pb.get(name)
        if q is not None and q.shape == p.shape:
            x, y = p.detach().double().flatten(), q.detach().double().flatten()
            dot, na, nb = dot + float(x @ y), na + float(x @ x), nb + float(y @ y)
    if na <= 0 or nb <= 0:
        return float("nan")
    return max(0.0, 1.0 - dot / math.sqrt(na * nb))


def weight_rows(handles: Sequence[ModelHandle], victims: Sequence[int]) -> np.ndarray:
    """weight_distance from each victim to every model [V, M] (a victim to itself: 0)."""
    return np.array([[weight_distance(handles[v], h) for h in handles] for v in victims], dtype=float)


def js_rows(victim_logp: torch.Tensor, logps: torch.Tensor) -> np.ndarray:
    """Mean JS divergence [M] of each model's log-probs logps [M, n, C] to the victim's [n, C]."""
    v = victim_logp[None]  # [1, n, C]
    mid = torch.logaddexp(v, logps) - math.log(2.0)  # [M, n, C]
    js = 0.5 * (v.exp() * (v - mid)).sum(-1) + 0.5 * (logps.exp() * (logps - mid)).sum(-1)  # [M, n]
    return js.mean(-1).double().numpy()


def _victim_probes(victim: ModelHandle, images: torch.Tensor
                   ) -> tuple[dict[str, torch.Tensor], BoundarySegments | None]:
    """The victim's own probe points on `images` (chosen with the victim alone, one per image each) and the
    boundary segments they lie on (None when the victim sees one class only: no boundary between them)."""
    classes = log_probs(victim, images).argmax(1)
    out = {"adversarial-js": adversarial_boundary_points(victim, images)}
    seg = boundary_segments(victim, images, classes, len(images)) if len(set(classes.tolist())) >= 2 else None
    if seg is not None:
        out["boundary-js"] = seg.points
    return out, seg


def victim_points(victim: ModelHandle, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The victim's own probe points on `images` {component: [n, 3, H, W]}: one per image each."""
    return _victim_probes(victim, images)[0]


def output_rows(handles: Sequence[ModelHandle], v: int, images: torch.Tensor,
                outputs: dict | None = None, shift: bool = True) -> dict[str, np.ndarray]:
    """The output components {component: [M]} from victim handles[v] to every handle (NaN for another
    label space): one row of `pair_components`, so long runs can keep each victim's row as it comes.
    shift=False leaves the boundary shift NaN (a forward per model saved for callers that do not judge it)."""
    res = {c: np.full(len(handles), np.nan) for c in OUTPUT_COMPONENTS}
    points, seg = _victim_probes(handles[v], images)
    for c, x in points.items():
        lps = [log_probs(h, x) for h in handles]  # each [n, C_h]
        c_v = lps[v].shape[1]
        same = [j for j, lp in enumerate(lps) if lp.shape[1] == c_v]
        res[c][same] = js_rows(lps[v], torch.stack([lps[j] for j in same]))
        res[c][v] = 0.0
        if outputs is not None:
            outputs[(v, c)] = (x, lps)
        if shift and c == "boundary-js" and seg is not None:  # the shift reuses these outputs at the tie points
            for j in same:
                along = boundary_shift(handles[j], seg, at_points=lps[j])  # [n] per tie point
                res[SHIFT_COMPONENT][j] = 0.0 if j == v else far_share(along)
    return res


def pair_components(models: Sequence[str | ModelHandle], victims: Sequence[int],
                    anchors: str | Any = FIELD_ANCHORS, points: str | Any = DEFAULT_POINTS,
                    cfg: FieldConfig | None = None, store: Any = None, progress: Progress | None = None,
                    outputs: dict | None = None, weights: bool = True, shift: bool = True
                    ) -> dict[str, np.ndarray]:
    """Component distances {component: [V, M]} from each victim (indices into models) to every model.

    The diagonal-like entries (a victim to itself) are 0; output divergences to a model with another
    label space are NaN. "field_matrix" is the field distance of every pair [M, M] (it costs nothing
    more: the same Gram product). `outputs`, if given, is filled with {(victim, component): [M, n, C] log-probs
    or None} for callers that show the outputs themselves (the evidence report). weights=False leaves out the
    weight-space rows (a pass over every shared parameter of each same-architecture pair), shift=False the
    boundary-shift rows (NaN; a forward per pair), for callers that do not judge them.
    """
    handles = [as_handle(m) for m in models]
    cfg = cfg or FIELD_CFG
    anchor_set = load_anchors(anchors) if isinstance(anchors, str) else anchors
    m = len(handles)
    # progress in (anchor, step) points over all fields, as triage's field extraction reports it
    fields = [cached_field(output_handle(h, "margin"), anchor_set, cfg, store=store,
                           progress=sub_progress(progress, i, m)) for i, h in enumerate(handles)]
    dist = distance_matrix(fields)  # [M, M] one Gram product
    vi = list(victims)
    res: dict[str, np.ndarray] = {"modelgif": dist[vi], "field_matrix": dist}
    images = (load_anchors(points) if isinstance(points, str) else points).images
    for c in OUTPUT_COMPONENTS:
        res[c] = np.full((len(vi), len(handles)), np.nan)
    for r, v in enumerate(vi):
        for c, row in output_rows(handles, v, images, outputs, shift).items():
            res[c][r] = row
    if weights:
        res[WEIGHT_COMPONENT] = weight_rows(handles, vi)
    if progress is not None:
        points_total = m * len(anchor_set) * cfg.steps
        progress(points_total, points_total)
    return res
