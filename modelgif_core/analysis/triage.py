"""IP triage: is a suspect derived from the victim? Distances calibrated against independent models.

Each evidence component gives a victim-to-model distance, which `calibration` places among the
victim-to-reference distances (models trained independently of the victim):

Components (DEFAULT_COMPONENTS, chosen with `modelgif bench ip`, see docs/BENCHMARKS.md):
    modelgif        the field distance of DESIGN §1 on the anchors; by default (no cfg given) the
                    target is the logit *margin* of the predicted class (its logit minus the
                    largest other logit) instead of its logit
    boundary-js     Jensen-Shannon divergence of the softmax outputs at points on the victim's own
                    decision boundary (`probes.boundary_points`: what a student copies)
    adversarial-js  the same at points the victim's own signed-gradient steps reach on the boundary
                    between its top two classes (`probes.adversarial_boundary_points`)
    boundary-shift  the share of the victim's boundary points from which the suspect's own boundary
                    lies more than 0.05 away along their anchor-pair segments (`probes.boundary_shift`,
                    `probes.far_share`: what a student of the labels alone copies); the "-shift" rules,
                    the default among them, add it
    output-kl       KL(victim || suspect) on class-boundary mixups with a random coefficient in
                    [0.35, 0.65] (the previous default, kept as an option)
    weights         1 - cosine of the parameters suspect and victim share (the "-w" rules; same
                    architecture only: a copy keeps its parent's weights, research/20)
The output components are undefined for a suspect with another label space (then left out). The
verdict rule (Sidak-corrected minimum z, `calibration.judge_components`) is in `calibration`.

For a digits victim (a zoo model, or 10 classes with digits anchors) the zoo's independent
calibration models are the references when none are given; any other domain must bring its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..engine.anchors import load_anchors
from ..engine.cache import cached_field
from ..engine.distance import distances_to
from ..engine.errors import UserError
from ..engine.fields import FieldConfig
from ..engine.models import ModelHandle, as_handle
from ..engine.progress import Progress, sub_progress
from ..engine.text import dict_table
from ..zoo import ensure_zoo, list_zoo, zoo_is_built
from .calibration import (
    CLEAR_COPY_Z,
    RULES,
    SHIFT_COMPONENT,
    JointRule,
    TriageRule,
    judge_components,
    judge_joint,
    judge_matched,
    per_component_rule,
    reference_stats,
    thresholds,
)
from .evidence import DEFAULT_POINTS, OUTPUT_COMPONENTS, pair_components
from .probes import (
    FIELD_OUTPUTS,
    adversarial_boundary_points,
    boundary_mixups,
    boundary_points,
    log_probs,
    output_handle,
    output_js,
    output_kl,
)

# The field settings triage uses when the caller passes no cfg (chosen by `modelgif bench ip`).
DEFAULT_FIELD = FieldConfig(steps=50, method="gausslegendre", baseline="black", target="predicted")
DEFAULT_ANCHORS = "digits:64"
COMPONENTS = ("modelgif", "boundary-js", "adversarial-js", "output-kl")
DEFAULT_COMPONENTS = ("modelgif", "boundary-js", "adversarial-js")
# Chosen on the choice set only (calibration independents, the owner's students and copies):
# research/21_confirm_choose_weight_stage.py (the weight-space component), then
# research/24_confirm_choose_rule_more_calibration.py (the rule, on 35 calibration independents), then
# research/26_confirm_choose_boundary_shift.py (the boundary-shift component), then
# research/27_confirm_choose_shift_summary.py (that component as the share of tie points beyond 0.05), then
# research/29_confirm_choose_field_tail.py (the field's tail Student-t, on 70 calibration independents)
DEFAULT_RULE = "joint-arch-w-shift-ft10"


def rule_by_name(name: str) -> TriageRule | JointRule:
    """The verdict rule called `name` (one of calibration.RULES)."""
    if name not in RULES:
        raise UserError(f"Unknown triage rule {name!r}; choose from {', '.join(RULES)}.")
    if name == "minz":
        return TriageRule()
    field_tail = re.fullmatch(r"(.*)-ft(\d+)", name)
    named, field_tail_df = (field_tail[1], float(field_tail[2])) if field_tail else (name, 0.0)
    plain = named.removesuffix("-shift")
    base = plain.removesuffix("-w").removesuffix("-ws")
    return JointRule(match_architecture=named.startswith("joint-arch"), weights=base != plain,
                     weight_stage=plain.endswith("-ws"), statistic="second" if base.endswith("-two") else "max",
                     boundary_shift=plain != named, field_tail_df=field_tail_df)


@dataclass
class Verdict:
    """One suspect's evidence."""

    model: str  # the spec as given
    name: str
    distance: float
    score: float
    verdict: str
    z: float
    p_value: float
    empirical_p: float
    margin: float  # min(ref) - d: positive when closer than every reference
    closer_references: int  # references at least as close to the victim as the suspect
    evidence: dict[str, Any] = field(default_factory=dict)  # per component: its own judge()
    score_interval: list[float] | None = None  # joint rule: 5..95 % of the score over reference resamples
    rule: str = "minz"
    reference_match: str | None = None  # joint-arch rule: which references judged it (calibration.MATCH_NOTES)
    references_used: list[int] | None = None  # joint-arch rule: their indices into the report's references
    p_lowest: float | None = None  # joint rule: p of the lowest component alone ("independent" needs both p's)
    # joint rule: p of a clear copy (every component CLEAR_COPY_Z sds below the references); "independent"
    # needs it below alpha (references that cannot call a clear copy derived cannot clear a suspect either)
    p_clear_copy: float | None = None


