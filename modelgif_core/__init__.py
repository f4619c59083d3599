"""ModelGiF Explorer's core: Model Gradient Fields (Song et al., ICCV 2023) for timm models.

The public API; the app, the CLI and the tests import from here only.

    from modelgif_core import load_model, load_anchors, FieldConfig, extract_field, field_distance
    m = load_model("zoo:victim-resnet")          # or a timm name, local-dir:PATH, a checkpoint file
    x = load_anchors("digits:64")
    phi = extract_field(m, x, FieldConfig(steps=50))   # [N, K, 3*H*W]
"""

from ._errors import UserError
from .distance import cluster_order, distance_matrix, field_distance, unit_field
from .fields import (
    BASELINES,
    METHODS,
    TARGETS,
    FieldConfig,
    cached_field,
    extract_field,
    make_baseline,
    quadrature,
    resolve_device,
)
from .models import (
    InputConfig,
    ModelHandle,
    hub_pretrained_cfg,
    list_hub_models,
    load_model,
    preprocess,
    save_model_dir,
)
from .triage import TriageReport, triage  # eager: binds the function over the submodule's name

__version__ = "0.1.0"

__all__ = [
    "BASELINES", "METHODS", "TARGETS", "FieldConfig", "InputConfig", "ModelHandle", "UserError",
    "cached_field", "cluster_order", "distance_matrix", "extract_field", "field_distance",
    "hub_pretrained_cfg", "list_hub_models", "load_model", "make_baseline", "preprocess",
    "quadrature", "resolve_device", "save_model_dir", "triage", "TriageReport", "unit_field", "__version__",
]


def __getattr__(name: str):
    """Lazy re-exports of modules that other people land (and that import heavier libraries)."""
    lazy = {
        "load_anchors": "anchors", "AnchorSet": "anchors",
        "FieldStore": "store", "StoredField": "store", "field_key": "store",
        "default_store_root": "store",
        "embed_distances": "embedding", "Embedding": "embedding",
        "build_zoo": "zoo", "ensure_zoo": "zoo", "list_zoo": "zoo", "zoo_root": "zoo",
        "get_worker": "worker", "Worker": "worker",
        "verify_unlearning": "unlearning",
        "last_relatedness_result": "relatedness", "zoos_truth_name": "relatedness",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(f".{lazy[name]}", __name__), name)
    raise AttributeError(f"module 'modelgif_core' has no attribute {name!r}")
