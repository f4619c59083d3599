"""Fields: one anchor, two models: their gradient maps along the path and how similar they are."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app_pages import _ui
from modelgif_core import figures, quadrature

# How many path steps the small multiples show (evenly spaced, always including the last).
SHOWN_STEPS = 8
GALLERY = 32


@st.cache_data(show_spinner=False, max_entries=64)
def _curves(root: str, key_a: str, key_b: str) -> np.ndarray:
    """Cosine per (anchor, step) [N, K] between two stored fields."""
    a, b = _ui.stored_field(root, key_a), _ui.stored_field(root, key_b)
    return figures.stepwise_cosine(a.unit.numpy(), b.unit.numpy())


def _rows(root: str, key: str, anchor: int) -> np.ndarray:
    """Phi_ik for one anchor [K, D] (unit vectors times norms) from the store."""
    f = _ui.stored_field(root, key)
    return f.unit[anchor].float().numpy() * f.norm[anchor].float().numpy()[:, None]


st.title("Fields")
st.markdown(
    "Each column is a point on the straight path from the baseline (α = 0) to the anchor (α = 1). "
    "A map shows the model's **accumulated gradient** Φ up to that point, summed over colour "
    "channels: red pixels push the model's chosen output up, blue ones down. At α = 1 the map is "
    "the Integrated Gradients attribution of the anchor. Two models compute the same function "
    "exactly when these maps agree at every step, for every anchor; the curve below shows their "
    "cosine similarity step by step."
)
ready = _ui.require_fields(min_models=2, what="Comparing fields")
root = _ui.store_root()
names = figures.unique_labels([_ui.model_label(m) for m in ready.models])
images = ready.anchors.images  # [N, 3, H, W]
n = images.shape[0]

st.subheader("Anchor")
shown = min(n, GALLERY)
st.image([images[i].permute(1, 2, 0).numpy() for i in range(shown)], width=56,
         caption=[str(i) for i in range(shown)], clamp=True)
if n > shown:
    st.caption(f"The first {shown} of the {n} anchors; any of them can be picked by its index.")
anchor = st.number_input(f"Anchor index (0–{n - 1})", 0, n - 1, 0, key="anchor_index")

c1, c2 = st.columns(2)
a_name = c1.selectbox("Model A", names, index=0, key="field_a")
b_name = c2.selectbox("Model B", names, index=1 if len(names) > 1 else 0, key="field_b")
ia, ib = names.index(a_name), names.index(b_name)
key_a, key_b = ready.keys[ia], ready.keys[ib]

alphas, _weights = quadrature(ready.cfg.method, ready.cfg.steps)
k = len(alphas)
steps = sorted({int(round(v)) for v in np.linspace(0, k - 1, min(SHOWN_STEPS, k))})
shape = tuple(images.shape[1:])
maps = np.stack([figures.channel_maps(_rows(root, key, anchor)[steps], shape)
                 for key in (key_a, key_b)])  # [2, S, H, W]
st.plotly_chart(
    figures.gradient_maps(maps, [alphas[s] for s in steps], row_titles=["A", "B"],
                          title=f"Accumulated gradients Φ along the path, anchor {anchor}"),
    key="gradient_maps",
)

left, right = st.columns([2, 3])
with left:
    which = st.radio("Attribution of", ["A", "B"], horizontal=True, key="overlay_model")
    key = key_a if which == "A" else key_b
    final = figures.channel_maps(_rows(root, key, anchor)[-1:], shape)[0]  # [H, W]
    st.plotly_chart(
        figures.attribution_overlay(images[anchor].numpy(), final,
                                    title=f"{a_name if which == 'A' else b_name}: attribution"),
        key="overlay",
    )
with right:
    cos = _curves(root, key_a, key_b)  # [N, K]
    st.plotly_chart(
        figures.similarity_curve(alphas, cos.mean(axis=0), anchor_cos=cos[anchor],
                                 anchor_label=f"anchor {anchor}",
                                 title=f"Cosine similarity of A and B along the path "
                                       f"(distance {float(np.mean(1 - cos)):.4f})"),
        key="similarity_curve",
    )
st.caption("The field distance is the mean over all anchors and steps of 1 − this cosine. Early "
           "steps (small α) see a nearly black image, where models often disagree most; copies of "
           "a model stay close along the whole path.")
