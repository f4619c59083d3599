"""Distances: the clustered heatmap of the workspace's field distances, neighbours, downloads; for big zoos
a block view (families or clusters of signatures) with drill-down into one block."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app_pages import _bigzoo, _ui
from modelgif_core import DistanceTable, family_table, figures


def _block_view(root: str, source, rows: list[dict], matrix: np.ndarray) -> None:
    """Mean distances between blocks of a big zoo, and one block's models as an exact heatmap."""
    by = "family" if _bigzoo.has_family(rows) else "cluster"
    if by == "family":
        by = st.segmented_control("Blocks", ["family", "cluster"], default="family", key="dist_blocks") or "family"
    b = _bigzoo.blocks(root, source.ident, source.version, by)
    if b["note"]:
        st.info(b["note"])
    st.caption(f"{len(rows):,} models in {len(b['names'])} {'families' if b['kind'] == 'family' else 'clusters'}: "
               "each cell is the mean distance between the models of two blocks (the diagonal: within one "
               "block), from the models' signatures (1 − ⟨s_A, s_B⟩ ≈ d(A, B)).")
    st.plotly_chart(figures.block_heatmap(b["distance"], b["names"], b["sizes"], kind=b["kind"]),
                    key="block_heatmap")
    names = _bigzoo.row_names(rows)
    order = np.argsort(-np.asarray(b["sizes"]), kind="stable")
    labels = [f"{b['names'][i]} ({int(b['sizes'][i]):,} models)" for i in order]
    pick = st.selectbox("Open a block", labels, key="dist_block", help="Its models' pairwise distances.")
    block = int(order[labels.index(pick)])
    members, d = _bigzoo.drill_distances(matrix, np.flatnonzero(b["labels"] == block))
    shown = "" if len(members) == b["sizes"][block] else f" (a sample of {len(members)})"
    st.plotly_chart(figures.distance_heatmap(d, [names[i] for i in members],
                                             title=f"{b['names'][block]}{shown}: signature distances"),
                    key="drill_heatmap")


st.title("Distances")
st.caption("Mean of 1 − cosine between the models' fields over all anchors and steps: 0 for the same "
           "function, up to 2. Rows and columns are ordered by hierarchical clustering.")
_ui.task_zoo_section("heatmap")
source = _bigzoo.pick_source("dist")
root = _ui.store_root()
if source is not None:
    rows, matrix, _ = _bigzoo.load(root, source)
    if len(rows) < 2:
        st.info("The distance view needs at least 2 models in the signature set.")
        st.stop()
    if len(rows) > _bigzoo.BIG_ZOO_MODELS:
        _block_view(root, source, rows, matrix)
    else:
        st.caption(f"{len(rows)} models: distances estimated from their signatures.")
        st.plotly_chart(figures.distance_heatmap(_bigzoo.drill_distances(matrix, np.arange(len(rows)))[1],
                                                 _bigzoo.row_names(rows)), key="heatmap")
    st.stop()

ready = _ui.require_fields(min_models=2, what="The distance matrix")
if len(ready.keys) > _bigzoo.BIG_ZOO_MODELS:  # no M x M matrix: blocks from the fields' signatures
    source = _bigzoo.workspace_source(ready)
    rows, matrix, _ = _bigzoo.load(root, source)
    _block_view(root, source, rows, matrix)
    st.stop()
dist = _ui.distances(root, tuple(ready.keys))
names = figures.unique_labels([_ui.model_label(m) for m in ready.models])

st.plotly_chart(figures.distance_heatmap(dist, names), key="heatmap")

st.subheader("Families")
family_of: dict[str, int] = {}
if st.toggle("Find families", key="dist_families",
             help="Pairwise triage of these models in the background worker (the family graph the Zoo map draws): "
                  "which models are derived from which, and the arrow's direction where weight-space evidence "
                  "tells it."):
    graph = _ui.family_graph_job(ready)
    if graph is not None:
        label = dict(zip([m.spec for m in ready.models], names, strict=True))
        table = [{**r, "from": label.get(r["from"], r["from"]), "to": label.get(r["to"], r["to"])}
                 for r in family_table(graph)]
        family_of = {label.get(m, m): i + 1 for i, f in enumerate(
            sorted(graph["families"], key=lambda f: (-len(f), sorted(f)))) for m in f}
        known = sum(r["arrow"] != "unknown" for r in table)
        n_fam = len(graph["families"])
        st.caption(f"{n_fam} famil{'y' if n_fam == 1 else 'ies'} among {len(names)} models ({len(table)} edges, "
                   f"{known} with a direction). Each edge links a model to the relative it is most clearly "
                   "derived from or into (pairwise triage against independent references, the strongest links "
                   "kept); the arrow is told only by weight kurtosis between checkpoints of one architecture, "
                   "a hint, not proof.")
        st.dataframe(table, hide_index=True, column_config={
            "score": st.column_config.NumberColumn(format="%.2f"),
            "p_value": st.column_config.NumberColumn(format="%.1e")})

left, right = st.columns([2, 3])
with left:
    st.subheader("Nearest neighbours")
    who = st.selectbox("Model", names, key="nn_model")
    i = names.index(who)
    order = [j for j in np.argsort(dist[i], kind="stable") if j != i]
    st.dataframe(
        {"model": [names[j] for j in order], "distance": [float(dist[i, j]) for j in order],
         "family": [ready.models[j].meta.get("family", "") for j in order],
         "role": [ready.models[j].meta.get("role", "") for j in order],
         **({"graph family": [family_of.get(names[j], 0) for j in order]} if family_of else {})},
        hide_index=True, column_config={"distance": st.column_config.NumberColumn(format="%.5f")},
    )
with right:
    st.subheader("Download")
    table = DistanceTable([m.spec for m in ready.models], dist, "cosine", ready.anchors.spec, ready.anchors.sha256,
                          ready.cfg.to_dict())
    stem = _ui.download_name("distances", ready.keys)
    st.download_button("Distances (CSV)", table.to_csv(), f"{stem}.csv", "text/csv")
    st.download_button("Distances (JSON)", table.to_json(), f"{stem}.json", "application/json")
    st.caption("Both files are what `modelgif distance MODEL... --format csv|json` prints for these models and "
               "settings, byte for byte. The heatmap's camera icon saves it as PNG.")
