"""Triage: hand-checkable verdicts on synthetic reference distances, and the JSON contract."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import timm
import torch

from modelgif_core import FieldConfig, InputConfig, TriageRule, UserError, save_model_dir, triage
from modelgif_core.analysis.calibration import judge, judge_components, thresholds
from modelgif_core.analysis.probes import (
    adversarial_boundary_points,
    boundary_mixups,
    boundary_points,
    log_prob_handle,
    output_handle,
    output_js,
    output_kl,
)

REF = [0.9, 1.0, 1.1]  # mean 1.0, sample std 0.1


def test_far_below_every_reference_is_derived_with_its_gaussian_p_value():
    e = judge(0.5, REF)
    assert e["verdict"] == "derived"
    assert e["z"] == pytest.approx(-5.0)
    assert e["p_value"] == pytest.approx(0.5 * math.erfc(5 / math.sqrt(2)))  # 2.87e-7
    assert e["score"] == pytest.approx(5.0)
    assert e["margin"] == pytest.approx(0.4)
    assert e["empirical_p"] == pytest.approx(1 / 4)
    assert e["closer_references"] == 0


def test_inside_the_references_is_independent():
    e = judge(0.95, REF)
    assert e["verdict"] == "independent"
    assert e["z"] == pytest.approx(-0.5)
    assert e["empirical_p"] == pytest.approx(2 / 4)  # 0.9 is closer
    assert e["closer_references"] == 1


def test_between_the_two_thresholds_is_inconclusive():
    # z = -2.2: outside the bulk (z < -1.5) but p = 0.0139 is not below alpha = 1e-3
    e = judge(0.78, REF)
    assert e["verdict"] == "inconclusive"
    derived_below, independent_above = thresholds(REF, TriageRule())
    assert independent_above == pytest.approx(0.85)
    assert derived_below == pytest.approx(1.0 - 0.1 * 3.0902323, rel=1e-6)  # Phi^-1(1e-3)


def test_closer_than_the_gaussian_cut_but_not_than_every_reference_is_not_derived():
    ref = [0.2, 1.0, 1.0, 1.0, 1.0]  # one reference is very close: derived needs d < 0.2
    assert judge(0.3, ref, TriageRule(alpha=0.2))["verdict"] != "derived"
    assert judge(0.1, ref, TriageRule(alpha=0.2))["verdict"] == "derived"


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 2.0])
def test_a_level_outside_0_1_is_a_user_error(alpha):
    with pytest.raises(UserError, match="strictly between 0 and 1"):
        TriageRule(alpha=alpha)


def test_too_few_references_is_a_user_error():
    with pytest.raises(UserError, match="at least 3"):
        judge(0.5, [1.0, 1.1])


def test_any_component_far_below_its_references_shows_derivation_with_a_sidak_p_value():
    e = judge_components({"modelgif": 0.95, "output-kl": 0.5}, {"modelgif": REF, "output-kl": REF})
    assert e["verdict"] == "derived"
    assert e["evidence"]["modelgif"]["verdict"] == "independent"
    assert e["z"] == pytest.approx(-5.0) and e["score"] == pytest.approx(5.0)
    p5 = 0.5 * math.erfc(5 / math.sqrt(2))
    assert e["p_value"] == pytest.approx(1 - (1 - p5) ** 2)
    assert e["distance"] == pytest.approx(0.95)  # the reported distance is the field distance


def test_a_tiny_sidak_p_value_is_not_rounded_to_zero():
    # z = -10 on both components: p_c = 7.6e-24, and 1 - (1 - p_c)^2 is 2 p_c, not the 0 that 1 - 1.0**2
    # gives in floating point (the verdict card showed "p = 0")
    e = judge_components({"modelgif": 0.0, "output-kl": 0.0}, {"modelgif": REF, "output-kl": REF})
    p10 = 0.5 * math.erfc(10 / math.sqrt(2))
    assert e["p_value"] == pytest.approx(2 * p10, rel=1e-12) and e["p_value"] > 0
    # and a family-wise level that small still has a per-component level (5e-21 each, not 0): z = -10
    # lies below it, so the suspect is derived
    strict = TriageRule(alpha=1e-20)
    assert judge_components({"modelgif": 0.0, "output-kl": 0.0},
                            {"modelgif": REF, "output-kl": REF}, strict)["verdict"] == "derived"


def test_independent_needs_every_component_among_its_references():
    refs = {"modelgif": REF, "output-kl": REF}
    assert judge_components({"modelgif": 0.95, "output-kl": 1.05}, refs)["verdict"] == "independent"
    assert judge_components({"modelgif": 0.95, "output-kl": 0.78}, refs)["verdict"] == "inconclusive"


def test_an_undefined_component_is_left_out():
    e = judge_components({"modelgif": 0.5, "output-kl": None}, {"modelgif": REF, "output-kl": REF})
    assert set(e["evidence"]) == {"modelgif"}
    assert e["p_value"] == pytest.approx(0.5 * math.erfc(5 / math.sqrt(2)))


def test_output_kl_and_boundary_mixups():
    logp = torch.log_softmax(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), dim=1)
    assert output_kl(logp, logp) == pytest.approx(0.0, abs=1e-7)
    assert output_kl(logp, torch.log_softmax(torch.zeros(2, 2), dim=1)) > 0
    assert output_kl(logp, torch.zeros(2, 3)) is None
    images = torch.stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4), torch.ones(3, 4, 4)])
    mix = boundary_mixups(images, torch.tensor([0, 1, 1]), 5, seed=0)
    assert mix.shape == (5, 3, 4, 4)
    assert ((mix >= 0.35 - 1e-6) & (mix <= 0.65 + 1e-6)).all()  # always a 0-1 pair, never 1-1
    with pytest.raises(UserError, match="two classes"):
        boundary_mixups(images, torch.tensor([1, 1, 1]), 2)


def test_output_js_is_symmetric_bounded_and_zero_on_equal_outputs():
    a = torch.log_softmax(torch.tensor([[3.0, 0.0, -1.0], [0.0, 2.0, 0.0]]), dim=1)
    b = torch.log_softmax(torch.tensor([[-2.0, 4.0, 0.0], [1.0, 0.0, 0.0]]), dim=1)
    assert output_js(a, a) == pytest.approx(0.0, abs=1e-7)
    assert output_js(a, b) == pytest.approx(output_js(b, a), rel=1e-6)
    assert 0.0 < output_js(a, b) < math.log(2.0)
    far = torch.log_softmax(torch.tensor([[50.0, -50.0, -50.0]]), dim=1)
    near = torch.log_softmax(torch.tensor([[-50.0, 50.0, -50.0]]), dim=1)
    assert output_js(far, near) == pytest.approx(math.log(2.0), rel=1e-4)  # the bound, where KL blows up
    assert output_js(a, torch.zeros(2, 4)) is None


class _Linear(torch.nn.Module):
    """A hand-checkable 'victim': logits = W x_flat, so boundaries are hyperplanes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.w = torch.nn.Linear(3 * 4 * 4, 4)

    def __call__(self, x):
        return self.w(x.flatten(1))


