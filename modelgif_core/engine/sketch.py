"""Sketched fields and signatures (DESIGN §7): seeded random projections that keep cosines.

Sketch: every Phi_ik [D = 3HW] is multiplied by one projection [D, m], a subsampled randomized
Hadamard transform (SRHT): random signs, the orthonormal Walsh-Hadamard transform of the zero-padded
vector (length L = next power of 2), m of its L coordinates, times sqrt(L/m). Its rows are
orthonormal up to that scale, so with m = L it is an isometry; with m << L norms and inner products
are kept up to a small random error. The projection depends only on (D, m, seed), so it is the same
for every model (and every anchor set of one image size); the [D, m] matrix is never built. Small
inputs (D x m <= 8M entries, e.g. 3x32x32 -> 2048) use a seeded dense orthonormal matrix instead,
which keeps m of D dims (SRHT: m of L) and so moves distances less.

Signature: the unit-normalised Phi_ik concatenated and divided by sqrt(N*K) has inner products
1 - d(A, B) exactly (zero vectors stay zero, as in the distance). A seeded count-sketch of it to S
dims, rescaled to that vector's norm, is the model's signature: 1 - <s_A, s_B> ~ d(A, B).
"""

from __future__ import annotations

import hashlib
import math
import os
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .distance import unit_field
from .errors import UserError

SIGNATURE_DIMS = 16384  # measured on the built-in zoo: mean |error| < 0.01, max < 0.03
DEFAULT_SKETCH = 2048  # the dims a sketch gets when one is picked for the user
SKETCH_ABOVE_MB = 256  # a full field (float16, as stored) above this is sketched by default
SKETCH_ABOVE_ENV = "MODELGIF_SKETCH_ABOVE_MB"
# Below this many entries (D x m; 32 MB in float32, e.g. 3x32x32 -> 2048) the projection is a dense
# orthonormal matrix: measured on the built-in zoo, SRHT at m=2048 (half of the 4,096 Hadamard
# coordinates) moved distances by up to 0.0115, the dense one keeps 2048 of 3072 dims (docs/SCALE.md).
_DENSE_MAX = 1 << 23
_SCHEME = "modelgif-sketch/1"  # bump to change every projection at once (keys include sketch dims only)


