"""IP triage: is a suspect derived from the victim? Distances calibrated against independent models.

Each evidence component gives a victim-to-model distance; for each suspect it is placed in the
distribution of victim-to-reference distances (models trained independently of the victim):

    z        = (d - mean(ref)) / std(ref)          how many reference spreads below the references
    p        = Phi(z)                              Gaussian tail: an independent model this close
    emp_p    = (1 + #{ref <= d}) / (1 + n_ref)      the distribution-free version (floor 1/(n+1))

Components (DEFAULT_COMPONENTS, chosen with `modelgif bench ip`, see docs/BENCHMARKS.md):
    modelgif        the field distance of DESIGN §1 on the anchors; by default (no cfg given) the
                    target is the logit *margin* of the predicted class (its logit minus the
                    largest other logit) instead of its logit
    boundary-js     Jensen-Shannon divergence of the softmax outputs at points on the victim's own
                    decision boundary: for anchor pairs of different (victim) classes, the mixup
                    coefficient bisected until the victim's two logits tie (what a student copies)
    adversarial-js  the same at points the victim's own signed-gradient steps reach on the boundary
                    between its top two classes, starting from each anchor (IPGuard-style)
    output-kl       KL(victim || suspect) on class-boundary mixups with a random coefficient in
                    [0.35, 0.65] (the previous default, kept as an option)
The output components only need forwards (and input gradients) of the victim to place their
points, and are undefined for a suspect with another label space (then left out).
With m components the per-component tail is Sidak-corrected, p = 1 - (1 - min_c p_c)^m, and

    derived      if some component is below every reference and p < alpha   (`threshold`: modelgif's)
    independent  if every component has z >= z_independent                   (among the references)
    inconclusive otherwise;                 score = -min_c z_c (larger = more likely derived)

For a digits victim (a zoo model, or 10 classes with digits anchors) the zoo's independent
calibration models are the references when none are given; any other domain must bring its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ._errors import UserError
from .fields import FieldConfig, _anchor_outputs
from .models import ModelHandle, as_handle

Progress = Callable[[int, int], None]

VERDICTS = ("derived", "independent", "inconclusive")


@dataclass(frozen=True)
class TriageRule:
    """Verdict thresholds on the reference-calibrated distance (see the module docstring)."""

    alpha: float = 1e-3  # Gaussian tail below which (and below every reference) a suspect is derived
    # At or above this z the suspect sits among the references. -1.5: a truly independent model
    # falls below it in ~7 % of cases per component (Gaussian), and is then called inconclusive;
    # extraction students typically land at z = -1.5..-3, which must not read "independent".
    z_independent: float = -1.5
    min_references: int = 3  # fewer cannot estimate a spread

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise UserError(f"The triage level alpha must lie strictly between 0 and 1 (default 1e-3); "
                            f"got {self.alpha!r}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The field settings triage uses when the caller passes no cfg (chosen by `modelgif bench ip`).
DEFAULT_FIELD = FieldConfig(steps=50, method="gausslegendre", baseline="black", target="predicted")
DEFAULT_ANCHORS = "digits:64"
COMPONENTS = ("modelgif", "boundary-js", "adversarial-js", "output-kl")
DEFAULT_COMPONENTS = ("modelgif", "boundary-js", "adversarial-js")
FIELD_OUTPUTS = ("logit", "logprob", "margin")  # what the field differentiates (see field_output)


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
    rule: TriageRule
    threshold: float  # distances below this are "derived"
    independent_above: float  # distances at or above this are "independent"
    stats: dict[str, float] = field(default_factory=dict)
    components: tuple[str, ...] = ("modelgif",)
    reference_components: dict[str, list[float | None]] = field(default_factory=dict)

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
            "explanation": self.explanation(),
        }

    def explanation(self) -> str:
        s = self.stats
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


# ----------------------------------------------------------------------------------- verdicts


def _phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _sidak(p: float, m: int) -> float:
    """1 - (1 - p)^m without the cancellation that makes it 0 for p < 1e-16 (it is about m p there)."""
    return 1.0 if p >= 1.0 else -math.expm1(m * math.log1p(-p))


def _per_component(rule: TriageRule, m: int) -> TriageRule:
    """The rule each of m components is judged by: the level whose Sidak combination over m is rule.alpha
    (the inverse of _sidak), so the family-wise level stays alpha."""
    return dataclasses.replace(rule, alpha=-math.expm1(math.log1p(-rule.alpha) / m))


def _phi_inv(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def reference_stats(ref: Sequence[float]) -> dict[str, float]:
    r = np.asarray(ref, dtype=float)
    # The std floor keeps z finite when references coincide (then any closer suspect is far off).
    std = max(float(r.std(ddof=1)) if len(r) > 1 else 0.0, 1e-6 * max(1.0, abs(float(r.mean()))))
    return {"n": int(len(r)), "mean": float(r.mean()), "std": std, "min": float(r.min()),
            "max": float(r.max())}


def thresholds(ref: Sequence[float], rule: TriageRule) -> tuple[float, float]:
    """(derived below, independent at or above) in distance units."""
    s = reference_stats(ref)
    derived_below = min(s["min"], s["mean"] + s["std"] * _phi_inv(rule.alpha))
    return derived_below, s["mean"] + rule.z_independent * s["std"]


def judge(distance: float, ref: Sequence[float], rule: TriageRule | None = None) -> dict[str, Any]:
    """Verdict and evidence for one distance against the reference distances."""
    rule = rule or TriageRule()
    if len(ref) < rule.min_references:
        raise UserError(f"Triage needs at least {rule.min_references} independent reference models; "
                        f"got {len(ref)}. Pass more with --reference.")
    s = reference_stats(ref)
    r = np.asarray(ref, dtype=float)
    z = (distance - s["mean"]) / s["std"]
    p = _phi(z)
    closer = int((r <= distance).sum())
    derived_below, independent_above = thresholds(ref, rule)
    if distance < derived_below:
        verdict = "derived"
    elif distance >= independent_above:
        verdict = "independent"
    else:
        verdict = "inconclusive"
    return {"distance": float(distance), "score": float(-z), "verdict": verdict, "z": float(z),
            "p_value": float(p), "empirical_p": (1 + closer) / (1 + len(r)),
            "margin": float(s["min"] - distance), "closer_references": closer}


def judge_components(distances: dict[str, float | None], refs: dict[str, Sequence[float | None]],
                     rule: TriageRule | None = None) -> dict[str, Any]:
    """Combine per-component verdicts (module docstring): undefined components (None) are skipped."""
    rule = rule or TriageRule()
    usable = {c: d for c, d in distances.items() if d is not None and math.isfinite(d)}
    ref_ok = {c: [r for r in refs[c] if r is not None and math.isfinite(r)] for c in usable}
    usable = {c: d for c, d in usable.items() if len(ref_ok[c]) >= rule.min_references}
    if "modelgif" in distances and "modelgif" not in usable:
        raise UserError("The field distance could not be calibrated: too few usable references.")
    m = len(usable)
    sub = _per_component(rule, m)
    ev = {c: judge(d, ref_ok[c], sub) for c, d in usable.items()}
    zmin = min(e["z"] for e in ev.values())
    pmin = min(e["p_value"] for e in ev.values())
    if any(e["verdict"] == "derived" for e in ev.values()):
        verdict = "derived"
    elif all(e["verdict"] == "independent" for e in ev.values()):
        verdict = "independent"
    else:
        verdict = "inconclusive"
    main = ev.get("modelgif") or next(iter(ev.values()))
    return {"distance": main["distance"], "score": float(-zmin), "verdict": verdict,
            "z": float(zmin), "p_value": _sidak(pmin, m),
            "empirical_p": min(e["empirical_p"] for e in ev.values()),
            "margin": main["margin"], "closer_references": main["closer_references"],
            "evidence": ev}


# ----------------------------------------------------------------------------------- models


def _spec(model: str | ModelHandle) -> str:
    return model if isinstance(model, str) else (model.spec or model.name)


def _is_digits_victim(victim: ModelHandle, anchors_spec: str) -> bool:
    if victim.meta.get("zoo"):
        return True
    digit_anchors = anchors_spec.startswith(("digits:", "cutmix:digits:"))
    return digit_anchors and victim.num_classes == 10 and victim.input_cfg.input_size[1] <= 64


def zoo_references(size: str | None = None) -> list[str]:
    """Specs of the zoo's independent calibration models (the full zoo's if built, else small's)."""
    from .zoo import ensure_zoo, list_zoo, zoo_is_built

    if size is None:
        size = "full" if zoo_is_built("full") else "small"
    ensure_zoo(size)
    return [f"zoo:{r['name']}" for r in list_zoo(size) if r["role"] == "independent-calibration"]