def test_boundary_points_sit_where_the_victim_s_two_classes_tie():
    from modelgif_core.analysis.probes import class_pairs

    h = _Linear()
    images = torch.rand(12, 3, 4, 4)
    classes = h(images).argmax(1)
    assert len(set(classes.tolist())) >= 2
    pts = boundary_points(h, images, classes, 10, seed=1)
    assert pts.shape == (10, 3, 4, 4)
    i, j = class_pairs(classes, 10, 1)  # the pairs the points were made from
    assert (classes[i] != classes[j]).all()
    z = h(pts).detach()  # [10, 4]
    za, zb = z.gather(1, classes[i][:, None])[:, 0], z.gather(1, classes[j][:, None])[:, 0]
    assert ((za - zb).abs() < 1e-3).all()  # the pair's two logits tie (14 halvings of the segment)
    # and each point lies on the segment between its two images
    d = images[i] - images[j]
    lam = ((pts - images[j]) * d).flatten(1).sum(1) / (d * d).flatten(1).sum(1)
    assert torch.allclose(pts, lam[:, None, None, None] * images[i] + (1 - lam[:, None, None, None]) * images[j],
                          atol=1e-5)
    with pytest.raises(UserError, match="two classes"):
        boundary_points(h, images, torch.zeros(12, dtype=torch.long), 3)


