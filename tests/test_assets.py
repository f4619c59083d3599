"""The small zoo shipped in assets/: complete, as its manifest says, used without training, and what a
rebuild trains (the cheapest model of each recipe method; `modelgif zoo verify --all` checks every model):
byte for byte where the CPU's kernels round like the build's, else within float rounding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

from modelgif_core import load_model
from modelgif_core.engine.errors import UserError
from modelgif_core.zoo import (
    ensure_zoo,
    list_zoo,
    quick_verify_names,
    recipe_keys,
    recipes,
    shipped_model_dir,
    verify_message,
    verify_zoo,
    zoo_is_built,
    zoo_model_dir,
    zoo_root,
)
from modelgif_core.zoo.build import MAX_DRIFT, TRAINERS, file_sha256, rebuild_drift

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
SHIPPED = ASSETS / "zoo-small"


@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.setenv("MODELGIF_ASSETS", str(ASSETS))
    return SHIPPED


def test_the_assets_hold_the_small_zoo_as_its_manifest_says():
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    assert manifest["size"] == "small"
    assert [m["name"] for m in manifest["models"]] == [r.name for r in recipes("small")]
    keys = recipe_keys("small")
    total = 0
    for m in manifest["models"]:
        assert m["recipe_key"] == keys[m["name"]], f"{m['name']} was built from another recipe"
        for name, sha in m["sha256"].items():
            path = SHIPPED / m["name"] / name
            assert file_sha256(path) == sha, path
            total += path.stat().st_size
        cfg = json.loads((SHIPPED / m["name"] / "config.json").read_text())
        assert "train_seconds" not in cfg["modelgif"]  # nothing in the files that a rebuild cannot repeat
    assert 20 * 2**20 < total < 40 * 2**20  # float32 weights of 31 tiny models, nothing else
    assert sorted(p.name for p in SHIPPED.iterdir() if p.is_file()) == ["manifest.json"]


def test_zoo_specs_and_the_demo_use_the_shipped_models_without_training(shipped, _isolated_home):
    assert zoo_is_built("small")
    assert ensure_zoo("small") == shipped  # the demo's first step: nothing to train
    assert not zoo_root("small").exists()  # nor copied into the store
    rows = list_zoo("small")
    assert [r["name"] for r in rows] == [r.name for r in recipes("small")]
    assert all(r["spec"] == f"local-dir:{shipped / r['name']}" for r in rows)
    model = load_model("zoo:resnet-victim")
    assert model.meta["role"] == "victim" and model.num_classes == 10
    assert zoo_model_dir("resnet-victim") == shipped / "resnet-victim"
    # The full zoo is not shipped: still built on demand.
    assert not zoo_is_built("full")
    out = run_cli("zoo", "list", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == len(rows)


def test_the_stores_zoo_comes_first_and_stale_shipped_models_are_ignored(tmp_path, monkeypatch, _isolated_home):
    assets = tmp_path / "assets"
    for name in ("resnet-victim", "resnet-weight-noise-0", "indep-cali-00-resnet"):
        shutil.copytree(SHIPPED / name, assets / "zoo-small" / name)
    monkeypatch.setenv("MODELGIF_ASSETS", str(assets))
    assert shipped_model_dir("resnet-victim") == assets / "zoo-small" / "resnet-victim"
    assert not zoo_is_built("small")  # 3 of 31 shipped
    assert [r["name"] for r in list_zoo("small")] == ["resnet-victim", "resnet-weight-noise-0",
                                                       "indep-cali-00-resnet"]
    # A shipped model of an older recipe is not used (it would be trained instead).
    cfg_path = assets / "zoo-small" / "indep-cali-00-resnet" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["modelgif"]["recipe_key"] = "0" * 16
    cfg_path.write_text(json.dumps(cfg))
    assert shipped_model_dir("indep-cali-00-resnet") is None
    with pytest.raises(Exception, match="not built yet"):
        zoo_model_dir("indep-cali-00-resnet")
    # A model the store has built wins over the shipped one.
    shutil.copytree(SHIPPED / "resnet-weight-noise-0", zoo_root("small") / "resnet-weight-noise-0")
    assert zoo_model_dir("resnet-weight-noise-0") == zoo_root("small") / "resnet-weight-noise-0"
    assert zoo_model_dir("resnet-victim") == assets / "zoo-small" / "resnet-victim"


def test_quick_verify_covers_every_recipe_method():
    names = quick_verify_names("small")
    by_name = {r.name: r for r in recipes("small")}
    methods = {r.method for r in recipes("small")}
    assert {by_name[n].method for n in names} == methods and len(names) == len(methods)
    assert methods <= set(TRAINERS)


@pytest.mark.slow
def test_a_rebuild_of_the_cheapest_model_of_each_recipe_method_matches_the_shipped_files(shipped):
    """Bitwise on CPUs whose kernels round like the build's; elsewhere within float rounding (MAX_DRIFT)."""
    rows = verify_zoo("small", workers=2)
    assert [r["name"] for r in rows] == quick_verify_names("small")
    bad = [verify_message(r) for r in rows if not r["ok"]]
    assert not bad, "\n".join(bad)
    # A model trained without floating-point accumulation (seeded noise on the shipped parent) is bitwise anywhere.
    assert next(r for r in rows if r["name"] == "resnet-weight-noise-0")["exact"]


