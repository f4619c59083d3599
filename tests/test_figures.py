"""Figure builders: the data they draw is the data given, in the order the clustering says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelgif_core import cluster_order, field_distance, figures, unit_field


def _random_distances(m: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(m, 5))
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    return d / d.max()


def test_heatmap_orders_like_cluster_order_and_keeps_exact_values():
    d = _random_distances(12)
    names = [f"m{i}" for i in range(12)]
    fig = figures.distance_heatmap(d, names)
    heat = next(t for t in fig.data if t.type == "heatmap")
    order = cluster_order(d)
    assert list(heat.x) == [names[i] for i in order]
    np.testing.assert_array_equal(np.asarray(heat.z), d[np.ix_(order, order)])
    assert "%{z:.6f}" in heat.hovertemplate
    # one line (four points and a break) per merge of the tree, in one trace
    (tree,) = [t for t in fig.data if t.type == "scatter"]
    assert list(tree.x).count(None) == 11 and len(tree.x) == 11 * 5


def test_heatmap_handles_duplicate_names_and_tiny_matrices():
    d = _random_distances(2)
    fig = figures.distance_heatmap(d, ["same", "same"])
    heat = fig.data[0]
    assert list(heat.x) == ["same", "same #2"]
    assert len(fig.data) == 1  # no dendrogram for two models
    with pytest.raises(ValueError):
        figures.distance_heatmap(d, ["only one"])


def test_heatmap_with_200_models_hides_ticks_but_keeps_all_cells():
    d = _random_distances(200, seed=1)
    fig = figures.distance_heatmap(d, [f"model-{i}" for i in range(200)])
    heat = next(t for t in fig.data if t.type == "heatmap")
    assert np.asarray(heat.z).shape == (200, 200)
    assert fig.layout.xaxis2.showticklabels is False


def test_embedding_scatter_one_trace_per_group_with_hover_details():
    coords = np.arange(10, dtype=float).reshape(5, 2)
    groups = ["a", "b", "a", "c", "b"]
    fig = figures.embedding_scatter(coords, [f"n{i}" for i in range(5)], groups,
                                    details=[{"arch": "resnet", "accuracy": 0.91234}] * 5)
    assert [t.name for t in fig.data] == ["a", "b", "c"]
    assert sum(len(t.x) for t in fig.data) == 5
    first = fig.data[0]
    assert list(first.x) == [0.0, 4.0]
    assert "<b>n0</b>" in first.hovertext[0] and "accuracy: 0.9123" in first.hovertext[0]


def test_stepwise_cosine_mean_is_the_field_distance():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4, 6, 30, generator=gen)
    b = a + 0.7 * torch.randn(4, 6, 30, generator=gen)
    b[1, 2] = 0.0  # a zero vector has cosine 0
    ua, ub = unit_field(a)[0].numpy(), unit_field(b)[0].numpy()
    cos = figures.stepwise_cosine(ua, ub)
    assert cos.shape == (4, 6)
    assert cos[1, 2] == 0.0
    assert float(np.mean(1 - cos)) == pytest.approx(field_distance(a, b), abs=1e-6)


def test_channel_maps_and_path_images():
    phi = np.ones((2, 3 * 4 * 5), dtype=np.float32)
    phi[1] *= -2
    maps = figures.channel_maps(phi, (3, 4, 5))
    assert maps.shape == (2, 4, 5) and maps[0, 0, 0] == 3 and maps[1, 3, 4] == -6
    anchor, base = np.ones((3, 4, 4)), np.zeros((3, 4, 4))
    path = figures.path_images(anchor, base, [0.0, 0.25, 1.0])
    assert path.shape == (3, 3, 4, 4)
    assert path[0].max() == 0 and path[1].max() == pytest.approx(0.25) and path[2].min() == 1


def test_gradient_maps_share_a_symmetric_scale_per_row():
    maps = np.zeros((2, 3, 4, 4), dtype=np.float32)
    maps[0, 1, 0, 0] = 5.0
    maps[1, 2, 1, 1] = -0.5
    fig = figures.gradient_maps(maps, [0.1, 0.5, 1.0], row_titles=["A", "B"])
    heats = [t for t in fig.data if t.type == "heatmap"]
    assert len(heats) == 6
    assert {(h.zmin, h.zmax) for h in heats[:3]} == {(-5.0, 5.0)}
    assert {(h.zmin, h.zmax) for h in heats[3:]} == {(-0.5, 0.5)}


def test_overlay_curve_and_reference_distribution():
    image = np.random.default_rng(0).random((3, 8, 8))
    attr = np.linspace(-1, 2, 64).reshape(8, 8)
    fig = figures.attribution_overlay(image, attr)
    assert [t.type for t in fig.data] == ["image", "heatmap"]
    assert fig.data[1].zmin == -2.0 and fig.data[0].z.shape == (8, 8, 3)

    curve = figures.similarity_curve([0.1, 0.5, 0.9], [0.2, 0.5, 0.8], anchor_cos=[0.1, 0.4, 0.9])
    assert [list(t.y) for t in curve.data] == [[0.2, 0.5, 0.8], [0.1, 0.4, 0.9]]

    ref = figures.reference_distribution(
        [0.5, 0.55, 0.6], [("copy", 0.1, "derived"), ("other", 0.52, "independent")],
        reference_names=["r1", "r2", "r3"], threshold=0.3,
    )
    marked = [t for t in ref.data if t.type == "scatter" and t.marker.symbol == "diamond"]
    assert [(t.x[0], t.marker.color) for t in marked] == [
        (0.1, figures.VERDICT_COLORS["derived"]), (0.52, figures.VERDICT_COLORS["independent"])
    ]
    assert len(ref.layout.shapes) == 3  # two suspects and the threshold
    assert ref.layout.xaxis.title.text == "field distance to the victim"
    unlearning = figures.reference_distribution([0.5, 0.6, 0.7], [("claimed", 0.2, "not forgotten")],
                                                measured_from="the original")
    assert unlearning.layout.xaxis.title.text == "field distance to the original"


def test_path_strip_draws_each_point():
    images = figures.path_images(np.ones((3, 4, 4)), np.zeros((3, 4, 4)), [0.0, 0.5, 1.0])
    fig = figures.path_strip(images, [0.0, 0.5, 1.0])
    assert [t.type for t in fig.data] == ["image"] * 3
    assert fig.data[1].z[0, 0, 0] == 128
