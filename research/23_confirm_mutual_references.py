"""A lever measured, nothing chosen: calibrate each pair from both ends ("mutual" references).

Triage places d(victim, suspect) among the distances from the victim to independent references of the
suspect's architecture: is the suspect closer to the victim than independent models are? The false alarms
of the full zoo's null pairs (bench ip's listing) are suspects whose outputs sit close to *every* model
(indep-test-28-convnext is the suspect of 3 of 5): closer to the pseudo-victim than the references are,
but no closer to it than to anything else. The mirror question asks whether the victim is closer to the
suspect than independent models of the *victim's* architecture are: d(victim, suspect) among
d(reference, suspect), each reference as the victim (its own probe points), which the bench's pair
evidence holds for every independent. "mutual": derived only when both ends say so (an
intersection-union test: p = max of the two p's, so its level stays alpha).

Read on the full zoo (the choice set: calibration independents, the owner's students and copies; the test
models; every null pair). The rule is not changed
here: the choice set has no false alarm for a conservative rule to remove, so under research/21's
criterion (most students among the eligible) it could not win there.

Usage: python research/23_confirm_mutual_references.py   (MODELGIF_HOME: the full zoo and its bench pair cache)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from modelgif_core.analysis.calibration import clopper_pearson
from modelgif_core.bench.verdicts import RULE_CHOICES, judge, zoo_evidence

RULES = ("joint-arch-two-ws", "joint-arch-w")


def make_judges(rule, comps, rows, victims) -> tuple[Callable, Callable]:
    """(one-sided, mutual) verdicts by model names: fn(victim, suspect, reference names)."""
    col = {r["name"]: i for i, r in enumerate(rows)}
    vrow = {c: k for k, c in enumerate(victims)}
    archs = [r["arch"] for r in rows]

    def one(v: str, s: str, refs: list[str]) -> dict:
        return judge(rule, comps, vrow[col[v]], col[s], [col[n] for n in refs], archs, col[v])

    def mutual(v: str, s: str, refs: list[str]) -> dict:
        a = one(v, s, refs)
        # the mirror: the same distances d(v, s), among d(r, s) of references r as victims (rows of r), the
        # references matched to the victim's architecture (judge_matched with the roles swapped)
        used = [c for c in ("modelgif", "boundary-js", "adversarial-js", "weights") if c in comps]
        mirror = {c: comps[c].copy() for c in used}  # (judge reads only these; not the [M, M] field matrix)
        rr = [n for n in refs if col[n] in vrow]
        for c in used:
            for n in rr:
                mirror[c][vrow[col[v]], col[n]] = (comps["field_matrix"][col[n], col[s]] if c == "modelgif"
                                                   else comps[c][vrow[col[n]], col[s]])
        b = judge(rule, mirror, vrow[col[v]], col[s], [col[n] for n in rr],
                  [archs[col[s]] if i == col[v] else (archs[col[v]] if i == col[s] else x)
                   for i, x in enumerate(archs)], col[v])
        p = max(a["p_value"], b["p_value"])
        # both ends derived (each end's verdict, not only its p: joint-arch withholds "derived" from a suspect
        # of the victim's architecture with too few such references)
        both = a["verdict"] == b["verdict"] == "derived"
        verdict = "derived" if both else ("inconclusive" if a["verdict"] != "independent" else "independent")
        return {**a, "p_value": p, "verdict": verdict, "mirror_p": b["p_value"]}

    return one, mutual


def count(judge_fn: Callable, pairs: list[tuple[str, str, list[str]]]) -> tuple[int, int]:
    verdicts = [judge_fn(v, s, refs)["verdict"] for v, s, refs in pairs]
    return verdicts.count("derived"), len(verdicts)


def report(title: str, judges: dict[str, Callable], groups: dict[str, list]) -> None:
    print(title)
    print(f"  {'group':<30} " + " ".join(f"{k:>24}" for k in judges))
    for g, pairs in groups.items():
        cells = []
        for fn in judges.values():
            k, n = count(fn, pairs)
            if g.startswith("null"):
                lo, hi = clopper_pearson(k, n)
                cells.append(f"{k}/{n} ({100 * lo:.2f}-{100 * hi:.2f}%)")
            else:
                cells.append(f"{k}/{n}")
        print(f"  {g:<30} " + " ".join(f"{c:>24}" for c in cells))


def zoo_groups(rows: list[dict]) -> dict[str, list]:
    indep = [r["name"] for r in rows if r["role"].startswith("independent")]
    victims = [r["name"] for r in rows if r["role"] == "victim"]
    groups: dict[str, list] = {}
    for r in rows:
        if r["role"] == "derived" or r["role"] == "surrogate":
            key = r["attack"] if r["role"] == "derived" else "surrogate"
            groups.setdefault(key, []).append((r["parent"], r["name"], [n for n in indep if n != r["name"]]))
    groups["independent-test vs victims"] = [(v, n, [m for m in indep if m != n]) for v in victims for n in indep
                                             if n.startswith("indep-test")]
    groups["null pairs (all)"] = [(a, b, [n for n in indep if n not in (a, b)]) for a in indep for b in indep
                                  if a != b]
    return groups


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    rows, models, victims, comps = zoo_evidence("full")
    cal = [r["name"] for r in rows if r["role"] == "independent-calibration"]
    for name in RULES:
        rule = RULE_CHOICES[name]
        one, mutual = make_judges(rule, comps, rows, victims)
        groups = zoo_groups(rows)
        groups["null pairs (choice set)"] = [(a, b, [n for n in cal if n not in (a, b)]) for a in cal for b in cal
                                             if a != b]
        report(f"full zoo, rule {name} (derived at alpha {rule.alpha:g}):",
               {"one-sided (triage now)": one, "mutual": mutual}, groups)


if __name__ == "__main__":
    main()
