"""Zoo map: a 2-D embedding (UMAP) of the models, from their field distances or, for big zoos, signatures."""

from __future__ import annotations

import streamlit as st

from app_pages import _bigzoo, _ui
from modelgif_core import figures

st.title("Zoo map")
st.caption("Each point is a model; nearby points have similar gradient fields. The layout comes from "
           "UMAP (on the precomputed field distances, or on the models' signatures for all stored models), so "
           "only neighbourhoods are meaningful, not axes.")
_ui.task_zoo_section("map")


def _edges(ready: _ui.Ready) -> list[tuple[int, int]] | None:
    """Index pairs (parent -> child where the direction is known) of the workspace's family graph; None
    while it runs."""
    graph = _ui.family_graph_job(ready)
    if graph is None:
        return None
    index = {m.spec: i for i, m in enumerate(ready.models)}
    pairs = [(e["parent"], e["child"]) if e["parent"] else (e["a"], e["b"]) for e in graph["edges"]]
    st.caption(f"{len(pairs)} family edges; each points parent → child where weight kurtosis tells them apart "
               "(same architecture), else the direction is unknown. Distances lists them by family.")
    return [(index[a], index[b]) for a, b in pairs if a in index and b in index]


source = _bigzoo.pick_source("map")
if source is None:
    ready = _ui.require_fields(min_models=2, what="The map")
    if len(ready.keys) > _bigzoo.BIG_ZOO_MODELS:  # UMAP on signatures, not on an M x M matrix
        source = _bigzoo.workspace_source(ready)
if source is None:
    root = _ui.store_root()
    coords, method, note = _ui.embedding(root, tuple(ready.keys))
    if note:
        st.info(note + (" Add models on the Models page for a real map." if len(ready.models) < 4 else ""))
    details = [_ui.model_details(m) for m in ready.models]
    names = figures.unique_labels([_ui.model_label(m) for m in ready.models])
    title = f"{len(names)} models · {method}"
else:
    root = _ui.store_root()
    rows, _, _ = _bigzoo.load(root, source)
    if len(rows) < 2:
        st.info("The map needs at least 2 models in the signature set.")
        st.stop()
    coords, note = _bigzoo.embedding(root, source.ident, source.version)
    if note:
        st.info(note)
    details = _bigzoo.row_details(rows)
    names = _bigzoo.row_names(rows)
    if not _bigzoo.has_family(rows):  # stored fields know no family: colour by cluster of signatures
        b = _bigzoo.blocks(root, source.ident, source.version, "cluster")
        for d, label in zip(details, b["labels"], strict=True):
            d["cluster"] = b["names"][label]
    title = f"{len(names):,} models · UMAP on signatures (cosine)"

options = [k for k in ("family", "role", "arch", "cluster") if any(d.get(k) for d in details)] or ["family"]
color_by = st.segmented_control("Colour by", options, default=options[0], key="map_color") or options[0]
left, right = st.columns([3, 1])
with left:
    query = st.text_input("Search", key="map_search", placeholder="name, family, role…",
                          help="Rings the matching models and zooms to them.")
with right:
    show_edges = st.toggle("Family edges", key="map_edges", disabled=source is not None,
                           help="Parent → child links of the family graph (pairwise triage of the workspace's "
                                "models)." if source is None else "The family graph needs the models' fields: "
                                "pick the workspace.")
edges = _edges(ready) if show_edges and source is None else None
groups = [str(d.get(color_by) or "unknown") for d in details]
hits = figures.search_matches(query, names, details)
if query.strip():
    st.caption(f"{len(hits):,} of {len(names):,} models match “{query.strip()}”." if len(hits)
               else f"No model matches “{query.strip()}”.")
if source is None and not len(hits) and not show_edges:  # a small zoo as before: one SVG point per model
    hover = [{k: v for k, v in d.items() if k != color_by} for d in details]
    fig = figures.embedding_scatter(coords, names, groups, details=hover, color_label=color_by, title=title)
else:
    fig = figures.signature_map(coords, names, groups, details=details, color_label=color_by, title=title,
                                highlight=hits, edges=edges if show_edges else None)
st.plotly_chart(fig, key="zoo_map")