def test_boundary_shift_is_how_far_a_linear_model_s_own_boundary_lies_along_each_segment():
    from modelgif_core.analysis.probes import boundary_segments, boundary_shift

    v = _Linear()
    images = torch.rand(12, 3, 4, 4)
    classes = v(images).argmax(1)
    seg = boundary_segments(v, images, classes, 10, seed=1)
    assert torch.equal(seg.points, boundary_points(v, images, classes, 10, seed=1))
    assert boundary_shift(v, seg).max() < 1e-3  # the victim's own boundary: its tie points (to bisection accuracy)
    s = _Linear()
    with torch.no_grad():
        s.w.bias += torch.tensor([0.05, -0.05, 0.0, 0.02])  # the gaps move by a constant per class pair
    # logits are linear along a segment, so one Newton step is exact: the suspect's gap at the victim's tie
    # point over its slope along the segment (d gap / d lam = (w_a - w_b) . (a - b)) is where its own tie lies
    w = s.w.weight.detach()
    wa, wb = w[seg.first], w[seg.second]  # [10, 48]
    slope = ((wa - wb) * seg.direction.flatten(1)).sum(1)
    z = s(seg.points).detach()
    gap = z.gather(1, seg.first[:, None])[:, 0] - z.gather(1, seg.second[:, None])[:, 0]
    assert (slope > 0).all()  # the victim's own weights: the first class wins toward its anchor
    expected = (gap.abs() / slope).clamp(max=1.0)
    assert torch.allclose(boundary_shift(s, seg), expected, atol=1e-4)
    assert (expected > 1e-3).any()
    flipped = _Linear()
    with torch.no_grad():
        flipped.w.weight.neg_()  # its gap falls toward the first class's anchor: no boundary of its own here
    assert torch.equal(boundary_shift(flipped, seg), torch.ones(10))
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))  # another label space
    assert int(torch.cat([seg.first, seg.second]).max()) >= 2  # a class the 2-class model does not have
    assert boundary_shift(other, seg) is None


def test_far_share_counts_the_tie_points_whose_boundary_lies_beyond_near():
    from modelgif_core.analysis.probes import SHIFT_NEAR, far_share

    assert SHIFT_NEAR == 0.05
    shifts = torch.tensor([0.0, 0.04, 0.05, 0.0501, 0.3, 1.0])  # exactly at `near` still counts as near
    assert far_share(shifts) == 0.5
    assert far_share(shifts, near=0.0) == 5 / 6 and far_share(shifts, near=1.0) == 0.0
    assert far_share(torch.zeros(7)) == 0.0 and far_share(torch.ones(3)) == 1.0  # the victim itself; a flipped one


def test_adversarial_boundary_points_tie_the_victim_s_top_two_classes():
    h = _Linear()
    images = torch.rand(8, 3, 4, 4)
    pts = adversarial_boundary_points(h, images, step=0.05, max_steps=200)
    z = h(pts).detach()  # [8, 4]
    top2 = z.topk(2, dim=1).values
    assert ((top2[:, 0] - top2[:, 1]).abs() < 1e-3).all()
    assert (pts >= 0).all() and (pts <= 1).all()
    assert not torch.equal(pts, images)  # every point moved off its image


def _save(tmp_path, name: str, module: torch.nn.Module) -> str:
    cfg = InputConfig((3, 32, 32), (0.5,) * 3, (0.5,) * 3)
    save_model_dir(module, tmp_path / name, arch="test_resnet", num_classes=10, input_cfg=cfg)
    return f"local-dir:{tmp_path / name}"


