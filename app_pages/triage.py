"""Triage: is a suspect model derived from the victim? Verdicts against independent references."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app_pages import _ui
from modelgif_core import TRIAGE_RULES, TriageReport, figures, list_zoo, triage_task

BADGE = {"derived": "red", "independent": "green", "inconclusive": "orange"}


def _candidates(zoo_rows: list[dict[str, Any]]) -> list[str]:
    specs = list(_ui.workspace())
    specs += [f"zoo:{r['name']}" for r in zoo_rows]
    return list(dict.fromkeys(specs))


def _zoo_suspects(victim: str, zoo_rows: list[dict[str, Any]]) -> tuple[list[str], int]:
    """For a zoo victim, the IP bench's suspects: its derivatives, then the independent test models;
    and how many of them are derived."""
    derived = [f"zoo:{r['name']}" for r in zoo_rows if r["role"] == "derived" and f"zoo:{r['parent']}" == victim]
    if not derived:
        return [], 0
    return derived + [f"zoo:{r['name']}" for r in zoo_rows if r["role"] == "independent-test"], len(derived)


def _not_derived(victim: str, specs: list[str], zoo_rows: list[dict[str, Any]]) -> list[str]:
    """The specs not derived from (nor an ancestor of) the victim as far as the store knows: the zoo's
    lineage (family) rules its own models out; other models carry no lineage and stay in."""
    family = {f"zoo:{r['name']}": r["family"] for r in zoo_rows}
    fam = family.get(victim)
    if fam is None or fam == "independent":
        return specs
    return [s for s in specs if family.get(s) != fam]


def _label(spec: str) -> str:
    return spec.removeprefix("zoo:")


def _p_text(p: float) -> str:
    """A Gaussian tail beyond about z = -38 underflows to 0.0: say how small it is, not "p = 0"."""
    return f"p = {p:.3g}" if p > 0 else "p < 1e-300"


st.title("Triage")
st.markdown("Is a suspect model a copy of yours, fine-tuned, pruned, distilled or extracted? "
            "Triage measures the field distance from your model (the victim) to each suspect and "
            "compares it with the distances from the victim to **independently trained** reference "
            "models: a suspect far closer than every reference is *derived*.")
zoo_rows = list_zoo("small")
candidates = _candidates(zoo_rows)
if len(candidates) < 2:
    st.info("Triage needs at least two models: add them on the Models page, or run the demo on Home "
            "to build the zoo.")
    st.stop()
victim = st.selectbox("Victim (your model)", candidates, format_func=_label, key="tri_victim")
with st.expander("Closest stored models to the victim"):
    _ui.closest_models_panel([victim], key="tri_nearest")
others = [c for c in candidates if c != victim]
example, n_derived = _zoo_suspects(victim, zoo_rows)
if example:
    st.button(f"Example: {_label(victim)}'s {n_derived} derivatives in the zoo and its "
              f"{len(example) - n_derived} independent test models as suspects", key="tri_example",
              on_click=lambda: st.session_state.update(tri_suspects=example))
suspects = st.multiselect("Suspects", others, format_func=_label, key="tri_suspects")
references = st.multiselect(
    "Independent reference models (optional)",
    _not_derived(victim, [c for c in others if c not in suspects], zoo_rows),
    format_func=_label, key="tri_refs",
    help="Stored models not derived from the victim as far as the store knows (the zoo's lineage). "
         "Leave empty for a digits victim: the zoo's independent models serve as references.")
rule = st.radio("Verdict rule", TRIAGE_RULES, horizontal=True, key="tri_rule",
                help="joint-arch-w-shift-ft10 (default): the components' joint null against references of the "
                     "suspect's architecture, led by the strongest single component, with the weight-space component "
                     "(same architecture) and where the suspect's own boundary lies (boundary-shift), the field's "
                     "tail Student-t; joint-arch-w-shift: every component Gaussian; "
                     "joint-arch-w: without the boundary shift; joint-arch: without either; "
                     "joint-arch-two(-ws, -w): two "
                     "components must agree (-ws: the weights as a stage of their own, -w: inside the "
                     "statistic); joint: against all references; minz: the Sidak-corrected minimum z.")
use_sidebar = st.toggle("Use the sidebar's anchors and field settings (else triage's tuned defaults)",
                        key="tri_sidebar")
if not suspects:
    st.info("Pick at least one suspect.")
    st.stop()

kwargs: dict[str, Any] = {}
if use_sidebar:
    kwargs = {"anchors": _ui.anchors_spec(), "cfg": _ui.field_config()}
key = _ui.request_key("triage", victim=victim, suspects=suspects, references=references, rule=rule,
                      anchors=kwargs.get("anchors"), config=kwargs["cfg"].key() if kwargs else None)
if st.button("Run triage", type="primary") and _ui.submit_task(
        key, f"triage of {len(suspects)} suspect(s)",
        triage_task(victim, suspects, references or None, kwargs.get("anchors"), kwargs.get("cfg"), rule=rule)):
    st.session_state["tri_key"] = key

result = _ui.task_result(key, asked="tri_key")
report = TriageReport.from_dict(result)

st.subheader("Verdicts")
cols = st.columns(min(4, len(report.suspects)))
uncleared = {id(s) for s in report.too_few_references()}
for i, s in enumerate(report.suspects):
    with cols[i % len(cols)].container(border=True):
        st.markdown(f"**{_label(s.model)}**  \n:{BADGE.get(s.verdict, 'gray')}-badge[{s.verdict}]")
        st.metric("distance to the victim", f"{s.distance:.4f}")
        st.caption(f"score {s.score:.3g} · {_p_text(s.p_value)}"
                   + (" · too few references of its architecture to clear it (below)" if id(s) in uncleared else ""))

st.plotly_chart(
    figures.reference_distribution(
        [float(r["distance"]) for r in report.references],
        [(_label(s.model), s.distance, s.verdict) for s in report.suspects],
        reference_names=[str(r["model"]) for r in report.references], threshold=report.threshold,
        title="Where each suspect falls among the independent references"),
    key="triage_plot",
)
st.caption(report.explanation())
c1, c2, c3 = st.columns(3)
c1.download_button("Report (JSON)", _ui.json_bytes(report.to_dict()), "triage.json", "application/json")
c2.download_button("Report (Markdown)", report.to_markdown(), "triage.md", "text/markdown")
if result.get("html"):
    c3.download_button("Download report", result["html"], "triage.html", "text/html",
                       help="One self-contained HTML file: verdicts, per-component z and p, the reference "
                            "distributions, anchors and probe points, fingerprints and the command.")
