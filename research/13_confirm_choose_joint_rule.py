"""The joint rule's knobs chosen on the choice set only: the full zoo's calibration independents and the
owner's surrogate students (never a derived model or a test independent).

Candidates: statistic (max of min-z and truncated Stouffer | min-z | Stouffer), log or raw distances,
64 or 256 output probe points, and the old rule (Sidak min z) for comparison. For each: the owner's 6
surrogates judged against their victim with the 12 calibration models as references (derived count and
the median -log10 p), and the 132 null pairs among the calibration models (each as a pseudo-victim, the
other 10 as references). The rule kept: no null pair derived, then the most surrogates derived, then
the largest median -log10 p.

Usage: python research/13_confirm_choose_joint_rule.py [--store DIR]   (MODELGIF_HOME: where the full zoo is)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time

import numpy as np

from modelgif_core import FieldStore, zoo
from modelgif_core.analysis.calibration import JointRule, TriageRule
from modelgif_core.analysis.evidence import pair_components
from modelgif_core.bench.verdicts import judge


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = [r for r in zoo.list_zoo("full") if r["role"] in ("victim", "surrogate", "independent-calibration")]
    col = {r["name"]: i for i, r in enumerate(rows)}
    cal = [r["name"] for r in rows if r["role"] == "independent-calibration"]
    sur = [r for r in rows if r["role"] == "surrogate"]
    victims = [col["resnet-victim"], col["effnet-victim"]] + [col[n] for n in cal]
    vrow = {c: k for k, c in enumerate(victims)}
    store = FieldStore(args.store) if args.store else None
    comps = {pts: pair_components([r["spec"] for r in rows], victims, points=f"digits:{pts}:0", store=store)
             for pts in (64, 256)}
    rules = {"minz": TriageRule()}
    for stat, log in itertools.product(("max", "min", "stouffer"), (True, False)):
        rules[f"joint-{stat}-{'log' if log else 'raw'}"] = JointRule(statistic=stat, log_scale=log, bootstrap=0)
    table = []
    for (name, rule), pts in itertools.product(rules.items(), (64, 256)):
        c = comps[pts]
        sv = [judge(rule, c, vrow[col[s["parent"]]], col[s["name"]], [col[n] for n in cal]) for s in sur]
        null = [judge(rule, c, vrow[col[a]], col[b], [col[n] for n in cal if n not in (a, b)])["verdict"]
                for a in cal for b in cal if a != b]
        lp = [-math.log10(max(j["p_value"], 1e-300)) for j in sv]
        table.append({"rule": name, "points": pts, "surrogates_derived": sum(j["verdict"] == "derived" for j in sv),
                      "surrogates": len(sv), "median_neglog10_p": float(np.median(lp)),
                      "null_derived": null.count("derived"), "null_pairs": len(null),
                      "null_inconclusive": null.count("inconclusive")})
    best = sorted([t for t in table if t["null_derived"] == 0],
                  key=lambda t: (-t["surrogates_derived"], -t["median_neglog10_p"]))[0]
    print(f"{'rule':<22} {'points':>6} {'surrogates derived':>19} {'median -log10 p':>16} {'null derived':>13} "
          f"{'null inconcl':>13}")
    for t in table:
        print(f"{t['rule']:<22} {t['points']:>6} {t['surrogates_derived']:>12}/{t['surrogates']:<6} "
              f"{t['median_neglog10_p']:>16.2f} {t['null_derived']:>7}/{t['null_pairs']:<5} "
              f"{t['null_inconclusive']:>13}")
    print(f"chosen: {best['rule']} at {best['points']} points ({time.perf_counter() - t0:.0f} s)")
    print(json.dumps({"table": table, "chosen": best}))


if __name__ == "__main__":
    main()
