"""Triage's rule chosen again on a choice set large enough to see a false-alarm rate near alpha.

The earlier choices (research/16, 18, 21, 22) read 132 null pairs among 12 calibration independents, with 1-5
of each architecture. At alpha = 1e-3 that cannot tell a rule that keeps its level from one that calls 0.4 %
of independent pairs derived (the default's rate on the zoo's test side, research/23_log), and the
architecture-matched rules saw 1-3 references of the suspect's architecture. This run adds 23 calibration
independents (`zoo.recipes._MORE_CALIBRATION`: 7 of every architecture, 35 in all, 1,190 null pairs) and
chooses among the joint-arch rules again. Nothing of the test independents, the derived models or the fresh
models is read. Said plainly: the test sides were seen before this run (joint-arch-w did better there,
research/23_log); that is why the choice is made again, and why it is made only here, by a criterion written
down before the run.

The choice set: the 1,190 null pairs (each calibration independent a pseudo-victim, the other 33 its
references), and the positives: the owner's 6 surrogate students and 12 copies against their victim, the 35
calibration models as references.

Criterion, fixed before this run. Eligible: at most the 95 % quantile of Binomial(pairs, alpha) null pairs
derived (a rule that keeps its level passes with probability 0.95; no longer "none", which a calibrated rule
fails two times in three on this many pairs), and at most the 95 % quantile of Binomial(pairs, 0.01) at
p < 0.01. Among the eligible: the most positives derived, then the most students, then the largest median
-log10 p of the students (research/21's order). It replaces the default only if it derives at least as many
students and at least as many positives as the default does here. If no rule is eligible, the default stays
and the run says so.

Usage: python research/24_confirm_choose_rule_more_calibration.py     (MODELGIF_HOME: where the full zoo is)
"""

from __future__ import annotations

import json

from modelgif_core.bench.verdicts import RULE_CHOICES, choice_lines, choice_row, choice_set, choose

CURRENT_DEFAULT = "joint-arch-two-ws"
CANDIDATES = {k: v for k, v in RULE_CHOICES.items() if k.startswith("joint-arch")}


def main() -> None:
    cs = choice_set()
    cal = cs.calibration
    data = {r["name"]: r["data"] for r in cs.rows}
    alpha = CANDIDATES[CURRENT_DEFAULT].alpha
    table = [{"rule": name, **choice_row(cs, lambda v, s, refs, rule=rule: cs.verdict(rule, v, s, refs), alpha)}
             for name, rule in CANDIDATES.items()]
    same = sum(data[a] == data[b] for a in cal for b in cal if a != b)
    print(f"choice set: {len(cal)} calibration independents, {table[0]['null_pairs']} null pairs ({same} share "
          f"their training data), {len(cs.positives)} positives")
    print("\n".join(choice_lines(table, "rule", data, 18)))
    best, default = choose(table, next(t for t in table if t["rule"] == CURRENT_DEFAULT))
    print(f"best eligible: {best['rule'] if best else None}; default: {default['rule']}")
    for t in table:
        t.pop("judged")
    print(json.dumps({"table": table, "chosen": best and best["rule"], "default": default["rule"],
                      "cap_derived": table[0]["cap_derived"], "cap_p01": table[0]["cap_p01"]}))


if __name__ == "__main__":
    main()