@pytest.fixture()
def models(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGIF_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    victim = timm.create_model("test_resnet", num_classes=10)
    copy = timm.create_model("test_resnet", num_classes=10)
    copy.load_state_dict(victim.state_dict())
    with torch.no_grad():
        for p in copy.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    specs = {"victim": _save(tmp_path, "victim", victim), "copy": _save(tmp_path, "copy", copy)}
    for i in range(4):
        torch.manual_seed(10 + i)
        specs[f"ref{i}"] = _save(tmp_path, f"ref{i}", timm.create_model("test_resnet", num_classes=10))
    return specs


@pytest.mark.parametrize("rule", ["joint-arch-two-ws", "joint-arch-two-w", "joint-arch-two", "joint-arch", "joint",
                                  "minz"])
def test_triage_report_follows_the_json_contract(models, tmp_path, rule):
    from modelgif_core import FieldStore

    refs = [models[f"ref{i}"] for i in range(3)]
    calls = []
    report = triage(models["victim"], [models["copy"], models["ref3"]], references=refs,
                    anchors="digits:6", cfg=FieldConfig(steps=4), store=FieldStore(tmp_path / "s"),
                    progress=lambda d, t: calls.append((d, t)), rule=rule, points="digits:16:0")
    out = json.loads(json.dumps(report.to_dict()))
    assert out["victim"] == models["victim"]
    assert [s["model"] for s in out["suspects"]] == [models["copy"], models["ref3"]]
    for s in out["suspects"]:
        assert s["verdict"] in ("derived", "independent", "inconclusive")
        assert {"distance", "score", "p_value", "empirical_p", "z", "margin"} <= set(s)
    assert out["suspects"][0]["verdict"] == "derived"
    assert out["suspects"][0]["distance"] < min(r["distance"] for r in out["references"])
    assert out["n_anchors"] == 6 and out["anchors"] == "digits:6"
    assert len(out["references"]) == 3 and out["reference_source"] == "given"
    assert out["config"]["steps"] == 4
    assert out["config"]["log_prob"] is False  # a caller's own cfg runs on the raw outputs
    assert out["threshold"] <= out["independent_above"]
    assert calls[-1] == (6 * 6 * 4, 6 * 6 * 4)  # 6 models x 6 anchors x 4 steps
    assert all(a <= b for (a, _), (b, _) in zip(calls, calls[1:], strict=False))
    assert out["components"][0] == "modelgif"
    assert "modelgif" in out["suspects"][0]["evidence"]
    assert out["suspects"][0]["rule"] == rule and (out["rule"].get("name") == "joint") == (rule == "joint")
    back = type(report).from_dict(out)
    assert back.to_dict()["suspects"] == out["suspects"] and back.rule == report.rule
    if rule != "minz":  # the joint rules' explanation says where the output components were measured
        assert "placed from digits:16:0" in report.explanation()
    if rule.startswith("joint-arch"):  # all test_resnets: the 3 references are of the suspects' architecture
        assert [s["reference_match"] for s in out["suspects"]] == ["suspect-architecture"] * 2
        assert out["suspects"][0]["references_used"] == [0, 1, 2]


def test_a_non_digits_victim_without_references_is_told_to_bring_them(models):
    with pytest.raises(UserError, match="--reference"):
        triage(models["victim"], [models["copy"]], anchors="noise:4:0", cfg=FieldConfig(steps=2))


def test_references_equal_to_a_suspect_are_dropped_and_then_too_few(models):
    with pytest.raises(UserError, match="at least 3"):
        triage(models["victim"], [models["ref0"]], references=[models["ref0"], models["ref1"],
                                                                   models["ref2"]],
               anchors="digits:4", cfg=FieldConfig(steps=2))


def test_log_prob_handle_answers_log_probabilities_under_its_own_fingerprint(models):
    from modelgif_core import load_model

    h = load_model(models["victim"])
    lp = log_prob_handle(h)
    x = torch.rand(3, 3, 32, 32)
    assert torch.allclose(lp(x), torch.log_softmax(h(x), dim=1), atol=1e-6)
    assert lp.fingerprint != h.fingerprint and lp.module is not h.module


def test_margin_handle_answers_logit_margins_under_its_own_fingerprint(models):
    from modelgif_core import load_model

    h = load_model(models["victim"])
    m = output_handle(h, "margin")
    x = torch.rand(3, 3, 32, 32)
    z, out = h(x), m(x)
    top = z.argmax(1)
    assert torch.allclose(out.gather(1, top[:, None])[:, 0], z.topk(2, 1).values[:, 0] - z.topk(2, 1).values[:, 1],
                          atol=1e-5)
    assert (out.argmax(1) == top).all()  # the predicted class is the only positive margin
    assert m.fingerprint not in (h.fingerprint, log_prob_handle(h).fingerprint)
    assert output_handle(h, "logit") is h
    with pytest.raises(UserError, match="field output"):
        output_handle(h, "probit")


def test_extracting_an_output_field_leaves_the_model_in_eval_mode_with_its_batchnorm_stats(models, tmp_path):
    from modelgif_core import extract_field, load_anchors, load_model

    h = load_model(models["victim"])
    before = {k: v.clone() for k, v in h.module.state_dict().items()}
    x = torch.rand(4, 3, 32, 32)
    out = h(x)
    for kind in ("margin", "logprob"):
        extract_field(output_handle(h, kind), load_anchors("digits:4"), FieldConfig(steps=2))
        assert not h.module.training
        assert all(torch.equal(v, before[k]) for k, v in h.module.state_dict().items())
        assert torch.equal(h(x), out)  # the triage's output components see the same model


def test_default_triage_uses_the_margin_field_and_victim_boundary_points(models):
    refs = [models[f"ref{i}"] for i in range(3)]
    out = triage(models["victim"], [models["copy"]], references=refs, anchors="digits:4",
                 points="digits:16:0").to_dict()
    assert out["config"]["field_output"] == "margin" and out["config"]["log_prob"] is False
    assert out["config"]["steps"] == 50
    assert out["components"][0] == "modelgif" and set(out["components"]) <= {
        "modelgif", "boundary-js", "adversarial-js", "boundary-shift", "weights"}
    # the default reads where the suspect's own boundary lies wherever the victim's boundary points exist
    assert ("boundary-shift" in out["components"]) == ("boundary-js" in out["components"])
    assert ("the boundary shift at how many" in out["explanation"]) == ("boundary-shift" in out["components"])
    assert "the field's taken to the Gaussian scale" in out["explanation"]  # the default's field tail, said
    assert out["rule"]["name"] == "joint-arch-w-shift-ft10"
    assert "weights" in out["components"]  # the default's weight stage: victim and copy share an architecture
    assert "adversarial-js" in out["components"]  # placed from every anchor, one class or several
    assert out["suspects"][0]["verdict"] == "derived"
    # the copy is within 1e-3 of the victim's weights: every defined component sees it far below the references
    for c, e in out["suspects"][0]["evidence"].items():
        assert e["z"] < -1.5, c
    assert len(out["reference_components"]["adversarial-js"]) == 3
    logp = triage(models["victim"], [models["copy"]], references=refs, anchors="digits:4",
                  log_prob=True, components=["modelgif", "output-kl"], rule="minz").to_dict()
    assert logp["config"]["field_output"] == "logprob" and logp["config"]["log_prob"] is True


# ----------------------------------------------------------------------------------- the joint rule


def _refs(rng, n=23, m=3, scale=0.05):
    x = np.exp(rng.standard_normal((n, m)) * scale)  # log-normal distances around 1
    return {f"c{j}": list(x[:, j]) for j in range(m)}


def test_joint_rule_far_below_is_derived_among_is_independent():
    from modelgif_core.analysis.calibration import JointRule, judge_joint

    rng = np.random.default_rng(0)
    refs = {"modelgif": _refs(rng)["c0"], "boundary-js": _refs(rng)["c1"]}
    far = judge_joint({"modelgif": 0.5, "boundary-js": 1.0}, refs, JointRule())
    assert far["verdict"] == "derived" and far["p_value"] < 1e-3
    assert far["evidence"]["modelgif"]["z"] < -10 and far["rule"] == "joint"
    lo, hi = far["score_interval"]
    assert lo <= hi and lo > 5
    among = judge_joint({"modelgif": 1.0, "boundary-js": 1.0}, refs, JointRule())
    assert among["verdict"] == "independent" and among["p_value"] > 0.1
    # a component far on the independent side is no alibi: the other one alone decides
    alibi = judge_joint({"modelgif": 0.5, "boundary-js": 5.0}, refs, JointRule())
    assert alibi["verdict"] == "derived"
    # an undefined component (another label space) is left out
    undefined = judge_joint({"modelgif": 0.5, "boundary-js": None}, refs, JointRule())
    assert set(undefined["evidence"]) == {"modelgif"} and undefined["verdict"] == "derived"


def test_joint_rule_p_values_are_calibrated_on_gaussian_nulls():
    """Independent suspects drawn like the references: the share with p < 0.05 is about 0.05."""
    from modelgif_core.analysis.calibration import JointRule, judge_joint

    rng = np.random.default_rng(1)
    rule = JointRule(alpha=0.05, bootstrap=0)
    hits, trials = 0, 300
    for _ in range(trials):
        x = np.exp(rng.standard_normal((13, 3)) * 0.05)  # 12 references + one suspect, same law
        refs = {f"c{j}": list(x[1:, j]) for j in range(3)}
        hits += judge_joint({f"c{j}": float(x[0, j]) for j in range(3)}, refs, rule)["verdict"] == "derived"
    assert 0.015 <= hits / trials <= 0.10  # binomial(300, 0.05): 15 expected, 5..30 is > 99.9 %


def test_clopper_pearson_matches_the_closed_form_at_zero_successes():
    from modelgif_core.analysis.calibration import clopper_pearson

    lo, hi = clopper_pearson(0, 552)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 552), rel=1e-6)
    lo, hi = clopper_pearson(5, 10)
    assert 0.18 < lo < 0.19 and 0.81 < hi < 0.82


