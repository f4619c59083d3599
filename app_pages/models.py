"""Models: the workspace, and three ways to fill it (built-in zoo, timm Hub, checkpoint upload)."""

from __future__ import annotations

import hashlib
import os
import shutil

import streamlit as st

from app_pages import _ui
from modelgif_core import (
    UserError,
    hub_pretrained_cfg,
    list_hub_models,
    list_zoo,
    load_model,
    save_model_dir,
    zoo_task,
)

ZOO_TASK = "zoo:small"
UPLOAD_TYPES = ["safetensors", "pt", "pth", "bin"]


@st.cache_data(show_spinner=False)
def _hub_names(pattern: str) -> list[str]:
    return list_hub_models(pattern)


@st.cache_data(show_spinner=False)
def _architectures() -> list[str]:
    return sorted({name.split(".")[0] for name in list_hub_models("")})


@st.cache_data(show_spinner=False)
def _default_input(arch: str) -> tuple[str, str, str]:
    try:
        cfg = hub_pretrained_cfg(arch)
    except (UserError, ValueError):
        cfg = {}
    size = cfg.get("input_size") or (3, 224, 224)
    mean = cfg.get("mean") or (0.485, 0.456, 0.406)
    std = cfg.get("std") or (0.229, 0.224, 0.225)
    return (",".join(str(int(v)) for v in size), ",".join(f"{v:g}" for v in mean),
            ",".join(f"{v:g}" for v in std))


