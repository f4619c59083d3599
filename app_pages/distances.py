"""Distances: the clustered heatmap of the workspace's field distances, neighbours, downloads."""

from __future__ import annotations

import io

import numpy as np
import streamlit as st

from app_pages import _ui
from modelgif_core import figures

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
    buf = io.StringIO()
    buf.write("," + ",".join(names) + "\n")
    for name, row in zip(names, dist, strict=True):
        buf.write(name + "," + ",".join(f"{v:.8f}" for v in row) + "\n")
    stem = _ui.download_name("distances", ready.keys)
    st.download_button("Distances (CSV)", buf.getvalue(), f"{stem}.csv", "text/csv")
    payload = {"models": [m.spec for m in ready.models], "names": names,
               "matrix": dist.round(8).tolist(), "anchors": ready.anchors.spec,
               "anchors_sha256": ready.anchors.sha256, "config": ready.cfg.to_dict()}
    st.download_button("Distances (JSON)", _ui.json_bytes(payload), f"{stem}.json",
                       "application/json")
    st.caption("The JSON has the same shape as `modelgif distance --format json`. The heatmap's "
               "camera icon saves it as PNG.")