def test_unknown_rule_is_a_user_error(models):
    with pytest.raises(UserError, match="rule"):
        triage(models["victim"], [models["copy"]], references=[models["ref0"]], rule="fisher")


def test_imagenet_victim_without_references_gets_named_checkpoints_of_other_families():
    from modelgif_core.analysis.triage import imagenet_references

    refs = imagenet_references("resnet50")
    assert len(refs) >= 5 and not any(r.startswith("resnet") for r in refs)
    assert all(r in set(timm.list_pretrained()) for r in refs)


def test_the_default_reads_where_a_trained_suspect_s_own_boundary_lies(monkeypatch):
    from pathlib import Path

    from modelgif_core.analysis.evidence import SHIFT_COMPONENT

    monkeypatch.setenv("MODELGIF_ASSETS", str(Path(__file__).resolve().parents[1] / "assets"))  # the shipped zoo

    refs = ["zoo:indep-test-03-resnet", "zoo:indep-test-07-resnet", "zoo:indep-cali-00-resnet"]
    # 200 points: a share over 40 tie points is too coarse to separate the student (0.60 there, references 0.53-0.68)
    kw = {"references": refs, "anchors": "digits:8", "points": "digits:200:0", "cfg": FieldConfig(steps=4)}
    out = triage("zoo:resnet-victim", ["zoo:resnet-extract-label-strong-0"], **kw).to_dict()
    assert out["rule"]["name"] == "joint-arch-w-shift-ft10" and SHIFT_COMPONENT in out["components"]
    assert "the boundary shift at how many" in out["explanation"]
    shift = out["suspects"][0]["evidence"][SHIFT_COMPONENT]
    ref_shift = out["reference_components"][SHIFT_COMPONENT]
    assert len(ref_shift) == 3 and all(0.0 < r <= 1.0 for r in ref_shift)
    # the label student's boundary runs through more of the victim's tie points than any reference's does
    assert 0.0 < shift["distance"] < min(ref_shift)
    plain = triage("zoo:resnet-victim", ["zoo:resnet-extract-label-strong-0"], rule="joint-arch-w", **kw).to_dict()
    assert SHIFT_COMPONENT not in plain["components"] and SHIFT_COMPONENT not in plain["suspects"][0]["evidence"]
    # evidence for a rule that does not read the shift leaves it out (NaN) and changes nothing else
    from modelgif_core.analysis.evidence import pair_components

    pair = (["zoo:resnet-victim", "zoo:resnet-extract-label-strong-0"], [0])
    ev = {"anchors": "digits:8", "points": "digits:40:0", "cfg": FieldConfig(steps=4)}
    both, lean = pair_components(*pair, **ev), pair_components(*pair, shift=False, **ev)
    assert np.isfinite(both[SHIFT_COMPONENT]).all() and np.isnan(lean[SHIFT_COMPONENT]).all()
    for c in ("modelgif", "boundary-js", "adversarial-js", "weights"):
        np.testing.assert_array_equal(lean[c], both[c])