class _Output(torch.nn.Module):
    """A classifier's logits turned into log-probabilities or logit margins (the field's target)."""

    def __init__(self, inner: torch.nn.Module, kind: str) -> None:
        super().__init__()
        self.inner, self.kind = inner, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from .models import _first_tensor

        logits = _first_tensor(self.inner(x))  # [B, C]
        if self.kind == "logprob":
            return torch.log_softmax(logits, dim=1)
        # margin: each logit minus the largest *other* logit (the top class keeps its lead)
        top2 = logits.topk(2, dim=1).values  # [B, 2]
        other = torch.where(logits == top2[:, :1], top2[:, 1:], top2[:, :1])  # [B, C]
        return logits - other


def output_handle(handle: ModelHandle, kind: str) -> ModelHandle:
    """The same model answering log-probabilities ("logprob") or logit margins ("margin"), with its
    own fingerprint (so the store keeps these fields apart from the logit fields of the weights)."""
    if kind == "logit":
        return handle
    if kind not in FIELD_OUTPUTS:
        raise UserError(f"Unknown field output {kind!r}; choose from {', '.join(FIELD_OUTPUTS)}.")
    tag = "log-softmax" if kind == "logprob" else "logit-margin"
    fp = hashlib.sha256(f"{handle.fingerprint}:{tag}".encode()).hexdigest()
    # (extract_field restores each submodule's own mode, so the wrapper's leaves the model's alone)
    return dataclasses.replace(handle, module=_Output(handle.module, kind), fingerprint=fp,
                               name=f"{handle.name} ({kind})")


