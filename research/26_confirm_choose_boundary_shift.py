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

Usage: python research/26_confirm_choose_boundary_shift.py     (MODELGIF_HOME: where the full zoo is)
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from modelgif_core.bench.verdicts import RULE_CHOICES, choice_null_pairs, choice_set

RULE = RULE_CHOICES["joint-arch-w"]
CANDIDATES = {"default": ("boundary-shift",), "add-shift": (), "shift-for-js": ("boundary-js",)}  # left out


def main() -> None:
    full = choice_set()
    data = {r["name"]: r["data"] for r in full.rows}
    table = []
    for name, drop in CANDIDATES.items():
        cs = dataclasses.replace(full, comps={k: v for k, v in full.comps.items() if k not in drop})
        cal, positives = cs.calibration, cs.positives
        nulls = choice_null_pairs(lambda v, s, refs, cs=cs: cs.verdict(RULE, v, s, refs), cal, level=RULE.alpha)
        pos = {r["name"]: cs.verdict(RULE, r["parent"], r["name"], cal) for r in positives}
        students = [pos[r["name"]] for r in positives if r["role"] == "surrogate"]
        table.append({
            "candidate": name, **nulls,
            "positives": len(pos), "positives_derived": sum(j["verdict"] == "derived" for j in pos.values()),
            "students": len(students), "students_derived": sum(j["verdict"] == "derived" for j in students),
            "student_median_neglog10_p": float(np.median([-math.log10(max(j["p_value"], 1e-300)) for j in students])),
            "verdicts": {n: j["verdict"] for n, j in pos.items()},
            "student_z": {n: {c: round(e["z"], 1) for c, e in j["evidence"].items()} for n, j in pos.items()
                          if "surrogate" in n}})
    print(f"choice set: {len(full.calibration)} calibration independents, {table[0]['null_pairs']} null pairs, "
          f"{len(full.positives)} positives; rule {RULE.name}")
    print(f"{'candidate':<13} {'null derived':>13} {'p<0.01':>7} {'p<0.05':>7} {'positives':>10} {'students':>9} "
          f"{'students median -log10 p':>25} eligible")
    for t in table:
        print(f"{t['candidate']:<13} {t['null_derived']:>7}/{t['null_pairs']:<5} {t['null_p_below_0.01']:>7} "
              f"{t['null_p_below_0.05']:>7} {t['positives_derived']:>6}/{t['positives']:<3} "
              f"{t['students_derived']:>5}/{t['students']:<3} {t['student_median_neglog10_p']:>25.2f} {t['eligible']}")
    print(f"(caps, 95 % quantiles on {table[0]['null_pairs']} pairs: derived {table[0]['cap_derived']} of "
          f"Binomial(n, {RULE.alpha:g}); p < 0.01 {table[0]['cap_p01']} of Binomial(n, 0.01))")
    for t in table:
        for a in t["alarms"]:
            print(f"  {t['candidate']}: derived {a['victim']} -> {a['suspect']} (same data: "
                  f"{data[a['victim']] == data[a['suspect']]}), p {a['p_value']:.1e}, z {a['z']}")
    print("per positive:", *(f"  {n}: " + ", ".join(f"{t['candidate']}={t['verdicts'][n]}" for t in table)
                             for n in table[0]["verdicts"]), sep="\n")
    print("the students' z:", *(f"  {t['candidate']}: {n} {z}" for t in table for n, z in t["student_z"].items()),
          sep="\n")
    ok = [t for t in table if t["eligible"]]
    best = sorted(ok, key=lambda t: (-t["positives_derived"], -t["students_derived"],
                                     -round(t["student_median_neglog10_p"], 6)))[0] if ok else None
    cur = table[0]
    default = best["candidate"] if best and best["students_derived"] >= cur["students_derived"] and \
        best["positives_derived"] >= cur["positives_derived"] else cur["candidate"]
    print(f"best eligible: {best['candidate'] if best else None}; default: {default}")
    print(json.dumps({"table": table, "chosen": best and best["candidate"], "default": default}))


if __name__ == "__main__":
    main()
