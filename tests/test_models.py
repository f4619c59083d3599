"""Model loading: local-dir folders, checkpoint files (safe only), the Hub cache, fingerprints."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from conftest import ROOT, run_cli, write_hostile
from safetensors.torch import save_file

from modelgif_core import InputConfig, UserError, list_hub_models, load_model, save_model_dir

CFG32 = InputConfig(input_size=(3, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def make(arch="test_resnet", num_classes=10, seed=0, **kwargs):
    torch.manual_seed(seed)
    return timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs).eval()


def test_local_dir_roundtrip_keeps_outputs_config_and_fingerprint(tmp_path):
    module = make()
    folder = save_model_dir(module, tmp_path / "victim", arch="test_resnet", num_classes=10, input_cfg=CFG32,
                            extra={"role": "victim", "family": "resnet"})
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "test_resnet" and config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    a = load_model(f"local-dir:{folder}")
    b = load_model(f"local-dir:{folder}")
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 64
    assert a.input_cfg == CFG32 and a.meta["role"] == "victim" and a.num_classes == 10
    x = torch.rand(2, 3, 32, 32)
    expected = module((x - 0.5) / 0.25)
    assert torch.allclose(a(x), expected, atol=1e-6)
    assert not any(p.requires_grad for p in a.module.parameters()) and not a.module.training


def test_fingerprint_changes_with_weights_and_input_config(tmp_path):
    module = make()
    save = dict(arch="test_resnet", num_classes=10, input_cfg=CFG32)
    base = load_model(f"local-dir:{save_model_dir(module, tmp_path / 'a', **save)}")
    with torch.no_grad():
        module.fc.bias[0] += 1e-3
    moved = load_model(f"local-dir:{save_model_dir(module, tmp_path / 'b', **save)}")
    assert moved.fingerprint != base.fingerprint
    other_std = load_model(f"local-dir:{tmp_path / 'a'}", std=(0.3, 0.3, 0.3))
    assert other_std.fingerprint != base.fingerprint


@pytest.mark.parametrize("nesting", [None, "state_dict", "model", "state_dict_ema", "module."])
def test_pickled_state_dicts_are_found_when_nested(tmp_path, nesting):
    module = make(num_classes=7)
    state = module.state_dict()
    if nesting == "module.":
        payload = {f"module.{k}": v for k, v in state.items()}
    elif nesting:
        payload = {nesting: state, "epoch": 3, "optimizer_name": "sgd"}
    else:
        payload = state
    path = tmp_path / "ckpt.pth"
    torch.save(payload, path)
    handle = load_model(str(path), arch="test_resnet", input_size=(3, 32, 32))
    assert handle.num_classes == 7  # inferred from fc.weight
    x = torch.rand(1, 3, 32, 32)
    ref = load_model(str(path), arch="test_resnet", input_size=(3, 32, 32))
    assert torch.equal(handle(x), ref(x))


def test_safetensors_checkpoint_with_config_beside_it(tmp_path):
    module = make(num_classes=4)
    save_model_dir(module, tmp_path, arch="test_resnet", num_classes=4, input_cfg=CFG32)
    handle = load_model(str(tmp_path / "model.safetensors"))
    assert handle.arch == "test_resnet" and handle.input_cfg == CFG32


def test_one_channel_checkpoint_infers_in_chans(tmp_path):
    module = make(num_classes=3, in_chans=1)
    save_file(module.state_dict(), tmp_path / "gray.safetensors")
    handle = load_model(str(tmp_path / "gray.safetensors"), arch="test_resnet", input_size=(1, 28, 28),
                        mean=(0.5,), std=(0.5,))
    assert handle.input_cfg.input_size == (1, 28, 28)
    assert handle(torch.rand(2, 3, 40, 40)).shape == (2, 3)


def test_key_mismatch_lists_missing_and_unexpected(tmp_path):
    state = make().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["fc.bias"]
    save_file(state, tmp_path / "bad.safetensors")
    with pytest.raises(UserError) as err:
        load_model(str(tmp_path / "bad.safetensors"), arch="test_resnet")
    message = str(err.value)
    assert "fc.bias" in message and "extra.weight" in message and "missing" in message


def test_wrong_architecture_and_unknown_names_are_one_sentence(tmp_path):
    save_file(make().state_dict(), tmp_path / "r.safetensors")
    with pytest.raises(UserError, match="do not match"):
        load_model(str(tmp_path / "r.safetensors"), arch="test_efficientnet")
    with pytest.raises(UserError, match="Unknown architecture"):
        load_model(str(tmp_path / "r.safetensors"), arch="resnet_does_not_exist")
    with pytest.raises(UserError, match="architecture"):
        load_model(str(tmp_path / "r.safetensors"))  # no arch, no config.json
    with pytest.raises(UserError, match="Unknown model"):
        load_model("definitely_not_a_model")
    with pytest.raises(UserError, match="Unknown model"):
        load_model("resnet_bogus.a1_in1k")  # a tag does not make it a file name
    with pytest.raises(UserError, match="'zoo:NAME'"):
        load_model("foo:bar")  # an unknown prefix names every scheme, the zoo's too
    with pytest.raises(UserError, match="resnet18.a1_in1k"):
        load_model("resnet18.not_a_tag")  # timm's RuntimeError becomes one sentence with valid tags
    with pytest.raises(UserError, match="No such folder"):
        load_model(f"local-dir:{tmp_path / 'missing'}")


def test_hostile_pickle_is_refused_and_never_executed(tmp_path):
    path, marker = write_hostile(tmp_path)
    with pytest.raises(UserError, match="Refused"):
        load_model(str(path), arch="test_resnet")
    with pytest.raises(UserError, match="Refused"):
        load_model(str(path))  # refused before the missing architecture is even asked for
    assert not marker.exists()
    result = run_cli("extract", path, "--arch", "test_resnet", "--anchors", "noise:2:0")
    assert result.returncode == 2 and not marker.exists()
    assert "Refused" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_raw_pickle_is_refused_in_one_sentence(tmp_path):
    """A plain pickle.dump file (not torch.save's zip): refused, never run, and torch's warning about
    its pickle protocol does not reach the user beside our sentence."""
    path, marker = tmp_path / "raw.pth", tmp_path / "PWNED"
    code = ("import os, pickle, sys\n"
            "class Boom:\n    def __reduce__(self):\n        return (os.system, ('touch ' + sys.argv[2],))\n"
            "pickle.dump({'fc.weight': Boom()}, open(sys.argv[1], 'wb'), protocol=4)\n")
    subprocess.run([sys.executable, "-c", code, str(path), str(marker)], check=True)
    result = run_cli("extract", path, "--arch", "test_resnet", "--anchors", "noise:2:0")
    assert result.returncode == 2 and not marker.exists()
    assert "raw.pth" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_truncated_safetensors_is_refused(tmp_path):
    save_file(make().state_dict(), tmp_path / "full.safetensors")
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_model(str(tmp_path / "cut.safetensors"), arch="test_resnet")
    (tmp_path / "cut.pth").write_bytes(b"\x80\x02garbage" * 10)
    with pytest.raises(UserError, match="not a readable"):
        load_model(str(tmp_path / "cut.pth"), arch="test_resnet")
    # without an architecture the file's state is still what the user hears first: asking for the
    # architecture, only to refuse the file on the next try, would cost them a round trip
    with pytest.raises(UserError, match="not a readable"):
        load_model(str(tmp_path / "cut.pth"))
    result = run_cli("extract", tmp_path / "cut.safetensors", "--arch", "test_resnet", "--anchors", "noise:2:0")
    assert result.returncode == 2 and "truncated" in result.stderr and "Traceback" not in result.stderr


def test_hub_name_offline_without_cache_fails_fast_naming_the_weights(tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    result = run_cli("extract", "resnet18.a1_in1k", "--anchors", "noise:2:0", env=env, timeout=120)
    assert result.returncode == 2
    assert "timm/resnet18.a1_in1k" in result.stderr and "offline" in result.stderr
    assert "Traceback" not in result.stderr


def lay_out_hf_cache(hf_home: Path, repo: str, module: torch.nn.Module, config: dict) -> None:
    """The Hugging Face cache layout: models--ORG--NAME/{refs/main, snapshots/<commit>/...}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    base = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    snapshot = base / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(commit)
    save_file(module.state_dict(), snapshot / "model.safetensors")
    (snapshot / "config.json").write_text(json.dumps(config))


def test_hub_models_load_from_a_real_local_cache(tmp_path):
    """timm's own Hub loading, offline, from a cache laid out here: names and hf-hub: ids."""
    module = make(num_classes=1000)
    pretrained = timm.models.get_pretrained_cfg("test_resnet.r160_in1k").to_dict()
    config = {"architecture": "test_resnet", "num_classes": 1000, "pretrained_cfg": pretrained}
    lay_out_hf_cache(tmp_path / "hf", "timm/test_resnet.r160_in1k", module, config)
    expected = load_model_from_module(module, pretrained)
    script = ("from modelgif_core import load_model\n"
              "for s in ['test_resnet.r160_in1k', 'hf-hub:timm/test_resnet.r160_in1k']:\n"
              "    h = load_model(s); print(h.fingerprint, h.input_cfg.input_size)\n")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=180)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines == [f"{expected} (3, 160, 160)"] * 2


def load_model_from_module(module, pretrained):
    from modelgif_core.engine.models import fingerprint

    return fingerprint(module, "test_resnet", InputConfig.from_pretrained_cfg(pretrained))


def test_hub_search_lists_the_architecture_named_first():
    """Searching the Hub for `resnet18` offers resnet18's own weights first, then resnet18d's, then names
    that merely contain it (`legacy_seresnet18`), each group in timm's order; a glob is timm's own list."""
    names = list_hub_models("resnet18")
    assert set(names) == set(timm.list_models("*resnet18*", pretrained=True))
    groups = [0 if n.split(".")[0] == "resnet18" else 1 if n.startswith("resnet18") else 2 for n in names]
    assert groups == sorted(groups) and groups[0] == 0 and {1, 2} <= set(groups)
    assert [n for n in names if n.startswith("resnet18")] == sorted(n for n in names if n.startswith("resnet18"))
    assert list_hub_models("*seresnet18*") == timm.list_models("*seresnet18*", pretrained=True)
    assert len(list_hub_models("")) == len(timm.list_models(pretrained=True))
