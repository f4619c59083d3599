"""The one signature Gram (fast int8/float32 path, upper-triangle blocks) against float64, and the
folded query index against a full pass."""

import numpy as np
import pytest

from modelgif_core import SignatureIndex, fold_signatures, signature_distances, signature_gram
from modelgif_core.engine import sketch
from modelgif_core.engine.sketch import gram_kind


def _unit(rng, m, s):
    x = rng.standard_normal((m, s))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _families(rng, m, s, size=10, noise=0.7):
    parents = rng.standard_normal(((m + size - 1) // size, s))
    x = np.repeat(parents, size, axis=0)[:m] + noise * rng.standard_normal((m, s))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_gram_matches_float64(monkeypatch, kind):
    rng = np.random.default_rng(0)
    a = _unit(rng, 2 * sketch._GRAM_BLOCK + 37, 2048)  # 3 row blocks, the last one partial
    a[1] = a[0] + 0.05 * a[1]  # a near pair: inner product ~0.999
    a[1] /= np.linalg.norm(a[1])
    monkeypatch.setattr(sketch, "gram_kind", lambda device=None: kind)
    monkeypatch.setattr(sketch, "_FAST_MIN_MACS", 0)
    want = a @ a.T
    got = signature_gram(a)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got, got.T)  # the lower blocks are the mirrored upper ones
    tol = 2e-3 if kind == "int8" else 1e-5  # int8: per-row scale, exact int32 sums
    assert np.abs(got - want).max() < tol
    assert abs(got[0, 1] - want[0, 1]) < tol / 2
    b = _unit(rng, 21, 2048)  # a against another matrix (no symmetry), rows below int8's 16-row minimum
    assert np.abs(signature_gram(a, b) - a @ b.T).max() < tol
    assert np.abs(signature_gram(a[:5], b) - a[:5] @ b.T).max() < tol


def test_exact_gram_and_distances():
    rng = np.random.default_rng(1)
    a = _unit(rng, 50, 300)
    assert signature_gram(a, exact=True).dtype == np.float64
    assert np.abs(signature_gram(a, exact=True) - a @ a.T).max() < 1e-12
    d = signature_distances(a)
    assert d.min() >= 0 and np.abs(d - np.clip(1 - a @ a.T, 0, 2)).max() < 1e-5  # small: float32
    with pytest.raises(Exception, match="equal S"):
        signature_gram(a, a[:, :10])


def test_gram_kind_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(sketch, "_cpu_flags", lambda: frozenset({"avx2"}))
    assert gram_kind("cpu") == "float32"
    monkeypatch.setattr(sketch, "_cpu_flags", lambda: frozenset({"avx512_vnni"}))
    assert gram_kind("cpu") == "int8"
    assert gram_kind("cuda") == "float32"


def _full_shortlist(x, q, k, margin):
    est = 1.0 - x @ q
    return np.flatnonzero(est <= np.partition(est, k - 1)[k - 1] + margin)


def test_folded_index_gives_the_full_pass_shortlist():
    rng = np.random.default_rng(2)
    x = _families(rng, sketch._INDEX_MIN_ROWS + 100, 4096)
    index = SignatureIndex(x, fold=512)
    assert index.folded is not None and index.folded.shape == (len(x), 512)
    for row in (0, 7, 1234, len(x) - 10):  # rows of whole families (the last one has 6)
        q = x[row] + 0.01 * rng.standard_normal(x.shape[1]).astype(np.float32)
        q /= np.linalg.norm(q)
        idx, est = index.shortlist(q, 10, 0.06)
        assert np.array_equal(np.sort(idx), _full_shortlist(x, q, 10, 0.06))
        assert np.all(np.diff(est) >= 0) and np.allclose(est, 1.0 - x[idx] @ q, atol=1e-6)
        assert row in idx and len(idx) < 40  # its family, not the whole matrix
    # The k-th best among unrelated rows: the first pass would keep most rows, so it reads them all.
    q = _unit(rng, 1, 4096)[0].astype(np.float32)
    idx, _ = index.shortlist(q, 10, 0.06)
    assert np.array_equal(np.sort(idx), _full_shortlist(x, q, 10, 0.06))


def test_small_index_reads_the_full_matrix():
    x = fold_signatures(_families(np.random.default_rng(3), 100, 1024), 256)
    index = SignatureIndex(x)
    assert index.folded is None
    idx, _ = index.shortlist(x[3], 2, 0.0)
    assert idx[0] == 3 and len(idx) == 2


def test_exact_knn_for_big_maps_is_the_brute_force_one(monkeypatch):
    from modelgif_core.engine.embedding import _exact_knn

    x = _families(np.random.default_rng(4), 700, 64)
    monkeypatch.setattr(sketch, "_FAST_MIN_MACS", 0)  # through the fast (int8 here) path, as at 10,000
    idx, dist = _exact_knn(x, 8, block=256)
    d = 1.0 - x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(d, -1.0)
    want = np.argsort(d, axis=1, kind="stable")[:, :8]
    assert (idx[:, 0] == np.arange(len(x))).all() and dist[:, 0].max() < 1e-3
    assert (np.sort(idx, 1) == np.sort(want, 1)).mean() > 0.99  # int8 rounding may swap near-ties
    assert np.abs(dist[:, 1:] - np.take_along_axis(d, idx, 1)[:, 1:]).max() < 5e-3
    assert np.all(np.diff(dist, axis=1) >= 0)
