"""Big zoos: signature sets, blocks (families or clusters) with their mean distances, the WebGL map,
and the map's layout from signatures (UMAP, cosine) — all without an M x M matrix."""

from __future__ import annotations

import numpy as np
import pytest

from modelgif_core import (
    FieldConfig,
    FieldStore,
    UserError,
    block_distances,
    embed_signatures,
    figures,
    load_signature_set,
    save_signature_set,
    signature_blocks,
    signature_sets,
)


def _families(m: int = 60, s: int = 32, families: int = 3, seed: int = 0, spread: float = 0.3):
    rng = np.random.default_rng(seed)
    fam = rng.integers(0, families, m)
    x = rng.standard_normal((families, s))[fam] + spread * rng.standard_normal((m, s))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), fam


def test_block_distances_are_the_mean_pairwise_distances():
    x, fam = _families(m=40)
    dist, sizes = block_distances(x, fam)
    d = 1.0 - x.astype(np.float64) @ x.T.astype(np.float64)  # the dense reference, small here
    for a in range(3):
        for b in range(3):
            ia, ib = np.flatnonzero(fam == a), np.flatnonzero(fam == b)
            block = d[np.ix_(ia, ib)]
            want = block[~np.eye(len(ia), dtype=bool)].mean() if a == b else block.mean()
            assert dist[a, b] == pytest.approx(want, abs=1e-5)
    assert list(sizes) == [int((fam == k).sum()) for k in range(3)]
    one, _ = block_distances(x[:3], [0, 1, 2])  # blocks of one model: 0 within
    assert np.allclose(np.diag(one), 0.0)


def test_blocks_follow_families_or_find_the_clusters():
    x, fam = _families(m=200, families=4, spread=0.2)
    names = [f"f{k}" for k in fam]
    by_family = signature_blocks(x, names)
    assert by_family.kind == "family" and by_family.names == ["f0", "f1", "f2", "f3"]
    assert by_family.note == "" and by_family.sizes.sum() == 200
    assert np.diag(by_family.distance).max() < by_family.distance[~np.eye(4, dtype=bool)].min()
    clusters = signature_blocks(x, max_blocks=4, seed=1)
    assert clusters.kind == "cluster" and len(clusters.names) == 4
    # every cluster is exactly one family (they are far apart)
    for b in range(4):
        assert len(set(fam[clusters.members(b)])) == 1
    many = signature_blocks(x, [f"m{i}" for i in range(200)], max_blocks=4)
    assert many.kind == "cluster" and "200 families" in many.note
    with pytest.raises(UserError, match="one group per signature"):
        signature_blocks(x, names[:-1])
    with pytest.raises(UserError, match="NaN"):
        signature_blocks(np.full((3, 4), np.nan))
    with pytest.raises(UserError, match="all zeros"):
        signature_blocks(np.zeros((3, 4)))


def test_a_signature_set_file_round_trips_and_is_listed(tmp_path):
    x, fam = _families(m=30)
    rows = [{"model_name": f"m{i}", "family": f"f{k}"} for i, k in enumerate(fam)]
    save_signature_set(tmp_path, "lab", rows, 3 * x, anchors="digits:8")
    back, matrix = load_signature_set(tmp_path / "signatures" / "lab.npz")
    assert np.allclose(matrix, x, atol=1e-6)  # stored as unit rows
    assert [r["model_name"] for r in back] == [r["model_name"] for r in rows]
    assert [r["family"] for r in back] == [r["family"] for r in rows] and back[0]["anchors"] == "digits:8"
    (tmp_path / "signatures" / "broken.npz").write_bytes(b"not a set")
    sets = signature_sets(FieldStore(tmp_path))
    assert [(s.ident, s.count) for s in sets] == [("file:lab", 30)]  # the broken file is left out
    rows2, m2 = sets[0].load()
    assert m2.shape == (30, 32) and len(rows2) == 30
    with pytest.raises(UserError, match="not a signature set"):
        load_signature_set(tmp_path / "signatures" / "broken.npz")
    with pytest.raises(UserError, match="name"):
        save_signature_set(tmp_path, "../evil", rows, x)


def test_the_store_groups_are_signature_sets(tmp_path):
    import torch

    store = FieldStore(tmp_path)
    cfg = FieldConfig(steps=2)
    for i in range(3):
        store.put(f"{i:064x}", torch.randn(2, 2, 8, generator=torch.Generator().manual_seed(i)),
                  {"model_name": f"m{i}", "anchors": "digits:2", "anchors_sha256": "a" * 64,
                   "config": cfg.to_dict(), "config_key": cfg.key()})
    (found,) = signature_sets(store)
    assert found.count == 3 and found.anchors == "digits:2" and "3 stored models" in found.label
    rows, matrix = found.load()
    assert [r["model_name"] for r in rows] == ["m0", "m1", "m2"] and matrix.shape[0] == 3