def test_rebuild_drift_is_measured_against_what_the_recipe_changed():
    """Hand-known cases: a model against itself (0, all predictions the same); the parent in place of its
    fine-tune (exactly the recipe's whole change, 1); a model of another seed, far beyond float rounding."""
    assert rebuild_drift(SHIPPED / "resnet-prune-0", SHIPPED / "resnet-prune-0", SHIPPED / "resnet-victim") == (0, 1)
    drift, agreement = rebuild_drift(SHIPPED / "resnet-finetune-all-0", SHIPPED / "resnet-victim",
                                     SHIPPED / "resnet-victim")
    assert drift == pytest.approx(1, abs=1e-12) and agreement < 1
    drift, _ = rebuild_drift(SHIPPED / "indep-cali-02-byobnet", SHIPPED / "indep-cali-08-byobnet", None)
    assert drift > 2 * MAX_DRIFT
    # Another architecture's weights cannot be a rebuild at all.
    assert rebuild_drift(SHIPPED / "resnet-victim", SHIPPED / "effnet-victim", None) == (float("inf"), 0)


def test_zoo_verify_says_which_file_differs(tmp_path, monkeypatch):
    """A tampered shipped file: `zoo verify MODEL` exits 1 with one sentence naming the model and file, from
    the manifest's sha256 before any training (a rebuild alone could not tell one flipped bit from float
    rounding on another CPU)."""
    assets = tmp_path / "assets"
    for name in ("resnet-victim", "resnet-weight-noise-0"):
        shutil.copytree(SHIPPED / name, assets / "zoo-small" / name)
    shutil.copy(SHIPPED / "manifest.json", assets / "zoo-small")
    weights = assets / "zoo-small" / "resnet-weight-noise-0" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last tensor
    weights.write_bytes(bytes(data))
    out = run_cli("zoo", "verify", "resnet-weight-noise-0", "-q", env={"MODELGIF_ASSETS": str(assets)})
    assert out.returncode == 1, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(
        "resnet-weight-noise-0: the shipped model.safetensors is not the one manifest.json lists"), lines
    # The Python API stops there too, before training.
    monkeypatch.setenv("MODELGIF_ASSETS", str(assets))
    with pytest.raises(UserError, match="resnet-weight-noise-0: the shipped model.safetensors is not the one"):
        verify_zoo("small", names=["resnet-weight-noise-0"])
    monkeypatch.delenv("MODELGIF_ASSETS")
    # The untampered file: the rebuild has the same bytes.
    out = run_cli("zoo", "verify", "resnet-weight-noise-0", "-q", env={"MODELGIF_ASSETS": str(ASSETS)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 of 1 rebuilt small zoo models match the shipped files" in out.stdout
    assert out.stdout.rstrip().endswith("bitwise, 0 within float rounding, 0 not."), out.stdout


def test_a_saved_model_folder_is_readable_by_other_users(tmp_path):
    """safetensors writes owner-only files; the image's app runs as the host's uid and reads models others wrote."""
    import timm

    from modelgif_core import InputConfig, save_model_dir

    cfg = InputConfig(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    folder = save_model_dir(timm.create_model("test_resnet", num_classes=10), tmp_path / "m", arch="test_resnet",
                            num_classes=10, input_cfg=cfg)
    for name in ("model.safetensors", "config.json"):
        assert (folder / name).stat().st_mode & 0o044 == 0o044, name
