"""Sketched fields and signatures (DESIGN §7): the projection's exact properties, determinism, keys,
and distances of real (tiny) timm models with and without a sketch."""

import hashlib
import json

import numpy as np
import pytest
import timm
import torch

from modelgif_core import (
    FieldConfig,
    FieldStore,
    InputConfig,
    ModelHandle,
    UserError,
    cached_field,
    default_sketch,
    distance_matrix,
    extract_field,
    fold_signatures,
    load_anchors,
    projection,
    signature,
    signature_distances,
)
from modelgif_core.engine.sketch import SKETCH_ABOVE_ENV


def _handle(module, name):
    cfg = InputConfig(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    return ModelHandle.from_module(module, "test_resnet", cfg, name, name)


def _zoo_like():
    """Near and far pairs: a base model, copies with growing weight noise, independent inits."""
    torch.manual_seed(0)
    base = timm.create_model("test_resnet", num_classes=10)
    models = [("base", base)]
    for i, scale in enumerate((0.02, 0.1, 0.3)):
        copy = timm.create_model("test_resnet", num_classes=10)
        copy.load_state_dict(base.state_dict())
        g = torch.Generator().manual_seed(10 + i)
        with torch.no_grad():
            for p in copy.parameters():
                p.add_(scale * p.std().nan_to_num(0.0) * torch.randn(p.shape, generator=g))
        models.append((f"noisy-{scale}", copy))
    for i in range(3):
        torch.manual_seed(100 + i)
        models.append((f"indep-{i}", timm.create_model("test_resnet", num_classes=10)))
    return [_handle(m, name) for name, m in models]


@pytest.fixture(scope="module")
def fields():
    """Full and sketched (m=1024) fields of 7 models on 16 digit anchors x 4 steps."""
    x = load_anchors("digits:16")
    handles = _zoo_like()
    full = [extract_field(h, x, FieldConfig(steps=4)) for h in handles]
    sketched = [extract_field(h, x, FieldConfig(steps=4, sketch=1024)) for h in handles]
    return full, sketched


def test_srht_at_full_length_is_an_isometry():
    p = projection(3072, 4096)  # L = 4096 >= 3*32*32: no row dropped
    m = p.matrix()  # [D, L]
    assert torch.allclose(m @ m.T, torch.eye(3072), atol=1e-6)  # orthonormal rows: every inner product kept
    x = torch.randn(4, 3072, dtype=torch.float64)
    assert torch.allclose(p.apply(x).double() @ p.apply(x).double().T, x @ x.T, rtol=1e-4, atol=1e-3)


def test_srht_subsampled_is_scaled_orthonormal_and_keeps_a_known_vector():
    p = projection(3072, 512)
    m = p.matrix().double()  # [D, m]: every entry is +-1/sqrt(m) (a signed Hadamard entry, rescaled)
    assert torch.allclose(m.abs(), torch.full_like(m, 512**-0.5))
    # A unit vector along one pixel spreads over all Hadamard coordinates: |Px|^2 = L/m * m/L = 1 exactly.
    e = torch.zeros(1, 3072)
    e[0, 123] = 1.0
    assert p.apply(e).norm().item() == pytest.approx(1.0, abs=1e-6)
    # Two random vectors: cosine kept within a few 1/sqrt(m).
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 3072, generator=g)
    b = 0.6 * a + 0.8 * b
    pa, pb = p.apply(torch.stack([a, b]))
    cos = torch.nn.functional.cosine_similarity
    assert abs(cos(pa, pb, dim=0) - cos(a, b, dim=0)).item() < 4 / 512**0.5


def test_projection_is_deterministic_and_seeded():
    x = torch.randn(3, 3072)
    from modelgif_core.engine.sketch import Projection  # a new object, not the cached one

    assert torch.equal(Projection(3072, 256, 0).apply(x), projection(3072, 256, 0).apply(x))
    assert not torch.equal(Projection(3072, 256, 1).apply(x), projection(3072, 256, 0).apply(x))
    with pytest.raises(UserError, match="between 1 and 4096"):
        projection(3072, 5000)


def test_sketched_field_is_the_projected_full_field(fields):
    full, sketched = fields
    p = projection(3072, 1024)
    for f, s in zip(full[:2], sketched[:2], strict=True):
        assert s.shape == (16, 4, 1024)
        expected = p.apply(f.reshape(-1, 3072)).reshape(16, 4, 1024)
        assert torch.allclose(s, expected, rtol=1e-3, atol=1e-4 * float(expected.abs().max()))


def test_sketched_distances_follow_full_ones(fields):
    full, sketched = fields
    d_full, d_sketch = distance_matrix(full), distance_matrix(sketched)
    assert d_full[0, 1] < 0.5 * d_full[0, 6]  # the set has near and far pairs
    assert np.abs(d_sketch - d_full).max() < 0.02


def test_signatures_estimate_distances(fields):
    full, _ = fields
    d_full = distance_matrix(full)
    sigs = np.stack([signature(f) for f in full])
    assert sigs.dtype == np.float32 and sigs.shape == (7, 16384)
    assert np.allclose(np.linalg.norm(sigs, axis=1), 1.0, atol=1e-5)
    err = np.abs(signature_distances(sigs) - d_full)[np.triu_indices(7, 1)]
    assert err.mean() < 0.015 and err.max() < 0.04
    # Scaling a field changes no cosine, so no signature.
    assert np.allclose(signature(full[0] * 3.5), sigs[0], atol=1e-6)
    # Folding is a coarser count-sketch of the same vectors.
    folded = fold_signatures(sigs, 4096)
    assert folded.shape == (7, 4096) and np.allclose(np.linalg.norm(folded, axis=1), 1.0, atol=1e-5)
    assert np.abs(signature_distances(folded) - d_full)[np.triu_indices(7, 1)].max() < 0.1