@dataclass
class TriageReport:
    """Verdicts for every suspect plus the evidence they rest on (DESIGN §3 JSON via to_dict)."""

    victim: str
    victim_name: str
    suspects: list[Verdict]
    references: list[dict[str, Any]]  # {"model", "name", "distance"}
    reference_source: str  # "given" | "zoo-calibration"
    anchors: str
    n_anchors: int
    method: str
    config: dict[str, Any]
    rule: TriageRule | JointRule
    threshold: float  # distances below this are "derived"
    independent_above: float  # distances at or above this are "independent"
    stats: dict[str, float] = field(default_factory=dict)
    components: tuple[str, ...] = ("modelgif",)
    reference_components: dict[str, list[float | None]] = field(default_factory=dict)
    points: str | None = None  # the output probe points' anchors (joint rule; else the anchors)
    command: str | None = None  # the command line that reproduces it, when known

    def to_dict(self) -> dict[str, Any]:
        return {
            "victim": self.victim,
            "victim_name": self.victim_name,
            "suspects": [asdict(v) for v in self.suspects],
            "references": self.references,
            "reference_source": self.reference_source,
            "reference_stats": self.stats,
            "anchors": self.anchors,
            "n_anchors": self.n_anchors,
            "method": self.method,
            "config": self.config,
            "rule": self.rule.to_dict(),
            "threshold": self.threshold,
            "independent_above": self.independent_above,
            "components": list(self.components),
            "reference_components": self.reference_components,
            "points": self.points,
            "command": self.command,
            "explanation": self.explanation(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TriageReport:
        """The report back from its `to_dict()` (e.g. a job's JSON result)."""
        rule_d = dict(data["rule"])
        rule: TriageRule | JointRule = (JointRule(**{k: v for k, v in rule_d.items() if k != "name"})
                                        if str(rule_d.get("name", "")).startswith("joint")
                                        else TriageRule(**rule_d))
        return cls(
            victim=data["victim"], victim_name=data["victim_name"],
            suspects=[Verdict(**v) for v in data["suspects"]], references=data["references"],
            reference_source=data["reference_source"], anchors=data["anchors"], n_anchors=data["n_anchors"],
            method=data["method"], config=data["config"], rule=rule,
            threshold=data["threshold"], independent_above=data["independent_above"],
            stats=data["reference_stats"], components=tuple(data["components"]),
            reference_components=data["reference_components"], points=data.get("points"),
            command=data.get("command"))

    def to_markdown(self) -> str:
        """The report as Markdown: settings, explanation, one row per suspect, the reference distances."""
        lines = [f"# ModelGiF triage: {self.victim}", "",
                 f"- anchors: {self.anchors}", f"- n_anchors: {self.n_anchors}", f"- method: {self.method}",
                 f"- threshold: {self.threshold}", "", self.explanation(), "",
                 "| suspect | distance | score | verdict |", "|---|---|---|---|"]
        lines += [f"| {v.model} | {v.distance:.5f} | {v.score:.4g} | {v.verdict} |" for v in self.suspects]
        distances = sorted(float(r["distance"]) for r in self.references)
        lines += ["", f"Reference distances ({len(distances)} independent models): "
                  + ", ".join(f"{d:.4f}" for d in distances)]
        return "\n".join(lines) + "\n"

    def to_text(self) -> str:
        """What `modelgif triage` prints: the victim, one row per suspect, the explanation."""
        rows = [asdict(v) for v in self.suspects]
        return "\n".join([f"victim: {self.victim}", dict_table(rows, ["model", "distance", "score", "verdict"]),
                          self.explanation()])

    def too_few_references(self) -> list[Verdict]:
        """Suspects short of derived whose references could not call even a clear copy derived (joint rule;
        CLEAR_COPY_Z): inconclusive, whatever their p."""
        return [v for v in self.suspects if v.verdict != "derived" and v.p_clear_copy is not None
                and v.p_clear_copy >= self.rule.alpha]

    def _too_few_references(self) -> str:
        """The explanation's sentence for `too_few_references()`."""
        weak = self.too_few_references()
        if not weak:
            return ""
        names = ", ".join(v.name for v in weak)
        return (f" The references judging {names} are too few to call even a clear copy derived (every component "
                f"{CLEAR_COPY_Z:g} sds below them gets p = {max(v.p_clear_copy for v in weak):.2g}, not below "
                f"{self.rule.alpha:g}), so short of derived they read inconclusive, not independent: pass more "
                f"independent models of the suspect's architecture with --reference (seven or more)"
                + (", or build the full zoo (`modelgif zoo build --size full`), whose independents then serve"
                   if self.reference_source.startswith("zoo") else "") + ".")

    def explanation(self) -> str:
        s = self.stats
        if isinstance(self.rule, JointRule):
            outputs = self.points and any(c in OUTPUT_COMPONENTS for c in self.components)
            return (f"{len(self.references)} independent reference models ({self.reference_source}) lie at "
                    f"field distances {s['min']:.4f}..{s['max']:.4f} from the victim on {self.n_anchors} "
                    f"anchors"
                    + (f"; the output components compare softmax outputs on the victim's decision boundary "
                       f"and at its adversarial points, placed from {self.points}" if outputs else "")
                    + (", and the boundary shift at how many of the victim's boundary points the suspect's own "
                       "boundary lies elsewhere"
                       if outputs and SHIFT_COMPONENT in self.components else "")
                    + f". Each component ({', '.join(self.components)}) is a z-score of the log-distance "
                    f"among the references"
                    + (f" (the field's taken to the Gaussian scale, its log-distances heavier-tailed: Student-t "
                       f"with {self.rule.field_tail_df:g} degrees of freedom)"
                       if self.rule.field_tail_df and "modelgif" in self.components else "")
                    + "; the score is "
                    + ("the second lowest z (negated: two components must sit below the references)"
                       + (", or the weight-space z alone (the parameters a copy shares with its parent; same "
                          "architecture only)" if self.rule.weights else "")
                       if self.rule.statistic == "second" else
                       "the larger of the lowest z (negated) and the pooled evidence of the components "
                       "pointing toward derivation")
                    + ", and its p-value comes "
                    f"from the score's distribution for one more independent model (the references' own "
                    f"correlation, their number included). Derived below p = {self.rule.alpha:g} "
                    f"(the overall false-alarm level), independent at p >= {self.rule.p_independent:g}"
                    + (" with the lowest component alone at p >= that too"
                       if self.rule.checks_lowest else "")
                    + ", inconclusive between."
                    + (" Each suspect is judged against the references of its own architecture (at least "
                       f"{self.rule.min_references}); a suspect of the victim's architecture with fewer such "
                       "references is never called derived, since an independent model of the same "
                       "architecture sits far closer than references of other architectures."
                       if self.rule.match_architecture else "")
                    + self._too_few_references())
        text = (f"{len(self.references)} independent reference models ({self.reference_source}) lie "
                f"at field distances {s['min']:.4f}..{s['max']:.4f} (mean {s['mean']:.4f}, std "
                f"{s['std']:.4f}) from the victim on {self.n_anchors} anchors. A suspect is derived "
                f"below {self.threshold:.4f} (closer than every reference, Gaussian p under the "
                f"per-component level), independent at or above {self.independent_above:.4f} "
                f"(z >= {self.rule.z_independent:g}), inconclusive between")
        if len(self.components) > 1:
            text += (f"; the other components ({', '.join(self.components[1:])}) are calibrated "
                     f"the same way, any one of them can show derivation, and the levels are "
                     f"Sidak-corrected so that the overall false-alarm level is {self.rule.alpha:g}")
        return text + "."


# ----------------------------------------------------------------------------------- models


def _spec(model: str | ModelHandle) -> str:
    return model if isinstance(model, str) else (model.spec or model.name)


def _resolve_references(v: ModelHandle, anchors_spec: str, references: Sequence[Any] | None,
                        minimum: int, every_independent: bool) -> tuple[list[Any], str]:
    if references:
        return list(references), "given"
    if not is_digits_victim(v, anchors_spec):
        raise UserError("Triage needs independent reference models for this victim (only digits "
                        "victims can use the built-in zoo's); pass at least "
                        f"{minimum} models trained independently of it with --reference."
                        + reference_hint(v))
    if every_independent:
        return zoo_references(every=True), "zoo-independents"
    return zoo_references(), "zoo-calibration"


# Independent ImageNet-1k checkpoints of distinct families in timm's pretrained list: references for an
# ImageNet victim (one of another family than the victim's is proposed; none is downloaded here).
IMAGENET_REFERENCES = (
    "resnet50.a1_in1k", "convnext_tiny.fb_in1k", "efficientnet_b0.ra_in1k", "vit_small_patch16_224.augreg_in1k",
    "deit_small_patch16_224.fb_in1k", "mobilenetv3_large_100.ra_in1k", "regnety_008.pycls_in1k",
    "densenet121.tv_in1k", "resnext50_32x4d.a1h_in1k", "swin_tiny_patch4_window7_224.ms_in1k",
)


def _family(arch: str) -> str:
    import re

    return re.split(r"[\d_.]", arch.lower(), maxsplit=1)[0]


def imagenet_references(victim_arch: str, n: int = 6) -> list[str]:
    """n independent ImageNet-1k checkpoints from timm's pretrained list, none of the victim's family."""
    import timm

    known = set(timm.list_pretrained())
    fam = _family(victim_arch)
    return [r for r in IMAGENET_REFERENCES if r in known and _family(r) != fam][:n]


def reference_hint(v: ModelHandle) -> str:
    """One sentence proposing references for an ImageNet victim ("" for any other)."""
    if v.num_classes != 1000:
        return ""
    refs = imagenet_references(v.arch)
    if not refs:
        return ""
    return (f" For an ImageNet victim, independent ImageNet-1k checkpoints of other families serve: "
            f"--reference {' '.join(refs)} (timm fetches each from the Hugging Face Hub once, e.g. "
            f"`python -c \"import timm; timm.create_model('{refs[0]}', pretrained=True)\"` while online; "
            f"offline, with HF_HUB_OFFLINE=1, they load from the local cache).")


def is_digits_victim(victim: ModelHandle, anchors_spec: str) -> bool:
    if victim.meta.get("zoo"):
        return True
    digit_anchors = anchors_spec.startswith(("digits:", "cutmix:digits:"))
    return digit_anchors and victim.num_classes == 10 and victim.input_cfg.input_size[1] <= 64


def zoo_references(size: str | None = None, every: bool = False) -> list[str]:
    """Specs of the zoo's independent calibration models (the full zoo's if built, else small's);
    every=True: all its independent models, calibration and test (the joint rule's references)."""
    if size is None:
        size = "full" if zoo_is_built("full") else "small"
    ensure_zoo(size)
    roles = ("independent-calibration", "independent-test") if every else ("independent-calibration",)
    return [f"zoo:{r['name']}" for r in list_zoo(size) if r["role"] in roles]


def _triage_models(victim: str | ModelHandle, suspects: Sequence[str | ModelHandle] | str | ModelHandle,
                   references: Sequence[str | ModelHandle] | None, anchors: str | Any, min_references: int,
                   all_independents: bool) -> tuple[Any, str, ModelHandle, list[ModelHandle], list[ModelHandle],
                                                    list[str], str]:
    """What both rules start from: the anchors, the victim, suspects and references as handles (with the
    references' specs and where they came from), checked."""
    suspects = [suspects] if isinstance(suspects, (str, ModelHandle)) else suspects
    if not suspects:
        raise UserError("Triage needs at least one suspect model.")
    anchor_set = load_anchors(anchors) if isinstance(anchors, str) else anchors
    anchors_spec = anchors if isinstance(anchors, str) else getattr(anchors, "spec", "custom")
    v = as_handle(victim)
    references, source = _resolve_references(v, anchors_spec, references, min_references, all_independents)
    s_handles = [as_handle(s) for s in suspects]
    r_handles = [as_handle(r) for r in references]
    # A reference that is the victim or a suspect would calibrate against itself.
    taken = {v.fingerprint, *(h.fingerprint for h in s_handles)}
    keep = [i for i, h in enumerate(r_handles) if h.fingerprint not in taken]
    r_handles = [r_handles[i] for i in keep]
    r_specs = [_spec(references[i]) for i in keep]
    if len(r_handles) < min_references:
        raise UserError(f"Triage needs at least {min_references} independent reference models "
                        f"distinct from the victim and the suspects; got {len(r_handles)}.")
    return anchor_set, anchors_spec, v, s_handles, r_handles, r_specs, source


def _triage_joint(victim: str | ModelHandle, suspects: Sequence[str | ModelHandle] | str | ModelHandle,
                  references: Sequence[str | ModelHandle] | None, anchors: str | Any, cfg: FieldConfig | None,
                  store: Any, progress: Progress | None, rule: JointRule, components: Sequence[str] | None,
                  points: str | None) -> TriageReport:
    """triage() under the joint rule: every pair's components from `pair_components` (one Gram product
    for the field distances, batched forwards for the outputs), judged by `judge_joint`."""
    components = tuple(components or DEFAULT_COMPONENTS)
    unknown = sorted(set(components) - set(DEFAULT_COMPONENTS))
    if unknown or "modelgif" not in components:
        raise UserError(f"The joint rule takes the components {', '.join(DEFAULT_COMPONENTS)} "
                        f"(modelgif always); got {list(components)}.")
    anchor_set, anchors_spec, v, s_handles, r_handles, r_specs, source = _triage_models(
        victim, suspects, references, anchors, rule.min_references, True)
    if points is None:
        points = DEFAULT_POINTS if anchors_spec.startswith("digits:") and is_digits_victim(v, anchors_spec) \
            else anchor_set
    cfg = cfg or DEFAULT_FIELD
    if cfg.target not in ("predicted", "label"):
        raise UserError(f"A margin field needs a class target (predicted or label), not {cfg.target!r}.")
    everyone = [v, *s_handles, *r_handles]
    comp = pair_components(everyone, [0], anchors=anchor_set, points=points, cfg=cfg, store=store,
                           progress=progress, weights=rule.weights, shift=rule.boundary_shift)
    # the components the rule adds: where the suspect's own boundary lies, then the weights (same architecture only)
    components = (*components, *(c for c in (SHIFT_COMPONENT, "weights") if rule.reads(c)))
    comp = {c: comp[c] for c in components}
    ns = len(s_handles)
    vals = {c: [None if not np.isfinite(x) else float(x) for x in comp[c][0, 1:]] for c in comp}
    d_sus = {c: x[:ns] for c, x in vals.items()}
    d_ref = {c: x[ns:] for c, x in vals.items()}
    used = [c for c in components if any(x is not None for x in d_sus[c])]
    ref_archs = [h.arch for h in r_handles]

    def judged(i: int, h: ModelHandle) -> dict[str, Any]:
        d = {c: d_sus[c][i] for c in comp}
        if rule.match_architecture:
            return judge_matched(d, d_ref, rule, v.arch, h.arch, ref_archs, seed=i)
        return judge_joint(d, d_ref, rule, seed=i)

    verdicts = [Verdict(model=_spec(s), name=h.name, **judged(i, h))
                for i, (s, h) in enumerate(zip(suspects, s_handles, strict=True))]
    ref_field = [float(d) for d in d_ref["modelgif"]]
    # the field distance alone at the joint level: what "derived below" means on the field's own axis
    below = [x for x in ref_field]
    return TriageReport(
        victim=_spec(victim), victim_name=v.name, suspects=verdicts,
        references=[{"model": s, "name": h.name, "distance": d, "fingerprint": h.fingerprint,
                     **{c: d_ref[c][i] for c in comp if c != "modelgif"}}
                    for i, (s, h, d) in enumerate(zip(r_specs, r_handles, ref_field, strict=True))],
        reference_source=source, anchors=anchors_spec, n_anchors=len(anchor_set),
        method="joint:" + "+".join(used), config={**cfg.to_dict(), "log_prob": False, "field_output": "margin"},
        rule=rule, threshold=float(min(below)), independent_above=float(np.median(below)),
        stats=reference_stats(ref_field), components=tuple(used),
        reference_components={c: list(x) for c, x in d_ref.items()},
        points=points if isinstance(points, str) else getattr(points, "spec", "custom"))


# ----------------------------------------------------------------------------------- distances


def _fields(handles: list[ModelHandle], anchors: Any, cfg: FieldConfig, store: Any,
            progress: Progress | None) -> list[Any]:
    out = []
    m = len(handles)
    for i, h in enumerate(handles):
        # (done, total) in (anchor, step) points over all models; a cached field jumps ahead
        out.append(cached_field(h, anchors, cfg, store=store, progress=sub_progress(progress, i, m)))
    if progress is not None:
        points = len(anchors) * cfg.steps
        progress(m * points, m * points)
    return out


# ----------------------------------------------------------------------------------- triage


def triage(victim: str | ModelHandle, suspects: Sequence[str | ModelHandle],
           references: Sequence[str | ModelHandle] | None = None,
           anchors: str | Any = DEFAULT_ANCHORS, cfg: FieldConfig | None = None, store: Any = None,
           progress: Progress | None = None, rule: TriageRule | JointRule | str | None = None,
           components: Sequence[str] | None = None, log_prob: bool | None = None,
           field_output: str | None = None, points: str | None = None) -> TriageReport:
    """Verdicts for each suspect: is it derived from the victim? See the module docstring.

    field_output: what the field differentiates, "logit", "logprob" or "margin" (default: "margin"
    when `cfg` is not given, i.e. triage's tuned defaults; a caller's own cfg runs on the logits).
    log_prob=True is the older spelling of field_output="logprob" (False: "logit").
    rule: "joint-arch-w-shift-ft10" (default: the components' joint null against references of the suspect's
    architecture, `calibration.judge_matched`, led by the strongest single component, with the weight-space
    component, defined between two checkpoints of one architecture, and the boundary-shift component, the field's
    tail Student-t with 10 degrees of freedom),
    "joint-arch-w" (without the boundary shift), "joint-arch" (without either),
    "joint-arch-two-ws" (two components required to agree, the weights as a stage of their own),
    "joint-arch-two" (two components, no weights), "joint-arch-two-w" (two components, the weights inside the
    statistic, where they may decide alone), "joint" (the strongest component against all references), "minz"
    (the Sidak-corrected minimum z), or a JointRule / TriageRule. points: the anchors spec of the output
    probe points under the joint rule (default: the 500 held-out digits for a digits victim, else the
    anchors).
    """
    if rule is None or isinstance(rule, str):
        rule = rule_by_name(rule or DEFAULT_RULE)
    if isinstance(rule, JointRule):
        return _triage_joint(victim, suspects, references, anchors, cfg, store, progress, rule,
                             components, points)
    components = tuple(components or DEFAULT_COMPONENTS)
    unknown = sorted(set(components) - set(COMPONENTS))
    if unknown or "modelgif" not in components:
        raise UserError(f"Unknown or missing triage components {unknown or list(components)}; "
                        f"choose from {', '.join(COMPONENTS)} (modelgif is always included).")
    anchor_set, anchors_spec, v, s_handles, r_handles, r_specs, source = _triage_models(
        victim, suspects, references, anchors, rule.min_references, False)
    if field_output is None:
        field_output = ("logprob" if log_prob else "logit") if log_prob is not None else (
            "margin" if cfg is None else "logit")
    if field_output not in FIELD_OUTPUTS:
        raise UserError(f"Unknown field output {field_output!r}; choose from {', '.join(FIELD_OUTPUTS)}.")
    cfg = cfg or DEFAULT_FIELD
    everyone = [v, *s_handles, *r_handles]
    if field_output != "logit" and cfg.target not in ("predicted", "label"):
        raise UserError(f"A {field_output} field needs a class target (predicted or label), "
                        f"not {cfg.target!r}.")
    field_models = [output_handle(h, field_output) for h in everyone]
    fields = _fields(field_models, anchor_set, cfg, store, progress)
    comp: dict[str, list[float | None]] = {"modelgif": list(distances_to(fields[0], fields[1:]))}
    wanted = [c for c in components if c != "modelgif"]
    if wanted:
        images = anchor_set.images if hasattr(anchor_set, "images") else anchor_set
        classes = log_probs(v, images).argmax(1)  # [N] the victim's own view of the classes
        labels = getattr(anchor_set, "labels", None)
        if len(set(classes.tolist())) < 2 and labels is not None:
            classes = labels
        two_classes = len(set(classes.tolist())) >= 2  # else no boundary between anchors to probe
        points = {"output-kl": lambda: boundary_mixups(images, classes, len(images)),
                  "boundary-js": lambda: boundary_points(v, images, classes, len(images)),
                  "adversarial-js": lambda: adversarial_boundary_points(v, images)}
        for c in wanted:
            if c != "adversarial-js" and not two_classes:
                continue  # the field (and the adversarial points) decide without it
            pts = points[c]()  # [N, 3, H, W] chosen with the victim only
            v_logp = log_probs(v, pts)
            div = output_kl if c == "output-kl" else output_js
            comp[c] = [div(v_logp, log_probs(h, pts)) for h in everyone[1:]]
    ns = len(s_handles)
    d_sus = {c: vals[:ns] for c, vals in comp.items()}
    d_ref = {c: vals[ns:] for c, vals in comp.items()}
    verdicts = [Verdict(model=_spec(s), name=h.name,
                        **judge_components({c: d_sus[c][i] for c in comp}, d_ref, rule))
                for i, (s, h) in enumerate(zip(suspects, s_handles, strict=True))]
    ref_field = [float(d) for d in d_ref["modelgif"]]
    sub = per_component_rule(rule, len(comp))  # the rule judge_components judged each component by
    derived_below, independent_above = thresholds(ref_field, sub)
    return TriageReport(
        victim=_spec(victim), victim_name=v.name, suspects=verdicts,
        references=[{"model": s, "name": h.name, "distance": d, "fingerprint": h.fingerprint,
                     **{c: d_ref[c][i] for c in comp if c != "modelgif"}}
                    for i, (s, h, d) in enumerate(zip(r_specs, r_handles, ref_field, strict=True))],
        reference_source=source, anchors=anchors_spec, n_anchors=len(anchor_set),
        method="+".join(comp), config={**cfg.to_dict(), "log_prob": field_output == "logprob",
                                         "field_output": field_output}, rule=rule,
        threshold=float(derived_below),
        independent_above=float(independent_above), stats=reference_stats(ref_field),
        components=tuple(comp), reference_components={c: list(v) for c, v in d_ref.items()})
