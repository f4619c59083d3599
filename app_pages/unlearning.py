"""Unlearning: has a claimed-unlearned model really forgotten a class of the original? A verdict."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app_pages import _ui
from modelgif_core import UnlearningReport, UserError, figures, list_zoo, unlearning_task

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

key = _ui.request_key("unlearning", original=original, claimed=claimed, forgotten_class=forgotten, anchors=anchors,
                      steps=steps, references=references)
if st.button("Verify", type="primary") and _ui.submit_task(
        key, f"unlearning check of {_label(claimed)}",
        unlearning_task(original, claimed, forgotten, anchors, int(steps), references or None)):
    st.session_state["unl_key"] = key

report = UnlearningReport.from_dict(_ui.task_result(key, asked="unl_key"))

st.subheader("Verdict")
left, mid, right = st.columns(3)
left.markdown(f"### :{VERDICT_BADGE.get(report.verdict, 'gray')}-badge[{report.verdict}]")
mid.metric("distance to the original", f"{report.distance:.4f}",
           help=f"threshold {report.threshold:.4f}: closer than this is not forgotten")
right.metric("share of the original's field retained", f"{report.retained:.2f}",
             help="1 - distance / mean reference distance: 1 for the original, 0 for an "
                  "independent model")
acc = report.accuracy_on_class
st.caption(f"Accuracy on the {report.n_anchors} anchors of class {report.forgotten_class}: "
           f"original {acc['original']:.0%}, claimed {acc['claimed']:.0%}.")
st.plotly_chart(
    figures.reference_distribution(
        [r["distance"] for r in report.references], [(_label(report.claimed), report.distance, report.verdict)],
        reference_names=[_label(r["model"]) for r in report.references], threshold=report.threshold,
        measured_from="the original",
        title=f"Distance from the original on class {report.forgotten_class}: the claimed model "
              "among independently trained ones"),
    key="unlearning_plot")
st.markdown(report.explanation())
d1, d2 = st.columns(2)
d1.download_button("Report (JSON)", _ui.json_bytes(report.to_dict()), "unlearning.json", "application/json")
d2.download_button("Report (Markdown)", report.to_markdown(), "unlearning.md", "text/markdown")