def log_prob_handle(handle: ModelHandle) -> ModelHandle:
    """The same model answering log-probabilities (`output_handle(handle, "logprob")`)."""
    return output_handle(handle, "logprob")


# ----------------------------------------------------------------------------------- distances


def _fields(handles: list[ModelHandle], anchors: Any, cfg: FieldConfig, store: Any,
            progress: Progress | None) -> list[Any]:
    from .fields import cached_field

    out = []
    m = len(handles)
    for i, h in enumerate(handles):
        # (done, total) in (anchor, step) points over all models; a cached field jumps ahead
        step = None if progress is None else (lambda d, t, i=i: progress(i * t + d, m * t))
        out.append(cached_field(h, anchors, cfg, store=store, progress=step))
    if progress is not None:
        points = len(anchors) * cfg.steps
        progress(m * points, m * points)
    return out


def field_distances_to(victim_field: Any, fields: Sequence[Any]) -> np.ndarray:
    """ModelGiF distance (DESIGN §1) from one field to each of several: [M], a row of distance_matrix."""
    from .distance import distance_matrix

    return distance_matrix([victim_field, *fields])[0, 1:]


def boundary_mixups(images: torch.Tensor, classes: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """n mixups of anchor pairs from different classes (lam in [0.35, 0.65]): points near decision
    boundaries, where a model's idiosyncrasies are not pinned down by the training data."""
    rng = np.random.default_rng(seed)
    m = len(images)
    if m < 2 or len(set(classes.tolist())) < 2:
        raise UserError("Boundary mixups need anchors of at least two classes; use more anchors.")
    out = []
    while len(out) < n:
        i, j = (int(v) for v in rng.choice(m, 2, replace=False))
        if classes[i] == classes[j]:
            continue
        lam = float(rng.uniform(0.35, 0.65))
        out.append(lam * images[i] + (1 - lam) * images[j])
    return torch.stack(out)  # [n, 3, H, W]


_OUTPUT_BATCH = 256  # images per forward when only outputs are needed


@torch.no_grad()
def _log_probs(handle: ModelHandle, images: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(_anchor_outputs(handle, images, _OUTPUT_BATCH), dim=1)  # [n, C]


@torch.no_grad()
def _bisect(handle: ModelHandle, a: torch.Tensor, b: torch.Tensor, ca: torch.Tensor, cb: torch.Tensor,
            iters: int) -> torch.Tensor:
    """Points lam*a + (1-lam)*b where the handle's logits of classes ca and cb tie (bisection on lam,
    lam = 1 on a's side): [n, 3, H, W]."""
    lo, hi = torch.zeros(len(a)), torch.ones(len(a))  # [n]
    for _ in range(iters):
        mid = (lo + hi) / 2
        x = mid[:, None, None, None] * a + (1 - mid[:, None, None, None]) * b
        z = _anchor_outputs(handle, x, _OUTPUT_BATCH)  # [n, C]
        a_wins = z.gather(1, ca[:, None])[:, 0] > z.gather(1, cb[:, None])[:, 0]  # [n]
        hi, lo = torch.where(a_wins, mid, hi), torch.where(a_wins, lo, mid)
    lam = ((lo + hi) / 2)[:, None, None, None]
    return lam * a + (1 - lam) * b


def _pairs(classes: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n seeded index pairs (i, j) with classes[i] != classes[j]."""
    rng = np.random.default_rng(seed)
    m = len(classes)
    if m < 2 or len(set(classes.tolist())) < 2:
        raise UserError("Boundary points need anchors of at least two classes; use more anchors.")
    first, second = [], []
    while len(first) < n:
        i, j = (int(v) for v in rng.choice(m, 2, replace=False))
        if classes[i] != classes[j]:
            first.append(i)
            second.append(j)
    return torch.tensor(first), torch.tensor(second)


def boundary_points(victim: ModelHandle, images: torch.Tensor, classes: torch.Tensor, n: int,
                    seed: int = 0, iters: int = 14) -> torch.Tensor:
    """n points on the victim's own decision boundary: for anchor pairs of different classes, the
    mixup coefficient is bisected until the victim's logits of the two classes tie. A student
    that learned from the victim's answers places its boundary there too; independent models
    do not (a random coefficient, as in boundary_mixups, mostly misses the boundary)."""
    i, j = _pairs(classes, n, seed)
    return _bisect(victim, images[i], images[j], classes[i], classes[j], iters)  # [n, 3, H, W]


def adversarial_boundary_points(victim: ModelHandle, images: torch.Tensor, step: float = 0.01,
                                max_steps: int = 60, iters: int = 14) -> torch.Tensor:
    """From each image, signed-gradient steps on the victim toward its second most likely class
    until the victim's decision flips, then a bisection on the segment from the image to that
    point: one point per image on the boundary between the victim's top two classes."""
    x0 = images.float()  # [n, 3, H, W]
    with torch.no_grad():
        top2 = _anchor_outputs(victim, x0, _OUTPUT_BATCH).topk(2, 1)
    c1, c2 = top2.indices[:, 0], top2.indices[:, 1]  # [n]
    x, end = x0.clone(), x0.clone()
    crossed = torch.zeros(len(x0), dtype=torch.bool)
    for _ in range(max_steps):
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            z = victim(xg).float()  # [n, C]
            gap = (z.gather(1, c2[:, None]) - z.gather(1, c1[:, None])).sum()
            (grad,) = torch.autograd.grad(gap, xg)
        with torch.no_grad():
            x = (x + step * grad.sign()).clamp(0.0, 1.0)
            z = victim(x).float()
            now = (z.gather(1, c2[:, None]) > z.gather(1, c1[:, None]))[:, 0] & ~crossed  # [n]
            end[now] = x[now]
            crossed |= now
        if bool(crossed.all()):
            break
    end[~crossed] = x[~crossed]  # never flipped: the furthest point (the bisection ends there)
    return _bisect(victim, x0, end, c1, c2, iters)  # [n, 3, H, W]


def output_kl(victim_logp: torch.Tensor, logp: torch.Tensor) -> float | None:
    """Mean KL(victim || model) over the points; None for another label space."""
    if victim_logp.shape != logp.shape:
        return None
    return float((victim_logp.exp() * (victim_logp - logp)).sum(1).mean())


def output_js(victim_logp: torch.Tensor, logp: torch.Tensor) -> float | None:
    """Mean Jensen-Shannon divergence of the two softmax outputs over the points (bounded by ln 2,
    so one confidently wrong point cannot dominate as in KL); None for another label space."""
    if victim_logp.shape != logp.shape:
        return None
    mid = torch.logaddexp(victim_logp, logp) - math.log(2.0)  # [n, C] log of the mean distribution
    js = 0.5 * (victim_logp.exp() * (victim_logp - mid)).sum(1) + 0.5 * (logp.exp() * (logp - mid)).sum(1)
    return float(js.mean())


# ----------------------------------------------------------------------------------- triage


def triage(victim: str | ModelHandle, suspects: Sequence[str | ModelHandle],
           references: Sequence[str | ModelHandle] | None = None,
           anchors: str | Any = DEFAULT_ANCHORS, cfg: FieldConfig | None = None, store: Any = None,
           progress: Progress | None = None, rule: TriageRule | None = None,
           components: Sequence[str] | None = None, log_prob: bool | None = None,
           field_output: str | None = None) -> TriageReport:
    """Verdicts for each suspect: is it derived from the victim? See the module docstring.

    field_output: what the field differentiates, "logit", "logprob" or "margin" (default: "margin"
    when `cfg` is not given, i.e. triage's tuned defaults; a caller's own cfg runs on the logits).
    log_prob=True is the older spelling of field_output="logprob" (False: "logit").
    """
    from .anchors import load_anchors

    rule = rule or TriageRule()
    components = tuple(components or DEFAULT_COMPONENTS)
    unknown = sorted(set(components) - set(COMPONENTS))
    if unknown or "modelgif" not in components:
        raise UserError(f"Unknown or missing triage components {unknown or list(components)}; "
                        f"choose from {', '.join(COMPONENTS)} (modelgif is always included).")
    if isinstance(suspects, (str, ModelHandle)):
        suspects = [suspects]
    if not suspects:
        raise UserError("Triage needs at least one suspect model.")
    anchor_set = load_anchors(anchors) if isinstance(anchors, str) else anchors
    anchors_spec = anchors if isinstance(anchors, str) else getattr(anchors, "spec", "custom")
    v = as_handle(victim)
    source = "given"
    if not references:
        if not _is_digits_victim(v, anchors_spec):
            raise UserError("Triage needs independent reference models for this victim (only digits "
                            "victims can use the built-in zoo's); pass at least "
                            f"{rule.min_references} models trained independently of it with "
                            "--reference.")
        references = zoo_references()
        source = "zoo-calibration"
    s_handles = [as_handle(s) for s in suspects]
    r_handles = [as_handle(r) for r in references]
    # A reference that is the victim or a suspect would calibrate against itself.
    taken = {v.fingerprint, *(h.fingerprint for h in s_handles)}
    keep = [i for i, h in enumerate(r_handles) if h.fingerprint not in taken]
    r_handles = [r_handles[i] for i in keep]
    r_specs = [_spec(references[i]) for i in keep]
    if len(r_handles) < rule.min_references:
        raise UserError(f"Triage needs at least {rule.min_references} independent reference models "
                        f"distinct from the victim and the suspects; got {len(r_handles)}.")
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
    comp: dict[str, list[float | None]] = {"modelgif": list(field_distances_to(fields[0], fields[1:]))}
    wanted = [c for c in components if c != "modelgif"]
    if wanted:
        images = anchor_set.images if hasattr(anchor_set, "images") else anchor_set
        classes = _log_probs(v, images).argmax(1)  # [N] the victim's own view of the classes
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
            v_logp = _log_probs(v, pts)
            div = output_kl if c == "output-kl" else output_js
            comp[c] = [div(v_logp, _log_probs(h, pts)) for h in everyone[1:]]
    ns = len(s_handles)
    d_sus = {c: vals[:ns] for c, vals in comp.items()}
    d_ref = {c: vals[ns:] for c, vals in comp.items()}
    verdicts = [Verdict(model=_spec(s), name=h.name,
                        **judge_components({c: d_sus[c][i] for c in comp}, d_ref, rule))
                for i, (s, h) in enumerate(zip(suspects, s_handles, strict=True))]
    ref_field = [float(d) for d in d_ref["modelgif"]]
    sub = _per_component(rule, len(comp))  # the rule judge_components judged each component by
    derived_below, independent_above = thresholds(ref_field, sub)
    return TriageReport(
        victim=_spec(victim), victim_name=v.name, suspects=verdicts,
        references=[{"model": s, "name": h.name, "distance": d,
                     **{c: d_ref[c][i] for c in comp if c != "modelgif"}}
                    for i, (s, h, d) in enumerate(zip(r_specs, r_handles, ref_field, strict=True))],
        reference_source=source, anchors=anchors_spec, n_anchors=len(anchor_set),
        method="+".join(comp), config={**cfg.to_dict(), "log_prob": field_output == "logprob",
                                         "field_output": field_output}, rule=rule,
        threshold=float(derived_below),
        independent_above=float(independent_above), stats=reference_stats(ref_field),
        components=tuple(comp), reference_components={c: list(v) for c, v in d_ref.items()})
