"""ModelGiF Explorer, the Streamlit app: navigation, the settings sidebar and the Home page.

Run it with `streamlit run app.py`. Pages live in app_pages/ (not `pages/`: Streamlit would run a file
there on its own, without this entry point, when a page URL is the first one a fresh server sees);
shared plumbing in app_pages/_ui.py.
"""

from __future__ import annotations

import threading

import numpy as np
import streamlit as st

from app_pages import _ui
from modelgif_core import figures, make_baseline, resolve_device, umap_cache_is_warm, warm_umap

st.set_page_config(page_title="ModelGiF Explorer", page_icon=":material/blur_on:", layout="wide")


@st.cache_resource(show_spinner=False)
def _warm_map_kernels() -> threading.Thread | None:
    """Once per server process, in the background: UMAP's kernels loaded from numba's disk cache, so the
    first Zoo map does not wait for them. Only from a filled cache: compiling them (~30 s, the store's
    first time) beside a first demo held the GIL against its extraction; the demo's own warm-up job,
    after its fields, fills the cache then."""
    if not umap_cache_is_warm():
        return None
    thread = threading.Thread(target=warm_umap, name="warm-umap", daemon=True)
    thread.start()
    return thread


_warm_map_kernels()


def home() -> None:
    """What ModelGiF is, where things run, and the one-click demo."""
    st.title("ModelGiF Explorer")
    st.markdown(
        "How *functionally* close are two trained image models? A **Model Gradient Field** "
        "(ModelGiF, Song et al., ICCV 2023) follows each model's input gradients along straight "
        "paths from a baseline image to a set of shared **anchor** images and accumulates them, "
        "like Integrated Gradients, at every step. Two models that compute the same function have "
        "the same field; the distance between fields, the mean of 1 − cosine over anchors and "
        "steps, shows fine-tuned, pruned or distilled copies close to their parent and "
        "independently trained models far away."
    )
    _path_strip()

    left, right = st.columns([3, 2])
    with left:
        st.subheader("Try it")
        st.markdown(
            "The demo builds a small zoo of digit classifiers (victims, their fine-tuned, pruned and "
            "distilled copies, and independent models) if it is not there yet, extracts their "
            "fields with the sidebar's settings in the background, and fills the workspace. Distances and "
            "Zoo map also train, on a click, the paper's task relatedness testbed: a zoo of ten digit tasks."
        )
        if st.button("Run the demo", type="primary", icon=":material/play_arrow:"):
            _ui.start_demo()
        # A page link from the first run on: its code then is in the browser before the demo's links
        # appear (the first page link of a session drew as an empty grey box until its code loaded).
        st.page_link("app_pages/models.py", label="Or pick your own models", icon=":material/view_list:")
        _demo_status()
    with right:
        st.subheader("Where it runs")
        device = resolve_device(_ui.field_config().device)
        st.markdown(f"**Device:** `{device}`  \n**Store:** `{_ui.worker().store.root}`")
        _live_status()


def _path_strip() -> None:
    """The path from the baseline to an anchor, as plain images: they draw with the page (a chart was a
    blank grey band until the browser had loaded its plotting code)."""
    anchors = _ui.current_anchors(quiet=True)
    if anchors is None:
        return
    cfg = _ui.field_config()
    baseline = make_baseline(cfg.baseline, anchors.images[:2], cfg.seed)[:1]  # [1, 3, H, W]
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    path = figures.path_images(anchors.images[0].numpy(), baseline[0].numpy(), alphas)  # [5, 3, H, W]
    scale = max(1, -(-128 // path.shape[-1]))  # nearest-neighbour up to >= 128 px: crisp digits
    tiles = [np.clip(p.transpose(1, 2, 0), 0, 1).repeat(scale, 0).repeat(scale, 1) for p in path]
    st.caption(f"The path from the {cfg.baseline} baseline (α = 0) to an anchor of {anchors.spec} (α = 1)")
    st.image(tiles, caption=[f"α = {a:.2f}" for a in alphas])


@st.fragment(run_every=2.0)
def _live_status() -> None:
    """Stored fields, their size and the worker's activity, re-read every 2 s (not the page run's view)."""
    status = _store_status(_ui.worker().store)
    if status:
        st.caption(status)
    st.caption(f"Background worker: {_ui.worker_activity() or 'idle.'}")


def _store_status(store) -> str:
    try:
        status = store.status()
    except Exception:  # status is a nicety; never break Home over it
        return ""
    return f"{status.get('fields', 0)} stored fields, {status.get('bytes', 0) / 2**20:.1f} MB."


def _demo_status() -> None:
    key = st.session_state.get("demo")
    if not key:
        return
    job = _ui.task_panel(key)
    if job is None or job.state != "done":
        return
    specs = job.result or []
    anchors = _ui.current_anchors(quiet=True)
    if anchors is None:
        return
    keys = [_ui.field_key(_ui.model(s), anchors, _ui.field_config()) for s in specs]
    ready = [s for s, k in zip(specs, keys, strict=True) if _ui.field_ready(k)]
    failed = {j.key: j for j in _ui.worker().jobs(keys) if j.state == "failed"}
    if len(ready) + len(failed) < len(keys):
        _ui.progress_panel(keys)
        return
    if failed:
        for job in failed.values():
            st.error(f"{job.label}: {job.error}")
        bad = {s for s, k in zip(specs, keys, strict=True) if k in failed}
        if bad & set(_ui.workspace()):
            _ui.set_workspace([s for s in _ui.workspace() if s not in bad])
        st.caption("Models whose field failed are left out of the workspace.")
    st.success(f"Demo ready: {len(ready)} zoo models with their fields. Explore the results:")
    links = st.container(horizontal=True)  # each link as wide as its label; they wrap on a narrow screen
    links.page_link("app_pages/distances.py", label="Distances", icon=":material/grid_on:")
    links.page_link("app_pages/zoo_map.py", label="Zoo map", icon=":material/scatter_plot:")
    links.page_link("app_pages/fields.py", label="Fields", icon=":material/gradient:")
    links.page_link("app_pages/triage.py", label="Triage", icon=":material/policy:")
    links.page_link("app_pages/unlearning.py", label="Unlearning", icon=":material/delete_sweep:")


home_page = st.Page(home, title="Home", icon=":material/home:", default=True)
_ui.HOME = home_page
nav = st.navigation([
    home_page,
    st.Page("app_pages/models.py", title="Models", icon=":material/view_list:"),
    st.Page("app_pages/distances.py", title="Distances", icon=":material/grid_on:"),
    st.Page("app_pages/zoo_map.py", title="Zoo map", icon=":material/scatter_plot:"),
    st.Page("app_pages/fields.py", title="Fields", icon=":material/gradient:"),
    st.Page("app_pages/triage.py", title="Triage", icon=":material/policy:"),
    st.Page("app_pages/unlearning.py", title="Unlearning", icon=":material/delete_sweep:"),
])
_ui.sidebar()
nav.run()
