"""Calibration against independent models: where a distance falls among the references' distances.

For each evidence component, a suspect's distance d to the victim is placed in the distribution of
victim-to-reference distances (models trained independently of the victim):

    z        = (d - mean(ref)) / std(ref)          how many reference spreads below the references
    p        = Phi(z)                              Gaussian tail: an independent model this close
    emp_p    = (1 + #{ref <= d}) / (1 + n_ref)      the distribution-free version (floor 1/(n+1))

With m components the per-component tail is Sidak-corrected, p = 1 - (1 - min_c p_c)^m, and

    derived      if some component is below every reference and p < alpha
    independent  if every component has z >= z_independent                   (among the references)
    inconclusive otherwise;                 score = -min_c z_c (larger = more likely derived)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..engine.errors import UserError

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

    def reads(self, component: str) -> bool:
        """Whether this rule judges `component` (the weight-space and boundary-shift components: joint rules only)."""
        return component not in ("weights", SHIFT_COMPONENT)


def _phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def sidak(p: float, m: int) -> float:
    """1 - (1 - p)^m without the cancellation that makes it 0 for p < 1e-16 (it is about m p there)."""
    return 1.0 if p >= 1.0 else -math.expm1(m * math.log1p(-p))


def per_component_rule(rule: TriageRule, m: int) -> TriageRule:
    """The rule each of m components is judged by: the level whose Sidak combination over m is rule.alpha
    (the inverse of sidak), so the family-wise level stays alpha."""
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
    sub = per_component_rule(rule, m)
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
            "z": float(zmin), "p_value": sidak(pmin, m),
            "empirical_p": min(e["empirical_p"] for e in ev.values()),
            "margin": main["margin"], "closer_references": main["closer_references"],
            "evidence": ev}


# ----------------------------------------------------------------------------------- joint rule
#
# The "joint" rule (docs/BENCHMARKS.md, "Decisive verdicts"): the components are taken together
# instead of one at a time. Each distance is put on a log scale (the divergences are skewed), each
# component gets its z among the references, and the statistic
#
#     T = max(-min_c z_c, -sum_c min(z_c, 0) / sqrt(m))      (the strongest single component, or
#                                                            the pooled evidence of all that point
#                                                            toward derivation, whichever is larger)
#
# is compared with its distribution when the suspect is one more independent model: the references'
# log-distances are Gaussian with their own correlation R (shrunk toward identity), the suspect is a
# fresh draw, and the z's are computed from the n simulated references exactly as from the real ones
# (so the small-sample spread of the mean and std is inside the null, not assumed away). p = the
# share of simulated independents with T at least the suspect's; derived if p < alpha, independent if
# p >= p_independent, else inconclusive. Both halves of T are one-sided: a component far on the
# independent side (an output divergence of a transferred copy, say) is no alibi.
#
# The "two" variant (statistic "second") takes T = -(the second smallest z): at least two components
# must sit below the references (with one usable component, that one); "independent" then also needs the
# lowest component alone at p >= p_independent (a copy singled out by one component is inconclusive, not
# independent). Fresh independents were called derived on ONE output divergence far below a few references
# (z -5 to -30) while the others said independent: one component's Gaussian tail is too light.
# research/18_confirm_choose_tail.py chose it on the calibration split over heavier-tailed (Student-t) nulls
# and a clipped Stouffer.

#
# The "-w" variant adds the weight-space component "weights" (1 - cosine of the parameters two models of one
# architecture share; undefined across architectures): a pruned or domain-shifted copy that no longer
# behaves like its parent keeps its parent's weights, while two independent models start from different
# random weights (research/20_confirm_weight_space_evidence.py). Under the "second" statistic it may decide alone
# (ALONE_COMPONENTS): T = max(-second smallest z, -z_weights). The "-ws" variant judges the weights as a
# stage of their own instead: p = 2 min(p of the other components, p of the weights alone) (Bonferroni).
#
# joint-arch-w (statistic "max" with the weights inside T) was chosen on a choice set of 35
# calibration independents, 7 of every architecture (research/24_confirm_choose_rule_more_calibration.py: no
# joint-arch rule called any of its 1,190 null pairs derived; joint-arch-w derived as many of the owner's students
# and copies as joint-arch-two-ws with smaller p). The earlier choice set (12 independents, 1-5 references of
# an architecture) had preferred two agreeing components.
#
# The "-shift" variant adds the output component "boundary-shift" (the share of the victim's tie points from which the
# suspect's own boundary lies away, `probes.boundary_shift`, `probes.far_share`): a student of the victim's labels
# alone copies where its boundary lies, not its softmax. joint-arch-w-shift was chosen over joint-arch-w on the same
# choice set (research/26_confirm_choose_boundary_shift.py, with the mean shift: one more of the owner's students and
# copies derived, its label student; one null pair derived under both, on the field alone), and the share over the mean
# (research/27_confirm_choose_shift_summary.py: every positive and student derived).
#
# "-ft10", the default: the field's log-distances taken as Student-t with 10 degrees of freedom (field_tail_df). Against
# the 12-13 references of an architecture a test suspect meets, the field's lower tail is heavier than the Gaussian
# null's (z below -5 in 6 of 4,830 null pairs where 1.1 were expected), the output components' is not; a choice set
# of 5-6 references per pair could not show it (a z's own small-sample spread dominates). On 70 calibration
# independents (4,830 null pairs, research/28_confirm_choose_tail_more_references.py) the Gaussian null derived 8,
# -ft10 4 (alpha x pairs: 4.8) with every positive and student still derived (research/29_confirm_choose_field_tail.py);
# a heavier tail for every component (-t10) lost two students resting on the boundary shift.
#
# -arch: architecture-matched references. The default first (analysis.triage.DEFAULT_RULE).
RULES = ("joint-arch-w-shift-ft10", "joint-arch-w-shift", "joint-arch-w", "joint-arch-two-ws", "joint-arch-two",
         "joint-arch-two-w", "joint-arch", "joint", "minz")
ALONE_COMPONENTS = ("weights",)
SHIFT_COMPONENT = "boundary-shift"  # the output component the "-shift" rules add (evidence computes it)
JOINT_STATISTICS = ("max", "min", "stouffer", "second")  # max(min-z, truncated Stouffer) | min-z | Stouffer |
#                                                           second smallest z (two components agree)
_NULL_DRAWS = 40_000  # simulated independents per null (40 at or beyond the 1e-3 quantile)
# "independent" is a claim that the references could have disproved: it also needs a clear copy, every
# component CLEAR_COPY_Z reference sds below the references' mean, to be called derived (its p, p_clear_copy,
# below alpha). Under the default statistic three references never manage it (p ~ 7e-3), four to five just do,
# seven or more by far (p <= 5e-5); with too few, a suspect short of derived is inconclusive.
CLEAR_COPY_Z = 10.0
_SHRINK = 0.3  # weight of the identity in the references' correlation (few references, 3 components)


@dataclass(frozen=True)
class JointRule:
    """The joint null rule (see the comment above `RULES`)."""

    alpha: float = 1e-3
    p_independent: float = 0.1  # at or above this joint p the suspect sits among the references
    statistic: str = "max"
    min_references: int = 3
    log_scale: bool = True
    bootstrap: int = 200  # reference resamples for the score's interval (0: none)
    # Judge each suspect against the references of its own architecture (`matched_references`): two
    # independent models of one architecture sit far closer than models of different ones, so
    # references of mixed architectures called same-architecture independents derived.
    match_architecture: bool = False
    # 0: the simulated models' log-distances are Gaussian; > 0: each simulated model is scaled by a
    # Student-t mixing variable with this many degrees of freedom (a heavier-tailed null; research/18)
    tail_df: float = 0.0
    # > 0: the field's log-distances Student-t with this many degrees of freedom, the other components' Gaussian:
    # the field's z is taken to the z a Gaussian log-distance has at the same tail probability (`gaussianised_z`)
    # before T, so its heavier tail does not widen the null of the others (research/29)
    field_tail_df: float = 0.0
    weights: bool = False  # judge the weight-space component too (where suspect and victim share it)
    # with weights: judge it as its own stage (Bonferroni: p = 2 min(p of the other components, p of the
    # weights alone)) instead of inside T, so it does not widen the other components' null
    weight_stage: bool = False
    boundary_shift: bool = False  # judge the boundary-shift output component too (probes.boundary_shift)

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise UserError(f"The triage level alpha must lie strictly between 0 and 1 (default 1e-3); "
                            f"got {self.alpha!r}.")
        if self.tail_df < 0 or self.field_tail_df < 0:
            raise UserError(f"The null's tail degrees of freedom must be 0 (Gaussian) or positive; "
                            f"got {self.tail_df!r} and {self.field_tail_df!r} (the field's).")
        if self.statistic not in JOINT_STATISTICS:
            raise UserError(f"Unknown joint statistic {self.statistic!r}; choose from "
                            f"{', '.join(JOINT_STATISTICS)}.")

    @property
    def checks_lowest(self) -> bool:
        """Whether "independent" also needs the lowest component alone among the references: for statistics
        that can overlook one component ("second", "stouffer"); min and max already include it."""
        return self.statistic not in ("min", "max")

    @property
    def name(self) -> str:
        name = "joint-arch" if self.match_architecture else "joint"
        name += "-two" if self.statistic == "second" else ""
        name += ("-ws" if self.weight_stage else "-w") if self.weights else ""
        name += "-shift" if self.boundary_shift else ""
        name += f"-ft{self.field_tail_df:g}" if self.field_tail_df else ""
        return name + (f"-t{self.tail_df:g}" if self.tail_df else "")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}

    def reads(self, component: str) -> bool:
        """Whether this rule judges `component`: the weights only under "-w" rules, the boundary shift only under
        "-shift" ones; every other component always."""
        return (self.weights or component != "weights") and (self.boundary_shift or component != SHIFT_COMPONENT)


def joint_statistic(z: np.ndarray, statistic: str = "max", alone: np.ndarray | None = None) -> np.ndarray:
    """T for z-vectors [..., m] (NaN = undefined component, left out): larger = more derived. alone [m]
    (bool): under "second", components whose own -z also counts (T = max(-second smallest z, -z_alone))."""
    z = np.asarray(z, dtype=float)
    ok = np.isfinite(z)
    zmin = np.where(ok, z, np.inf).min(-1)
    m = np.maximum(ok.sum(-1), 1)
    stouffer = -np.where(ok, np.minimum(z, 0.0), 0.0).sum(-1) / np.sqrt(m)
    if statistic == "min":
        return -zmin
    if statistic == "stouffer":
        return stouffer
    if statistic == "second":
        zs = np.sort(np.where(ok, z, np.inf), -1)
        t = -zs[..., 0] if zs.shape[-1] < 2 else -np.where(ok.sum(-1) >= 2, zs[..., 1], zs[..., 0])
        if alone is not None and np.any(alone):
            t = np.maximum(t, -np.where(ok & np.asarray(alone, bool), z, np.inf).min(-1))
        return t
    return np.maximum(-zmin, stouffer)


def _transform(d: np.ndarray, log_scale: bool) -> np.ndarray:
    d = np.asarray(d, dtype=float)
    return np.log(np.maximum(d, 1e-12)) if log_scale else d


def _zs(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """z of x [..., m] among ref [..., n, m] (std floor as in reference_stats)."""
    mu = ref.mean(-2)
    sd = ref.std(-2, ddof=1)
    sd = np.maximum(sd, 1e-6 * np.maximum(1.0, np.abs(mu)))
    return (x - mu) / sd


def _shrunk_correlation(ref: np.ndarray) -> np.ndarray:
    m = ref.shape[1]
    if m == 1 or len(ref) < 3:
        return np.eye(m)
    c = np.corrcoef(ref, rowvar=False)
    c = np.nan_to_num(c, nan=0.0)
    np.fill_diagonal(c, 1.0)
    return (1 - _SHRINK) * c + _SHRINK * np.eye(m)


_NULL_CACHE: dict[tuple, np.ndarray] = {}
_DRAW_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _standard_draws(n: int, m: int, draws: int, tail_df: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The simulated models before any correlation: per draw, the suspect's uncorrelated vector [draws, m] and its
    n references' mean [draws, m] and sample covariance [draws, m, m] (ddof 1). A correlation L L^T acts on them
    linearly (mean -> mean L^T, covariance -> L S L^T), so every reference set of this size shares one draw
    and a null costs O(draws m^3) instead of O(draws n m) fresh normals (seeded, cached)."""
    key = (n, m, draws, tail_df)
    if key not in _DRAW_CACHE:
        rng = np.random.default_rng(20_240_917 + n * 31 + m)
        sims = rng.standard_normal((draws, n + 1, m))
        if tail_df:  # multivariate Student-t per simulated model
            sims *= np.sqrt(tail_df / rng.chisquare(tail_df, (draws, n + 1, 1)))
        refs = sims[:, 1:]
        mean = refs.mean(1)
        dev = refs - mean[:, None]
        cov = np.einsum("dnj,dnk->djk", dev, dev) / (n - 1)
        _DRAW_CACHE[key] = (sims[:, 0].copy(), mean, cov)
        if len(_DRAW_CACHE) > 32:
            _DRAW_CACHE.pop(next(iter(_DRAW_CACHE)))
    return _DRAW_CACHE[key]


