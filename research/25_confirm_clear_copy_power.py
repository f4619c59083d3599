"""Which reference sets can clear a suspect: the p a clear copy gets, by reference count and rule.

A joint rule calls a suspect "independent" when it sits among the references. With few references the null
is so wide that a suspect far below them sits "among" them too: on the small zoo, three ResNet references
called a strongly label-extracted ResNet student independent (z -3.7 on one component). The verdict now also
asks whether the references could have called a clear copy derived, every component
`calibration.CLEAR_COPY_Z` (10) reference sds below their mean; where they cannot (p_clear_copy >= alpha),
a suspect short of derived is inconclusive. 10 is not fitted to any model: it is far below every
independent and above the z's the zoo's copies reach (-12 to -30 on the field or weight components).

This script prints, for every joint rule and reference count, the largest p_clear_copy over reference sets
drawn with random correlations (the p depends on the count and the references' correlation only), and the
reference counts the zoos give each suspect: each architecture's independents, less the two a null pair
leaves out (the verdict bench) or none (a user's triage). Any count whose p reaches alpha changes verdicts.

Usage: python research/25_confirm_clear_copy_power.py [--sets 30]
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from modelgif_core.analysis.calibration import CLEAR_COPY_Z, RULES, JointRule, judge_joint
from modelgif_core.analysis.triage import rule_by_name
from modelgif_core.zoo.recipes import recipes

COMPONENTS = ("modelgif", "boundary-js", "adversarial-js", "weights")
COUNTS = (3, 4, 5, 6, 7, 9, 12, 20, 33, 57)


def largest_p_clear_copy(rule: JointRule, n: int, sets: int, rng: np.random.Generator) -> float:
    m = 4 if rule.weights else 3
    worst = 0.0
    for _ in range(sets):
        mix = rng.standard_normal((m, m)) * rng.uniform(0.0, 2.0) + np.eye(m)  # weak to strong correlation
        ref = np.exp(0.03 * rng.standard_normal((n, m)) @ mix.T)
        refs = {c: list(ref[:, j]) for j, c in enumerate(COMPONENTS[:m])}
        middle = {c: float(np.exp(np.log(r).mean())) for c, r in refs.items()}
        worst = max(worst, judge_joint(middle, refs, rule)["p_clear_copy"])
    return worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", type=int, default=30, help="reference sets (correlations) per count and rule")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rules = [n for n in RULES if n != "minz"]
    print(f"largest p_clear_copy (a suspect {CLEAR_COPY_Z:g} sds below every component) over {args.sets} "
          f"reference sets; alpha {JointRule().alpha:g}")
    print(f"{'references':>10} " + " ".join(f"{r:>18}" for r in rules))
    for n in COUNTS:
        ps = [largest_p_clear_copy(rule_by_name(r).__class__(**{**vars(rule_by_name(r)), "bootstrap": 0}), n,
                                   args.sets, rng) for r in rules]
        print(f"{n:>10} " + " ".join(f"{p:>12.2g} {'ok' if p < JointRule().alpha else 'WEAK':>5}" for p in ps))
    for size in ("small", "full"):
        per_arch = Counter(r.arch for r in recipes(size) if r.role.startswith("independent"))
        print(f"{size} zoo: independents per architecture {dict(sorted(per_arch.items()))}; of the suspect's "
              f"architecture a null pair has at least {min(per_arch.values()) - 2}, a user's triage "
              f"{min(per_arch.values())} (with fewer than 3, the other architectures' references judge)")


if __name__ == "__main__":
    main()
