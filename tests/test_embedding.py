"""2-D maps of models: UMAP on precomputed distances, the MDS fallback, input validation.

Tests marked slow call UMAP: whichever runs first pays numba's one-off compilation.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

from modelgif_core import Embedding, UserError, embed_distances


def _two_clusters(per: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distances between 2*per points in two tight, far-apart clusters, and the cluster labels."""
    rng = np.random.default_rng(seed)
    pts = np.concatenate([rng.normal(0, 0.1, (per, 8)), rng.normal(0, 0.1, (per, 8)) + 2.0])
    return squareform(pdist(pts)), np.repeat([0, 1], per)


@pytest.mark.slow  # the first UMAP fit in a process JIT-compiles umap's numba code (10-30 s)
def test_umap_is_reproducible_and_quiet():
    d, _ = _two_clusters()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = embed_distances(d, seed=3)
    assert not caught, [str(w.message) for w in caught]
    b = embed_distances(d.copy(), seed=3)
    assert isinstance(a, Embedding) and a.method == "umap" and a.note == ""
    assert a.coords.shape == (12, 2) and a.coords.dtype == np.float64
    assert np.array_equal(a.coords, b.coords)
    assert np.allclose(a.coords.mean(axis=0), 0.0, atol=1e-9)


@pytest.mark.slow  # the first UMAP fit in a process JIT-compiles umap's numba code (10-30 s)
def test_umap_keeps_two_clusters_apart():
    d, labels = _two_clusters(per=7, seed=1)
    e = embed_distances(d)
    assert e.method == "umap"
    mapped = squareform(pdist(e.coords))
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    # every model is nearer (in the map) to all of its own cluster than to any of the other
    assert mapped[same & off].max() < mapped[~same].min()


def test_three_models_fall_back_to_mds_with_a_note():
    d = np.array([[0.0, 0.3, 0.5], [0.3, 0.0, 0.4], [0.5, 0.4, 0.0]])
    e = embed_distances(d)
    assert e.method == "mds"
    assert e.note == "UMAP needs at least 4 models; showing MDS of the distances instead."
    assert np.allclose(pdist(e.coords), [0.3, 0.5, 0.4], atol=1e-6)  # a triangle embeds exactly
    assert np.array_equal(e.coords, embed_distances(d).coords)
    # 1 - cos distances may break the triangle inequality: still a finite map, no crash.
    bad = np.array([[0.0, 0.1, 1.5], [0.1, 0.0, 0.1], [1.5, 0.1, 0.0]])
    assert np.isfinite(embed_distances(bad).coords).all()


def test_mds_on_request_recovers_euclidean_points():
    rng = np.random.default_rng(4)
    pts = rng.normal(size=(8, 2))
    e = embed_distances(squareform(pdist(pts)), method="mds")
    assert e.method == "mds" and e.note == ""
    assert np.allclose(pdist(e.coords), pdist(pts), atol=1e-4)


def test_one_and_two_models_and_identical_models():
    one = embed_distances(np.zeros((1, 1)))
    assert one.method == "trivial" and one.coords.tolist() == [[0.0, 0.0]]
    two = embed_distances(np.array([[0.0, 0.6], [0.6, 0.0]]))
    assert two.method == "trivial" and two.coords.tolist() == [[-0.3, 0.0], [0.3, 0.0]]
    assert "at least 4 models" in two.note
    same = embed_distances(np.zeros((5, 5)))
    assert same.method == "trivial" and not same.coords.any() and "distance 0" in same.note


@pytest.mark.slow  # the first UMAP fit in a process JIT-compiles umap's numba code (10-30 s)
def test_float32_roundoff_is_accepted_and_input_untouched():
    d, _ = _two_clusters(per=3)
    noisy = (d + np.triu(np.full_like(d, 3e-7), 1)).astype(np.float32)  # [6, 6], a hair asymmetric
    np.fill_diagonal(noisy, -1e-7)
    before = noisy.copy()
    e = embed_distances(noisy)
    assert e.method == "umap" and np.isfinite(e.coords).all()
    assert np.array_equal(noisy, before)


@pytest.mark.slow  # the first UMAP fit in a process JIT-compiles umap's numba code (10-30 s)
def test_n_neighbors_is_used_and_clamped():
    d, _ = _two_clusters(per=4)
    default = embed_distances(d)
    explicit = embed_distances(d, n_neighbors=7)  # min(15, M - 1) = 7 is the default here
    assert np.array_equal(default.coords, explicit.coords)
    other = embed_distances(d, n_neighbors=3)
    assert not np.array_equal(default.coords, other.coords)
    clamped = embed_distances(d, n_neighbors=50)
    assert np.array_equal(clamped.coords, default.coords) and "using 7" in clamped.note


@pytest.mark.parametrize(
    ("dist", "match"),
    [
        (np.zeros((2, 3)), "square"),
        (np.zeros(4), "square"),
        (np.zeros((0, 0)), "empty"),
        (np.array([[0.0, 1.0], [0.5, 0.0]]), "not symmetric"),
        (np.array([[0.0, np.nan], [np.nan, 0.0]]), "NaN or infinite"),
        (np.array([[0.0, np.inf], [np.inf, 0.0]]), "NaN or infinite"),
        (np.array([[0.0, -0.5], [-0.5, 0.0]]), "negative"),
        (np.array([[0.2, 0.5], [0.5, 0.0]]), "diagonal"),
        ([["a", "b"], ["c", "d"]], "numbers"),
    ],
)
def test_invalid_matrices_are_refused(dist, match):
    with pytest.raises(UserError, match=match):
        embed_distances(dist)


def test_bad_options_are_refused():
    d, _ = _two_clusters(per=3)
    with pytest.raises(UserError, match="auto, umap, mds"):
        embed_distances(d, method="tsne")
    with pytest.raises(UserError, match="n_neighbors"):
        embed_distances(d, n_neighbors=1)
    with pytest.raises(UserError, match="seed"):
        embed_distances(d, seed=-1)
