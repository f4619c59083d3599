"""Does triage's default gain the weight-space stage? Chosen on a choice set that now holds same-architecture copies.

research/18 kept joint-arch-two as the default: its choice set (132 null pairs among the 12 calibration
independents and the owner's 6 surrogate students) held no copy that keeps the victim's weights, so a rule
with the weight-space stage could only pay its Bonferroni factor there. Switching after reading the test tables
would leak. This run adds what an owner can make without any test model: copies of the victim made by the owner,
with the owner's data, by the weight-keeping attack recipes (fine-tuning, pruning 60 %, weight noise 7.5 %, the
three shifted domains; zoo role "owner-copy", 6 per victim). Nothing of the test independents, the derived
models or the fresh models is read here.

The choice set: the same 132 null pairs (each calibration independent a pseudo-victim, the other 10 its
references), and the positives: the owner's 6 students and 12 copies against their victim, the 12 calibration
models as references.

Criterion, fixed before this run: eligible are the candidates with no null pair derived whose count of null
pairs at p < 0.01 does not exceed the 95 % quantile of Binomial(132, 0.01) (as research/18). Among those: the
most positives derived (students and copies), then the most students derived, then the largest median
-log10 p of the students (a copy's p sits at the null simulation's floor under any rule with a weight stage, so
the copies' median would rank the rules by that floor alone). It becomes the default only if it derives at
least as many students and at least as many positives as the current default (joint-arch-two).

Usage: python research/21_confirm_choose_weight_stage.py     (MODELGIF_HOME: where the full zoo is; builds the
copies if missing)
"""

from __future__ import annotations

import json
import math

import numpy as np

from modelgif_core.bench.verdicts import RULE_CHOICES, choice_null_pairs, choice_set

CURRENT_DEFAULT = "joint-arch-two"
CANDIDATES = {k: v for k, v in RULE_CHOICES.items() if k.startswith("joint-arch")}
POINTS = "digits:256:0"  # the output probe points of the time (research/22 moved the default to 500)


def main() -> None:
    cs = choice_set(POINTS)
    cal, positives = cs.calibration, cs.positives

    verdict = cs.verdict

    table = []
    for name, rule in CANDIDATES.items():
        nulls = choice_null_pairs(lambda v, s, refs, rule=rule: verdict(rule, v, s, refs), cal)
        cap01 = nulls.pop("cap_p01")
        pos = {r["name"]: verdict(rule, r["parent"], r["name"], cal) for r in positives}
        students = [j for r, j in zip(positives, pos.values(), strict=True) if r["role"] == "surrogate"]
        t = {"rule": name, **nulls, "positives": len(pos),
             "positives_derived": sum(j["verdict"] == "derived" for j in pos.values()),
             "students": len(students), "students_derived": sum(j["verdict"] == "derived" for j in students),
             "student_median_neglog10_p": float(np.median([-math.log10(max(j["p_value"], 1e-300))
                                                           for j in students])),
             "verdicts": {n: j["verdict"] for n, j in pos.items()}}
        table.append(t)
    print(f"{'rule':<18} {'null derived':>13} {'p<0.01':>7} {'p<0.05':>7} {'positives':>10} {'students':>9} "
          f"{'students median -log10 p':>25} eligible")
    for t in table:
        print(f"{t['rule']:<18} {t['null_derived']:>7}/{t['null_pairs']:<5} {t['null_p_below_0.01']:>7} "
              f"{t['null_p_below_0.05']:>7} {t['positives_derived']:>6}/{t['positives']:<3} "
              f"{t['students_derived']:>5}/{t['students']:<3} {t['student_median_neglog10_p']:>25.2f} {t['eligible']}")
    n = table[0]["null_pairs"]
    print(f"(uniform null p on {n} pairs: expected {0.01 * n:.1f} at p < 0.01, 95 % quantile "
          f"{cap01}; expected {0.05 * n:.1f} at p < 0.05)")
    print("per positive:", *(f"  {n}: " + ", ".join(f"{t['rule']}={t['verdicts'][n]}" for t in table)
                             for n in table[0]["verdicts"]), sep="\n")
    ok = [t for t in table if t["eligible"]]
    best = sorted(ok, key=lambda t: (-t["positives_derived"], -t["students_derived"],
                                     -round(t["student_median_neglog10_p"], 6)))[0] if ok else None
    cur = next(t for t in table if t["rule"] == CURRENT_DEFAULT)
    default = best["rule"] if best and best["students_derived"] >= cur["students_derived"] and \
        best["positives_derived"] >= cur["positives_derived"] else CURRENT_DEFAULT
    print(f"chosen: {best['rule'] if best else None}; default: {default}")
    print(json.dumps({"table": table, "chosen": best and best["rule"], "default": default, "cap_p01": cap01}))


if __name__ == "__main__":
    main()
