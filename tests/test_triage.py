"""Triage: hand-checkable verdicts on synthetic reference distances, and the JSON contract."""

from __future__ import annotations

import json
import math

import pytest
import timm
import torch

from modelgif_core import FieldConfig, InputConfig, UserError, save_model_dir
from modelgif_core.triage import (
    TriageRule,
    boundary_mixups,
    judge,
    judge_components,
    log_prob_handle,
    output_kl,
    thresholds,
    triage,
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


def test_triage_report_follows_the_json_contract(models, tmp_path):
    from modelgif_core.store import FieldStore

    refs = [models[f"ref{i}"] for i in range(3)]
    calls = []
    report = triage(models["victim"], [models["copy"], models["ref3"]], references=refs,
                    anchors="digits:6", cfg=FieldConfig(steps=4), store=FieldStore(tmp_path / "s"),
                    progress=lambda d, t: calls.append((d, t)))
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


def test_default_triage_uses_the_log_prob_field(models):
    refs = [models[f"ref{i}"] for i in range(3)]
    out = triage(models["victim"], [models["copy"]], references=refs, anchors="digits:4").to_dict()
    assert out["config"]["log_prob"] is True and out["config"]["steps"] == 50
    assert out["suspects"][0]["verdict"] == "derived"
