"""Distances: the clustered heatmap of the workspace's field distances, neighbours, downloads."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app_pages import _ui
from modelgif_core import DistanceTable, figures

st.title("Distances")
st.caption("Mean of 1 − cosine between the models' fields over all anchors and steps: 0 for the same "
           "function, up to 2. Rows and columns are ordered by hierarchical clustering.")
_ui.task_zoo_section("heatmap")
ready = _ui.require_fields(min_models=2, what="The distance matrix")
root = _ui.store_root()
dist = _ui.distances(root, tuple(ready.keys))
names = figures.unique_labels([_ui.model_label(m) for m in ready.models])

st.plotly_chart(figures.distance_heatmap(dist, names), key="heatmap")

left, right = st.columns([2, 3])
with left:
    st.subheader("Nearest neighbours")
    who = st.selectbox("Model", names, key="nn_model")
    i = names.index(who)
    order = [j for j in np.argsort(dist[i], kind="stable") if j != i]
    st.dataframe(
        {"model": [names[j] for j in order], "distance": [float(dist[i, j]) for j in order],
         "family": [ready.models[j].meta.get("family", "") for j in order],
         "role": [ready.models[j].meta.get("role", "") for j in order]},
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
