"""Nearest stored models: the signature shortlist keeps the exact top k; the CLI prints it."""

import json

import numpy as np
import pytest
import timm
import torch
from conftest import run_cli

from modelgif_core import FieldConfig, FieldStore, InputConfig, cached_field, distance_matrix, load_anchors, load_model
from modelgif_core.analysis.nearest import nearest_models, shortlist
from modelgif_core.engine.models import save_model_dir

ANCHORS, CFG = "digits:8", FieldConfig(steps=3)


@pytest.fixture
def specs(tmp_path):
    """local-dir: specs of a base model, noisy copies of it (near) and independent inits (far)."""
    torch.manual_seed(0)
    base = timm.create_model("test_resnet", num_classes=10)
    modules = [("base", base)]
    for i, scale in enumerate((0.05, 0.2, 0.5)):
        copy = timm.create_model("test_resnet", num_classes=10)
        copy.load_state_dict(base.state_dict())
        g = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for p in copy.parameters():
                p.add_(scale * p.std().nan_to_num(0.0) * torch.randn(p.shape, generator=g))
        modules.append((f"noisy-{i}", copy))
    for i in range(3):
        torch.manual_seed(50 + i)
        modules.append((f"indep-{i}", timm.create_model("test_resnet", num_classes=10)))
    cfg = InputConfig(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    return [f"local-dir:{save_model_dir(m, tmp_path / name, arch='test_resnet', num_classes=10, input_cfg=cfg)}"
            for name, m in modules]


def test_shortlist_keeps_everything_near_the_kth():
    est_dist = np.array([0.5, 0.1, 0.9, 0.12, 0.3, 0.13])
    # unit signatures whose estimated distance to the query e0 is est_dist: s = (1 - d) e0 + ... e1
    matrix = np.zeros((6, 2), np.float32)
    matrix[:, 0] = 1 - est_dist
    matrix[:, 1] = np.sqrt(1 - (1 - est_dist) ** 2)
    q = np.array([1.0, 0.0], np.float32)
    assert shortlist(q, matrix, k=1, margin=0.0).tolist() == [1]
    assert shortlist(q, matrix, k=1, margin=0.05).tolist() == [1, 3, 5]
    assert shortlist(q, matrix, k=2, margin=0.0).tolist() == [1, 3]
    assert shortlist(q, matrix, k=10).tolist() == [1, 3, 5, 4, 0, 2]


def test_nearest_is_the_exact_ranking(specs):
    store = FieldStore()
    anchors = load_anchors(ANCHORS)
    fields = [cached_field(load_model(s), anchors, CFG, store) for s in specs]
    d = distance_matrix(fields)
    names = [load_model(s).name for s in specs]
    for q in range(len(specs)):
        got = nearest_models(specs[q], "store", k=3, anchors=ANCHORS, cfg=CFG, store=store)
        want = [j for j in np.argsort(d[q], kind="stable") if j != q][:3]
        assert [r["model"] for r in got["results"]] == [names[j] for j in want]  # recall 1.0
        assert [r["distance"] for r in got["results"]] == pytest.approx([d[q, j] for j in want], abs=1e-5)
        assert got["candidates"] == len(specs) - 1
    # Among a list of models only; a model not yet stored is extracted on the way.
    store.remove(names[6])
    got = nearest_models(specs[0], specs[5:], k=5, anchors=ANCHORS, cfg=CFG, store=store)
    assert [r["model"] for r in got["results"]] == sorted(names[5:], key=lambda n: d[0, names.index(n)])


def test_nearest_cli(specs):
    out = run_cli("nearest", specs[0], "--among", *specs[1:4], "--anchors", ANCHORS, "--steps", "3", "-k", "2",
                  "--format", "json", "-q")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [r["rank"] for r in result["results"]] == [1, 2] and result["results"][0]["model"] == "noisy-0"
    bad = run_cli("nearest", specs[0], "--anchors", ANCHORS, "-k", "0")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
