"""Does triage gain from more output probe points? Chosen on the choice set alone, before any test model is read.

The two output components (JS divergence on the victim's boundary line, JS divergence at its adversarial points)
are means over points made from held-out digits, one point per digit each; the default takes 256 of the 500
held-out digits (`DEFAULT_POINTS`). Issue 24 names more probe points as a cheap lever: a mean over more points
varies less between one independent model and the next, so the references' spread may shrink and a student's
closeness stand out further. Nothing of the test independents, the derived models or the fresh models is read.

The choice set (as research/21): the 132 null pairs among the 12 calibration independents (each a pseudo-victim,
the other 10 its references), and 18 positives (the owner's 6 surrogate students and 12 copies) against their
victim with the 12 calibration models as references. The rule is the default, joint-arch-two-ws (research/21);
joint-arch-two is printed beside it, not chosen on.

Candidates: digits:128:0, digits:256:0 (the current default) and digits:500:0 (every held-out digit).

Criterion, fixed before this run (as research/21): eligible are the candidates with no null pair derived whose
count of null pairs at p < 0.01 does not exceed the 95 % quantile of Binomial(132, 0.01). Among those: the most
students derived, then the most positives derived, then the largest median -log10 p of the students. A candidate
replaces the current default only if it is strictly better by that order; on a tie the current one stays.

Usage: python research/22_confirm_choose_probe_points.py     (MODELGIF_HOME: where the full zoo is)
"""

from __future__ import annotations

import json
import math

import numpy as np

from modelgif_core.analysis.evidence import OUTPUT_COMPONENTS
from modelgif_core.bench.verdicts import RULE_CHOICES, choice_null_pairs, choice_set

CANDIDATES = ("digits:128:0", "digits:256:0", "digits:500:0")
CURRENT_DEFAULT = "digits:256:0"
RULES = ("joint-arch-two-ws", "joint-arch-two")


def main() -> None:
    table = []
    for points in CANDIDATES:
        cs = choice_set(points)
        cal, positives = cs.calibration, cs.positives
        students = [r for r in positives if r["role"] == "surrogate"]
        for name in RULES:
            rule = RULE_CHOICES[name]

            def verdict(v: str, s: str, refs: list[str], rule=rule, cs=cs) -> dict:
                return cs.verdict(rule, v, s, refs)

            nulls = choice_null_pairs(verdict, cal)
            cap01 = nulls.pop("cap_p01")
            pos = {r["name"]: verdict(r["parent"], r["name"], cal) for r in positives}
            st = [pos[r["name"]] for r in students]
            table.append({
                "points": points, "rule": name, **nulls, "cap_p01": cap01,
                "positives": len(pos), "positives_derived": sum(j["verdict"] == "derived" for j in pos.values()),
                "students": len(st), "students_derived": sum(j["verdict"] == "derived" for j in st),
                "student_median_neglog10_p": float(np.median([-math.log10(max(j["p_value"], 1e-300)) for j in st])),
                "student_z": {r["name"]: {c: round(pos[r["name"]]["evidence"][c]["z"], 2)
                                          for c in ("modelgif", *OUTPUT_COMPONENTS)
                                          if c in pos[r["name"]]["evidence"]} for r in students},
                "verdicts": {n: j["verdict"] for n, j in pos.items()}})
    print(f"{'points':<14} {'rule':<18} {'null derived':>13} {'p<0.01':>7} {'p<0.05':>7} {'positives':>10} "
          f"{'students':>9} {'students median -log10 p':>25} eligible")
    for t in table:
        print(f"{t['points']:<14} {t['rule']:<18} {t['null_derived']:>7}/{t['null_pairs']:<5} "
              f"{t['null_p_below_0.01']:>7} {t['null_p_below_0.05']:>7} "
              f"{t['positives_derived']:>6}/{t['positives']:<3} "
              f"{t['students_derived']:>5}/{t['students']:<3} {t['student_median_neglog10_p']:>25.2f} {t['eligible']}")
    print(f"(95 % quantile of Binomial({table[0]['null_pairs']}, 0.01): {table[0]['cap_p01']})")
    print("the students' z (field, boundary JS, adversarial JS), joint-arch-two-ws:")
    for t in table:
        if t["rule"] == RULES[0]:
            print(f"  {t['points']}: " + "; ".join(f"{n} " + " ".join(f"{z:+.1f}" for z in zs.values())
                                                   for n, zs in t["student_z"].items()))

    def rank(t: dict) -> tuple:
        return (t["students_derived"], t["positives_derived"], round(t["student_median_neglog10_p"], 6))

    ok = [t for t in table if t["rule"] == RULES[0] and t["eligible"]]
    cur = next(t for t in table if t["rule"] == RULES[0] and t["points"] == CURRENT_DEFAULT)
    best = max(ok, key=rank) if ok else None
    chosen = best["points"] if best and rank(best) > rank(cur) else CURRENT_DEFAULT
    print(f"best eligible: {best and best['points']}; default: {chosen}")
    print(json.dumps({"table": table, "default": chosen}))


if __name__ == "__main__":
    main()
