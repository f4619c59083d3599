"""Where the zoo's models live and what is built: folders in timm's `local-dir:` layout under the store root."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..engine.errors import UserError
from ..engine.store import default_store_root
from .recipes import FORGET_CLASS, SIZES, recipes


def zoo_root(size: str = "small") -> Path:
    """Where the zoo of this size lives: <store root>/zoo-<size> ($MODELGIF_HOME is honoured)."""
    if size not in SIZES:
        raise UserError(f"Unknown zoo size {size!r}; choose one of {', '.join(SIZES)}.")
    return Path(default_store_root()) / f"zoo-{size}"


def read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not (folder / "model.safetensors").is_file():
        return None
    return cfg.get("modelgif") or {}


def list_zoo(size: str = "small", root: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per built model, in recipe order: name, spec, role, family, arch, attack, parent, ...,
    and for the owner's unlearners the class they forgot."""
    root = Path(root) if root is not None else zoo_root(size)
    rows = []
    for r in recipes(size):
        folder = root / r.name
        meta = read_meta(folder)
        if meta is None:
            continue
        cfg = json.loads((folder / "config.json").read_text())
        rows.append({
            "name": r.name, "spec": f"local-dir:{folder}", "role": meta.get("role", r.role),
            "family": meta.get("family", r.family), "arch": cfg.get("architecture"),
            "attack": meta.get("attack"), "variant": meta.get("variant", ""),
            "parent": meta.get("parent"), "data": meta.get("data"), "seed": meta.get("seed"),
            "num_classes": cfg.get("num_classes"), "labels": meta.get("labels"),
            "test_accuracy": meta.get("test_accuracy"),
            "forgotten_class": FORGET_CLASS if r.role == "unlearned" else None,
        })
    return rows


def zoo_is_built(size: str = "small", root: str | Path | None = None) -> bool:
    root = Path(root) if root is not None else zoo_root(size)
    return all(read_meta(root / r.name) is not None for r in recipes(size))


def zoo_model_dir(name: str, size: str | None = None) -> Path:
    """The folder of the built zoo model `name` (the small zoo first, then the full one)."""
    sizes = (size,) if size else SIZES
    for s in sizes:
        folder = zoo_root(s) / name
        if read_meta(folder) is not None:
            return folder
    known = {r.name for s in SIZES for r in recipes(s)}
    if name not in known:
        raise UserError(f"There is no zoo model {name!r}; `modelgif zoo list` shows the names.")
    need = "full" if name not in {r.name for r in recipes("small")} else "small"
    raise UserError(f"Zoo model {name!r} is not built yet; run `modelgif zoo build --size {need}`.")
