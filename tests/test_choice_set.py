"""bench.verdicts.ChoiceSet: a leak-free choice's verdicts read the right rows and columns of the pair evidence."""

import numpy as np

from modelgif_core.bench.verdicts import RULE_CHOICES, ChoiceSet, choice_null_pairs, judge

ROWS = [
    {"name": "victim", "role": "victim", "arch": "resnet", "parent": ""},
    {"name": "student", "role": "surrogate", "arch": "resnet", "parent": "victim"},
    {"name": "copy", "role": "owner-copy", "arch": "resnet", "parent": "victim"},
    *({"name": f"cal-{i}", "role": "independent-calibration", "arch": "resnet", "parent": ""} for i in range(6)),
]


def _comps(victims: list[int]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {c: rng.uniform(0.5, 1.0, (len(victims), len(ROWS))) for c in ("modelgif", "boundary-js", "adversarial-js")}
    out["modelgif"][0, 1] = out["boundary-js"][0, 1] = 0.01  # the student: two components far below
    for c in out.values():
        c[np.arange(len(victims)), victims] = 0.0
    return out


def test_verdict_is_judge_on_the_named_rows_and_columns():
    victims = [0, *range(3, len(ROWS))]
    cs = ChoiceSet(ROWS, _comps(victims), victims)
    assert cs.calibration == [f"cal-{i}" for i in range(6)]
    assert [r["name"] for r in cs.positives] == ["student", "copy"]
    rule = RULE_CHOICES["joint-arch-two"]
    archs = [r["arch"] for r in ROWS]
    got = cs.verdict(rule, "victim", "student", cs.calibration)
    assert got == judge(rule, cs.comps, 0, 1, list(range(3, 9)), archs, 0)
    assert got["verdict"] == "derived"
    # a calibration model as the pseudo-victim reads its own row of the evidence
    assert cs.verdict(rule, "cal-2", "cal-4", ["cal-0", "cal-1", "cal-3", "cal-5"]) == \
        judge(rule, cs.comps, victims.index(5), 7, [3, 4, 6, 8], archs, 5)


def test_choice_null_pairs_counts_every_ordered_pair():
    victims = [0, *range(3, len(ROWS))]
    cs = ChoiceSet(ROWS, _comps(victims), victims)
    rule = RULE_CHOICES["joint-arch-two"]
    out = choice_null_pairs(lambda v, s, refs: cs.verdict(rule, v, s, refs), cs.calibration)
    assert out["null_pairs"] == 6 * 5
    assert 0 <= out["null_derived"] <= out["null_p_below_0.01"] <= out["null_p_below_0.05"] <= 30
    assert out["cap_derived"] == 0 and len(out["alarms"]) == out["null_derived"]


def test_choice_null_pairs_at_a_level_allow_its_share_of_derived_pairs():
    victims = [0, *range(3, len(ROWS))]
    comps = _comps(victims)
    comps["modelgif"][victims.index(3), 4] = comps["boundary-js"][victims.index(3), 4] = 0.01  # cal-0 ~ cal-1
    cs = ChoiceSet(ROWS, comps, victims)
    rule = RULE_CHOICES["joint-arch-two"]
    strict = choice_null_pairs(lambda v, s, refs: cs.verdict(rule, v, s, refs), cs.calibration)
    at = choice_null_pairs(lambda v, s, refs: cs.verdict(rule, v, s, refs), cs.calibration, level=0.2)
    assert [(a["victim"], a["suspect"]) for a in strict["alarms"]] == [("cal-0", "cal-1")]
    assert strict["alarms"][0]["references"] == 4 and strict["alarms"][0]["z"]["boundary-js"] < -3
    assert (strict["cap_derived"], at["cap_derived"]) == (0, 10)  # 10: the 95 % quantile of Binomial(30, 0.2)
    assert not strict["eligible"] and at["eligible"]  # one derived pair, one at p < 0.01 (the cap: 1)
    assert {k: v for k, v in at.items() if k not in ("cap_derived", "eligible", "level")} == \
        {k: v for k, v in strict.items() if k not in ("cap_derived", "eligible", "level")}


def test_rates_list_the_null_pairs_called_derived():
    from modelgif_core.bench.verdicts import format_verdicts, rates

    rows = [{**r, "attack": None, "spec": f"zoo:{r['name']}"} for r in ROWS]
    victims = [0, *range(3, len(ROWS))]
    comps = _comps(victims)
    comps["modelgif"][victims.index(3), 4] = comps["boundary-js"][victims.index(3), 4] = 0.01  # cal-0 ~ cal-1
    rule = RULE_CHOICES["joint-arch-two"]
    out = rates(rows, comps, [r["spec"] for r in rows], victims, rule)
    alarms = out["null_derived"]
    assert [(a["victim"], a["suspect"]) for a in alarms] == [("cal-0", "cal-1")]
    assert out["null"]["all"]["derived"] == 1 and alarms[0]["references"] == 4
    assert alarms[0]["p_value"] < rule.alpha and alarms[0]["z"]["boundary-js"] < -3
    text = format_verdicts({"alpha": rule.alpha, "refs": "all", "points": "digits:500:0", "seconds": 0.0,
                            "rules": {"joint-arch-two": out}})
    assert "derived: cal-0 -> cal-1: p " in text and "among 4 references" in text


def test_a_choice_counts_the_positives_and_adopts_only_what_is_at_least_as_good():
    from modelgif_core.bench.verdicts import choice_lines, choice_row, choose

    victims = [0, *range(3, len(ROWS))]
    cs = ChoiceSet(ROWS, _comps(victims), victims)
    two, strict = RULE_CHOICES["joint-arch-two"], RULE_CHOICES["minz"]
    table = [{"rule": n, **choice_row(cs, lambda v, s, refs, r=r: cs.verdict(r, v, s, refs), 0.001)}
             for n, r in (("two", two), ("minz", strict))]
    row = table[0]
    assert (row["positives"], row["students"]) == (2, 1)  # the student and the copy; the student alone a surrogate
    assert row["verdicts"]["student"] == "derived" == row["judged"]["student"]["verdict"]
    assert row["students_derived"] == 1 and row["positives_derived"] == sum(
        v == "derived" for v in row["verdicts"].values())
    assert row["student_median_neglog10_p"] == -np.log10(row["judged"]["student"]["p_value"])
    lines = choice_lines(table, "rule", {r["name"]: "same" for r in ROWS}, 6)
    assert lines[0].startswith("rule ") and lines[1].startswith("two ") and lines[2].startswith("minz ")
    assert "Binomial(n, 0.001)" in lines[3] and lines[-2:] == [
        f"  student: two={row['verdicts']['student']}, minz={table[1]['verdicts']['student']}",
        f"  copy: two={row['verdicts']['copy']}, minz={table[1]['verdicts']['copy']}"]
    worse = {**row, "rule": "worse", "positives_derived": 0, "students_derived": 0}
    assert choose([worse, row], worse) == (row if row["eligible"] else None, row if row["eligible"] else worse)
    assert choose([worse], row)[1] is row  # the best is worse than the current: the current stays
    assert choose([{**row, "eligible": False}], worse) == (None, worse)


def test_an_evidence_candidate_is_the_choice_row_of_its_evidence_with_the_students_z():
    import dataclasses

    from modelgif_core.bench.verdicts import choice_row, evidence_candidate

    victims = [0, *range(3, len(ROWS))]
    cs = ChoiceSet(ROWS, _comps(victims), victims)
    rule = RULE_CHOICES["joint-arch-two"]
    got = evidence_candidate("as-is", cs, rule)
    row = choice_row(cs, lambda v, s, refs: cs.verdict(rule, v, s, refs), rule.alpha)
    judged = row.pop("judged")
    assert got == {"candidate": "as-is", **row, "student_z": {
        "student": {c: round(e["z"], 1) for c, e in judged["student"]["evidence"].items()}}}
    assert got["student_z"]["student"]["boundary-js"] < -3  # the student's far component, as the rule read it
    # evidence computed another way: the student's boundary-js no longer far below the references
    comps = {**cs.comps, "boundary-js": cs.comps["boundary-js"].copy()}
    comps["boundary-js"][0, 1] = 0.8
    other = evidence_candidate("other", dataclasses.replace(cs, comps=comps), rule)
    assert other["student_z"]["student"]["boundary-js"] > -3 and other["students_derived"] == 0