def joint_null(n: int, corr: np.ndarray, statistic: str, draws: int = _NULL_DRAWS,
               tail_df: float = 0.0, alone: tuple[bool, ...] | None = None) -> np.ndarray:
    """Sorted T of `draws` simulated independents among n simulated references (seeded, cached): each simulated
    model's components are Gaussian (or Student-t, tail_df) with correlation `corr`, and z is taken as `_zs`
    takes it (the references' mean and sample sd, the same sd floor)."""
    key = (n, statistic, draws, tail_df, alone, np.round(corr, 6).tobytes())
    if key not in _NULL_CACHE:
        m = corr.shape[0]
        chol = np.linalg.cholesky(corr + 1e-9 * np.eye(m))
        x0, mean, cov = _standard_draws(n, m, draws, tail_df)
        mu = mean @ chol.T
        sd = np.sqrt(np.maximum(np.einsum("jk,dkl,jl->dj", chol, cov, chol), 0.0))
        sd = np.maximum(sd, 1e-6 * np.maximum(1.0, np.abs(mu)))
        z = (x0 @ chol.T - mu) / sd
        _NULL_CACHE[key] = np.sort(joint_statistic(z, statistic, None if alone is None else np.array(alone)))
        if len(_NULL_CACHE) > 512:
            _NULL_CACHE.pop(next(iter(_NULL_CACHE)))
    return _NULL_CACHE[key]


