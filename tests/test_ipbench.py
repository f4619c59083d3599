"""The IP benchmark's arithmetic: AUC by hand, evaluation on hand-made pair data, the JSON shape."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modelgif_core import UserError
from modelgif_core.bench.ip import (
    _mixup_anchors,
    _pool8,
    _sac_matrix,
    auc,
    evaluate,
    format_ip_table,
    run_ip_bench,
)


def test_auc_by_hand():
    # 0.1 beats all three negatives; 0.5 beats 0.9, ties 0.5, loses to 0.3: (3 + 1.5) / 6
    assert auc([0.1, 0.5], [0.3, 0.5, 0.9]) == pytest.approx(0.75)
    assert auc([0.1], [0.2, 0.3]) == 1.0
    assert auc([0.4], [0.2, 0.3]) == 0.0
    assert np.isnan(auc([], [0.2]))


def _row(name, role, family, attack=None, parent=None):
    return {"name": name, "role": role, "family": family, "attack": attack, "parent": parent}


def _fake(n=16, k=3):
    """One victim, two derived (fine-tune close, extraction far), 2 test and 3 calibration models."""
    rows = [_row("v", "victim", "v"),
            _row("ft", "derived", "v", "finetune-all", "v"),
            _row("ex", "derived", "v", "extract-prob-weak", "v"),
            _row("t1", "independent-test", "independent"),
            _row("t2", "independent-test", "independent"),
            *[_row(f"c{i}", "independent-calibration", "independent") for i in range(3)]]
    level = {"ft": 0.8, "ex": 0.05, "t1": 0.1, "t2": 0.0, "c0": 0.0, "c1": 0.1, "c2": 0.05}
    cos = {(("v", m)): np.full((n, k), c, dtype=np.float32) for m, c in level.items()}
    rng = np.random.default_rng(0)
    outs = {m: rng.normal(size=(n, 10)).astype(np.float32) for m in ["v", *level]}
    outs["ft"] = outs["v"] + 0.01  # the fine-tuned copy answers like the victim
    data = {"cos": {"digits": {"raw": cos, "pool8": cos}, "digits-logprob": {"raw": cos},
                    "digits-margin": {"raw": cos}},
            "outputs": {"digits": outs, "cutmix": outs, "mixup": outs, "vline:v": outs, "vadv:v": outs}}
    return rows, data


def test_evaluate_on_hand_made_pairs(monkeypatch):
    import modelgif_core.bench.ip as ipb

    monkeypatch.setattr(ipb, "N_MAX", 16)
    rows, data = _fake()
    res = evaluate(rows, data, ["modelgif", "ig", "output-agreement", "sac-m", "output-js-vline", "triage"],
                   [8, 16], draws=3)
    res = json.loads(json.dumps(res))  # the JSON contract: {"auc": {method: {kind: {n: auc}}}}
    assert res["auc"]["modelgif"]["finetune-all"] == {"8": 1.0, "16": 1.0}
    # extraction (cos 0.05) sits between the two test models (0.1 and 0.0): AUC 1/2
    assert res["auc"]["modelgif"]["extract-prob-weak"]["16"] == pytest.approx(0.5)
    assert res["auc"]["ig"]["finetune-all"]["16"] == 1.0
    assert res["auc"]["output-agreement"]["finetune-all"]["16"] == 1.0
    assert res["auc"]["sac-m"]["finetune-all"]["16"] == 1.0
    assert res["auc"]["triage"]["finetune-all"]["16"] == 1.0
    # per-victim point sets ("vline:v") are found by the victim's name; the copy answers alike
    assert res["auc"]["output-js-vline"]["finetune-all"]["16"] == 1.0
    assert res["counts"]["finetune-all"] == [1, 2]
    table = format_ip_table(res)
    assert "finetune-all" in table and "extract-prob-weak" in table and "triage" in table


def test_combination_rules_on_hand_made_z_scores():
    from modelgif_core.bench.ip import _method_scores, _Scorer

    rows, data = _fake()
    by_name = {r["name"]: r for r in rows}
    cals = ["c0", "c1", "c2"]
    idx = np.arange(16)
    args = (_Scorer(data), by_name, ["v"], ["t1", "t2"], cals, idx)
    one = _method_scores("calmin:modelgif", *args)
    # calibration cos 0.0 / 0.1 / 0.05: distances 1.0 / 0.9 / 0.95, mean 0.95, std 0.05
    assert one[("v", "ft")] == pytest.approx((0.2 - 0.95) / 0.05)  # z = -15
    two = "modelgif+probe:digits-margin:raw"  # the same numbers twice: z = -15 in both parts
    assert _method_scores(f"calmin:{two}", *args)[("v", "ft")] == pytest.approx(-15.0)
    assert _method_scores(f"cal2nd:{two}", *args)[("v", "ft")] == pytest.approx(-15.0)
    assert _method_scores(f"calstouffer:{two}", *args)[("v", "ft")] == pytest.approx(-30.0 / np.sqrt(2))
    assert _method_scores(f"caltrunc:{two}", *args)[("v", "t2")] == pytest.approx(0.0)  # z = +1: no evidence
    assert _method_scores(f"caltrunc:{two}", *args)[("v", "t1")] == pytest.approx(-2.0)  # z = -1 twice
    from scipy.stats import chi2, norm

    fisher = chi2.logsf(-4.0 * norm.logcdf(-15.0), 4)
    assert _method_scores(f"calfisher:{two}", *args)[("v", "ft")] == pytest.approx(fisher)


def test_sac_matrix_is_a_cosine_similarity_matrix():
    m = _sac_matrix(np.random.default_rng(1).normal(size=(5, 4)))
    assert m.shape == (5, 5)
    assert np.allclose(np.diag(m), 1.0) and np.allclose(m, m.T)


def test_pool8_projects_onto_the_8x8_grid_with_unit_norm():
    u = torch.randn(2, 3, 3 * 32 * 32)
    p = _pool8(u)
    assert p.shape == (2, 3, 64)
    assert torch.allclose(p.norm(dim=-1), torch.ones(2, 3), atol=1e-5)


def test_mixup_anchors_are_reproducible_and_in_range():
    a, b = _mixup_anchors(6, 3), _mixup_anchors(6, 3)
    assert a.images.shape == (6, 3, 32, 32) and a.sha256 == b.sha256
    assert 0.0 <= float(a.images.min()) and float(a.images.max()) <= 1.0


def test_js_scores_of_the_scorer_by_hand():
    from modelgif_core.bench.ip import _Scorer

    la = np.log(np.array([[0.5, 0.5]]))
    lb = np.log(np.array([[1.0 - 1e-12, 1e-12]]))
    data = {"cos": {}, "outputs": {"vline:v": {"v": la, "a": la, "b": lb}}}
    s = _Scorer(data)
    assert s.distance("output-js-vline", "v", "a", np.arange(1)) == pytest.approx(0.0, abs=1e-12)
    # JS([1/2, 1/2], [1, 0]) = 1/2 KL(p||m) + 1/2 KL(q||m), m = [3/4, 1/4]
    js = 0.5 * (0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(0.5 / 0.25)) + 0.5 * np.log(1 / 0.75)
    assert s.distance("output-js-vline", "v", "b", np.arange(1)) == pytest.approx(js, rel=1e-6)


def test_bad_anchor_counts_are_user_errors():
    with pytest.raises(UserError, match="Anchor counts"):
        run_ip_bench(anchor_counts=(8, 100000))
