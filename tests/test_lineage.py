"""The family graph: the spanning forest of related pairs, the kurtosis arrow, and its scores."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from modelgif_core import InputConfig, save_model_dir
from modelgif_core.analysis.lineage import edges_from_scores, family_graph, lineage_scores, weight_kurtosis


def test_the_forest_keeps_each_child_s_edge_to_the_parent_not_to_its_sibling():
    names = ["V", "A", "B", "I"]
    score = np.array([[0, 10, 9, 1], [10, 0, 8, 1], [9, 8, 0, 1], [1, 1, 1, 0]], dtype=float)
    related = score > 5
    direction = np.zeros((4, 4), dtype=int)
    direction[0, 1], direction[1, 0] = 1, -1  # V is A's parent
    edges = edges_from_scores(names, score, related, direction)
    assert {frozenset((e.a, e.b)) for e in edges} == {frozenset(("V", "A")), frozenset(("V", "B"))}
    va = next(e for e in edges if {e.a, e.b} == {"V", "A"})
    assert (va.parent, va.child, va.decided_by) == ("V", "A", "kurtosis")
    vb = next(e for e in edges if {e.a, e.b} == {"V", "B"})
    assert vb.direction == "unknown" and vb.parent is None
    from modelgif_core.analysis.lineage import FamilyGraph

    graph = FamilyGraph(models=names, edges=edges)
    assert sorted(map(sorted, graph.families())) == [["A", "B", "V"]]
    s = lineage_scores(graph, {"V": None, "A": "V", "B": "V", "I": None})
    assert s["precision"] == 1.0 and s["recall"] == 1.0 and s["direction_accuracy"] == 1.0
    s = lineage_scores(graph, {"V": None, "A": "V", "B": None, "I": "V"})
    assert s["precision"] == 0.5 and s["recall"] == 0.5


def test_weight_kurtosis_grows_with_outliers():
    torch.manual_seed(0)
    m = timm.create_model("test_resnet", num_classes=10)
    from modelgif_core.engine.models import ModelHandle

    base = ModelHandle.from_module(m, "test_resnet", InputConfig((3, 32, 32), (0.5,) * 3, (0.5,) * 3), "a", "a")
    k0 = weight_kurtosis(base)
    with torch.no_grad():
        for p in m.parameters():
            if p.numel() >= 64:
                p.view(-1)[0] = p.abs().max() * 20  # one outlier per tensor
    assert weight_kurtosis(base) > k0 + 10


@pytest.mark.slow
def test_family_graph_links_a_near_copy_to_its_parent_with_the_kurtosis_arrow(tmp_path):
    cfg = InputConfig((3, 32, 32), (0.5,) * 3, (0.5,) * 3)

    def save(name, module):
        save_model_dir(module, tmp_path / name, arch="test_resnet", num_classes=10, input_cfg=cfg)
        return f"local-dir:{tmp_path / name}"

    torch.manual_seed(0)
    victim = timm.create_model("test_resnet", num_classes=10)
    child = timm.create_model("test_resnet", num_classes=10)
    child.load_state_dict(victim.state_dict())
    with torch.no_grad():
        for p in child.parameters():  # a near copy with one outlier per tensor: heavier tails
            p.add_(1e-3 * torch.randn_like(p))
            if p.numel() >= 64:
                p.view(-1)[0] += 3 * p.std()
    refs = []
    for i in range(6):
        torch.manual_seed(10 + i)
        refs.append(save(f"ref{i}", timm.create_model("test_resnet", num_classes=10)))
    v, c = save("victim", victim), save("child", child)
    graph = family_graph([v, c, refs[0]], references=refs, anchors="digits:4", points="digits:8:0")
    assert [(e.parent, e.child) for e in graph.edges] == [(v, c)]
    assert graph.edges[0].decided_by == "kurtosis"
    assert graph.families() == [[v, c]]


def test_lineage_edges_draws_a_line_per_edge_and_an_arrow_where_the_direction_is_known():
    import plotly.graph_objects as go

    from modelgif_core.analysis.lineage import Edge
    from modelgif_core.viz.figures import lineage_edges

    edges = [Edge("V", "A", "V", "A", 9.0, 1e-5, "known", "kurtosis"),
             Edge("V", "B", None, None, 8.0, 1e-5, "unknown", "none"),
             Edge("V", "Z", None, None, 8.0, 1e-5, "unknown", "none")]  # Z is not on the map
    fig = lineage_edges(go.Figure(), edges, {"V": (0, 0), "A": (1, 0), "B": (0, 1)})
    line = fig.data[-1]
    assert [v for v in line.x if v is not None] == [0.0, 1.0, 0.0, 0.0]
    assert len(fig.layout.annotations) == 1 and fig.layout.annotations[0].x == 1.0


def test_family_table_groups_edges_by_family_and_says_what_decided_each_arrow():
    from modelgif_core import family_table
    from modelgif_core.analysis.lineage import ARROW_REASONS, FamilyGraph

    names = ["V", "A", "B", "W", "C", "I"]
    score = np.zeros((6, 6))
    for (i, j), s in {(0, 1): 10, (0, 2): 9, (3, 4): 7}.items():
        score[i, j] = score[j, i] = s
    direction = np.zeros((6, 6), dtype=int)
    direction[0, 1], direction[1, 0] = 1, -1  # V is A's parent; V-B and W-C: unknown
    graph = FamilyGraph(models=names, edges=edges_from_scores(names, score, score > 5, direction))
    rows = family_table(graph.to_dict())
    assert [(r["family"], r["from"], r["to"], r["arrow"]) for r in rows] == [
        (1, "V", "A", "parent → child"), (1, "V", "B", "unknown"), (2, "W", "C", "unknown")]
    assert rows[0]["decided_by"] == ARROW_REASONS["kurtosis"] and rows[1]["decided_by"] == ARROW_REASONS["none"]
    assert rows[0]["score"] == 10.0 and "I" not in {r["from"] for r in rows} | {r["to"] for r in rows}
    assert family_table({"edges": [], "families": []}) == []
