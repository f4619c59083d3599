"""How triage conditions on the suspect's architecture, chosen on the choice set only.

The joint rule's false alarms on the full zoo were all pairs of independents of one architecture: the
references mix five architectures, so a same-architecture independent sits far below them. Two ways to
condition on the architecture are compared on the choice set: the 132 null pairs among the 12
calibration independents (each as a pseudo-victim, the other calibration models as references) and the
owner's 6 surrogates against their victim (the 12 calibration models as references). Nothing of the
test independents, the derived models or the fresh models is read.

  suspect-arch  references of the suspect's architecture (>= 3); else, for a suspect of another architecture
                than the victim's, those of architectures other than the victim's; else all references and
                no derived verdict (`calibration.matched_references`, the joint-arch rule)
  relation      references whose "same architecture as the victim" equals the suspect's (>= 3); else all
                references and no derived verdict

The rule kept: fewest null pairs derived, then the most surrogates derived.
Reads the pair matrices `modelgif bench ip --size full --part verdicts` keeps (computed if missing).

Usage: python research/16_confirm_choose_reference_match.py      (MODELGIF_HOME: where the full zoo is)
"""

from __future__ import annotations

import json
import math

from modelgif_core.analysis.calibration import JointRule, judge_joint, judge_matched
from modelgif_core.bench.verdicts import COMPONENTS, zoo_evidence

POINTS = "digits:256:0"  # the output probe points of the time (research/22 moved the default to 500)


def value(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def relation_refs(victim_arch: str, suspect_arch: str, ref_archs: list[str],
                  minimum: int = 3) -> tuple[list[int], bool]:
    same = suspect_arch == victim_arch
    idx = [i for i, a in enumerate(ref_archs) if (a == victim_arch) == same]
    return (idx, False) if len(idx) >= minimum else (list(range(len(ref_archs))), True)


def main() -> None:
    rows, models, victims, comps = zoo_evidence("full", POINTS)
    col = {r["name"]: i for i, r in enumerate(rows)}
    vrow = {c: k for k, c in enumerate(victims)}
    arch = {r["name"]: r["arch"] for r in rows}
    cal = [r["name"] for r in rows if r["role"] == "independent-calibration"]
    sur = [r for r in rows if r["role"] == "surrogate"]
    rule = JointRule(bootstrap=0, match_architecture=True)

    def verdict(policy: str, v: str, s: str, refs: list[str]) -> str:
        d = {c: value(comps[c][vrow[col[v]], col[s]]) for c in COMPONENTS}
        r = {c: [value(comps[c][vrow[col[v]], col[n]]) for n in refs] for c in d}
        if policy == "suspect-arch":
            return judge_matched(d, r, rule, arch[v], arch[s], [arch[n] for n in refs])["verdict"]
        idx, cap = relation_refs(arch[v], arch[s], [arch[n] for n in refs])
        out = judge_joint(d, {c: [x[i] for i in idx] for c, x in r.items()}, rule)["verdict"]
        return "inconclusive" if cap and out == "derived" else out

    table = []
    for policy in ("suspect-arch", "relation"):
        null = [verdict(policy, a, b, [n for n in cal if n not in (a, b)]) for a in cal for b in cal if a != b]
        sv = [verdict(policy, s["parent"], s["name"], cal) for s in sur]
        table.append({"policy": policy, "null_derived": null.count("derived"), "null_pairs": len(null),
                      "surrogates_derived": sv.count("derived"), "surrogates": len(sv)})
        print(f"{policy:<14} null pairs derived {table[-1]['null_derived']}/{len(null)}, "
              f"surrogates derived {table[-1]['surrogates_derived']}/{len(sv)}")
    best = sorted(table, key=lambda t: (t["null_derived"], -t["surrogates_derived"]))[0]
    print(f"chosen: {best['policy']}")
    print(json.dumps({"table": table, "chosen": best["policy"]}))


if __name__ == "__main__":
    main()
