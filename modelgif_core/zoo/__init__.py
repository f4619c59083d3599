"""The built-in model zoo: small timm models trained here on sklearn's digits, as `local-dir:` folders.

recipes (what the zoo holds) -> training (how each model is made) -> build (training the missing ones)
-> paths (where they live). Importing the package registers the `zoo:NAME` spec scheme with the engine.
"""

from ..engine.registry import register_scheme
from .build import (
    ManifestMismatch,
    build_zoo,
    check_manifest,
    default_workers,
    ensure_zoo,
    quick_verify_names,
    verify_message,
    verify_zoo,
    write_manifest,
)
from .paths import (
    assets_root,
    list_zoo,
    shipped_model_dir,
    shipped_zoo_root,
    zoo_is_built,
    zoo_location,
    zoo_model_dir,
    zoo_root,
)
from .recipes import ARCHS, ATTACK_KINDS, FORGET_CLASS, ROLES, SIZES, UNLEARNING, VICTIMS, Recipe, recipe_keys, recipes

register_scheme("zoo", lambda name: f"local-dir:{zoo_model_dir(name)}")

__all__ = [
    "ARCHS", "ATTACK_KINDS", "FORGET_CLASS", "ROLES", "SIZES", "UNLEARNING", "VICTIMS", "ManifestMismatch", "Recipe",
    "assets_root", "build_zoo", "check_manifest", "default_workers", "ensure_zoo", "list_zoo", "quick_verify_names",
    "recipe_keys", "recipes", "shipped_model_dir", "shipped_zoo_root", "verify_message", "verify_zoo", "write_manifest",
    "zoo_is_built", "zoo_location", "zoo_model_dir", "zoo_root",
]
