"""Test helpers for the app's tests: a quick stand-in for the small zoo, and tiny models.

Training the real small zoo takes minutes on this CPU, so the app's tests write the same folders
(the zoo's own recipe names, roles, families and architectures, in timm's layout) with untrained
weights: derived models are their parent's weights plus a little noise, independent ones have
their own seed. ensure_zoo, list_zoo, load_model("zoo:...") and extraction all run for real on them.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import timm
import torch

from modelgif_core import InputConfig, save_model_dir
from modelgif_core.zoo import ARCHS, recipes, zoo_root


@contextlib.contextmanager
def store_at(home: Path):
    """MODELGIF_HOME set to `home` for one block: module-scoped fixtures cannot use conftest's
    per-test MODELGIF_HOME, so they set it only while they write their store."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELGIF_HOME", str(home))
        yield home


def quick_zoo_home(home: Path) -> Path:
    """A store directory holding the quick zoo, for module-scoped fixtures."""
    with store_at(home):
        write_quick_zoo()
    return home


def write_quick_zoo(size: str = "small") -> Path:
    """Write every recipe of the zoo under $MODELGIF_HOME with untrained weights; returns its root."""
    root = zoo_root(size)
    modules: dict[str, torch.nn.Module] = {}
    for i, r in enumerate(recipes(size)):
        arch, args, input_cfg = ARCHS[r.arch]
        classes = 2 if r.attack == "transfer" else 10
        torch.manual_seed(1000 + i)
        module = timm.create_model(arch, num_classes=classes, **args)
        parent = modules.get(r.parent or "")
        if parent is not None:
            state = {k: v.clone() for k, v in parent.state_dict().items()}
            for k, v in state.items():
                if v.is_floating_point() and v.shape == module.state_dict()[k].shape:
                    state[k] = v + 0.02 * v.std().nan_to_num(0.0) * torch.randn_like(v)
            module.load_state_dict({k: v for k, v in state.items()
                                    if v.shape == module.state_dict()[k].shape}, strict=False)
        modules[r.name] = module
        extra = {"zoo": True, "name": r.name, "role": r.role, "family": r.family, "attack": r.attack,
                 "variant": r.variant, "parent": r.parent, "seed": r.seed, "data": r.data,
                 "labels": "parity" if classes == 2 else "digits", "test_accuracy": 0.1}
        save_model_dir(module, root / r.name, arch=arch, num_classes=classes, input_cfg=input_cfg,
                       model_args=args, extra=extra)
    return root


def write_tiny_model(folder: Path, seed: int, classes: int = 10) -> str:
    """A random test_resnet for 32x32 digits as a local-dir folder; returns its spec."""
    torch.manual_seed(seed)
    module = timm.create_model("test_resnet", num_classes=classes)
    cfg = InputConfig(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    save_model_dir(module, folder, arch="test_resnet", num_classes=classes, input_cfg=cfg,
                   extra={"name": folder.name, "family": f"fam{seed % 2}", "role": "test"})
    return f"local-dir:{folder}"