_TAIL_SETS = 10_000  # simulated reference sets behind `gaussianised_z`
_TAIL_CACHE: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}


def gaussianised_z(z: float | np.ndarray, n: int, df: float) -> np.ndarray:
    """The z a Gaussian log-distance has at the same tail probability as z, a suspect's z among n references when all
    n + 1 log-distances are Student-t with df degrees of freedom. That probability is P(x < mean + z sd) averaged over
    simulated reference sets (seeded, cached; smooth, with no floor in the tails); back through the Gaussian case's
    own distribution, sqrt((n + 1) / n) times Student-t with n - 1 degrees of freedom. Monotone; the identity as df
    grows."""
    from scipy.stats import t as student_t

    if (n, df) not in _TAIL_CACHE:
        refs = np.random.default_rng(20_261_204 + n).standard_t(df, (_TAIL_SETS, n))
        _TAIL_CACHE[(n, df)] = refs.mean(1), refs.std(1, ddof=1)
    mean, sd = _TAIL_CACHE[(n, df)]
    z = np.asarray(z, dtype=float)
    u = student_t.cdf(mean + z[..., None] * sd, df).mean(-1)
    return student_t.ppf(u, n - 1) * math.sqrt((n + 1) / n)


def _null_p(t: float | np.ndarray, null: np.ndarray) -> float | np.ndarray:
    """Share of the sorted simulated statistics `null` at or above t (at least 1 / (draws + 1)); t may be an array."""
    return (1 + len(null) - np.searchsorted(null, t, side="left")) / (1 + len(null))


