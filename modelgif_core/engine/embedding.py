"""2-D maps of models: UMAP on a precomputed distance matrix (metric MDS for tiny zoos), or UMAP on
signatures (cosine metric, exact neighbours from blocks of the signature Gram) for zoos of thousands of models."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .sketch import signature_gram
from .store import default_store_root

# UMAP's neighbourhood graph is meaningless below this many points: fall back to MDS.
MIN_UMAP_MODELS = 4
DEFAULT_NEIGHBORS = 15
# Distance matrices come from float32 Gram products: allow that much asymmetry / negativity.
_TOL = 1e-5

_FALLBACK_NOTE = "UMAP needs at least 4 models; showing MDS of the distances instead."


@dataclass(frozen=True)
class Embedding:
    """Coordinates [M, 2] of M models, the method that made them and a note for the UI."""

    coords: np.ndarray  # [M, 2] float64, centred at the origin
    method: str  # "umap", "mds" or "trivial" (M <= 2, or all distances zero)
    note: str  # one sentence when a fallback or an adjustment happened, else ""


def _validate(dist: object) -> np.ndarray:
    try:
        d = np.array(dist, dtype=np.float64)  # a copy: the caller's matrix is never touched
    except (TypeError, ValueError) as e:
        raise UserError(f"A distance matrix must be a square array of numbers ({e}).") from e
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise UserError(f"A distance matrix must be square [M, M]; got shape {d.shape}.")
    if d.shape[0] == 0:
        raise UserError("The distance matrix is empty; select at least one model to map.")
    if not np.isfinite(d).all():
        raise UserError("The distance matrix has NaN or infinite entries; recompute the distances.")
    scale = max(1.0, float(np.abs(d).max()))
    if (d < -_TOL * scale).any():
        raise UserError("The distance matrix has negative entries; distances must be >= 0.")
    if np.abs(d - d.T).max() > _TOL * scale:
        raise UserError("The distance matrix is not symmetric; d[i, j] must equal d[j, i].")
    if np.abs(np.diag(d)).max() > _TOL * scale:
        raise UserError("The distance matrix has a non-zero diagonal; d[i, i] must be 0.")
    d = np.clip(0.5 * (d + d.T), 0.0, None)
    np.fill_diagonal(d, 0.0)
    return d


def _classical_mds(d: np.ndarray) -> np.ndarray:
    """Torgerson's classical MDS [M, 2]; negative eigenvalues (non-euclidean input) count as 0.

    sklearn 1.9's own `init="classical_mds"` takes sqrt of negative eigenvalues and crashes on
    distances that break the triangle inequality, which 1 - cos distances may do.
    """
    m = d.shape[0]
    j = np.eye(m) - 1.0 / m
    b = -0.5 * j @ (d**2) @ j  # [M, M] double-centred Gram matrix
    w, v = np.linalg.eigh(b)
    top = np.argsort(w)[::-1][:2]
    x = v[:, top] * np.sqrt(np.clip(w[top], 0.0, None))  # [M, <=2]
    # eigh's eigenvector signs are arbitrary: fix them so the map does not flip between calls.
    x *= np.where(x[np.abs(x).argmax(axis=0), range(x.shape[1])] < 0, -1.0, 1.0)
    return np.pad(x, ((0, 0), (0, 2 - x.shape[1])))


def _mds(d: np.ndarray, seed: int, n_neighbors: int | None) -> np.ndarray:
    from sklearn.manifold import MDS

    init = _classical_mds(d)
    if d.shape[0] < 3:
        return init
    # metric MDS (SMACOF stress) on the dissimilarities, started from classical MDS.
    mds = MDS(
        n_components=2,
        metric_mds=True,
        metric="precomputed",
        init="random",  # only to silence 1.9's FutureWarning; the explicit init below is used
        n_init=1,
        max_iter=300,
        random_state=seed,
    )
    return mds.fit_transform(d, init=init)


def numba_cache_dir() -> str | None:
    """Where numba keeps compiled kernels: $NUMBA_CACHE_DIR, else `numba-cache` in the store (set here
    before numba is imported, which reads it then); None when that folder cannot be written."""
    folder = os.environ.get("NUMBA_CACHE_DIR")
    if not folder:
        folder = str(default_store_root() / "numba-cache")
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            return None
        if not os.access(folder, os.W_OK):
            return None
        os.environ["NUMBA_CACHE_DIR"] = folder
    if "numba" in sys.modules:  # imported before us: its config has already read the environment
        sys.modules["numba"].config.CACHE_DIR = folder
    return folder


def _cache_umap_kernels() -> int:
    """Turn on numba's disk cache for UMAP's and pynndescent's kernels (most are not declared
    `cache=True`: compiling them took ~20 s on the first map of every server process). Returns how
    many kernels were switched on; ones numba cannot cache stay as they are."""
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    switched = 0
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("umap", "pynndescent")):
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, CPUDispatcher) and isinstance(getattr(obj, "_cache", None), NullCache):
                try:
                    obj.enable_caching()
                    switched += 1
                except Exception:  # noqa: BLE001 (numba: no cache locator for this function)
                    pass
    return switched


def _import_umap():
    cached = numba_cache_dir() is not None
    import umap

    if cached:
        _cache_umap_kernels()
    return umap


def umap_cache_is_warm() -> bool:
    """Whether the disk cache already holds UMAP's compiled kernels (loading them takes seconds)."""
    folder = numba_cache_dir()
    return folder is not None and any(Path(folder).glob("umap_*/*.nbi"))