def test_the_webgl_map_has_every_model_hover_search_and_edges():
    rng = np.random.default_rng(0)
    m = 500
    coords = rng.standard_normal((m, 2))
    names = [f"model-{i}" for i in range(m)]
    groups = [f"g{i % 40}" for i in range(m)]  # more groups than colours: the rest share "other"
    details = [{"role": "victim" if i == 7 else "derived", "config": "digits:8 K=8"} for i in range(m)]
    hits = figures.search_matches("VICTIM", names, details)
    assert list(hits) == [7]
    assert list(figures.search_matches("model-12", names)) == [12, *range(120, 130)]
    assert figures.search_matches("  ", names).size == 0
    fig = figures.signature_map(coords, names, groups, details=details, highlight=hits, edges=[(0, 1), (1, 2)])
    kinds = {t.type for t in fig.data}
    assert kinds == {"scattergl"}
    points = [t for t in fig.data if t.mode == "markers" and not t.name.startswith("matches")]
    assert sum(len(t.x) for t in points) == m
    assert len(points) == figures.MAP_MAX_GROUPS and points[-1].name.startswith("other (25")
    ring = next(t for t in fig.data if t.name.startswith("matches"))
    assert list(ring.x) == [coords[7, 0]] and "<b>model-7</b>" in ring.hovertext[0]
    assert "config: digits:8 K=8" in ring.hovertext[0]
    lo, hi = fig.layout.xaxis.range
    assert lo < coords[7, 0] < hi and hi - lo < np.ptp(coords[:, 0])  # zoomed to the match
    edges = next(t for t in fig.data if t.name == "family edges")
    assert len(edges.x) == 6 and np.isnan(edges.x[2])
    with pytest.raises(ValueError, match="highlight"):
        figures.signature_map(coords, names, groups, highlight=[m])


def test_the_block_heatmap_is_one_cell_per_pair_of_blocks():
    x, fam = _families(m=90, families=5)
    b = signature_blocks(x, [f"f{k}" for k in fam])
    fig = figures.block_heatmap(b.distance, b.names, b.sizes)
    (heat,) = fig.data
    assert np.asarray(heat.z).shape == (5, 5)
    assert sorted(heat.x) == sorted(f"{n} ({s})" for n, s in zip(b.names, b.sizes, strict=True))
    assert "mean distance" in heat.hovertemplate


@pytest.mark.slow  # the first UMAP fit in a process JIT-compiles umap's numba code (10-30 s)
def test_the_map_from_signatures_keeps_families_apart():
    x, fam = _families(m=300, s=512, families=3, spread=0.4)  # 512 > MAX_LAYOUT_DIM: reduced first
    emb = embed_signatures(x, seed=0)
    assert emb.method == "umap" and emb.coords.shape == (300, 2)
    again = embed_signatures(x.copy(), seed=0)
    assert np.array_equal(emb.coords, again.coords)
    centres = np.stack([emb.coords[fam == k].mean(axis=0) for k in range(3)])
    spread = max(np.linalg.norm(emb.coords[fam == k] - centres[k], axis=1).mean() for k in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)]
    assert min(gaps) > 2 * spread
    tiny = embed_signatures(x[:3])  # below UMAP's minimum: MDS on the 3 distances
    assert tiny.method == "mds" and tiny.coords.shape == (3, 2)
    with pytest.raises(UserError, match=r"\[M, S\]"):
        embed_signatures(np.ones(5))


@pytest.mark.slow  # one small UMAP fit (numba compiles it if nothing has yet)
def test_the_map_bench_reports_every_step_and_the_dense_path_beside_it(capsys):
    from modelgif_core.bench.map import format_table, measure_map
    from modelgif_core.cli import main

    result = measure_map((60,), dims=32, warm=False)
    (row,) = result["sizes"]
    assert row["models"] == 60 and row["dims"] == 32 and row["blocks"] >= 2
    assert row["map_s"] >= row["layout_s"] > 0 and row["figure_mb"] > 0
    ratio = row["dense_s"] / row["layout_s"]
    assert row["dense_s"] > 0 and row["dense_over_map"] == pytest.approx(ratio, rel=0.05, abs=0.01)
    assert "dense/map" in format_table(result) and "60" in format_table(result)
    assert main(["bench", "map", "--seeds", "2"]) != 0  # the map bench has no seeds
    assert "Unrecognized arguments: --seeds" in capsys.readouterr().err
