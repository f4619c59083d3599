"""A label-agreement component chosen on the choice set: how far a suspect's own boundary lies from the victim's.

The default rule (joint-arch-w) misses strong label students: they learned only which side of the boundary
each query falls on, so their softmax (what boundary-js compares) is their own. `boundary-shift`
(`analysis.probes.boundary_shift`) reads the side alone: at each of the victim's 500 tie points, one Newton
step of the suspect's two-class logit gap along the anchor-pair segment says how far (in mixup coefficient)
the suspect's boundary lies; the component is the mean over the points, clipped at the whole segment. On the
choice set the owner's two label students are resnet-surrogate-1 and effnet-surrogate-1 (research/24: both
short of derived under every rule).

Candidates, the rule joint-arch-w each time (its statistic and null unchanged):
    default       modelgif, boundary-js, adversarial-js, weights (the components now)
    add-shift     those and boundary-shift
    shift-for-js  boundary-shift in place of boundary-js

Criterion, fixed before this run (research/24's, unchanged). Eligible: at most the 95 % quantile of
Binomial(pairs, alpha) of the 1,190 null pairs derived, and at most the 95 % quantile of Binomial(pairs, 0.01)
at p < 0.01. Among the eligible: the most positives derived, then the most students, then the largest median
-log10 p of the students. It replaces the default only if it derives at least as many students and at least
as many positives as the default does here. Nothing of the test independents, the derived models or the
fresh models is read.

Run (the log) with the component as the mean over the points; since research/27 (EVIDENCE_VERSION 3) the evidence
holds the share of points beyond 0.05, so a rerun judges that component instead.

Usage: python research/26_confirm_choose_boundary_shift.py     (MODELGIF_HOME: where the full zoo is)
"""

from __future__ import annotations

import dataclasses
import json

from modelgif_core.bench.verdicts import RULE_CHOICES, choice_lines, choice_set, choose, evidence_candidate

# joint-arch-w-shift reads the boundary shift where the evidence has it: without it, it is joint-arch-w (the run
# logged was made before the rule had a name, with joint-arch-w reading every component given)
RULE = RULE_CHOICES["joint-arch-w-shift"]
CANDIDATES = {"default": ("boundary-shift",), "add-shift": (), "shift-for-js": ("boundary-js",)}  # left out


def main() -> None:
    full = choice_set()
    data = {r["name"]: r["data"] for r in full.rows}
    table = []
    for name, drop in CANDIDATES.items():
        cs = dataclasses.replace(full, comps={k: v for k, v in full.comps.items() if k not in drop})
        table.append(evidence_candidate(name, cs, RULE))
    print(f"choice set: {len(full.calibration)} calibration independents, {table[0]['null_pairs']} null pairs, "
          f"{len(full.positives)} positives; rule joint-arch-w")
    print("\n".join(choice_lines(table, "candidate", data, 13)))
    print("the students' z:", *(f"  {t['candidate']}: {n} {z}" for t in table for n, z in t["student_z"].items()),
          sep="\n")
    best, default = choose(table, table[0])
    print(f"best eligible: {best['candidate'] if best else None}; default: {default['candidate']}")
    print(json.dumps({"table": table, "chosen": best and best["candidate"], "default": default["candidate"]}))


if __name__ == "__main__":
    main()