def _verdict(p: float, p_lowest: float, p_clear_copy: float, rule: JointRule) -> str:
    """derived below alpha; independent only when the statistic and the lowest component alone both sit among
    the references (a copy that one component singles out, z -12 say, is no independent model) and the
    references could have called a clear copy derived (p_clear_copy < alpha; see CLEAR_COPY_Z)."""
    if p < rule.alpha:
        return "derived"
    if p_clear_copy >= rule.alpha:
        return "inconclusive"
    return "independent" if min(p, p_lowest) >= rule.p_independent else "inconclusive"


def judge_joint(distances: dict[str, float | None], refs: dict[str, Sequence[float | None]],
                rule: JointRule | None = None, seed: int = 0) -> dict[str, Any]:
    """Verdict of one suspect under the joint rule; the same keys as `judge_components` plus
    "score_interval" (5 %..95 % over reference resamples) and "rule": "joint"."""
    rule = rule or JointRule()
    if rule.weights and rule.weight_stage:
        return _judge_weight_stage(distances, refs, rule, seed)
    comps = [c for c, d in distances.items() if d is not None and math.isfinite(d)
             and rule.reads(c)]
    # Only references defined on every usable component (a reference with another label space has
    # no output divergence); components with too few such references are left out.
    def rows(cs: list[str]) -> list[int]:
        n = len(refs[cs[0]]) if cs else 0
        return [i for i in range(n) if all(refs[c][i] is not None and math.isfinite(refs[c][i]) for c in cs)]

    while comps and len(rows(comps)) < rule.min_references:
        comps = comps[:-1] if comps[-1] != "modelgif" else comps[1:]
    if "modelgif" in distances and "modelgif" not in comps:
        raise UserError("The field distance could not be calibrated: too few usable references.")
    idx = rows(comps)
    ref = _transform(np.array([[refs[c][i] for c in comps] for i in idx], dtype=float), rule.log_scale)
    x = _transform(np.array([distances[c] for c in comps], dtype=float), rule.log_scale)
    z = _zs(x, ref)
    field = comps.index("modelgif") if rule.field_tail_df and "modelgif" in comps else None

    def on_scale(zs: np.ndarray) -> np.ndarray:
        """z [..., m] with the field's z taken to the Gaussian scale (field_tail_df)."""
        if field is None:
            return zs
        zs = np.array(zs, dtype=float)
        zs[..., field] = gaussianised_z(zs[..., field], len(ref), rule.field_tail_df)
        return zs

    z_scaled = on_scale(z)
    alone = tuple(c in ALONE_COMPONENTS for c in comps) if rule.weights else None
    t = float(joint_statistic(z_scaled, rule.statistic, None if alone is None else np.array(alone)))
    corr = _shrunk_correlation(ref)
    null = joint_null(len(ref), corr, rule.statistic, tail_df=rule.tail_df, alone=alone)
    p = float(_null_p(t, null))
    # The lowest component alone, by the same null: "independent" needs it among the references too.
    p_lowest = p if not rule.checks_lowest else float(_null_p(
        float(-np.nanmin(z_scaled)), joint_null(len(ref), corr, "min", tail_df=rule.tail_df)))
    t_clear = float(joint_statistic(on_scale(np.full(len(comps), -CLEAR_COPY_Z)), rule.statistic,
                                    None if alone is None else np.array(alone)))
    p_clear_copy = float(_null_p(t_clear, null))
    verdict = _verdict(p, p_lowest, p_clear_copy, rule)
    interval = None
    if rule.bootstrap:
        rng = np.random.default_rng(seed)
        pick = rng.integers(0, len(ref), size=(rule.bootstrap, len(ref)))
        tb = joint_statistic(on_scale(_zs(x[None], ref[pick])), rule.statistic,
                             None if alone is None else np.array(alone))
        tb = tb[np.isfinite(tb)]
        if len(tb):
            interval = [float(np.quantile(tb, 0.05)), float(np.quantile(tb, 0.95))]
    raw = np.array([[refs[c][i] for c in comps] for i in idx], dtype=float)
    ev = {}
    for j, c in enumerate(comps):
        zc = float(z[j])
        ev[c] = {"distance": float(distances[c]), "z": zc, "p_value": _phi(zc),
                 "empirical_p": (1 + int((raw[:, j] <= distances[c]).sum())) / (1 + len(raw)),
                 "score": -zc}
    main = "modelgif" if "modelgif" in comps else comps[0]
    r_main = raw[:, comps.index(main)]
    return {"distance": float(distances[main]), "score": t, "verdict": verdict,
            "z": float(min(z)), "p_value": float(p), "p_lowest": float(p_lowest), "p_clear_copy": p_clear_copy,
            "empirical_p": min(e["empirical_p"] for e in ev.values()),
            "margin": float(r_main.min() - distances[main]),
            "closer_references": int((r_main <= distances[main]).sum()),
            "evidence": ev, "score_interval": interval, "rule": rule.name}