def _numbers(text: str, what: str, cast: type = float) -> tuple:
    try:
        values = tuple(cast(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise UserError(f"{what} must be numbers separated by commas, like 0.5,0.5,0.5.") from None
    if not values:
        raise UserError(f"{what} is empty; give numbers separated by commas.")
    return values


def _workspace_section() -> None:
    specs = _ui.workspace()
    st.subheader(f"Workspace ({len(specs)} model{'' if len(specs) == 1 else 's'})")
    if not specs:
        st.info("The workspace is empty. Add models below, or run the demo on Home.")
        return
    rows = []
    for spec in specs:
        m = _ui.try_model(spec)
        if m is None:
            continue
        d = _ui.model_details(m)
        rows.append({"name": _ui.model_label(m), "arch": m.arch, "family": d["family"],
                     "role": d["role"], "classes": m.num_classes,
                     "input": "×".join(str(v) for v in m.input_cfg.input_size),
                     "fingerprint": m.fingerprint[:12], "spec": spec})
    st.dataframe(rows, hide_index=True)
    c1, c2 = st.columns([3, 1])
    drop = c1.multiselect("Remove from the workspace", specs, key="ws_remove",
                          format_func=lambda s: s.removeprefix("zoo:"))
    if c1.button("Remove", disabled=not drop):
        _ui.set_workspace([s for s in specs if s not in drop])
        st.rerun()
    if c2.button("Clear workspace"):
        _ui.set_workspace([])
        st.rerun()


def _zoo_tab() -> None:
    st.markdown("Small timm models trained here on scikit-learn's digits: two victims, their "
                "derivatives (fine-tuned, pruned, distilled, ...) and independent models.")
    rows = list_zoo("small")
    if not rows:
        job = _ui.task_panel(ZOO_TASK)
        if job is None or job.state == "failed":
            st.info("The small zoo is not built yet (about 2 minutes on a laptop CPU).")
            if st.button("Build the small zoo", type="primary"):
                if _ui.submit_task(ZOO_TASK, "building the small zoo", zoo_task("small")):
                    st.rerun()
        return
    table = [{"name": r["name"], "role": r["role"], "family": r["family"], "attack": r["attack"],
              "arch": r["arch"], "test accuracy": r["test_accuracy"]} for r in rows]
    st.dataframe(table, hide_index=True,
                 column_config={"test accuracy": st.column_config.NumberColumn(format="%.3f")})
    names = [r["name"] for r in rows]
    chosen = st.multiselect("Zoo models to add", names, key="zoo_pick")
    c1, c2 = st.columns(2)
    if c1.button("Add selected", disabled=not chosen):
        _ui.add_to_workspace([f"zoo:{n}" for n in chosen])
        st.rerun()
    if c2.button("Add the whole zoo"):
        _ui.add_to_workspace([f"zoo:{n}" for n in names])
        st.rerun()


def _hub_tab() -> None:
    st.markdown("Pretrained models from timm on the Hugging Face Hub. Weights come from the local "
                "Hugging Face cache, or are downloaded when this machine is online.")
    pattern = st.text_input("Search timm models", key="hub_search", placeholder="resnet18")
    names = _hub_names(pattern.strip())
    st.caption(f"{len(names):,} pretrained models match.")
    if not names:
        return
    name = st.selectbox("Model", names[:500], key="hub_pick")
    try:
        cfg = hub_pretrained_cfg(name)
    except UserError as err:
        st.error(str(err))
        return
    shown = {k: cfg.get(k) for k in ("hf_hub_id", "input_size", "mean", "std", "interpolation",
                                      "num_classes", "license") if cfg.get(k) is not None}
    st.json(shown, expanded=False)
    if st.button("Add to workspace", key="hub_add", type="primary"):
        try:
            with st.spinner(f"Loading {name}…"):
                _ui.model(name)
        except UserError as err:
            st.error(str(err))
            return
        _ui.add_to_workspace([name])
        st.success(f"Added {name}.")


def _upload_tab() -> None:
    st.markdown("A `.safetensors` file (preferred) or a `.pt/.pth/.bin` state dict. Pickles are "
                "opened with `weights_only=True` only: anything else is refused.")
    upload = st.file_uploader("Checkpoint", type=UPLOAD_TYPES, key="ckpt")
    archs = _architectures()
    arch = st.selectbox("timm architecture", archs, index=archs.index("resnet18")
                        if "resnet18" in archs else 0, key="ckpt_arch", accept_new_options=True)
    size, mean, std = _default_input(arch)
    c1, c2, c3, c4 = st.columns(4)
    num_classes = c1.number_input("Classes (0: from the head)", min_value=0, value=0, step=1,
                                  key="ckpt_classes")
    size_text = c2.text_input("Input size C,H,W", value=size, key=f"ckpt_size_{arch}")
    mean_text = c3.text_input("Mean", value=mean, key=f"ckpt_mean_{arch}")
    std_text = c4.text_input("Std", value=std, key=f"ckpt_std_{arch}")
    if upload is None:
        return
    if st.button("Load checkpoint", type="primary", key="ckpt_load"):
        try:
            spec = _save_upload(upload.name, upload.getvalue(), arch, int(num_classes),
                                _numbers(size_text, "Input size", int), _numbers(mean_text, "Mean"),
                                _numbers(std_text, "Std"))
        except UserError as err:
            st.error(str(err))
            return
        _ui.add_to_workspace([spec])
        st.success(f"Added {upload.name} ({arch}).")


def _save_upload(filename: str, data: bytes, arch: str, num_classes: int, size: tuple,
                 mean: tuple, std: tuple) -> str:
    """Load an uploaded checkpoint with the core and keep it as a local-dir folder in the store."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    tmp = os.path.join(_ui.upload_dir(), f".incoming-{digest}")
    os.makedirs(tmp, exist_ok=True)
    path = os.path.join(tmp, os.path.basename(filename) or "checkpoint.safetensors")
    try:
        with open(path, "wb") as f:
            f.write(data)
        handle = load_model(path, arch=arch, num_classes=num_classes or None, input_size=size,
                            mean=mean, std=std)
        folder = os.path.join(_ui.upload_dir(), handle.fingerprint[:16])
        stem = os.path.splitext(os.path.basename(filename))[0]
        save_model_dir(handle.module, folder, arch=handle.arch, num_classes=handle.num_classes,
                       input_cfg=handle.input_cfg,
                       extra={"name": stem, "source": filename, "role": "uploaded",
                              "family": "uploaded"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return f"local-dir:{folder}"


st.title("Models")
# The workspace is drawn last, into a box kept above the tabs: a model added in a tab shows in its
# table in the same run, and the tabs keep their place (and the selected tab) whatever the table holds.
workspace_box = st.container()
st.divider()
zoo, hub, upload = st.tabs(["Built-in zoo", "timm Hub", "Upload a checkpoint"])
with zoo:
    _zoo_tab()
with hub:
    _hub_tab()
with upload:
    _upload_tab()
with workspace_box:
    _workspace_section()
with st.expander("Closest stored models"):
    _ui.closest_models_panel(_ui.workspace(), key="models_nearest")