def _seed(*parts: Any) -> int:
    text = "\0".join([_SCHEME, *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


def _hadamard(n: int) -> torch.Tensor:
    """Sylvester's Hadamard matrix [n, n] of +-1 (n a power of 2), float32."""
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


class Projection:
    """The SRHT [D, m] of one (D, m, seed); `apply` runs on the input's device, in chunks of rows."""

    def __init__(self, d: int, m: int, seed: int = 0, kind: str = "auto") -> None:
        if not isinstance(d, int) or d < 1:
            raise UserError(f"A sketch needs a positive input length; got {d!r}.")
        length = 1 << max(0, (d - 1).bit_length())  # L: next power of 2 >= D
        if not isinstance(m, int) or not 1 <= m <= length:
            raise UserError(f"sketch must be between 1 and {length} for fields of {d} values per "
                            f"(anchor, step); got {m!r}.")
        if kind == "auto":  # small inputs: a dense orthonormal matrix keeps m of D dims, not m of L >= D
            kind = "dense" if m < d and d * m <= _DENSE_MAX else "srht"
        if kind not in ("srht", "dense") or (kind == "dense" and m > d):
            raise UserError(f"Unknown sketch kind {kind!r} for {d} -> {m}; use srht, or dense with m <= {d}.")
        self.d, self.m, self.seed, self.length, self.kind = d, m, int(seed), length, kind
        g = torch.Generator().manual_seed(_seed("srht", d, m, seed))
        self._dense_matrix: torch.Tensor | None = None
        if kind == "dense":
            # QR of a seeded Gaussian [D, m] in float64 on the CPU (same numbers wherever the field is
            # extracted), signs fixed by R's diagonal; sqrt(D/m) keeps norms on average.
            q, r = torch.linalg.qr(torch.randn(d, m, generator=g, dtype=torch.float64))
            self._dense_matrix = (q * torch.sign(torch.diagonal(r)) * math.sqrt(d / m)).float()
        self.signs = torch.randint(0, 2, (d,), generator=g).float().mul_(2).sub_(1)  # [D]
        self.rows = torch.randperm(length, generator=g)[:m].sort().values  # [m] kept coordinates
        # H_L = H_f1 (x) H_f2 (x) ... (Sylvester), factors of at most 64: a few small matrix products
        # per vector (~6*64 flops per value: 5x fewer than two 512x512 products at 224 px).
        bits, self._factors = length.bit_length() - 1, []
        while bits > 0:
            self._factors.append(1 << min(6, bits))
            bits -= min(6, bits)
        self._scale = 1.0 / math.sqrt(m)  # 1/sqrt(L) (orthonormal H) times sqrt(L/m)
        self._dev: dict[str, tuple[torch.Tensor, ...]] = {}

    def _on(self, device: torch.device) -> tuple[Any, ...]:
        key = str(device)
        if key not in self._dev and self._dense_matrix is not None:
            self._dev[key] = (self._dense_matrix.to(device),)
        if key not in self._dev:
            hs = {f: _hadamard(f).to(device) for f in set(self._factors)}
            self._dev[key] = (self.signs.to(device), self.rows.to(device), hs)
        return self._dev[key]

    def apply(self, x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """x [B, D] -> [B, m] float32 on x's device."""
        if x.dim() != 2 or x.shape[1] != self.d:
            raise UserError(f"The sketch expects rows of {self.d} values; got shape {tuple(x.shape)}.")
        if self._dense_matrix is not None:
            (dense,) = self._on(x.device)
            return torch.cat([x[r0:r0 + chunk].float() @ dense for r0 in range(0, x.shape[0], chunk)]) \
                if x.shape[0] else x.new_zeros(0, self.m, dtype=torch.float32)
        signs, rows, hs = self._on(x.device)
        out = torch.empty(x.shape[0], self.m, dtype=torch.float32, device=x.device)
        for r0 in range(0, x.shape[0], chunk):
            part = x[r0:r0 + chunk].float() * signs  # [b, D]
            if self.length > self.d:
                part = torch.nn.functional.pad(part, (0, self.length - self.d))
            y, b = part, part.shape[0]
            for f in self._factors:  # contract the leading factor axis and move it last: after all
                y = torch.matmul(y.reshape(b, f, -1).transpose(1, 2), hs[f])  # of them, the order is back
            out[r0:r0 + chunk] = y.reshape(b, self.length)[:, rows] * self._scale
        return out

    def matrix(self) -> torch.Tensor:
        """The dense [D, m] matrix, for tests on small D only."""
        return self.apply(torch.eye(self.d))


@lru_cache(maxsize=8)
def projection(d: int, m: int, seed: int = 0) -> Projection:
    """The seeded sketch [D, m]: the same object (and numbers) for every model with that D."""
    return Projection(d, m, seed)


# ----------------------------------------------------------------------------------- default sketch


def sketch_above_mb() -> float:
    """The size (MB, float16 as stored) above which a full field is sketched by default."""
    raw = os.environ.get(SKETCH_ABOVE_ENV, "").strip()
    if not raw:
        return float(SKETCH_ABOVE_MB)
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{SKETCH_ABOVE_ENV} must be a number of megabytes; got {raw!r}.") from None
    if value <= 0:
        raise UserError(f"{SKETCH_ABOVE_ENV} must be positive; got {raw!r}.")
    return value


def full_field_mb(n: int, k: int, d: int) -> float:
    """Megabytes of a full field [N, K, D] as stored (float16)."""
    return n * k * d * 2 / 1e6


def default_sketch(n: int, k: int, d: int, above_mb: float | None = None) -> tuple[int | None, str]:
    """(sketch dims or None for the full field, one sentence saying why) for a field [N, K, D]."""
    limit = sketch_above_mb() if above_mb is None else float(above_mb)
    size = full_field_mb(n, k, d)
    if size <= limit or d <= DEFAULT_SKETCH:
        return None, ""
    return DEFAULT_SKETCH, (f"The full field would take {size:,.0f} MB (over {limit:g} MB, "
                            f"{SKETCH_ABOVE_ENV}), so it is sketched to {DEFAULT_SKETCH} dims per "
                            f"(anchor, step); raise {SKETCH_ABOVE_ENV} or pass --sketch 0 for the full field.")


# ----------------------------------------------------------------------------------- signatures


def _unit_rows(phi: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit rows [R, D] (float16 or float32) and a bool mask of non-zero rows [R]."""
    unit = getattr(phi, "unit", None)
    if unit is not None and not isinstance(phi, torch.Tensor):  # a StoredField
        d = unit.shape[-1]
        return unit.reshape(-1, d), phi.norm.reshape(-1) > 0
    if not isinstance(phi, torch.Tensor) or phi.dim() != 3:
        got = tuple(phi.shape) if isinstance(phi, torch.Tensor) else type(phi).__name__
        raise UserError(f"A signature needs a field [N, K, D] or a stored field; got {got}.")
    u, norm = unit_field(phi.detach().cpu())
    return u.reshape(-1, u.shape[-1]), norm.reshape(-1) > 0


def signature(phi: Any, dims: int = SIGNATURE_DIMS, seed: int = 0) -> np.ndarray:
    """The field's signature: float32 [dims], norm sqrt(share of non-zero rows) (1 for most fields).

    1 - <signature(A), signature(B)> estimates d(A, B) (cosine), for fields of one shape.
    """
    if not isinstance(dims, int) or dims < 1:
        raise UserError(f"Signature dims must be a positive integer; got {dims!r}.")
    rows, nonzero = _unit_rows(phi)
    r, d = rows.shape
    g = torch.Generator().manual_seed(_seed("count-sketch", r, d, dims, seed))
    # hash(r, d) = (h_d + o_r) mod S and sign(r, d) = s_d t_r: pairwise independent across entries,
    # with O(R + D) random numbers instead of one per entry.
    h = torch.randint(0, dims, (d,), generator=g)
    s = torch.randint(0, 2, (d,), generator=g).double().mul_(2).sub_(1)
    o = torch.randint(0, dims, (r,), generator=g)
    t = torch.randint(0, 2, (r,), generator=g).double().mul_(2).sub_(1)
    out = torch.zeros(dims, dtype=torch.float64)
    # ~1M entries per chunk, in place: the same sums in the same order as larger chunks, in about half the
    # time (a store writes one signature per field; 4M-entry chunks took 8% of the demo's field time).
    step = max(1, (1 << 20) // d)
    power_of_two = dims & (dims - 1) == 0
    for r0 in range(0, r, step):
        part = rows[r0:r0 + step].double().mul_(s).mul_(t[r0:r0 + step, None])  # [b, D]
        idx = h[None, :] + o[r0:r0 + step, None]
        idx = idx.bitwise_and_(dims - 1) if power_of_two else idx.remainder_(dims)
        out.index_add_(0, idx.view(-1), part.view(-1))
    target = math.sqrt(float(nonzero.sum()) / r)  # the norm of the concatenated vector / sqrt(R)
    norm = float(out.norm())
    out = out * (target / norm) if norm > 0 else out
    return out.float().numpy()


def signature_distances(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Estimated distances 1 - <s_a, s_b>: [Ma, Mb] (b=None: a against itself), clipped to [0, 2]."""
    a = np.asarray(a, dtype=np.float32)
    b = a if b is None else np.asarray(b, dtype=np.float32)
    return np.clip(1.0 - a @ b.T, 0.0, 2.0)


def fold_signatures(matrix: np.ndarray, dims: int) -> np.ndarray:
    """Signatures [M, S] folded to [M, dims] (dims divides S): coordinates j and j + dims, ... summed,
    which is itself a count-sketch with `dims` buckets, rescaled to the same norms. For coarse uses
    (a map layout, a first shortlist) where S-dim products cost too much; the error grows ~sqrt(S/dims)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    s = matrix.shape[1]
    if not isinstance(dims, int) or dims < 1 or s % dims:
        raise UserError(f"Can fold {s}-dim signatures only to a divisor of {s}; got {dims!r}.")
    folded = matrix.reshape(matrix.shape[0], s // dims, dims).sum(axis=1)
    before, after = np.linalg.norm(matrix, axis=1), np.linalg.norm(folded, axis=1)
    scale = np.divide(before, after, out=np.zeros_like(before), where=after > 0)
    return (folded * scale[:, None]).astype(np.float32)
