"""The joint-arch rule: references matched to the suspect's architecture (analysis.calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from modelgif_core.analysis.calibration import JointRule, judge_joint, judge_matched, matched_references


def test_matched_references_prefers_the_suspects_architecture():
    archs = ["a", "a", "a", "b", "b", "c", "c", "c"]
    assert matched_references("a", "a", archs) == ([0, 1, 2], "suspect-architecture")
    assert matched_references("a", "c", archs) == ([5, 6, 7], "suspect-architecture")
    # too few of the suspect's architecture: a cross-architecture suspect is judged among the
    # references of architectures other than the victim's
    assert matched_references("a", "b", archs) == ([3, 4, 5, 6, 7], "other-architectures")
    # the victim's own architecture with too few references of it: all references, derived withheld
    assert matched_references("b", "b", archs) == (list(range(8)), "too-few-same-architecture")
    assert matched_references("a", "a", archs, minimum=4)[1] == "too-few-same-architecture"


def _world(rng, same: int, other: int):
    """Log-normal distances: references of the victim's architecture near 0.8, of others near 1.0."""
    d_same = np.exp(np.log(0.8) + 0.03 * rng.standard_normal((same, 2)))
    d_other = np.exp(0.03 * rng.standard_normal((other, 2)))
    ref = np.vstack([d_same, d_other])
    refs = {"modelgif": list(ref[:, 0]), "boundary-js": list(ref[:, 1])}
    return refs, ["resnet"] * same + ["vit"] * other


def test_a_same_architecture_independent_is_judged_among_its_own_architecture():
    rng = np.random.default_rng(1)
    refs, archs = _world(rng, same=6, other=18)
    suspect = {"modelgif": 0.8, "boundary-js": 0.8}  # one more independent resnet
    rule = JointRule(bootstrap=0, match_architecture=True)
    matched = judge_matched(suspect, refs, rule, "resnet", "resnet", archs)
    assert matched["verdict"] != "derived" and matched["reference_match"] == "suspect-architecture"
    assert matched["references_used"] == list(range(6)) and matched["rule"] == "joint-arch"
    # a copy far below its own architecture's references is still derived
    copy = judge_matched({"modelgif": 0.3, "boundary-js": 0.2}, refs, rule, "resnet", "resnet", archs)
    assert copy["verdict"] == "derived" and copy["p_value"] < 1e-3


def test_without_enough_same_architecture_references_nothing_of_that_architecture_is_derived():
    rng = np.random.default_rng(2)
    refs, archs = _world(rng, same=1, other=19)
    rule = JointRule(bootstrap=0, match_architecture=True)
    # the failure the rule fixes: one more independent resnet sits far below mixed references
    independent = {"modelgif": 0.8, "boundary-js": 0.8}
    assert judge_joint(independent, refs, JointRule(bootstrap=0))["verdict"] == "derived"
    out = judge_matched(independent, refs, rule, "resnet", "resnet", archs)
    assert out["verdict"] == "inconclusive" and out["reference_match"] == "too-few-same-architecture"
    copy = {"modelgif": 0.3, "boundary-js": 0.2}  # (the price: a copy is not called derived either)
    assert judge_matched(copy, refs, rule, "resnet", "resnet", archs)["verdict"] == "inconclusive"
    # a student of another architecture is judged among the other architectures' references
    student = judge_matched(copy, refs, rule, "resnet", "convnext", archs)
    assert student["reference_match"] == "other-architectures" and student["references_used"] == list(range(1, 20))
    assert student["verdict"] == "derived"


def test_rule_names_and_round_trip():
    from modelgif_core.analysis.triage import rule_by_name
    from modelgif_core.engine.errors import UserError

    arch = rule_by_name("joint-arch")
    assert arch.match_architecture and arch.to_dict()["name"] == "joint-arch"
    assert not rule_by_name("joint").match_architecture and rule_by_name("joint").name == "joint"
    assert type(rule_by_name("minz")).__name__ == "TriageRule"
    with pytest.raises(UserError, match="joint-arch"):
        rule_by_name("nope")


def test_bench_judge_needs_the_architectures_for_joint_arch():
    from modelgif_core.bench.verdicts import RULE_CHOICES, judge

    rng = np.random.default_rng(3)
    comps = {c: np.exp(0.03 * rng.standard_normal((1, 8))) for c in ("modelgif", "boundary-js")}
    comps["modelgif"][0, 1] = 0.2
    with pytest.raises(ValueError, match="architectures"):
        judge(RULE_CHOICES["joint-arch"], comps, 0, 1, [2, 3, 4, 5, 6, 7])
    archs = ["r", "r", "r", "r", "r", "v", "v", "v"]
    out = judge(RULE_CHOICES["joint-arch"], comps, 0, 1, [2, 3, 4, 5, 6, 7], archs, victim_col=0)
    assert out["verdict"] == "derived" and out["references_used"] == [0, 1, 2]