# The reference choice of the joint-arch rule, and what each outcome means for the verdict.
MATCH_NOTES = {
    "suspect-architecture": "references of the suspect's architecture",
    "other-architectures": "references of architectures other than the victim's (too few of the suspect's)",
    "too-few-same-architecture": ("all references, and no derived verdict: the suspect shares the victim's "
                                  "architecture and too few references do (an independent model of the same "
                                  "architecture sits far closer than references of other architectures)"),
}


def matched_references(victim_arch: str, suspect_arch: str, ref_archs: Sequence[str],
                        minimum: int = 3) -> tuple[list[int], str]:
    """Which references calibrate a suspect under the joint-arch rule: (indices into ref_archs, the
    MATCH_NOTES key). Those of the suspect's architecture when at least `minimum` exist; else, for a
    suspect of another architecture than the victim's, those of architectures other than the victim's
    (all if too few); else all, with the derived verdict withheld ("too-few-same-architecture")."""
    idx = [i for i, a in enumerate(ref_archs) if a == suspect_arch]
    if len(idx) >= minimum:
        return idx, "suspect-architecture"
    if suspect_arch != victim_arch:
        other = [i for i, a in enumerate(ref_archs) if a != victim_arch]
        return (other if len(other) >= minimum else list(range(len(ref_archs)))), "other-architectures"
    return list(range(len(ref_archs))), "too-few-same-architecture"


