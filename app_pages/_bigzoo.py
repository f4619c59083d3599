"""Big zoos on the Zoo map and Distances pages: signature sets, their map and their blocks, cached.

A workspace of a few hundred models keeps the exact path (fields -> distance matrix -> heatmap / UMAP
on distances). Beyond that, or for every model stored for one config, the pages read one signature
matrix from the store (or a set file) and never form an M x M matrix: UMAP on the signatures for the
map, block means for the heatmap, an exact heatmap only inside one small block.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from app_pages import _ui
from modelgif_core import (
    LAYOUT_DIMS,
    FieldStore,
    block_distances,
    embed_signatures,
    fold_signatures,
    signature_blocks,
    signature_distances,
    signature_sets,
)

# Above this many models the Distances page shows blocks instead of one cell per pair of models.
BIG_ZOO_MODELS = 300
# A block with at most this many models opens as its own exact heatmap; a bigger one shows a sample.
DRILL_MAX = 150
WORKSPACE, STORED = "Workspace", "All stored models"


def sets(root: str) -> list[Any]:
    return signature_sets(FieldStore(root))


# Sets that are not in the store's listing (a big workspace), by ident: their loaders, for _load.
_EXTRA: dict[str, Any] = {}


@st.cache_resource(show_spinner="Loading signatures…", max_entries=4)
def _load(root: str, ident: str, version: str) -> tuple[list[dict], np.ndarray, np.ndarray]:
    found = {s.ident: s for s in sets(root)} | _EXTRA
    if ident not in found:
        raise KeyError(ident)
    rows, matrix = found[ident].load()
    folded = matrix
    if matrix.shape[1] > LAYOUT_DIMS and matrix.shape[1] % LAYOUT_DIMS == 0:
        folded = fold_signatures(matrix, LAYOUT_DIMS)
    return rows, matrix, folded


def load(root: str, info: Any) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """(rows, signatures [M, S], signatures folded for layout [M, <=LAYOUT_DIMS]) of a set, cached."""
    return _load(root, info.ident, info.version)


@st.cache_data(show_spinner="Computing the map from signatures…", max_entries=8)
def embedding(root: str, ident: str, version: str, seed: int = 0) -> tuple[np.ndarray, str]:
    _, _, folded = _load(root, ident, version)
    emb = embed_signatures(folded, seed=seed)
    return np.asarray(emb.coords), emb.note


@st.cache_data(show_spinner="Grouping models into blocks…", max_entries=8)
def blocks(root: str, ident: str, version: str, by: str) -> dict[str, Any]:
    """Blocks of a set by "family" (when its rows carry one) or "cluster", with their mean distances."""
    rows, matrix, folded = _load(root, ident, version)
    groups = [r.get("family") for r in rows] if by == "family" else None
    b = signature_blocks(folded, groups)
    dist, sizes = block_distances(matrix, b.labels) if matrix is not folded else (b.distance, b.sizes)
    return {"labels": b.labels, "names": b.names, "sizes": sizes, "distance": dist, "kind": b.kind,
            "note": b.note}


def workspace_source(ready: Any) -> Any:
    """The workspace's models as a signature set (their stored fields' signatures, their families and
    roles from the models themselves): for a workspace of more than BIG_ZOO_MODELS models."""
    from modelgif_core import SignatureSetInfo

    keys, models = list(ready.keys), list(ready.models)

    def load() -> tuple[list[dict], np.ndarray]:
        store = FieldStore(_ui.store_root())
        vectors = [store.signature(k) for k in keys]
        rows = [{"model_name": _ui.model_label(m), "key": k, "anchors": _ui.anchors_spec(),
                 "config": ready.cfg.to_dict(), **{c: (m.meta or {}).get(c) for c in ("family", "role")},
                 "arch": m.arch} for m, k, v in zip(models, keys, vectors, strict=True) if v is not None]
        return rows, np.stack([v for v in vectors if v is not None])

    ident = _ui.request_key("workspace", keys=keys)
    info = SignatureSetInfo(ident, f"workspace · {len(keys):,} models", len(keys), _ui.anchors_spec(), "",
                            ident, load)
    _EXTRA[ident] = info
    return info


def has_family(rows: list[dict]) -> bool:
    return any(r.get("family") for r in rows)


def pick_source(page: str) -> Any | None:
    """The set to show when the user chooses all stored models (or has no workspace); None for the
    workspace. Offers the choice only when the store holds signatures."""
    root = _ui.store_root()
    available = sets(root)
    if not available:
        return None
    # a session waiting on its demo (or a reload that joined it) wants the demo's models, even while the
    # first of its fields already sit in the store
    default = WORKSPACE if _ui.workspace() or st.session_state.get("demo") else STORED
    # keyed by the default: a choice made while the workspace was empty does not outlive it (a demo adopted later)
    choice = st.segmented_control("Models", [WORKSPACE, STORED], default=default, key=f"{page}_source_{default}",
                                  help="The workspace's models (exact distances), or every model whose "
                                       "signature is stored, whatever their number.") or default
    if choice == WORKSPACE:
        return None
    wanted = _ui.anchors_spec()
    labels = [s.label for s in available]
    first = next((i for i, s in enumerate(available) if s.anchors == wanted), 0)
    label = st.selectbox("Signature set", labels, index=first, key=f"{page}_set",
                         help="Stored fields of one anchor set and configuration are comparable; so are the "
                              "models of one imported set file.")
    return available[labels.index(label)]


def row_names(rows: list[dict]) -> list[str]:
    from modelgif_core import figures

    return figures.unique_labels([str(r.get("model_name") or r.get("key", "?")[:12]) for r in rows])


def row_details(rows: list[dict]) -> list[dict[str, Any]]:
    """What the hover shows of each model: family, role, arch and its config, where known."""
    out = []
    for r in rows:
        cfg = r.get("config") or {}
        config = (f"{r.get('anchors') or ''} K={cfg['steps']}" if isinstance(cfg, dict) and "steps" in cfg
                  else r.get("config_key") or r.get("anchors") or "")
        out.append({"family": r.get("family"), "role": r.get("role"), "arch": r.get("arch"),
                    "config": config.strip()})
    return out


def drill_distances(matrix: np.ndarray, members: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Members shown for one block (all, or a seeded sample of DRILL_MAX) and their signature distances."""
    if len(members) > DRILL_MAX:
        members = np.sort(np.random.default_rng(seed).choice(members, DRILL_MAX, replace=False))
    d = signature_distances(matrix[members])
    np.fill_diagonal(d, 0.0)
    return members, d