def warm_umap() -> None:
    """Compile (or load from the disk cache) UMAP's kernels on a tiny map, e.g. at server start, so
    that the first real map does not wait for them."""
    pts = np.random.default_rng(0).random((8, 3))  # [8, 3]
    embed_distances(np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)), method="umap")


def _umap(d: np.ndarray, seed: int, n_neighbors: int | None) -> np.ndarray:
    with warnings.catch_warnings():
        # umap warns on every precomputed fit ("inverse_transform will be unavailable"), on every
        # seeded fit ("n_jobs overridden"), at import (no TensorFlow) and on disconnected graphs;
        # none is actionable for a user looking at a map.
        warnings.filterwarnings("ignore", module=r"(umap|pynndescent|numba)(\.|$)")
        warnings.filterwarnings("ignore", message=r".*(n_jobs|precomputed metric|Tensorflow)")
        umap = _import_umap()
        reducer = umap.UMAP(
            n_components=2,
            metric="precomputed",
            n_neighbors=n_neighbors,
            random_state=seed,
            verbose=False,
        )
        return np.asarray(reducer.fit_transform(d), dtype=np.float64)


_METHODS: dict[str, Callable[[np.ndarray, int, int | None], np.ndarray]] = {
    "umap": _umap,
    "mds": _mds,
}