def _judge_weight_stage(distances: dict[str, float | None], refs: dict[str, Sequence[float | None]],
                        rule: JointRule, seed: int) -> dict[str, Any]:
    """The "-ws" rules: the other components by the rule without weights, the weight-space component by its
    own one-component null (among the references defining it, at least min_references), Bonferroni-combined."""
    base = dataclasses.replace(rule, weights=False, weight_stage=False)
    out = judge_joint({c: d for c, d in distances.items() if c != "weights"}, refs, base, seed)
    d = distances.get("weights")
    r = [x for x in refs.get("weights", []) if x is not None and math.isfinite(x)]
    if d is None or not math.isfinite(d) or len(r) < rule.min_references:
        return {**out, "rule": rule.name}
    ref = _transform(np.array(r, dtype=float)[:, None], rule.log_scale)
    zw = float(_zs(_transform(np.array([d], dtype=float), rule.log_scale), ref)[0])
    null_w = joint_null(len(ref), np.eye(1), "min", tail_df=rule.tail_df)
    pw = float(_null_p(-zw, null_w))
    p = min(1.0, 2.0 * min(out["p_value"], pw))
    p_lowest = min(out["p_lowest"], pw)
    p_clear_copy = min(1.0, 2.0 * min(out["p_clear_copy"], float(_null_p(CLEAR_COPY_Z, null_w))))
    verdict = _verdict(p, p_lowest, p_clear_copy, rule)
    ev = {**out["evidence"], "weights": {"distance": float(d), "z": zw, "p_value": _phi(zw), "score": -zw,
                                         "empirical_p": (1 + sum(x <= d for x in r)) / (1 + len(r))}}
    return {**out, "score": max(out["score"], -zw), "verdict": verdict, "p_value": p, "p_lowest": p_lowest,
            "p_clear_copy": p_clear_copy,
            "z": min(out["z"], zw),
            "evidence": ev, "rule": rule.name}