def test_signature_of_an_exact_field_is_exact():
    # Without collisions (S much larger than the vector) the count-sketch keeps inner products exactly
    # up to hash collisions; identical unit rows give distance 0, opposite rows distance 2.
    phi = torch.randn(2, 3, 8)
    assert float(signature_distances(signature(phi)[None], signature(-phi)[None])[0, 0]) == pytest.approx(2.0)
    assert float(signature_distances(signature(phi)[None])[0, 0]) == pytest.approx(0.0, abs=1e-6)


def test_full_key_unchanged_and_sketch_key_differs():
    cfg = FieldConfig(steps=20)
    # The key as computed before sketches existed: the semantic settings without device, memory, seed.
    old = {"steps": 20, "method": "gausslegendre", "baseline": "black", "target": "predicted", "labels": None,
           "autocast": None}
    assert cfg.key() == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:32]
    assert FieldConfig(steps=20, sketch=0).key() == cfg.key()
    keys = {FieldConfig(steps=20, sketch=m, seed=s).key() for m in (512, 2048) for s in (0, 1)}
    assert len(keys) == 4 and cfg.key() not in keys
    with pytest.raises(UserError, match="sketch"):
        FieldConfig(sketch=-3)


def test_store_keeps_signatures_per_config():
    x = load_anchors("digits:8")
    handles = _zoo_like()[:3]
    store = FieldStore()
    for h in handles:
        cached_field(h, x, FieldConfig(steps=3), store)
        cached_field(h, x, FieldConfig(steps=3, sketch=512), store)
    groups = store.signature_groups()
    assert sorted(g["count"] for g in groups) == [3, 3] and len(groups) == 2
    rows, matrix = store.signatures(x.sha256, FieldConfig(steps=3).key())
    assert [r["model_name"] for r in rows] == [h.name for h in handles] and matrix.shape == (3, 16384)
    full = [cached_field(h, x, FieldConfig(steps=3), store) for h in handles]
    assert np.array_equal(matrix[1], signature(full[1]))
    # A store from before signatures: the table emptied, they come back on demand.
    import sqlite3

    con = sqlite3.connect(store.index_path)
    con.execute("DELETE FROM signatures")
    con.commit()
    con.close()
    again_rows, again = store.signatures(x.sha256, FieldConfig(steps=3).key())
    assert np.array_equal(again, matrix) and len(again_rows) == 3
    store.remove(handles[0].name)
    assert store.signatures(x.sha256, FieldConfig(steps=3).key())[1].shape == (2, 16384)


def test_default_sketch_for_big_fields(monkeypatch):
    assert default_sketch(64, 20, 3 * 32 * 32) == (None, "")  # the digit zoo stays full
    m, sentence = default_sketch(64, 50, 3 * 224 * 224)  # ~963 MB
    assert m == 2048 and "963 MB" in sentence and SKETCH_ABOVE_ENV in sentence
    monkeypatch.setenv(SKETCH_ABOVE_ENV, "2000")
    assert default_sketch(64, 50, 3 * 224 * 224)[0] is None
    monkeypatch.setenv(SKETCH_ABOVE_ENV, "lots")
    with pytest.raises(UserError, match=SKETCH_ABOVE_ENV):
        default_sketch(64, 50, 3 * 224 * 224)


def test_cli_sketch_option_and_default(tmp_path):
    from conftest import run_cli

    from modelgif_core.engine.models import save_model_dir

    cfg = InputConfig(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    specs = []
    for i in range(2):
        torch.manual_seed(i)
        module = timm.create_model("test_resnet", num_classes=10)
        folder = save_model_dir(module, tmp_path / f"m{i}", arch="test_resnet", num_classes=10, input_cfg=cfg)
        specs.append(f"local-dir:{folder}")
    args = ["distance", *specs, "--anchors", "digits:4", "--steps", "2", "--format", "json", "-q"]
    tiny_limit = {SKETCH_ABOVE_ENV: "0.01"}
    # --sketch 0 asks for the full field whatever the limit: no sentence.
    full = run_cli(*args, "--sketch", "0", env=tiny_limit)
    assert full.returncode == 0 and full.stderr == "", full.stderr
    assert json.loads(full.stdout)["config"]["sketch"] is None
    # Over the limit the CLI picks the default sketch and says so in one sentence.
    auto = run_cli(*args, env=tiny_limit)
    assert auto.returncode == 0, auto.stderr
    assert "sketched to 2048 dims" in auto.stderr and auto.stderr.count("\n") == 1
    table = json.loads(auto.stdout)
    assert table["config"]["sketch"] == 2048
    assert abs(table["matrix"][0][1] - json.loads(full.stdout)["matrix"][0][1]) < 0.05
    bad = run_cli(*args, "--sketch", "99999")
    assert bad.returncode == 2 and "between 1 and 4096" in bad.stderr
