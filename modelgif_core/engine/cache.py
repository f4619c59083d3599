"""Fields through the store: computed once (file lock) and read back by every process that asks."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch

from .device import resolve_device
from .errors import UserError
from .fields import FieldConfig, extract_field
from .models import ModelHandle
from .progress import Progress
from .store import FieldStore, StoredField, field_key


def resolve_config(cfg: FieldConfig, anchors: Any) -> FieldConfig:
    """Fix what the key must cover: the labels a 'label' target really uses."""
    if cfg.target == "label" and cfg.labels is None:
        labels = getattr(anchors, "labels", None)
        if labels is None:
            raise UserError("Target 'label' needs a labelled anchor set (digits, cutmix of digits) "
                            "or FieldConfig(labels=...).")
        cfg = replace(cfg, labels=tuple(int(v) for v in labels.tolist()))
    return cfg


def field_store_key(model: ModelHandle, anchors: Any, cfg: FieldConfig) -> str:
    """The store key `cached_field` writes for (model, anchors, cfg)."""
    return field_key(model.fingerprint, anchors.sha256, resolve_config(cfg, anchors).key())


def cached_field(model: ModelHandle, anchors: Any, cfg: FieldConfig | None = None, store: FieldStore | None = None,
                 progress: Progress | None = None) -> StoredField:
    """The field of `model` on `anchors` from the store, computed once (file lock) if missing.

    Returns a StoredField (.unit float16 [N, K, D], .norm [N, K], .field(), .manifest).
    """
    cfg = resolve_config(cfg or FieldConfig(), anchors)
    if not hasattr(anchors, "sha256"):
        raise UserError("cached_field needs an anchor set from load_anchors(...) (it carries a sha256).")
    store = store if store is not None else FieldStore()
    key = field_key(model.fingerprint, anchors.sha256, cfg.key())

    return store.get_or_compute(key, lambda: compute_field(model, anchors, cfg, progress))


def compute_field(model: ModelHandle, anchors: Any, cfg: FieldConfig,
                  progress: Progress | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """The field and the manifest `cached_field` stores with it (cfg as `resolve_config` returns it);
    for callers that compute in one process and store in another (service/cluster.py)."""
    import timm

    start = time.perf_counter()
    phi = extract_field(model, anchors, cfg, progress)
    manifest = {
        "model_name": model.name, "model_spec": model.spec, "arch": model.arch,
        "fingerprint": model.fingerprint, "anchors": getattr(anchors, "spec", ""),
        "anchors_sha256": anchors.sha256, "config": cfg.to_dict(), "config_key": cfg.key(),
        "versions": {"torch": torch.__version__, "timm": timm.__version__},
        "seconds": round(time.perf_counter() - start, 3),
        "device": str(resolve_device(cfg.device)),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return phi, manifest
