"""The joint-arch-two rule (two components must agree) and the heavier-tailed null (analysis.calibration)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from modelgif_core.analysis.calibration import (
    JointRule,
    gaussianised_z,
    joint_scores,
    joint_statistic,
    judge_joint,
    judge_matched,
)
from modelgif_core.engine.errors import UserError

nan = float("nan")


def test_second_statistic_is_the_second_smallest_z():
    z = np.array([[-30.0, 0.5, -0.1], [-3.0, -4.0, 1.0], [nan, -2.0, -6.0], [nan, -6.0, nan]])
    assert joint_statistic(z, "second").tolist() == [0.1, 3.0, 2.0, 6.0]  # one usable component: that one
    assert joint_statistic(np.array([[-5.0]]), "second").tolist() == [5.0]
    assert joint_statistic(z, "max")[0] == 30.0  # the old statistic: the single far component decides


def _refs(rng, n=8):
    """Three components, log-normal references around 1 with a 3 % spread."""
    ref = np.exp(0.03 * rng.standard_normal((n, 3)))
    return {c: list(ref[:, j]) for j, c in enumerate(("modelgif", "boundary-js", "adversarial-js"))}


def test_one_component_far_below_is_no_longer_enough():
    refs = _refs(np.random.default_rng(4))
    one = {"modelgif": 1.0, "boundary-js": 0.4, "adversarial-js": 1.0}  # the fresh false alarms' pattern
    old = judge_joint(one, refs, JointRule(bootstrap=0))
    two = judge_joint(one, refs, JointRule(bootstrap=0, statistic="second"))
    assert old["verdict"] == "derived" and two["verdict"] != "derived" and two["p_value"] > 0.05
    copy = {"modelgif": 0.5, "boundary-js": 0.4, "adversarial-js": 1.0}  # two components far below
    assert judge_joint(copy, refs, JointRule(bootstrap=0, statistic="second"))["verdict"] == "derived"


def test_two_with_matched_references_and_its_name():
    refs = _refs(np.random.default_rng(5), n=6)
    archs = ["r"] * 3 + ["v"] * 3
    rule = JointRule(bootstrap=0, match_architecture=True, statistic="second")
    out = judge_matched({"modelgif": 0.5, "boundary-js": 0.5, "adversarial-js": 1.0}, refs, rule, "r", "v", archs)
    assert out["rule"] == "joint-arch-two" and out["references_used"] == [3, 4, 5]
    from modelgif_core import TRIAGE_RULES
    from modelgif_core.analysis.triage import DEFAULT_RULE, rule_by_name

    # the default (research/29) is listed first: the CLI's --rule and the app's radio take it from there
    assert DEFAULT_RULE == TRIAGE_RULES[0] == "joint-arch-w-shift-ft10"
    default = rule_by_name(DEFAULT_RULE)
    assert default == dataclasses.replace(rule_by_name("joint-arch-w-shift"), field_tail_df=10.0)
    assert default.name == DEFAULT_RULE and rule_by_name("joint-arch-w").field_tail_df == 0
    shift = rule_by_name("joint-arch-w-shift")
    assert shift.boundary_shift and shift.weights and not shift.weight_stage and shift.statistic == "max"
    assert shift == dataclasses.replace(rule_by_name("joint-arch-w"), boundary_shift=True)
    assert not rule_by_name("joint-arch-w").boundary_shift and shift.name == "joint-arch-w-shift"
    r = rule_by_name("joint-arch-two")
    assert r.statistic == "second" and r.match_architecture and r.to_dict()["name"] == "joint-arch-two"
    assert rule_by_name("joint-arch").statistic == "max"


def test_heavier_tailed_null_gives_larger_p():
    refs = _refs(np.random.default_rng(6))
    one = {"modelgif": 1.0, "boundary-js": 0.85, "adversarial-js": 1.0}
    gauss = judge_joint(one, refs, JointRule(bootstrap=0))["p_value"]
    t3 = judge_joint(one, refs, JointRule(bootstrap=0, tail_df=3.0))
    assert t3["p_value"] > gauss and t3["rule"] == "joint-t3"
    with pytest.raises(UserError, match="degrees of freedom"):
        JointRule(tail_df=-1.0)


def test_gaussianised_z_keeps_the_tail_probability():
    """A z among n Student-t references goes to the Gaussian case's z at the same tail probability: checked against
    direct simulation of both cases, monotone, and the identity for Gaussian data (df large)."""
    from scipy.stats import t as student_t

    n, df = 12, 5
    rng = np.random.default_rng(11)
    sims = rng.standard_t(df, (200_000, n + 1))
    z_t = (sims[:, 0] - sims[:, 1:].mean(1)) / sims[:, 1:].std(1, ddof=1)
    for q in (1e-2, 1e-3):
        zq = np.quantile(z_t, q)  # the Student-t case's q quantile goes to the Gaussian case's
        gauss_q = student_t.ppf(q, n - 1) * np.sqrt((n + 1) / n)
        assert abs(float(gaussianised_z(zq, n, df)) - gauss_q) < 0.1, (q, zq, gauss_q)
    z = np.array([-12.0, -6.0, -3.0, 0.0, 2.0])
    g = gaussianised_z(z, n, df)
    assert np.all(np.diff(g) > 0) and g[0] > -12.0 and abs(g[3]) < 0.02
    assert np.allclose(gaussianised_z(z[1:], n, 1e4), z[1:], atol=0.05)


def test_the_fields_own_tail_weakens_a_far_field_alone_and_nothing_else():
    """field_tail_df: a suspect far out on the field alone gets a larger p; one as far out on an output component
    keeps its p (the field's z is taken to the Gaussian scale before T, the null stays Gaussian)."""
    refs = _refs(np.random.default_rng(6))
    rule, heavy = JointRule(bootstrap=0), JointRule(bootstrap=0, field_tail_df=3.0)
    assert heavy.name == "joint-ft3"
    field_far = {"modelgif": 0.85, "boundary-js": 1.0, "adversarial-js": 1.0}
    js_far = {"modelgif": 1.0, "boundary-js": 0.85, "adversarial-js": 1.0}
    p = {(r.name, k): judge_joint(d, refs, r)["p_value"] for r in (rule, heavy) for k, d in
         (("field", field_far), ("js", js_far))}
    assert p["joint", "field"] < 1e-3 < p["joint-ft3", "field"]
    assert p["joint-ft3", "js"] == p["joint", "js"] < 1e-3
    with pytest.raises(ValueError, match="field"):
        joint_scores(np.ones((1, 3)), np.ones((4, 3)), heavy)
    with pytest.raises(UserError, match="degrees of freedom"):
        JointRule(field_tail_df=-1.0)


def test_weights_component_decides_alone_under_two_w():
    rng = np.random.default_rng(7)
    refs = _refs(rng)
    refs["weights"] = list(0.7 + 0.01 * rng.standard_normal(8))  # independents: different random weights
    # a pruned copy that no longer behaves like its parent: outputs among the references, weights shared
    pruned = {"modelgif": 0.97, "boundary-js": 1.0, "adversarial-js": 1.02, "weights": 0.03}
    two = judge_joint(pruned, refs, JointRule(bootstrap=0, statistic="second"))
    two_w = judge_joint(pruned, refs, JointRule(bootstrap=0, statistic="second", weights=True))
    assert "weights" not in two["evidence"] and two["verdict"] != "derived"
    assert two_w["verdict"] == "derived" and two_w["rule"] == "joint-two-w" and two_w["evidence"]["weights"]["z"] < -10
    # one OUTPUT component far below still needs a second one
    one = {"modelgif": 1.0, "boundary-js": 0.4, "adversarial-js": 1.0, "weights": 0.7}
    assert judge_joint(one, refs, JointRule(bootstrap=0, statistic="second", weights=True))["verdict"] != "derived"
    # a suspect of another architecture has no weight distance: the component is left out
    cross = judge_joint({**one, "weights": None}, refs, JointRule(bootstrap=0, statistic="second", weights=True))
    assert "weights" not in cross["evidence"]


def test_second_with_an_alone_component():
    z = np.array([[-0.5, 0.2, -9.0], [-3.0, -4.0, 1.0]])
    alone = np.array([False, False, True])
    assert joint_statistic(z, "second", alone).tolist() == [9.0, 3.0]


def test_weight_distance_of_a_copy_and_of_another_init():
    import timm
    import torch

    from modelgif_core.analysis.evidence import weight_distance
    from modelgif_core.engine.models import InputConfig, ModelHandle

    def handle(seed: int, arch: str = "test_resnet") -> ModelHandle:
        torch.manual_seed(seed)
        return ModelHandle.from_module(timm.create_model(arch, num_classes=10), arch, InputConfig(), arch, arch)

    a, b = handle(0), handle(1)
    copy = handle(0)
    with torch.no_grad():
        for p in copy.module.parameters():
            p.mul_(1.0 + 0.01 * torch.randn_like(p))  # weight noise
    assert weight_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    assert weight_distance(a, copy) < 1e-3 < 0.1 < weight_distance(a, b)
    assert np.isnan(weight_distance(a, handle(0, "test_efficientnet")))


def test_weight_stage_is_a_bonferroni_of_the_two_stages():
    rng = np.random.default_rng(8)
    refs = _refs(rng)
    refs["weights"] = list(0.7 + 0.01 * rng.standard_normal(8))
    rule = JointRule(bootstrap=0, statistic="second", weights=True, weight_stage=True)
    pruned = {"modelgif": 0.97, "boundary-js": 1.0, "adversarial-js": 1.02, "weights": 0.03}
    out = judge_joint(pruned, refs, rule)
    assert out["verdict"] == "derived" and out["rule"] == "joint-two-ws" and "weights" in out["evidence"]
    # a student: weights among the references, two output components far below; p = 2 x the two-stage p
    student = {"modelgif": 1.0, "boundary-js": 0.5, "adversarial-js": 0.5, "weights": 0.7}
    two = judge_joint({k: v for k, v in student.items() if k != "weights"}, refs,
                      JointRule(bootstrap=0, statistic="second"))
    ws = judge_joint(student, refs, rule)
    assert ws["p_value"] == pytest.approx(min(1.0, 2 * two["p_value"])) and ws["verdict"] == "derived"
    # one output component far below is still not enough
    one = {"modelgif": 1.0, "boundary-js": 0.4, "adversarial-js": 1.0, "weights": 0.7}
    assert judge_joint(one, refs, rule)["verdict"] != "derived"
    from modelgif_core.analysis.triage import rule_by_name

    assert rule_by_name("joint-arch-two-ws") == JointRule(match_architecture=True, statistic="second", weights=True,
                                                          weight_stage=True)


def test_pair_components_leave_the_weights_out_when_no_rule_reads_them():
    import timm
    import torch

    from modelgif_core import FieldConfig
    from modelgif_core.analysis.evidence import pair_components, weight_distance
    from modelgif_core.engine.models import InputConfig, ModelHandle

    torch.manual_seed(0)
    handles = [ModelHandle.from_module(timm.create_model("test_resnet", num_classes=10), "test_resnet",
                                       InputConfig(), f"net{i}", "test_resnet") for i in range(2)]
    kw = {"anchors": "digits:2", "points": "digits:4:0", "cfg": FieldConfig(steps=2, target="predicted")}
    both = pair_components(handles, [0], **kw)
    assert both["weights"][0].tolist() == [0.0, pytest.approx(weight_distance(*handles))]
    lean = pair_components(handles, [0], weights=False, **kw)
    assert "weights" not in lean and set(lean) == set(both) - {"weights"}
    np.testing.assert_array_equal(lean["modelgif"], both["modelgif"])


def test_one_component_far_below_is_not_independent_either():
    refs = _refs(np.random.default_rng(4))
    rule = JointRule(bootstrap=0, statistic="second")
    one = judge_joint({"modelgif": 1.0, "boundary-js": 0.4, "adversarial-js": 1.0}, refs, rule)
    assert one["p_value"] >= rule.p_independent and one["p_lowest"] < 1e-3
    assert one["verdict"] == "inconclusive"  # not derived (one component), not independent either
    among = judge_joint({"modelgif": 1.0, "boundary-js": 1.0, "adversarial-js": 1.0}, refs, rule)
    assert among["verdict"] == "independent" and among["p_lowest"] >= rule.p_independent
    ws = dataclasses.replace(rule, weights=True, weight_stage=True)
    refs["weights"] = list(0.7 + 0.01 * np.random.default_rng(9).standard_normal(8))
    low_w = judge_joint({"modelgif": 1.0, "boundary-js": 1.0, "adversarial-js": 1.0, "weights": 0.66}, refs, ws)
    assert low_w["p_lowest"] < rule.p_independent and low_w["verdict"] == "inconclusive"


@pytest.mark.parametrize("n, m, statistic, tail_df", [(6, 3, "second", 0.0), (12, 2, "max", 0.0),
                                                       (8, 3, "min", 5.0), (4, 1, "min", 0.0)])
def test_joint_null_is_the_direct_simulation(n, m, statistic, tail_df):
    # joint_null moves shared standard draws through the correlation's Cholesky factor instead of drawing
    # every simulated model again; it must equal simulating the correlated models and taking their z directly.
    from modelgif_core.analysis.calibration import _shrunk_correlation, _zs, joint_null

    corr = _shrunk_correlation(np.random.default_rng(n).standard_normal((n + 2, m)) @ np.triu(np.ones((m, m))))
    draws = 3_000
    rng = np.random.default_rng(20_240_917 + n * 31 + m)  # joint_null's seed for this (n, m)
    sims = rng.standard_normal((draws, n + 1, m))
    if tail_df:
        sims *= np.sqrt(tail_df / rng.chisquare(tail_df, (draws, n + 1, 1)))
    sims = sims @ np.linalg.cholesky(corr + 1e-9 * np.eye(m)).T
    direct = np.sort(joint_statistic(_zs(sims[:, 0], sims[:, 1:]), statistic))
    np.testing.assert_allclose(joint_null(n, corr, statistic, draws=draws, tail_df=tail_df), direct, rtol=1e-9)
    other = _shrunk_correlation(np.random.default_rng(99).standard_normal((n + 2, m)))
    if m > 1:  # another correlation gives another null from the same draws
        assert not np.allclose(joint_null(n, other, statistic, draws=draws, tail_df=tail_df), direct)


@pytest.mark.parametrize("rule", [JointRule(bootstrap=0), JointRule(bootstrap=0, weights=True, weight_stage=True)],
                         ids=["max", "weight-stage"])
def test_too_few_references_cannot_clear_a_suspect(rule):
    # Three references spread so widely (a Student-t with 2 degrees of freedom) that no suspect short of derived
    # can be told apart: one in the references' middle is inconclusive, not independent; seven clear it.
    rng = np.random.default_rng(11)
    refs = _refs(rng, n=7)
    refs["weights"] = list(0.7 * np.exp(0.03 * rng.standard_normal(7)))
    middle = {c: float(np.exp(np.log(r).mean())) for c, r in refs.items()}
    few = judge_joint(middle, {c: r[:3] for c, r in refs.items()}, rule)
    assert few["p_value"] >= rule.p_independent and few["p_clear_copy"] >= rule.alpha
    assert few["verdict"] == "inconclusive"
    many = judge_joint(middle, refs, rule)
    assert many["p_clear_copy"] < rule.alpha and many["verdict"] == "independent"
    # what the references can still do: call a copy far below all of them derived
    far = judge_joint({c: 0.01 * d for c, d in middle.items()}, {c: r[:3] for c, r in refs.items()}, rule)
    assert far["verdict"] == "derived"


def test_the_explanation_names_the_suspects_too_few_references_judge():
    from modelgif_core.analysis.calibration import reference_stats
    from modelgif_core.analysis.triage import TriageReport, Verdict

    rule = JointRule(bootstrap=0)
    refs = _refs(np.random.default_rng(11), n=7)
    middle = {c: float(np.exp(np.log(r).mean())) for c, r in refs.items()}
    judged = {"few": judge_joint(middle, {c: r[:3] for c, r in refs.items()}, rule),
              "many": judge_joint(middle, refs, rule),
              "copy": judge_joint({c: 0.01 * d for c, d in middle.items()}, {c: r[:3] for c, r in refs.items()}, rule)}
    report = TriageReport(
        victim="v", victim_name="v", suspects=[Verdict(model=k, name=k, **v) for k, v in judged.items()],
        references=[{"model": f"r{i}", "name": f"r{i}", "distance": d} for i, d in enumerate(refs["modelgif"])],
        reference_source="given", anchors="digits:8", n_anchors=8, method="joint", config={}, rule=rule,
        threshold=0.9, independent_above=1.0, stats=reference_stats(refs["modelgif"]))
    text = report.explanation()
    assert "judging few are too few to call even a clear copy derived" in text and "many" not in text
    assert [v.name for v in report.too_few_references()] == ["few"]  # the derived copy needs no clearing
    assert [v.verdict for v in TriageReport.from_dict(report.to_dict()).suspects] == ["inconclusive", "independent",
                                                                                       "derived"]


def test_only_the_shift_rules_read_the_boundary_shift():
    rng = np.random.default_rng(7)
    refs = {**_refs(rng), "boundary-shift": list(np.exp(0.03 * rng.standard_normal(8)))}
    # a label student's pattern: its softmax is its own (every JS among the references), its boundary is not
    student = {"modelgif": 1.0, "boundary-js": 1.0, "adversarial-js": 1.0, "boundary-shift": 0.5}
    plain, shift = JointRule(bootstrap=0), JointRule(bootstrap=0, boundary_shift=True)
    without = judge_joint({c: d for c, d in student.items() if c != "boundary-shift"}, refs, plain)
    ignored = judge_joint(student, refs, plain)
    assert "boundary-shift" not in ignored["evidence"] and ignored["p_value"] == without["p_value"]
    assert ignored["verdict"] != "derived"
    read = judge_joint(student, refs, shift)
    assert read["verdict"] == "derived" and read["evidence"]["boundary-shift"]["z"] < -10
    assert read["rule"] == "joint-shift"
    # among the references on every component, the shift rule still calls it independent
    among = judge_joint({**student, "boundary-shift": 1.0}, refs, shift)
    assert among["verdict"] == "independent"
    from modelgif_core.analysis.calibration import TriageRule

    assert shift.reads("boundary-shift") and not plain.reads("boundary-shift") and plain.reads("boundary-js")
    assert not TriageRule().reads("boundary-shift") and not TriageRule().reads("weights")
    assert TriageRule().reads("modelgif")
