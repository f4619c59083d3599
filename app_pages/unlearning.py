"""Unlearning: has a claimed-unlearned model really forgotten a class of the original? A verdict."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import streamlit as st

from modelgif_core import FieldConfig, UserError, figures, list_zoo, verify_unlearning

VERDICT_BADGE = {"forgotten": "green", "not forgotten": "red"}
STEP_CHOICES = (8, 16, 25, 32, 50)
EXAMPLE_LABELS = {"relabel": "fine-tuned with the class relabelled", "ascent": "gradient ascent on the class",
                  "exact": "retrained without the class"}


def _zoo_rows() -> list[dict[str, Any]]:
    try:
        return list_zoo("small")
    except (UserError, OSError, ValueError):
        return []


def _zoo_specs(zoo_rows: list[dict[str, Any]]) -> list[str]:
    return [f"zoo:{r['name']}" for r in zoo_rows if r.get("num_classes") == 10]


def _use_example(row: dict[str, Any]) -> None:
    st.session_state.update(unl_original=f"zoo:{row['parent']}", unl_claimed=f"zoo:{row['name']}",
                            unl_class=row["forgotten_class"])


def _candidates(zoo_specs: list[str]) -> list[str]:
    specs = [str(s) for s in st.session_state.get("workspace", [])] + zoo_specs
    return list(dict.fromkeys(specs))


def _label(spec: str) -> str:
    return spec.removeprefix("zoo:")


def _markdown(r: dict[str, Any]) -> str:
    lines = [f"# Unlearning verification: class {r['forgotten_class']}", "",
             f"- original: {r['original']}", f"- claimed: {r['claimed']}",
             f"- verdict: **{r['verdict']}**", f"- distance: {r['distance']:.5f} "
             f"(threshold {r['threshold']:.5f}, retained {r['retained']:.3f})",
             f"- anchors: {r['anchors']} ({r['n_anchors']})", "", r["explanation"], "",
             "| reference | distance to the original |", "|---|---|"]
    lines += [f"| {ref['model']} | {ref['distance']:.5f} |" for ref in r["references"]]
    return "\n".join(lines) + "\n"


st.title("Unlearning")
st.markdown(
    "Someone claims a model has **forgotten** one class of an original model. ModelGiF compares "
    "the two models' gradient fields on images of that class (target: the class's logit) and "
    "places the distance among the distances from the original to models trained "
    "**independently** of it. A model fine-tuned or pushed by gradient ascent until it fails the "
    "class usually keeps the original's field (*not forgotten*); a model retrained without the "
    "class lies as far away as an independent one (*forgotten*).")

zoo_rows = _zoo_rows()
zoo_specs = _zoo_specs(zoo_rows)
examples = sorted((r for r in zoo_rows if r.get("forgotten_class") is not None),
                  key=lambda r: list(EXAMPLE_LABELS).index(r["variant"]))
if examples:
    st.caption(f"Examples from the built-in zoo: its owner's unlearners of {examples[0]['parent']}, "
               f"class {examples[0]['forgotten_class']} (pick one, then Verify).")
    for col, row in zip(st.columns(len(examples)), examples, strict=True):
        col.button(EXAMPLE_LABELS[row["variant"]], key=f"unl_example_{row['name']}",
                   on_click=_use_example, args=(row,), width="stretch")

candidates = _candidates(zoo_specs)
original = st.selectbox("Original model", candidates, index=None, accept_new_options=True,
                        format_func=_label, key="unl_original",
                        placeholder="a zoo model, a workspace model, or type local-dir:PATH")
claimed = st.selectbox("Claimed-unlearned model", [c for c in candidates if c != original],
                       index=None, accept_new_options=True, format_func=_label, key="unl_claimed",
                       placeholder="the model that should have forgotten the class")
c1, c2, c3 = st.columns(3)
forgotten = int(c1.number_input("Forgotten class", min_value=0, max_value=999, step=1,
                                 value=9, key="unl_class"))
anchors = c2.text_input("Anchors (the class's images are used)", value="digits:500",
                        key="unl_anchors")
steps = c3.select_slider("Steps K", STEP_CHOICES, value=25, key="unl_steps")
st.caption("This check sets its own fields: the forgotten class's logit along Gauss-Legendre paths from "
           "black, on the anchors and steps above; the sidebar's field settings do not apply here.")
refs_text = st.text_area(
    "Independent reference models (one spec per line; optional for digits models)", height=90,
    key="unl_refs", help="Models trained without the original, on data that includes the class. "
    "Left empty for a 10-class digits original, the built-in zoo's calibration models are used.")
references = [line.strip() for line in refs_text.splitlines() if line.strip()]

if not original or not claimed:
    st.info("Pick the original model and the claimed-unlearned one, or an example above." if examples else
            "Pick the original model and the claimed-unlearned one (zoo models appear once the "
            "zoo is built: run the demo on Home, or type a spec such as local-dir:PATH).")
    st.stop()

if not references and not zoo_specs:
    st.info("Give at least three reference models trained independently of the original, one "
            "per line, or build the zoo (the demo on Home) to use its independent models.")
    st.stop()

request = json.dumps({"o": original, "c": claimed, "k": forgotten, "a": anchors, "s": steps,
                      "r": references})
key = "unl:" + hashlib.sha256(request.encode()).hexdigest()[:16]
if st.button("Verify", type="primary"):
    bar = st.progress(0.0, text="Computing fields…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(1, total), text=f"Fields: {done} of {total} models")

    try:
        cfg = FieldConfig(steps=int(steps), target="label")
        st.session_state[key] = verify_unlearning(original, claimed, forgotten, anchors=anchors,
                                                  references=references or None, cfg=cfg,
                                                  progress=progress)
    except (UserError, ValueError, OSError) as err:
        bar.empty()
        st.error(str(err))
        st.stop()
    bar.empty()

result = st.session_state.get(key)
if result is None:
    st.stop()

verdict = result["verdict"]
st.subheader("Verdict")
left, mid, right = st.columns(3)
left.markdown(f"### :{VERDICT_BADGE.get(verdict, 'gray')}-badge[{verdict}]")
mid.metric("distance to the original", f"{result['distance']:.4f}",
           help=f"threshold {result['threshold']:.4f}: closer than this is not forgotten")
right.metric("share of the original's field retained", f"{result['retained']:.2f}",
             help="1 - distance / mean reference distance: 1 for the original, 0 for an "
                  "independent model")
acc = result["accuracy_on_class"]
st.caption(f"Accuracy on the {result['n_anchors']} anchors of class {result['forgotten_class']}: "
           f"original {acc['original']:.0%}, claimed {acc['claimed']:.0%}.")
ref_d = [r["distance"] for r in result["references"]]
ref_names = [_label(r["model"]) for r in result["references"]]
st.plotly_chart(
    figures.reference_distribution(
        ref_d, [(_label(result["claimed"]), result["distance"], verdict)],
        reference_names=ref_names, threshold=result["threshold"], measured_from="the original",
        title=f"Distance from the original on class {result['forgotten_class']}: the claimed model "
              "among independently trained ones"),
    key="unlearning_plot")
st.markdown(result["explanation"])
d1, d2 = st.columns(2)
d1.download_button("Report (JSON)", json.dumps(result, indent=2), "unlearning.json",
                   "application/json")
d2.download_button("Report (Markdown)", _markdown(result), "unlearning.md", "text/markdown")
