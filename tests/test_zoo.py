"""The built-in zoo: recipes, data hygiene, a tiny real build, layout, idempotence, lookups."""

from __future__ import annotations

import json

import pytest
import torch

from modelgif_core import UserError, load_model, zoo


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGIF_HOME", str(tmp_path))
    return tmp_path


def test_small_is_a_subset_of_full_with_identical_recipes():
    small, full = zoo.recipes("small"), {r.name: r for r in zoo.recipes("full")}
    for r in small:
        assert full[r.name] == r
    assert len(full) > 2 * len(small)


def test_full_zoo_covers_every_attack_kind_for_two_victim_architectures():
    rows = zoo.recipes("full")
    victims = [r for r in rows if r.role == "victim"]
    assert len({r.arch for r in victims}) >= 2
    for v in victims:
        kinds = {r.attack for r in rows if r.parent == v.name and r.role == "derived"}
        assert kinds == set(zoo.ATTACK_KINDS)
    roles = {r.role for r in rows}
    assert {"independent-calibration", "independent-test", "surrogate"} <= roles


def test_recipes_are_topologically_ordered_and_unknown_size_is_a_user_error():
    seen: set[str] = set()
    for r in zoo.recipes("full"):
        assert r.parent is None or r.parent in seen
        seen.add(r.name)
    with pytest.raises(UserError, match="small, full"):
        zoo.recipes("huge")


def test_training_data_never_touches_the_held_out_digits():
    data = zoo._load_data()
    held = set(data.heldout.tolist())
    owner, attacker = set(data.owner.tolist()), set(data.attacker.tolist())
    assert not owner & attacker
    assert owner | attacker == set(data.pool.tolist())
    for split in ("owner", "attacker", "pool", "half-3"):
        assert not set(data.indices(split).tolist()) & held


def test_strong_attacker_queries_five_times_its_data():
    x = torch.rand(10, 3, 32, 32)
    q = zoo._strong_queries(x, seed=1)
    assert q.shape == (50, 3, 32, 32)
    assert torch.equal(q[:10], x) and q.min() >= 0 and q.max() <= 1


def test_tiny_build_writes_loadable_timm_folders_and_is_idempotent(home):
    only = ["resnet-extract-label-strong-0", "resnet-transfer-parity-0"]
    calls = []
    root = zoo.build_zoo("small", only=only, epochs_scale=0.1,
                         progress=lambda d, t, n: calls.append((d, t, n)))
    assert root == home / "zoo-small"
    assert calls[0] == (0, 3, "resnet-victim") and calls[-1] == (3, 3, "done")
    rows = {r["name"]: r for r in zoo.list_zoo("small")}
    assert set(rows) == {"resnet-victim", *only}
    assert rows["resnet-transfer-parity-0"]["num_classes"] == 2
    assert rows["resnet-extract-label-strong-0"]["parent"] == "resnet-victim"
    assert rows["resnet-extract-label-strong-0"]["attack"] == "extract-label-strong"
    for name, row in rows.items():
        cfg = json.loads((root / name / "config.json").read_text())
        assert cfg["architecture"] == "test_resnet"
        assert cfg["pretrained_cfg"]["input_size"] == [3, 32, 32]
        assert cfg["modelgif"]["role"] == row["role"]
        assert 0.0 <= cfg["modelgif"]["test_accuracy"] <= 1.0
        handle = load_model(row["spec"])
        assert handle(torch.rand(2, 3, 32, 32)).shape == (2, row["num_classes"])
    # the victim (a real, briefly trained digits model) is well above chance
    assert rows["resnet-victim"]["test_accuracy"] > 0.15
    assert load_model("zoo:resnet-victim").meta["role"] == "victim"

    stamp = (root / "resnet-victim" / "model.safetensors").stat().st_mtime_ns
    zoo.build_zoo("small", only=only, epochs_scale=0.1)
    assert (root / "resnet-victim" / "model.safetensors").stat().st_mtime_ns == stamp


def test_zoo_model_dir_says_how_to_build_missing_models(home):
    with pytest.raises(UserError, match="modelgif zoo build --size small"):
        zoo.zoo_model_dir("effnet-victim")
    with pytest.raises(UserError, match="modelgif zoo build --size full"):
        zoo.zoo_model_dir("effnet-surrogate-0")
    with pytest.raises(UserError, match="zoo list"):
        zoo.zoo_model_dir("no-such-model")
    assert not zoo.zoo_is_built("small")
    assert zoo.list_zoo("small") == []


def test_zoo_root_honours_modelgif_home(home):
    assert zoo.zoo_root("full") == home / "zoo-full"