def judge_matched(distances: dict[str, float | None], refs: dict[str, Sequence[float | None]],
                  rule: JointRule, victim_arch: str, suspect_arch: str, ref_archs: Sequence[str],
                  seed: int = 0) -> dict[str, Any]:
    """`judge_joint` against the references `matched_references` picks; adds "reference_match" (the
    MATCH_NOTES key) and "references_used" (indices into the references)."""
    idx, note = matched_references(victim_arch, suspect_arch, ref_archs, rule.min_references)
    out = judge_joint(distances, {c: [r[i] for i in idx] for c, r in refs.items()}, rule, seed)
    if note == "too-few-same-architecture" and out["verdict"] == "derived":
        out["verdict"] = "inconclusive"
    return {**out, "reference_match": note, "references_used": idx}


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial confidence interval of k successes in n trials."""
    from scipy.stats import beta

    if n <= 0:
        return (0.0, 1.0)
    a = (1 - confidence) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def joint_scores(x: np.ndarray, ref: np.ndarray, rule: JointRule | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The joint rule for many suspects against one set of references at once: x [S, m] and ref [n, m]
    raw distances (NaN = undefined; a reference must be defined on every component) -> (T [S], p [S]).
    Suspects with the same defined components share one simulated null."""
    rule = rule or JointRule()
    if rule.field_tail_df:
        raise ValueError("joint_scores' columns are unnamed, so it cannot tell the field's: use judge_joint")
    x = np.atleast_2d(np.asarray(x, dtype=float)).copy()
    ref = np.asarray(ref, dtype=float)
    usable = np.isfinite(ref).any(0)  # a component no reference defines (no boundary) is left out
    x[:, ~usable] = np.nan
    ref = ref[np.isfinite(ref[:, usable]).all(1)]
    ref = np.where(np.isfinite(ref), ref, 1.0)  # (the unusable columns: never read)
    if len(ref) < rule.min_references:
        raise UserError(f"Triage needs at least {rule.min_references} independent reference models; "
                        f"got {len(ref)} defined on every component.")
    ref = _transform(ref, rule.log_scale)
    xt = np.where(np.isfinite(x), _transform(np.where(np.isfinite(x), x, 1.0), rule.log_scale), np.nan)
    z = _zs(xt, ref)  # [S, m]; NaN where x is undefined
    t = joint_statistic(z, rule.statistic)
    p = np.ones(len(x))
    pattern = np.isfinite(z)
    for key in {tuple(r) for r in pattern}:
        cols = np.array(key, dtype=bool)
        if not cols.any():
            continue
        rows = (pattern == cols).all(1)
        null = joint_null(len(ref), _shrunk_correlation(ref[:, cols]), rule.statistic, tail_df=rule.tail_df)
        p[rows] = _null_p(t[rows], null)
    return t, p
