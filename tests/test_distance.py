"""Field distances: hand-checked values, invariances, and the Gram matrix against a plain loop."""

import math

import numpy as np
import pytest
import timm
import torch

from modelgif_core import (
    FieldConfig,
    InputConfig,
    ModelHandle,
    UserError,
    cluster_order,
    distance_matrix,
    extract_field,
    field_distance,
    unit_field,
)


def test_hand_computed_cosine_distance():
    a = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])  # N=1, K=2, D=2
    b = torch.tensor([[[0.0, 3.0], [2.0, 2.0]]])
    # cos = 0 for the first step, 1 for the second: mean(1 - cos) = 0.5
    assert field_distance(a, b) == pytest.approx(0.5)
    assert field_distance(a, -a) == pytest.approx(2.0)


def test_zero_vector_has_cosine_zero():
    a = torch.zeros(2, 3, 5)
    b = torch.randn(2, 3, 5)
    assert field_distance(a, b) == pytest.approx(1.0)
    unit, norm = unit_field(a)
    assert torch.equal(unit, a) and torch.equal(norm, torch.zeros(2, 3))


def test_matrix_equals_pairwise_definition():
    torch.manual_seed(0)
    fields = [torch.randn(4, 3, 10) for _ in range(5)]
    fields[2][1, 2] = 0  # a zero vector inside one field
    d = distance_matrix(fields, chunk_mb=0)  # the smallest chunks: one row at a time
    for i, a in enumerate(fields):
        for j, b in enumerate(fields):
            cos = torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-30)
            zero = (a.norm(dim=-1) == 0) | (b.norm(dim=-1) == 0)
            expected = 0.0 if i == j else float((1 - torch.where(zero, 0.0, cos)).mean())
            assert d[i, j] == pytest.approx(expected, abs=1e-6)
    assert np.allclose(d, d.T) and np.all(np.diag(d) == 0)


def test_euclidean_variant():
    a, b = torch.zeros(1, 2, 3), torch.ones(1, 2, 3)
    d = distance_matrix([a, b], metric="euclidean")
    assert d[0, 1] == pytest.approx(math.sqrt(3))  # rms over (i,k) of |a - b| = sqrt(3)
    with pytest.raises(UserError, match="cosine"):
        distance_matrix([a, b], metric="manhattan")


def test_shapes_must_agree():
    with pytest.raises(UserError, match="same anchor set"):
        distance_matrix([torch.zeros(1, 2, 3), torch.zeros(1, 3, 3)])


def _handle(module):
    cfg = InputConfig(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    return ModelHandle.from_module(module, "test_resnet", cfg, "m", "m")


def test_model_against_itself_and_scaled_logits_are_zero():
    torch.manual_seed(0)
    base = timm.create_model("test_resnet", num_classes=5)
    scaled = timm.create_model("test_resnet", num_classes=5)
    scaled.load_state_dict(base.state_dict())
    with torch.no_grad():  # logits times c = 3.5 (c > 0): every gradient scales, no cosine changes
        scaled.fc.weight.mul_(3.5)
        scaled.fc.bias.mul_(3.5)
    other = timm.create_model("test_resnet", num_classes=5)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cfg = FieldConfig(steps=5)
    fa, fs, fo = (extract_field(_handle(m), x, cfg) for m in (base, scaled, other))
    d = distance_matrix([fa, fs, fo])
    assert d[0, 1] == pytest.approx(0.0, abs=1e-5)
    assert d[0, 2] > 0.05
    assert field_distance(fa, fa) == 0.0


def test_cluster_order_groups_close_models():
    d = np.array([[0, 9, 1, 9], [9, 0, 9, 1], [1, 9, 0, 9], [9, 1, 9, 0]], dtype=float)
    order = cluster_order(d)
    assert sorted(order) == [0, 1, 2, 3]
    pos = {m: order.index(m) for m in order}
    assert abs(pos[0] - pos[2]) == 1 and abs(pos[1] - pos[3]) == 1
