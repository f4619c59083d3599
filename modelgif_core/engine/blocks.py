"""Blocks of a big zoo: families or clusters of signatures, and the mean distance between blocks.

A heatmap of 10,000 models would be a 10^8-cell picture nobody can read (nor send to a browser). The
Distances page shows instead one cell per pair of blocks: the mean distance between their models, read
from signatures without forming any M x M matrix. For unit signatures s with 1 - <s_a, s_b> ~ d(a, b),
the mean of <s_a, s_b> over a in A, b in B is <mean_A, mean_B>, so one [B, S] matrix of block means
gives every block pair at once; within a block the n self-pairs (each exactly 1) are taken out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .embedding import MAX_LAYOUT_DIM, reduce_signatures, unit_signatures
from .errors import UserError
from .sketch import signature_gram

# Enough blocks to tell families apart, few enough that the block heatmap stays readable.
DEFAULT_MAX_BLOCKS = 40
# k-means is fitted on at most this many signatures (seeded sample), then assigns every model.
CLUSTER_SAMPLE = 5000


@dataclass(frozen=True)
class Blocks:
    """M models in B blocks: which block each model is in, and the blocks' mean distances."""

    labels: np.ndarray  # [M] int, the block of each model, in 0..B-1
    names: list[str]  # [B] a family's name, or "cluster 7"
    sizes: np.ndarray  # [B] int, models per block (every block has at least one)
    distance: np.ndarray  # [B, B] float64, mean 1 - <s_a, s_b> over a in A, b in B (a != b on the diagonal)
    kind: str  # "family" or "cluster"
    note: str  # one sentence when the blocks are not what was asked for, else ""

    def members(self, block: int) -> np.ndarray:
        """Indices of the models in `block`, ascending."""
        return np.flatnonzero(self.labels == block)


def block_distances(matrix: object, labels: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean signature distance between every pair of blocks [B, B] and the block sizes [B].

    Off the diagonal: 1 - <mean_A, mean_B>, the mean over all cross pairs. On it: the mean over the
    n (n - 1) pairs of distinct models, 1 - (n |mean_A|^2 - 1) / (n - 1); 0 for a block of one.
    """
    from scipy.sparse import csr_matrix

    x = unit_signatures(matrix)
    lab = np.asarray(labels, dtype=np.int64)
    if lab.shape != (x.shape[0],) or (lab < 0).any():
        raise UserError(f"Need one block label >= 0 per signature; got {lab.shape} for {x.shape[0]}.")
    b = int(lab.max()) + 1
    sizes = np.bincount(lab, minlength=b)
    if (sizes == 0).any():
        raise UserError("Block labels must be 0..B-1 with every block used.")
    onehot = csr_matrix((np.ones(lab.size, np.float64), (lab, np.arange(lab.size))), shape=(b, lab.size))
    means = np.asarray(onehot @ x.astype(np.float64)) / sizes[:, None]  # [B, S]
    gram = signature_gram(means, exact=True)  # [B, B] mean cosine between blocks (B is small)
    n = sizes.astype(np.float64)
    within = np.where(n > 1, (n * np.diag(gram) - 1.0) / np.maximum(n - 1.0, 1.0), 1.0)
    np.fill_diagonal(gram, within)
    return np.clip(1.0 - gram, 0.0, 2.0), sizes


def _clusters(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans


    z = reduce_signatures(x, MAX_LAYOUT_DIM, seed) if x.shape[1] > MAX_LAYOUT_DIM else x
    z = z / np.linalg.norm(z, axis=1, keepdims=True)  # k-means on the sphere ~ clusters by cosine
    rng = np.random.default_rng(seed)
    sample = z if len(z) <= CLUSTER_SAMPLE else z[rng.choice(len(z), CLUSTER_SAMPLE, replace=False)]
    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(sample)
    raw = km.predict(z)
    used = np.unique(raw)  # a centre the whole zoo never picks is dropped
    return np.searchsorted(used, raw)


def signature_blocks(
    matrix: object,
    groups: Sequence[str | None] | None = None,
    *,
    max_blocks: int = DEFAULT_MAX_BLOCKS,
    seed: int = 0,
) -> Blocks:
    """Split M models into blocks: their `groups` (e.g. families) when given and at most `max_blocks`
    distinct, else seeded k-means clusters of the signatures (about sqrt(M / 2), at most max_blocks)."""
    if isinstance(max_blocks, bool) or not isinstance(max_blocks, (int, np.integer)) or max_blocks < 2:
        raise UserError(f"max_blocks must be an integer >= 2, got {max_blocks!r}.")
    x = unit_signatures(matrix)
    m = x.shape[0]
    note = ""
    if groups is not None:
        if len(groups) != m:
            raise UserError(f"Need one group per signature; got {len(groups)} for {m}.")
        names_all = [str(g) if g not in (None, "") else "unknown" for g in groups]
        distinct = sorted(set(names_all))
        if len(distinct) <= max_blocks:
            labels = np.searchsorted(np.array(distinct), np.array(names_all))
            dist, sizes = block_distances(x, labels)
            return Blocks(labels, distinct, sizes, dist, "family", "")
        note = (f"{len(distinct)} families are more than {max_blocks} blocks; showing {max_blocks} clusters "
                "of the signatures instead.")
    k = max(2, min(int(max_blocks), int(round(np.sqrt(m / 2))), m))
    labels = _clusters(x, k, int(seed)) if m > 2 else np.arange(m)
    dist, sizes = block_distances(x, labels)
    names = [f"cluster {i + 1}" for i in range(len(sizes))]
    return Blocks(labels, names, sizes, dist, "cluster", note)