def embed_distances(
    dist: np.ndarray, method: str = "auto", seed: int = 0, n_neighbors: int | None = None
) -> Embedding:
    """Place M models in 2-D so that nearby points are functionally close models.

    method: "auto" or "umap" (UMAP on the precomputed distances, n_neighbors = min(15, M-1) by
    default; MDS with a note below 4 models) or "mds" (metric MDS, SMACOF from classical MDS).
    Seeded: the same matrix and seed give the same coordinates.
    """
    if method not in ("auto", *_METHODS):
        raise UserError(f"Unknown embedding method {method!r}; choose one of auto, umap, mds.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"The embedding seed must be an integer >= 0, got {seed!r}.")
    if n_neighbors is not None and (
        isinstance(n_neighbors, bool)
        or not isinstance(n_neighbors, (int, np.integer))
        or n_neighbors < 2
    ):
        raise UserError(f"n_neighbors must be an integer >= 2, got {n_neighbors!r}.")
    d = _validate(dist)
    m = d.shape[0]
    wants_umap = method in ("auto", "umap")
    note = ""
    if m <= 2 or not d.any():
        if m > 1 and not d.any():
            note = "All models are at distance 0 from each other, so they share one point."
        elif wants_umap and m > 1:
            note = "UMAP needs at least 4 models; showing the 2 models at their distance instead."
        half = d[0, -1] / 2.0
        coords = np.zeros((m, 2))
        if m == 2:
            coords[:, 0] = [-half, half]
        return Embedding(coords, "trivial", note)
    if wants_umap and m < MIN_UMAP_MODELS:
        name, note = "mds", _FALLBACK_NOTE
    else:
        name = "umap" if wants_umap else "mds"
    neighbors = None
    if name == "umap":
        neighbors = min(DEFAULT_NEIGHBORS, m - 1) if n_neighbors is None else int(n_neighbors)
        if neighbors > m - 1:
            note = f"n_neighbors={neighbors} is more than the other {m - 1} models; using {m - 1}."
            neighbors = m - 1
    coords = _METHODS[name](d, int(seed), neighbors)  # [M, 2]
    coords = coords - coords.mean(axis=0)
    assert coords.shape == (m, 2) and np.isfinite(coords).all(), coords
    return Embedding(coords, name, note)


# Above this many signatures (UMAP's own switch point from exact neighbours to nearest-neighbour
# descent) the neighbours come from blocks of the signature Gram (`_exact_knn`) and the map uses UMAP's
# large-data settings: fewer epochs, PCA start (spectral init of many disconnected
# families lays out every component separately and takes longer than the whole fit).
LARGE_MAP_MODELS = 4096
LARGE_MAP_EPOCHS = 200
# Signatures wider than this are reduced by a seeded truncated SVD before the layout: it keeps the inner
# products that matter (the leading directions) and makes each neighbour comparison cheap.
MAX_LAYOUT_DIM = 256


def unit_signatures(matrix: object) -> np.ndarray:
    """Signatures [M, S] as float32 unit rows, checked (UserError on a bad matrix)."""
    try:
        x = np.array(matrix, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise UserError(f"Signatures must be a matrix of numbers [M, S] ({e}).") from e
    if x.ndim != 2 or x.shape[1] == 0:
        raise UserError(f"Signatures must be a matrix [M, S]; got shape {x.shape}.")
    if x.shape[0] == 0:
        raise UserError("There are no signatures to map; compute fields for some models first.")
    if not np.isfinite(x).all():
        raise UserError("The signatures have NaN or infinite entries; recompute them.")
    norms = np.linalg.norm(x, axis=1)
    if (norms == 0).any():
        raise UserError(f"{int((norms == 0).sum())} signature(s) are all zeros; recompute them.")
    return x / norms[:, None]


def _dense_distances(matrix: object) -> np.ndarray:
    """Dense distances 1 - <s_i, s_j> [M, M] (float64, zero diagonal) of a few signatures (M < 4 here)."""
    x = unit_signatures(matrix).astype(np.float64)
    d = np.clip(1.0 - signature_gram(x, exact=True), 0.0, 2.0)
    np.fill_diagonal(d, 0.0)
    return d


def reduce_signatures(x: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """Rows of x [M, S] in its `dim` leading directions (seeded truncated SVD): inner products kept best."""
    from sklearn.utils.extmath import randomized_svd

    u, s, _ = randomized_svd(x, n_components=dim, n_iter=2, random_state=seed)
    return (u * s).astype(np.float32)  # [M, dim]: the rows' coordinates in the leading directions


def _exact_knn(x: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest rows by cosine distance, itself first: indices [M, k] int64 and distances
    [M, k] float32, ascending (ties by index), from one block of Gram rows at a time (never M x M)."""
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    m = z.shape[0]
    idx, dist = np.empty((m, k), np.int64), np.empty((m, k), np.float32)
    for i0 in range(0, m, block):
        d = 1.0 - signature_gram(z[i0:i0 + block], z)  # [b, M]
        d[np.arange(d.shape[0]), np.arange(i0, i0 + d.shape[0])] = -1.0  # itself first, whatever rounding did
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.lexsort((part, np.take_along_axis(d, part, 1)), axis=1)
        idx[i0:i0 + block] = np.take_along_axis(part, order, 1)
        dist[i0:i0 + block] = np.clip(np.take_along_axis(d, idx[i0:i0 + block], 1), 0.0, 2.0)
    return idx, dist


def embed_signatures(
    matrix: object, seed: int = 0, n_neighbors: int | None = None, *, max_dim: int = MAX_LAYOUT_DIM
) -> Embedding:
    """Place M models in 2-D from their signatures [M, S] (unit rows, 1 - <s_A, s_B> ~ d(A, B)).

    UMAP with metric="cosine" on the signatures themselves: below LARGE_MAP_MODELS it computes exact
    neighbours itself, above it gets the exact neighbours from one block of Gram rows at a time
    (`signature_gram`), so no M x M matrix is ever formed. Tiny zoos
    (M < MIN_UMAP_MODELS) go through `embed_distances` on their few distances. Seeded and reproducible.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"The embedding seed must be an integer >= 0, got {seed!r}.")
    if n_neighbors is not None and (
        isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) or n_neighbors < 2
    ):
        raise UserError(f"n_neighbors must be an integer >= 2, got {n_neighbors!r}.")
    x = unit_signatures(matrix)
    m = x.shape[0]
    if m < MIN_UMAP_MODELS:
        return embed_distances(_dense_distances(x), seed=int(seed))
    note = ""
    neighbors = min(DEFAULT_NEIGHBORS, m - 1) if n_neighbors is None else int(n_neighbors)
    if neighbors > m - 1:
        note = f"n_neighbors={neighbors} is more than the other {m - 1} models; using {m - 1}."
        neighbors = m - 1
    if x.shape[1] > max_dim:
        x = reduce_signatures(x, max_dim, int(seed))
    large = m > LARGE_MAP_MODELS
    # Big maps: the exact neighbours from blocks of one Gram (signature_gram: seconds at 10,000) replace
    # UMAP's nearest-neighbour descent, which took most of the layout's time and only approximates them.
    knn = _exact_knn(x, neighbors) if large else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"(umap|pynndescent|numba|sklearn)(\.|$)")
        warnings.filterwarnings("ignore", message=r".*(n_jobs|Tensorflow|disconnected|precomputed)")
        import umap

        reducer = umap.UMAP(
            n_components=2, metric="cosine", n_neighbors=neighbors, random_state=int(seed), verbose=False,
            n_epochs=LARGE_MAP_EPOCHS if large else None, init="pca" if large else "spectral",
            precomputed_knn=(None, None, None) if knn is None else (*knn, None),
        )
        coords = np.asarray(reducer.fit_transform(x), dtype=np.float64)
    coords = coords - coords.mean(axis=0)
    assert coords.shape == (m, 2) and np.isfinite(coords).all(), coords.shape
    return Embedding(coords, "umap", note)
