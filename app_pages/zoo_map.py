"""Zoo map: a 2-D embedding (UMAP) of the workspace's models on their field distances."""

from __future__ import annotations

import streamlit as st

from app_pages import _ui
from modelgif_core import figures

st.title("Zoo map")
st.caption("Each point is a model; nearby points have similar gradient fields. The layout comes from "
           "UMAP on the precomputed field distances, so only neighbourhoods are meaningful, not axes.")
_ui.task_zoo_section("map")
ready = _ui.require_fields(min_models=2, what="The map")
root = _ui.store_root()
coords, method, note = _ui.embedding(root, tuple(ready.keys))
if note:
    st.info(note + (" Add models on the Models page for a real map." if len(ready.models) < 4 else ""))
color_by = st.segmented_control("Colour by", ["family", "role", "arch"], default="family",
                                key="map_color") or "family"
details = [_ui.model_details(m) for m in ready.models]
groups = [str(d.get(color_by) or "unknown") for d in details]
names = figures.unique_labels([_ui.model_label(m) for m in ready.models])
hover = [{k: v for k, v in d.items() if k != color_by} for d in details]
fig = figures.embedding_scatter(coords, names, groups, details=hover, color_label=color_by,
                                title=f"{len(names)} models · {method}")
# Family edges (analysis.lineage.family_graph): pairwise triage of the map's models in the worker.
edges_key = _ui.request_key("lineage", models=list(ready.models))
if st.toggle("Family edges (pairwise triage; arrows where the parent can be told)", key="map_edges"):
    job = _ui.worker().job(edges_key)
    if job is None:
        from modelgif_core import family_graph

        models = list(ready.models)
        _ui.worker().submit_task(edges_key, f"family graph of {len(models)} models",
                                 lambda progress, w: family_graph(models, store=w.store, progress=progress).to_dict())
    job = _ui.task_panel(edges_key)
    if job is not None and job.result:
        from modelgif_core.analysis.lineage import Edge

        label = dict(zip(ready.models, names, strict=True))
        fig = figures.lineage_edges(fig, [Edge(**e) for e in job.result["edges"]],
                                    {label[m]: coords[i] for i, m in enumerate(ready.models)} |
                                    {m: coords[i] for i, m in enumerate(ready.models)})
        st.caption(f"{len(job.result['edges'])} family edges; arrows point from parent to child where weight "
                   "kurtosis tells them apart (same architecture), plain lines where the direction is unknown.")
st.plotly_chart(fig, key="zoo_map")
