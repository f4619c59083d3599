"""Where the zoo's models live and what is built: folders in timm's `local-dir:` layout under the store root,
and the small zoo as shipped in the repository's `assets/` folder (trained by `zoo build`, checked by `zoo verify`).

A model is looked up in the store's built zoo first, then in the shipped assets (only a shipped folder whose
recipe key matches today's recipe counts, so a changed recipe is trained instead of read stale).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from ..engine.errors import UserError
from ..engine.store import default_store_root
from .recipes import FORGET_CLASS, SIZES, recipe_keys, recipes

ASSETS_ENV = "MODELGIF_ASSETS"  # overrides the shipped assets folder (the Docker image sets it)
SHIPPED_SIZES = ("small",)  # the zoo sizes the assets hold


def zoo_root(size: str = "small") -> Path:
    """Where the zoo of this size lives: <store root>/zoo-<size> ($MODELGIF_HOME is honoured)."""
    if size not in SIZES:
        raise UserError(f"Unknown zoo size {size!r}; choose one of {', '.join(SIZES)}.")
    return Path(default_store_root()) / f"zoo-{size}"


def assets_root() -> Path:
    """The shipped assets folder: $MODELGIF_ASSETS, else `assets/` at the top of the source tree."""
    env = os.environ.get(ASSETS_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "assets"


def shipped_zoo_root(size: str = "small") -> Path:
    """Where the assets hold the zoo of this size: <assets>/zoo-<size>."""
    if size not in SIZES:
        raise UserError(f"Unknown zoo size {size!r}; choose one of {', '.join(SIZES)}.")
    return assets_root() / f"zoo-{size}"


@functools.lru_cache(maxsize=4)
def _keys(size: str) -> dict[str, str]:
    return recipe_keys(size)


def shipped_model_dir(name: str, size: str = "small") -> Path | None:
    """The shipped folder of zoo model `name` if the assets hold it with today's recipe, else None."""
    if size not in SHIPPED_SIZES:
        return None
    folder = shipped_zoo_root(size) / name
    meta = read_meta(folder)
    if meta is None or meta.get("recipe_key") != _keys(size).get(name):
        return None
    return folder


def _model_folder(name: str, size: str) -> Path | None:
    """The store's built folder of `name` in the zoo of this size, else the shipped one, else None."""
    folder = zoo_root(size) / name
    if read_meta(folder) is not None:
        return folder
    return shipped_model_dir(name, size)


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
    and for the owner's unlearners the class they forgot. Without `root`: the store's zoo, the shipped
    assets for models the store has not built."""
    rows = []
    for r in recipes(size):
        folder = Path(root) / r.name if root is not None else _model_folder(r.name, size)
        meta = read_meta(folder) if folder is not None else None
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
    """Every model of the zoo is there (without `root`: in the store or in the shipped assets)."""
    if root is not None:
        return all(read_meta(Path(root) / r.name) is not None for r in recipes(size))
    return all(_model_folder(r.name, size) is not None for r in recipes(size))


def zoo_location(size: str = "small") -> Path:
    """Where the zoo of this size is read from: the store's folder, or the shipped assets when they hold
    every model and the store does not."""
    if not zoo_is_built(size, zoo_root(size)) and size in SHIPPED_SIZES \
            and all(shipped_model_dir(r.name, size) is not None for r in recipes(size)):
        return shipped_zoo_root(size)
    return zoo_root(size)


def zoo_model_dir(name: str, size: str | None = None) -> Path:
    """The folder of the built zoo model `name` (the small zoo first, then the full one)."""
    sizes = (size,) if size else SIZES
    for s in sizes:
        folder = zoo_root(s) / name
        if read_meta(folder) is not None:
            return folder
    for s in sizes:
        shipped = shipped_model_dir(name, s)
        if shipped is not None:
            return shipped
    known = {r.name for s in SIZES for r in recipes(s)}
    if name not in known:
        raise UserError(f"There is no zoo model {name!r}; `modelgif zoo list` shows the names.")
    need = "full" if name not in {r.name for r in recipes("small")} else "small"
    raise UserError(f"Zoo model {name!r} is not built yet; run `modelgif zoo build --size {need}`.")
