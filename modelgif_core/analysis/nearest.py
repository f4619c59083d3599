"""Nearest stored models (DESIGN §7): a signature shortlist, re-ranked with exact field distances.

One matrix product of the query's signature with every stored signature of the same (anchor set,
config) picks a shortlist; the stored fields (sketched or full) of the shortlist give the exact
distances, so the answer's order and numbers are those of `modelgif distance`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..engine.anchors import load_anchors
from ..engine.cache import cached_field, resolve_config
from ..engine.distance import distances_to
from ..engine.errors import UserError
from ..engine.fields import FieldConfig
from ..engine.models import ModelHandle, load_model
from ..engine.progress import Progress
from ..engine.sketch import SignatureIndex
from ..engine.store import FieldStore
from ..zoo import list_zoo

# The signature estimate is off by at most ~0.03 (measured: docs/SCALE.md); everything whose estimate
# is within twice that of the k-th best goes to the exact re-rank, so the exact top k is kept.
NEAREST_MARGIN = 0.06


def shortlist(query: np.ndarray, matrix: np.ndarray | SignatureIndex, k: int, margin: float = NEAREST_MARGIN,
              at_least: int | None = None) -> np.ndarray:
    """Row indices of `matrix` [M, S] (or of a SignatureIndex of it) worth an exact look for the top k
    to `query` [S]: the k best by signature and all within `margin` of the k-th, best first."""
    index = matrix if isinstance(matrix, SignatureIndex) else SignatureIndex(matrix)
    return index.shortlist(query, k, margin, at_least)[0]


def _zoo_meta() -> dict[str, dict[str, Any]]:
    meta: dict[str, dict[str, Any]] = {}
    for size in ("full", "small"):  # the small zoo's rows win for names in both
        for row in list_zoo(size):
            meta[row["name"]] = {"family": row.get("family"), "role": row.get("role"), "spec": row.get("spec")}
    return meta


def nearest_models(query: str | ModelHandle, among: str | Sequence[str] = "store", k: int = 10,
                   anchors: str | Any = "digits:64", cfg: FieldConfig | None = None,
                   store: FieldStore | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """The k stored models closest to `query` by field distance on `anchors` with `cfg`.

    among: "store" (every field stored with this anchor set and config), "zoo" (the built-in zoo's
    models, extracted if missing) or a list of model specs (extracted if missing).
    Returns {"query", "anchors", "config", "candidates", "shortlist", "results": [{"rank", "model",
    "distance", "signature_distance", "family", "role", "key"}, ...]}.
    """
    if not isinstance(k, int) or k < 1:
        raise UserError(f"k must be a positive integer; got {k!r}.")
    store = store if store is not None else FieldStore()
    anchor_set = load_anchors(anchors) if isinstance(anchors, str) else anchors
    cfg = resolve_config(cfg or FieldConfig(), anchor_set)
    handle = query if isinstance(query, ModelHandle) else load_model(query)
    q = cached_field(handle, anchor_set, cfg, store, progress)
    q_sig = store.signature(q.key)
    meta = _zoo_meta()
    if isinstance(among, str) and among in ("store", "zoo"):
        specs = [row["spec"] for row in list_zoo("small")] if among == "zoo" else []
        if among == "zoo" and not specs:
            raise UserError("The built-in zoo is not built yet; run `modelgif zoo build --size small`.")
    else:
        specs = [among] if isinstance(among, str) else list(among)
        if not specs:
            raise UserError("Give at least one model to compare with (--among MODEL ...), or 'store' or 'zoo'.")
    keys: set[str] | None = None
    if specs:  # make sure every candidate has its field (and so its signature) in the store
        keys = set()
        for spec in specs:
            keys.add(cached_field(load_model(spec), anchor_set, cfg, store, progress).key)
    rows, matrix = store.signatures(anchor_set.sha256, cfg.key())
    keep = [j for j, r in enumerate(rows)
            if r["key"] != q.key and r["fingerprint"] != handle.fingerprint and (keys is None or r["key"] in keys)]
    rows, matrix = [rows[j] for j in keep], matrix[keep]
    picked, est = SignatureIndex(matrix).shortlist(q_sig, k, NEAREST_MARGIN)
    est = dict(zip(picked.tolist(), est.tolist(), strict=True))
    fields = [store.get(rows[j]["key"]) for j in picked]
    present = [(j, f) for j, f in zip(picked, fields, strict=True) if f is not None]
    exact = distances_to(q, [f for _, f in present]) if present else np.zeros(0)
    order = np.argsort(exact, kind="stable")[:k]
    results = []
    for rank, o in enumerate(order, 1):
        j = present[o][0]
        name = rows[j]["model_name"]
        info = meta.get(name, {})
        results.append({"rank": rank, "model": name, "distance": round(float(exact[o]), 6),
                        "signature_distance": round(float(est[j]), 6), "family": info.get("family"),
                        "role": info.get("role"), "key": rows[j]["key"]})
    return {"query": handle.name, "anchors": getattr(anchor_set, "spec", ""), "config": cfg.to_dict(),
            "candidates": len(rows), "shortlist": len(present), "results": results}
