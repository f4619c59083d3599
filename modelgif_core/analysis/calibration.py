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
