"""Field distances: cosine (the paper's) and euclidean, one pair or a whole matrix as a Gram product."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import UserError

# Norms below this are treated as zero vectors (cos with a zero vector is 0, DESIGN §1).
_TINY = 1e-30


def unit_field(phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a field into unit vectors per (anchor, step) and their norms; zero vectors stay zero."""
    if phi.dim() != 3:
        raise UserError(f"A field must have shape [N, K, D]; got {tuple(phi.shape)}.")
    phi = phi.float()
    norm = torch.linalg.vector_norm(phi, dim=-1)  # [N, K]
    safe = torch.where(norm > _TINY, norm, torch.ones_like(norm))
    unit = torch.where((norm > _TINY)[..., None], phi / safe[..., None], torch.zeros_like(phi))
    return unit, norm  # [N, K, D], [N, K]


def _rows(field: Any, r0: int, r1: int, d: int, metric: str) -> torch.Tensor:
    """Rows r0:r1 of a field as float32 [r1-r0, D]: unit vectors (cosine) or raw vectors (euclidean).

    Slices before converting, so a stored float16 field is never expanded whole per chunk.
    """
    unit = None if isinstance(field, torch.Tensor) else getattr(field, "unit", None)
    if unit is not None:  # a StoredField keeps unit vectors and their norms
        rows = unit.reshape(-1, d)[r0:r1].float()
        return rows if metric == "cosine" else rows * field.norm.reshape(-1)[r0:r1, None].float()
    if not isinstance(field, torch.Tensor):
        raise UserError(f"Expected a field tensor [N, K, D] or a stored field, got {type(field).__name__}.")
    rows = field.reshape(-1, d)[r0:r1].float()
    return unit_field(rows[None])[0][0] if metric == "cosine" else rows


def _count_nonzero_rows(field: Any, part: torch.Tensor, r0: int, r1: int) -> int:
    if not isinstance(field, torch.Tensor):  # a StoredField knows its norms
        return int((field.norm.reshape(-1)[r0:r1] > 0).sum())
    return int((part != 0).any(dim=1).sum())


def _check_same_shape(shapes: Sequence[tuple[int, ...]]) -> None:
    if len(set(shapes)) > 1:
        raise UserError(
            "Fields must come from the same anchor set and steps to be compared; got shapes "
            f"{sorted(set(shapes))}. Extract all models with one --anchors spec and one --steps."
        )


def field_distance(phi_a: Any, phi_b: Any, metric: str = "cosine") -> float:
    """Distance between two fields: mean over anchors and steps of 1 - cos (DESIGN §1), in [0, 2]."""
    return float(distance_matrix([phi_a, phi_b], metric=metric)[0, 1])


def distance_matrix(fields: Sequence[Any], metric: str = "cosine", chunk_mb: int = 256) -> np.ndarray:
    """Pairwise field distances [M, M]: symmetric, zero diagonal, one chunked Gram product.

    cosine:    d(A,B) = 1 - <a,b> / (N*K) with every Phi_ik scaled to unit norm and flattened.
    euclidean: the root mean square over (i,k) of |Phi^A_ik - Phi^B_ik| on the raw fields.
    Chunks run over the (anchor, step) rows so that the stacked slice of all M fields stays near
    `chunk_mb`; accumulation is float32 (float64 for the final combination).
    """
    if metric not in _METRICS:
        raise UserError(f"Unknown distance metric {metric!r}; choose one of {sorted(_METRICS)}.")
    fields = list(fields)
    m = len(fields)
    if m == 0:
        return np.zeros((0, 0))
    shapes = [tuple(f.shape) if isinstance(f, torch.Tensor) else tuple(f.unit.shape) for f in fields]
    _check_same_shape(shapes)
    n, k, d = shapes[0]
    rows = n * k
    per_row = m * d * 4
    chunk_rows = max(1, min(rows, (chunk_mb << 20) // max(per_row, 1)))
    gram = torch.zeros(m, m, dtype=torch.float64)
    nonzero = torch.zeros(m, dtype=torch.float64)  # rows (i, k) whose vector is not zero, per field
    buffer = torch.empty(m, chunk_rows * d)  # reused: converting into it beats stacking new tensors
    for r0 in range(0, rows, chunk_rows):
        r1 = min(rows, r0 + chunk_rows)
        x = buffer[:, : (r1 - r0) * d]  # [M, (r1-r0)*D] slice of every field, flattened
        for j, f in enumerate(fields):
            part = _rows(f, r0, r1, d, metric)
            x[j].copy_(part.reshape(-1))
            nonzero[j] += _count_nonzero_rows(f, part, r0, r1)
        gram += (x @ x.T).double()
    return _METRICS[metric](gram, rows, nonzero)


def distances_to(field: Any, others: Sequence[Any]) -> np.ndarray:
    """Distances from one field to each of several: [M], a row of `distance_matrix`."""
    return distance_matrix([field, *others])[0, 1:]


def _cosine_from_gram(gram: torch.Tensor, rows: int, nonzero: torch.Tensor) -> np.ndarray:
    # 1 - G_ab/rows, written as (G_aa + G_bb - 2 G_ab) / (2 rows) + the share of zero vectors
    # (exact counts): the rounding of G_aa and G_ab cancels, so identical fields give 0 exactly.
    sq = torch.diagonal(gram)
    zero_share = 1.0 - (nonzero[:, None] + nonzero[None, :]) / (2 * rows)
    dist = (sq[:, None] + sq[None, :] - 2 * gram) / (2 * rows) + zero_share
    dist = 0.5 * (dist + dist.T)
    dist.fill_diagonal_(0.0)
    return dist.clamp_(0.0, 2.0).numpy()


def _euclidean_from_gram(gram: torch.Tensor, rows: int, _nonzero: torch.Tensor) -> np.ndarray:
    sq = torch.diagonal(gram)
    dist2 = (sq[:, None] + sq[None, :] - 2 * gram).clamp_min(0.0) / rows
    dist = dist2.sqrt()
    dist = 0.5 * (dist + dist.T)
    dist.fill_diagonal_(0.0)
    return dist.numpy()


_METRICS = {"cosine": _cosine_from_gram, "euclidean": _euclidean_from_gram}


@dataclass(frozen=True)
class DistanceTable:
    """A distance matrix with what it was computed from: the one source of every export, so the CLI's
    `distance --format json|csv` and the app's downloads are the same bytes for the same models."""

    models: list[str]  # the specs as the user gave them
    matrix: np.ndarray  # [M, M]
    metric: str
    anchors: str  # the anchor spec
    anchors_sha256: str
    config: dict[str, Any]  # FieldConfig.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {"models": list(self.models), "matrix": np.asarray(self.matrix).round(6).tolist(),
                "metric": self.metric, "anchors": self.anchors, "anchors_sha256": self.anchors_sha256,
                "config": self.config}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_csv(self) -> str:
        """One header row of specs, then one row per model, 6 decimals (csv's CRLF line ends)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["model", *self.models])
        for spec, row in zip(self.models, np.asarray(self.matrix), strict=True):
            writer.writerow([spec, *(f"{v:.6f}" for v in row)])
        return buffer.getvalue()
