"""Task relatedness: affinity normalisation and Spearman on hand-made numbers, the tasks' data, the
readouts, linear CKA, and a tiny end-to-end run with its JSON contract."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_bench_config
from scipy.stats import spearmanr

from modelgif_core import UserError, last_relatedness_result
from modelgif_core.bench.relatedness import (
    METHODS,
    TASKS,
    BenchConfig,
    ChannelScaled,
    Encoder,
    _regression_distance_matrix,
    _save_last,
    _standardised,
    ahp_affinity,
    ahp_priorities,
    channel_cka_distance_matrix,
    channel_regression_distance_matrix,
    conv_readout,
    dense_sources_by_field_rank,
    feature_regression_distance_matrix,
    field_rank,
    format_table,
    hubness_centred,
    linear_cka,
    method_ranking,
    normalise_affinity,
    other_zoos_reference,
    per_task_spearman,
    pooled_spearman,
    random_encoder,
    run_bench,
    spearman,
    task_data,
    task_level_spearman,
    train_encoder,
    transfer_losses,
    within_kind_spearman,
    zoo_transfer_losses,
    zoos_affinity,
)
from modelgif_core.engine.anchors import digits_dataset, digits_split


def test_affinity_is_one_for_the_own_encoder_and_zero_for_random_features():
    loss = np.array([[1.0, 4.0, 2.0],
                     [3.0, 2.0, 5.0],
                     [5.0, 6.0, 1.0]])
    random_loss = np.array([5.0, 6.0, 9.0])
    aff = normalise_affinity(loss, random_loss)
    np.testing.assert_allclose(np.diag(aff), 1.0)
    # target 0: (5 - 3) / (5 - 1) from source 1; source 2 no better than random -> 0
    assert aff[1, 0] == pytest.approx(0.5)
    assert aff[2, 0] == pytest.approx(0.0)
    assert aff[0, 2] == pytest.approx((9 - 2) / (9 - 1))
    # worse than random features is negative
    assert normalise_affinity(np.array([[1.0, 9.0], [2.0, 1.0]]), np.array([3.0, 5.0]))[0, 1] < 0


def test_affinity_is_nan_where_the_own_encoder_is_no_better_than_random():
    aff = normalise_affinity(np.array([[2.0, 1.0], [1.0, 1.0]]), np.array([2.0, 3.0]))
    assert np.isnan(aff[:, 0]).all() and np.isfinite(aff[:, 1]).all()
    with pytest.raises(UserError, match="square"):
        normalise_affinity(np.ones((2, 3)), np.ones(3))


def test_ahp_priorities_recover_a_consistent_tournaments_strengths():
    """wins[i, j] = p_i / (p_i + p_j) makes W / W^T = p_i / p_j, whose principal eigenvector is p."""
    p = np.array([4.0, 2.0, 1.0, 1.0])
    wins = p[:, None] / (p[:, None] + p[None, :])
    np.testing.assert_allclose(ahp_priorities(wins), p / p.sum(), rtol=1e-12)


def test_ahp_affinity_by_hand_counts_wins_where_the_mean_loss_counts_one_bad_example():
    """Target 0, sources 1 and 2: source 1 has the lower loss on 3 of 4 examples but loses the 4th badly.
    The mean loss ranks source 2 first; Taskonomy's tournament ranks source 1 first, 3 : 1."""
    loss = np.full((3, 3, 4), 0.5)
    loss[1, 0] = [0.1, 0.1, 0.1, 5.0]  # mean 1.325
    loss[2, 0] = [0.2, 0.2, 0.2, 0.2]  # mean 0.2
    aff = ahp_affinity(loss)
    np.testing.assert_allclose(aff[[1, 2], 0], [0.75, 0.25])  # W' = [[1, 3], [1/3, 1]] -> (3, 1) / 4
    mean_aff = normalise_affinity(loss.mean(2), np.full(3, 10.0))
    assert mean_aff[2, 0] > mean_aff[1, 0]
    # target 1: sources 0 and 2 tie on every example, half a win each; the diagonal is 1
    np.testing.assert_allclose(aff[[0, 2], 1], [0.5, 0.5])
    np.testing.assert_allclose(np.diag(aff), 1.0)
    with pytest.raises(UserError, match="per-example losses"):
        ahp_affinity(loss.mean(2))


def test_spearman_matches_scipy_with_ties_and_is_nan_for_constants():
    a = [0.1, 0.4, 0.4, 0.9, 0.3]
    b = [3.0, 1.0, 2.0, 0.5, 2.0]
    assert spearman(a, b) == pytest.approx(spearmanr(a, b)[0])
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_per_task_spearman_skips_the_target_itself():
    # Three tasks; distances perfectly anti-ordered with affinity off the diagonal.
    dist = np.array([[0.0, 0.2, 0.9],
                     [0.2, 0.0, 0.5],
                     [0.9, 0.5, 0.0],
                     ])
    aff = np.array([[1.0, 0.8, 0.1],
                    [0.7, 1.0, 0.6],
                    [0.2, 0.3, 1.0]])
    rho = per_task_spearman(dist, aff, ["a", "b", "c"])
    assert rho == {"a": pytest.approx(-1.0), "b": pytest.approx(-1.0), "c": pytest.approx(-1.0)}
    aff[0, 2], aff[1, 2] = 0.9, 0.1  # for c: the nearer source now transfers worse
    assert per_task_spearman(dist, aff, ["a", "b", "c"])["c"] == pytest.approx(1.0)


def test_other_zoos_reference_is_perfect_for_repeated_zoos_and_absent_for_one():
    tasks = ["a", "b", "c", "d"]
    rng = np.random.default_rng(0)
    aff = rng.normal(size=(4, 4))
    np.fill_diagonal(aff, 1.0)
    same = [{"affinity": aff.tolist(), "affinity_ahp": aff.tolist()}] * 2
    ref = other_zoos_reference(same, tasks)
    assert ref["spearman_mean"] == pytest.approx(-1.0) and ref["spearman_per_seed"] == pytest.approx([-1.0, -1.0])
    # a zoo whose affinities rank the sources in reverse is predicted at +1 (wrong way round)
    flipped = [same[0], {"affinity": (-aff).tolist(), "affinity_ahp": (-aff).tolist()}]
    assert other_zoos_reference(flipped, tasks)["spearman_mean"] == pytest.approx(1.0)
    assert other_zoos_reference(same[:1], tasks) is None


def _zoo(affinity: np.ndarray, distance: np.ndarray, ahp: np.ndarray | None = None) -> dict:
    """One zoo's result as the bench keeps it: its affinity (AHP's too, the same unless given) and every method's
    distance matrix."""
    return {"affinity": affinity.tolist(), "affinity_ahp": (affinity if ahp is None else ahp).tolist(),
            **{key: distance.tolist() for key in METHODS.values()}}


def test_zoos_are_pooled_on_their_ahp_affinities_and_one_exploding_zoo_decides_nothing():
    """Round 11's zoo 86: a target whose own encoder barely beats the untrained one has normalised affinities in
    the hundreds, and a mean of them was that one zoo. Pooled scores, the task level and the other zoos'
    reference average the zoos' AHP affinities instead (each target's priorities sum to 1)."""
    tasks = ["a", "b", "c", "d", "e"]
    rng = np.random.default_rng(3)
    aff = rng.uniform(size=(5, 5))
    np.fill_diagonal(aff, 1.0)
    ahp = aff / (aff.sum(0) - 1.0)  # the same order per target, priorities summing to 1 (the diagonal aside)
    np.fill_diagonal(ahp, 1.0)
    exploding = aff.copy()
    exploding[1:, 0] = -1000.0 * aff[1:, 0]  # target a: the sources in reverse, a thousand times the scale
    zoos = [_zoo(aff, 1.0 - aff, ahp) for _ in range(5)] + [_zoo(exploding, 1.0 - aff, ahp)]
    np.testing.assert_allclose(zoos_affinity(zoos), ahp)
    np.testing.assert_allclose(zoos_affinity(zoos[:2], truth="affinity"), aff)
    assert other_zoos_reference(zoos, tasks)["spearman_per_seed"][0] == pytest.approx(-1.0)
    level = task_level_spearman(zoos, tasks, splits=20, centre=False)
    assert level["ground_truth"] == pytest.approx(-1.0) and level["methods"]["modelgif"] == pytest.approx(-1.0)
    assert pooled_spearman(zoos, tasks, centre=False)["modelgif"]["spearman_per_task"]["a"] == pytest.approx(-1.0)
    # averaged as normalised affinities (the bench until round 12), the one zoo turns target a round
    assert pooled_spearman(zoos, tasks, centre=False, truth="affinity")["modelgif"]["spearman_per_task"]["a"] == \
        pytest.approx(1.0)
    # and the other zoos' reference for target a, in every zoo (the five others' mean is the exploding one's reverse)
    assert other_zoos_reference(zoos, tasks, truth="affinity")["spearman_per_task"]["a"] == pytest.approx(1.0)


def test_per_task_spearman_over_some_sources_only():
    dist = np.array([[0.0, 0.1, 0.2, 0.3],
                     [0.1, 0.0, 0.4, 0.2],
                     [0.2, 0.3, 0.0, 0.1],
                     [0.3, 0.2, 0.1, 0.0]])
    aff = 1.0 - dist
    aff[3, 0] = 0.95  # for target a, source d now transfers best though it is the farthest
    tasks = ["a", "b", "c", "d"]
    assert per_task_spearman(dist, aff, tasks)["a"] == pytest.approx(0.5)  # ranks (1, 2, 3) against (2, 1, 3)
    within = per_task_spearman(dist, aff, tasks, sources=["b", "c", "d"])
    assert within["a"] == pytest.approx(0.5)  # a's 3 sources, all of them in the group
    assert all(np.isnan(within[t]) for t in "bcd")  # each has only 2 sources in the group
    # two sources would correlate at +-1 by construction: not scored
    assert all(np.isnan(v) for v in per_task_spearman(dist, aff, tasks, sources=["b", "c"]).values())
    assert per_task_spearman(dist, aff, tasks, sources=["b", "c", "d"])["a"] == per_task_spearman(dist, aff, tasks)["a"]


def test_within_kind_scores_separate_the_split_between_kinds_from_the_order_within_them():
    # 4 classification and 3 dense tasks: a source of the other kind transfers far worse
    tasks = ["digit", "parity", "ge5", "mod3", "autoencode", "denoise", "inpaint"]
    kind = np.array([TASKS[t][0].kind == "dense" for t in tasks])
    other_kind = kind[:, None] != kind[None, :]
    rng = np.random.default_rng(3)
    small = rng.uniform(0.0, 0.1, size=(7, 7))
    affinity = np.where(other_kind, -1.0, 0.5) + small
    np.fill_diagonal(affinity, 1.0)
    # a method that gets only the split right, and within a kind ranks the nearer source worse
    backwards = _zoo(affinity, np.where(other_kind, 10.0, 0.0) + small)
    scores = within_kind_spearman([backwards], tasks, centre=False)
    assert set(scores) == {"class", "dense"}
    assert scores["class"]["modelgif"] == pytest.approx(1.0) and scores["dense"]["modelgif"] == pytest.approx(1.0)
    assert "other_zoos" not in scores["class"]  # one zoo: no other zoos
    assert per_task_spearman(np.array(backwards["distance"]), affinity, tasks)["digit"] < 0  # overall it looks right
    # distances that fall as affinity rises: -1 within each kind; two equal zoos predict each other at -1
    right = _zoo(affinity, 1.0 - affinity)
    scores = within_kind_spearman([right, right], tasks, centre=False)
    assert all(scores[k][m] == pytest.approx(-1.0) for k in scores for m in (*METHODS, "other_zoos"))
    # with one dense task no target has 3 dense sources: the kind is left out, not scored from 2 ranks
    assert set(within_kind_spearman([_zoo(affinity[:5, :5], small[:5, :5])], tasks[:5])) == {"class"}


def test_task_level_by_hand_halves_of_the_zoos_and_the_ground_truths_own_agreement():
    tasks = ["a", "b", "c", "d"]
    rng = np.random.default_rng(1)
    affinity = rng.uniform(size=(4, 4))
    np.fill_diagonal(affinity, 1.0)
    # zoos that all agree, and distances that fall exactly as affinity rises: -1 everywhere
    same = [_zoo(affinity, 1.0 - affinity) for _ in range(5)]
    level = task_level_spearman(same, tasks, splits=7, centre=False)
    assert level["halves"] == [2, 3] and level["splits"] == 7
    assert level["ground_truth"] == pytest.approx(-1.0)
    assert set(level["methods"]) == set(METHODS)
    assert all(v == pytest.approx(-1.0) for v in level["methods"].values())
    # distances that rise with affinity score +1, whatever the split
    wrong = [_zoo(affinity, affinity) for _ in range(4)]
    assert task_level_spearman(wrong, tasks, centre=False)["methods"]["modelgif"] == pytest.approx(1.0)
    # a method is only ever scored against the other half: with two kinds of zoo, a method that copies
    # each zoo's own affinities scores what the ground truth does half against half, not -1
    other = rng.uniform(size=(4, 4))
    np.fill_diagonal(other, 1.0)
    mixed = [_zoo(a, 1.0 - a) for a in (affinity, affinity, other, other)]
    level = task_level_spearman(mixed, tasks, splits=50, centre=False)
    assert level["methods"]["modelgif"] == pytest.approx(level["ground_truth"])
    assert -1.0 < level["ground_truth"] < 0.0
    # fewer than 4 zoos cannot be halved into averages: no task level
    assert task_level_spearman(same[:3], tasks) is None


def test_tasks_make_their_inputs_and_targets():
    x, y = digits_dataset()
    x, y = x[:32], y[:32]
    assert len(TASKS) >= 8
    for name, (task, _) in TASKS.items():
        inputs, targets = task_data(name, x, y, seed=0)
        assert inputs.shape == x.shape and float(inputs.min()) >= 0 and float(inputs.max()) <= 1
        if task.kind == "class":
            assert targets.shape == (32,) and int(targets.max()) < task.classes
        else:
            assert targets.shape == (32, 1, 32, 32)
    assert torch.equal(task_data("parity", x, y, 0)[1], y % 2)
    assert torch.equal(task_data("denoise", x, y, 3)[0], task_data("denoise", x, y, 3)[0])
    rotated, r = task_data("rotation", x, y, 1)
    i = int((r == 1).nonzero()[0])
    assert torch.equal(rotated[i], torch.rot90(x[i], 1, dims=(1, 2)))
    with pytest.raises(UserError, match="Unknown task"):
        task_data("colour", x, y, 0)


def test_linear_cka_is_one_for_rotated_features_and_low_for_unrelated_ones():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 16, generator=g)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    assert linear_cka(a, 3.0 * a @ q) == pytest.approx(1.0, abs=1e-6)
    assert linear_cka(a, torch.randn(200, 16, generator=g)) < 0.2


def test_channel_cka_ignores_the_order_sign_and_mixing_of_channels():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(3, 4, 6, 20, generator=g)  # [N, K, C, D] per-channel fields
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))  # mixes, reorders and flips channels
    other = torch.randn(3, 4, 6, 20, generator=g)
    d = channel_cka_distance_matrix([a, 2.0 * torch.einsum("ij,nkjd->nkid", q, a), other])
    assert d[0, 1] == pytest.approx(0.0, abs=1e-12) and np.allclose(d, d.T) and np.all(np.diag(d) == 0)
    assert d[0, 2] > 0.5
    # by hand: one point, C = 2, D = 2; a spans e1 and e2 alike, b only e1: CKA = 1 / (sqrt(2) * 1)
    a1 = torch.eye(2).view(1, 1, 2, 2)
    b1 = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    assert channel_cka_distance_matrix([a1, b1])[0, 1] == pytest.approx(1 - 2 ** -0.5)


def test_channel_regression_by_hand_asymmetric_and_blind_to_each_channels_order_sign_and_scale():
    # one point, D = 4; a's two channels are orthonormal (e1, e2), b's one channel is e1
    a = torch.eye(4)[:2].view(1, 1, 2, 4)
    b = torch.eye(4)[:1].view(1, 1, 1, 4)
    d = channel_regression_distance_matrix([a, b])  # ridge 0.1 x a's mean channel energy (1): 1 / 1.1 explained
    assert d[0, 1] == pytest.approx(1 - 1 / 1.1)  # a explains all of b, shrunk by the ridge
    assert d[1, 0] == pytest.approx(1 - 0.5 / 1.1)  # b explains a's first channel, not its second
    assert np.all(np.diag(d) == 0)
    assert channel_regression_distance_matrix([a, b], ridge=1e-12)[0, 1] == pytest.approx(0.0, abs=1e-9)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 6, 20, generator=g)  # [N, K, C, D]
    target = torch.randn(3, 4, 5, 20, generator=g)
    scale = torch.tensor([3.0, -1.0, 0.5, -2.0, 7.0, 1.0]).view(1, 1, 6, 1)  # flips and rescales channels
    one = channel_regression_distance_matrix([x, target])
    two = channel_regression_distance_matrix([x[:, :, [5, 3, 1, 0, 2, 4]] * scale, -target[:, :, [4, 0, 2, 1, 3]]])
    np.testing.assert_allclose(two, one, rtol=1e-9)  # float32 inputs: rounding of the rescaled values only
    # a weighted sum of the source's channels is explained; a random field of the same size is not
    mixed = torch.einsum("ij,nkjd->nkid", torch.randn(2, 6, generator=g), x)
    d = channel_regression_distance_matrix([x, mixed, torch.randn(3, 4, 2, 20, generator=g)])
    assert d[0, 1] < 0.1 < 0.8 < d[0, 2]
    assert d[1, 0] > 0.5  # two channels cannot explain six
    # an encoder with no field at all (every channel dead) explains nothing and is explained by nothing
    d = channel_regression_distance_matrix([x, torch.zeros(3, 4, 6, 20)])
    assert d[0, 1] == d[1, 0] == 1.0 and np.all(np.diag(d) == 0)
    # targets read from another list (round 8: only what a readout reads): the same rows, the same matrix;
    # by hand, b's target row e1 + e3 is half in a's span (e1, e2), a's target row e2 wholly in b's (e1, e2)
    rows = [f.permute(2, 0, 1, 3).flatten(1) for f in (x, mixed)]
    np.testing.assert_array_equal(_regression_distance_matrix(rows, 0.1, targets=rows),
                                  _regression_distance_matrix(rows, 0.1))
    e = torch.eye(4)
    d = _regression_distance_matrix([e[:2], e[:2]], 1e-12, targets=[e[1:2], e[0:1] + e[2:3]])
    assert d[0, 1] == pytest.approx(0.5) and d[1, 0] == pytest.approx(0.0, abs=1e-9)


def test_feature_regression_explains_a_linear_map_of_the_features_whatever_their_offset():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(300, 6, generator=g, dtype=torch.float64)
    b = a @ torch.randn(6, 4, generator=g, dtype=torch.float64) + 5.0  # a linear map of a, shifted
    c = torch.randn(300, 4, generator=g, dtype=torch.float64)
    d = feature_regression_distance_matrix([a, b, c], ridge=1e-12)
    assert d[0, 1] == pytest.approx(0.0, abs=1e-9) and d[1, 0] > 0.1  # four features cannot give back six
    assert d[0, 2] > 0.9 and np.all(np.diag(d) == 0)


def test_transfer_readouts_give_finite_losses_better_than_chance():
    """Even an untrained encoder's features read digits out better than chance."""
    x, y = digits_dataset()
    pool, held = digits_split()
    torch.manual_seed(0)
    enc = Encoder(8)
    loss = transfer_losses({"a": enc}, ["digit", "autoencode"], x[pool[:200]], y[pool[:200]],
                           x[held[:100]], y[held[:100]], steps=50)
    assert loss.shape == (1, 2) and np.isfinite(loss).all()
    assert loss[0, 0] < np.log(10)  # better than chance on digits even from random features
    for dense in ("conv", "ridge"):  # per held-out example, the same readouts: their mean is the loss
        each = transfer_losses({"a": enc}, ["digit", "autoencode"], x[pool[:200]], y[pool[:200]],
                               x[held[:100]], y[held[:100]], steps=50, dense=dense, reduction="none")
        assert each.shape == (1, 2, 100)
        mean = loss if dense == "conv" else transfer_losses(
            {"a": enc}, ["digit", "autoencode"], x[pool[:200]], y[pool[:200]], x[held[:100]], y[held[:100]],
            steps=50, dense=dense)
        np.testing.assert_allclose(each.mean(2), mean, rtol=1e-6)
    # a zoo's readouts: its seed by default, the same draw of examples read out again with another readout seed
    cfg = BenchConfig(tasks=("digit", "parity", "autoencode"), transfer_train=200, readout_steps=20)
    zoo = {"a": enc, "_random": random_encoder(cfg, 5)}
    args = (cfg, 5, zoo, x[pool[:300]], y[pool[:300]], x[held[:50]], y[held[:50]])
    own = zoo_transfer_losses(*args)
    np.testing.assert_array_equal(zoo_transfer_losses(*args, readout_seed=5), own)
    assert not np.array_equal(zoo_transfer_losses(*args, readout_seed=6), own)


def test_input_noise_changes_training_seeded_and_zero_noise_is_the_plain_recipe():
    x, y = digits_dataset()
    x, y = x[:128], y[:128]
    kw = {"epochs": 1, "seed": 3, "width": 8}
    plain = train_encoder("parity", x, y, **kw).state_dict()
    zero = train_encoder("parity", x, y, noise=0.0, **kw).state_dict()
    noisy = train_encoder("parity", x, y, noise=0.2, **kw).state_dict()
    again = train_encoder("parity", x, y, noise=0.2, **kw).state_dict()
    assert all(torch.equal(plain[k], zero[k]) for k in plain)  # the default draws nothing extra
    assert all(torch.equal(noisy[k], again[k]) for k in plain)  # the noise is seeded
    assert not torch.equal(plain["net.0.weight"], noisy["net.0.weight"])
    assert BenchConfig().noise == 0.0
    # with_head: the same encoder, and the head it was trained with (parity: 2 classes from avg + max pooling)
    enc, head = train_encoder("parity", x, y, with_head=True, **kw)
    assert all(torch.equal(plain[k], v) for k, v in enc.state_dict().items())
    assert head.weight.shape == (2, 16) and not head.weight.requires_grad


def testconv_readout_reads_a_map_its_features_hold_and_not_one_they_lack():
    """The dense conv readout: features that hold the target's 4x4 blocks beat features of another map."""
    g = torch.Generator().manual_seed(0)
    target = torch.rand(300, 1, 32, 32, generator=g)
    held = F.pixel_unshuffle(target, 4)  # [300, 16, 8, 8]: each position's 4x4 block as channels
    unrelated = F.pixel_unshuffle(torch.rand(300, 1, 32, 32, generator=g), 4)
    good = conv_readout(held[:200], target[:200], held[200:], target[200:], steps=200, seed=0)
    bad = conv_readout(unrelated[:200], target[:200], unrelated[200:], target[200:], steps=200, seed=0)
    assert good < 0.25 * bad
    assert bad == pytest.approx(float(target[200:].var()), rel=0.3)  # no better than the mean map
    # each held-out map's loss, as Taskonomy's AHP compares them; their mean is the loss
    each = conv_readout(held[:200], target[:200], held[200:], target[200:], steps=200, seed=0, reduction="none")
    assert each.shape == (100,) and float(each.mean()) == pytest.approx(good, rel=1e-6)
    with pytest.raises(UserError, match="reduction"):
        conv_readout(held[:200], target[:200], held[200:], target[200:], steps=1, seed=0, reduction="sum")


def test_standardising_leaves_a_channel_dead_in_training_at_scale_one():
    """A ReLU channel that is 0 on every training example but fires at test time must not be divided
    by its ~0 spread (that blew one readout's loss up to 230)."""
    g = torch.Generator().manual_seed(0)
    train = torch.rand(100, 3, 4, 4, generator=g)
    train[:, 1] = 0.0  # dead on the training examples
    test = torch.rand(20, 3, 4, 4, generator=g)
    a, b = _standardised(train, test, dims=(0, 2, 3))
    assert float(b[:, 1].abs().max()) <= 1.0  # test values kept at their own scale
    np.testing.assert_allclose(a[:, [0, 2]].std((0, 2, 3)).numpy(), 1.0, rtol=1e-5)
    assert float(a[:, [0, 2]].mean().abs()) < 1e-5


def test_channel_scaled_encoder_gives_every_channel_a_mean_max_of_one():
    x, _ = digits_dataset()
    torch.manual_seed(0)
    enc = Encoder(8).eval().requires_grad_(False)
    with torch.no_grad():
        enc.net[0].weight[:4] *= 10.0  # make some channels much larger than the others
        scaled = ChannelScaled(enc, x[:64])(x[:64])  # [64, 8, 8, 8]
    np.testing.assert_allclose(scaled.amax((2, 3)).mean(0).numpy(), 1.0, rtol=1e-4)


def test_bad_readout_and_target_names_are_refused():
    x, y = digits_dataset()
    with pytest.raises(UserError, match="dense readout"):
        transfer_losses({"a": Encoder(8)}, ["autoencode"], x[:8], y[:8], x[:8], y[:8], dense="linear")
    with pytest.raises(UserError, match="dense readout"):
        BenchConfig(dense_readout="mlp")
    with pytest.raises(UserError, match="field target"):
        BenchConfig(field_target="logit")
    with pytest.raises(UserError, match="curve part"):
        BenchConfig(curve="late")
    with pytest.raises(UserError, match="field space"):
        BenchConfig(space="fourier")
    for target in ("per-channel", "per-channel-regression"):
        with pytest.raises(UserError, match=r"^Per-channel fields are compared on the digits' subspace only"):
            BenchConfig(field_target=target, space="pixels")


def test_hubness_centring_by_hand():
    # a is far from everyone (an outlier field); for target b, raw distances prefer c over a only
    # because a is far from all; centred, a is relatively closer to b than to the rest.
    d = np.array([[0.0, 0.9, 1.2, 1.2],
                  [0.9, 0.0, 0.5, 0.6],
                  [1.2, 0.5, 0.0, 0.2],
                  [1.2, 0.6, 0.2, 0.0]])
    c = hubness_centred(d)
    off = np.array([3.3, 2.0, 1.9, 2.0]) / 3  # each row's mean off-diagonal distance
    np.testing.assert_allclose(c[0, 1], 0.9 - off[0] - off[1])
    np.testing.assert_allclose(c, c.T)
    np.testing.assert_allclose(np.diag(c), 0.0)
    assert c[0, 1] < c[2, 1]  # a now ranks nearer to b than c does
    assert d[0, 1] > d[2, 1]
    # per target, centring only subtracts the sources' own offsets: ranks change, scores are Spearman
    aff = np.array([[1.0, 0.8, 0.1, 0.0], [0.5, 1.0, 0.2, 0.1], [0.1, 0.3, 1.0, 0.9], [0.0, 0.2, 0.9, 1.0]])
    tasks = ["a", "b", "c", "d"]
    assert per_task_spearman(d, aff, tasks)["b"] == pytest.approx(0.5)
    assert per_task_spearman(c, aff, tasks)["b"] == pytest.approx(-1.0)


def test_field_rank_counts_independent_channel_fields_whatever_their_scale():
    rng = np.random.default_rng(0)
    n, k, d = 3, 4, 16
    basis = torch.from_numpy(np.linalg.qr(rng.normal(size=(n * k * d, 5)))[0].T)  # 5 orthonormal fields
    orthogonal = basis.reshape(5, n, k, d).permute(1, 2, 0, 3)  # [N, K, C, D]
    assert field_rank(orthogonal) == pytest.approx(5.0)
    # each channel's scale and sign change nothing; a dead channel adds nothing
    scaled = orthogonal * torch.tensor([3.0, -0.1, 1.0, 7.0, 0.5]).view(1, 1, 5, 1)
    dead = torch.cat([orthogonal, torch.zeros(n, k, 1, d, dtype=orthogonal.dtype)], dim=2)
    assert field_rank(scaled) == pytest.approx(5.0) and field_rank(dead) == pytest.approx(5.0)
    # four channels that follow one field are one; two pairs, two
    one = orthogonal[:, :, :1].repeat(1, 1, 4, 1) * torch.tensor([1.0, 2.0, -1.0, 5.0]).view(1, 1, 4, 1)
    assert field_rank(one) == pytest.approx(1.0)
    assert field_rank(torch.cat([one, orthogonal[:, :, 1:2].repeat(1, 1, 4, 1)], dim=2)) == pytest.approx(2.0)
    # two unit fields at cosine c: Gram eigenvalues 1 +- c, so (2)^2 / ((1 + c)^2 + (1 - c)^2) = 2 / (1 + c^2)
    c = 0.6
    mixed = torch.stack([basis[0], c * basis[0] + (1 - c * c) ** 0.5 * basis[1]]).reshape(2, n, k, d)
    assert field_rank(mixed.permute(1, 2, 0, 3)) == pytest.approx(2 / (1 + c * c))
    assert field_rank(torch.zeros(n, k, 3, d)) == 0.0  # no field at all


def test_dense_sources_are_ordered_by_field_rank_and_the_rest_by_distance_by_hand():
    # 3 classification encoders (0-2) and 3 dense ones (3-5); distance [source, target]
    kinds = ["class", "class", "class", "dense", "dense", "dense"]
    dist = np.array([[0.0, 0.1, 0.3, 0.9, 0.8, 0.7],
                     [0.2, 0.0, 0.1, 0.6, 0.9, 0.8],
                     [0.1, 0.2, 0.0, 0.8, 0.7, 0.9],
                     [0.7, 0.6, 0.9, 0.0, 0.1, 0.3],
                     [0.8, 0.9, 0.5, 0.2, 0.0, 0.1],
                     [0.9, 0.7, 0.8, 0.3, 0.2, 0.0]])
    ranks = np.array([10.0, 12.0, 11.0, 4.0, 9.0, 6.0])  # of the dense sources, 4 is richest, then 5, then 3
    order = dense_sources_by_field_rank(dist, ranks, kinds)
    assert np.all(np.diag(order) == 0)
    # target 0 (class): its class sources by distance (2 at 0.1, then 1 at 0.2), then the dense block by rank
    assert list(np.argsort(order[:, 0])[1:]) == [2, 1, 4, 5, 3]
    # target 3 (dense): the dense block first (nearer on average), 4 (rank 9) before 5 (rank 6); then the
    # class sources by distance
    assert list(np.argsort(order[:, 3])[1:]) == [4, 5, 1, 2, 0]
    # target 4: the richer other dense source (5, rank 6) before 3 (rank 4), though 3 is nearer (0.1 against 0.2)
    assert list(np.argsort(order[:, 4])[1:]) == [5, 3, 2, 0, 1]
    # a target whose distances put the other kind nearer on average gets that block first
    flipped = dist.copy()
    flipped[3:, 0] = 0.05
    assert list(np.argsort(dense_sources_by_field_rank(flipped, ranks, kinds)[:, 0])[1:]) == [4, 5, 3, 2, 1]
    # the field ranks of classification sources change nothing
    other = ranks.copy()
    other[:3] = [1.0, 50.0, 3.0]
    np.testing.assert_array_equal(dense_sources_by_field_rank(dist, other, kinds), order)


def test_method_ranking_reorders_only_field_ranked_methods_of_zoos_that_have_ranks():
    tasks = ["digit", "parity", "ge5", "autoencode", "denoise", "inpaint"]
    rng = np.random.default_rng(5)
    dist = rng.uniform(size=(6, 6))
    np.fill_diagonal(dist, 0.0)
    zoo = {key: dist.tolist() for key in METHODS.values()}
    # a zoo stored before round 11 has no field ranks: every method is ranked by its centred distances
    for method in METHODS:
        np.testing.assert_array_equal(method_ranking([zoo], method, tasks), hubness_centred(dist))
    ranks = [5.0, 6.0, 7.0, 3.0, 8.0, 2.0]
    zoo |= {"field_rank": ranks, "field_rank_ig": ranks[::-1]}
    kinds = [TASKS[t][0].kind for t in tasks]
    np.testing.assert_array_equal(method_ranking([zoo], "modelgif", tasks),
                                  dense_sources_by_field_rank(hubness_centred(dist), np.array(ranks), kinds))
    np.testing.assert_array_equal(method_ranking([zoo], "ig_attribution", tasks, centre=False),
                                  dense_sources_by_field_rank(dist, np.array(ranks[::-1]), kinds))
    for method in ("field_distance", "linear_cka", "feature_regression"):
        np.testing.assert_array_equal(method_ranking([zoo], method, tasks), hubness_centred(dist))
    # several zoos: their distances and field ranks averaged
    other = zoo | {"distance": (dist.T * 2).tolist(), "field_rank": [r + 1 for r in ranks[::-1]]}
    np.testing.assert_allclose(method_ranking([zoo, other], "modelgif", tasks), dense_sources_by_field_rank(
        hubness_centred((dist + 2 * dist.T) / 2), (np.array(ranks) + np.array(ranks[::-1]) + 1) / 2, kinds))


def test_tiny_end_to_end_run_and_json_contract():
    cfg = tiny_bench_config()
    calls = []
    result = run_bench(cfg=cfg, seeds=2, progress=lambda done, total: calls.append((done, total)))  # as --seeds 2
    assert calls == [(i, 6) for i in range(1, 7)]  # each zoo's three stages, in order
    json.dumps(result)
    assert result["seeds"] == 2 == len(result["spearman_per_seed"])
    assert set(result["spearman_per_task"]) == set(cfg.tasks)
    assert -1.0 <= result["spearman_mean"] <= 1.0
    variants = [f"modelgif[{t}|{c}|{s}]" for t in ("channel-scaled", "feature-max") for c in ("early", "all")
                for s in ("subspace", "pixels")] + [f"modelgif[{t}|{c}|subspace]" for t in ("per-channel",
                                                    "per-channel-regression") for c in ("early", "all")]
    for name in ("field_distance", "ig_attribution", "linear_cka", "feature_regression", *variants):
        assert -1.0 <= result["baselines"][name]["spearman_mean"] <= 1.0
        assert len(result["baselines"][name]["spearman_per_seed"]) == 2
    assert result["field_target"] == "per-channel-regression" and result["curve"] == "all"
    assert result["space"] == "subspace" and result["centre"] is True
    default = "modelgif[per-channel-regression|all|subspace]"
    # ModelGiF's distance alone is one of the variants, scored identically
    distance_only = result["baselines"]["field_distance"]["spearman_per_task"]
    assert distance_only == result["baselines"][default]["spearman_per_task"]
    assert result["dense_sources"] == "field rank"
    assert set(result["other_readout"]) == set(result["uncentred"]) == set(result["ahp"]) == {
        "modelgif", "field_distance", "ig_attribution", "linear_cka", "feature_regression", *variants}
    assert len(result["per_seed"]) == 2
    assert len(result["other_zoos_reference"]["spearman_per_seed"]) == 2
    pooled = result["pooled_over_seeds"]["modelgif"]["spearman_per_task"]
    assert set(pooled) == set(cfg.tasks)
    # pooled zoos are scored against their averaged AHP affinities (round 12), each zoo against its own affinities
    assert result["zoos_truth"] == "affinity_ahp"
    ahp_mean = np.mean([s["affinity_ahp"] for s in result["per_seed"]], 0)
    assert pooled == per_task_spearman(method_ranking(result["per_seed"], "modelgif", list(cfg.tasks)), ahp_mean,
                                       list(cfg.tasks))
    other = result["per_seed"][1]
    assert result["other_zoos_reference"]["spearman_per_seed"][0] == pytest.approx(np.mean(list(per_task_spearman(
        -np.array(other["affinity_ahp"]), np.array(result["per_seed"][0]["affinity"]), list(cfg.tasks)).values())))
    seed = result["per_seed"][0]
    dist = np.array(seed["distance"])
    # the regression is asymmetric (source row, target column), and every encoder is at 0 from itself
    assert dist.shape == (4, 4) and not np.allclose(dist, dist.T) and np.all(np.diag(dist) == 0)
    assert np.all((dist >= 0) & (dist <= 1))
    cka = np.array(seed["distance[per-channel|all|subspace]"])  # round 4's comparison is symmetric
    assert np.allclose(cka, cka.T)
    # the stored matrix is the raw distance; the score is on its centred form, the "raw" score on it as is;
    # ModelGiF then orders the dense sources by the field ranks the zoo keeps (the IG attribution, by its own)
    kinds = [TASKS[t][0].kind for t in cfg.tasks]
    assert len(seed["field_rank"]) == len(seed["field_rank_ig"]) == 4 and min(seed["field_rank"]) >= 1
    assert seed["field_rank"] != seed["field_rank_ig"]
    ranked = dense_sources_by_field_rank(hubness_centred(dist), np.array(seed["field_rank"]), kinds)
    assert seed["spearman"] == per_task_spearman(ranked, np.array(seed["affinity"]), list(cfg.tasks))
    assert seed["spearman_field_distance"] == per_task_spearman(hubness_centred(dist), np.array(seed["affinity"]),
                                                                list(cfg.tasks))
    assert seed["spearman_modelgif_uncentred"] == per_task_spearman(dense_sources_by_field_rank(
        dist, np.array(seed["field_rank"]), kinds), np.array(seed["affinity"]), list(cfg.tasks))
    np.testing.assert_allclose(np.diag(np.array(seed["affinity"])), 1.0)
    # only the dense target's column depends on the dense readout
    aff, aff_ridge = np.array(seed["affinity"]), np.array(seed["affinity_other_readout"])
    np.testing.assert_array_equal(aff[:, :3], aff_ridge[:, :3])
    assert not np.allclose(aff[:, 3], aff_ridge[:, 3])
    # Taskonomy's AHP ground truth: each target's sources' priorities sum to 1, and every method is scored on it
    ahp = np.array(seed["affinity_ahp"])
    np.testing.assert_allclose(ahp.sum(0), 2.0)  # per column: its sources' priorities (1) and the diagonal's 1
    assert seed["spearman_modelgif_ahp"] == per_task_spearman(ranked, ahp, list(cfg.tasks))
    table = format_table(result)
    row = next(line for line in table.splitlines() if line.startswith("mean, AHP"))
    assert f"{result['ahp']['modelgif']['spearman_mean']:.3f}" in row.split()
    assert "ModelGiF" in table and "lin. CKA" in table and "feat.reg." in table and "autoencode" in table
    assert "dist.only" in table and "dense sources by their field rank" in table
    assert "pooled" in table and "against the seeds' mean AHP affinity" in table
    header = next(line for line in table.splitlines() if line.startswith("variant"))
    assert header.split()[:3] == ["variant", "mean", "pooled"]
    # one zoo pools nothing: neither the pooled row nor the variants' pooled column (it would be its AHP score)
    assert "pooled" not in format_table({**result, "seeds": 1})
    assert "other zoos" in table and "by the other zoos' mean AHP affinity" in table
    # 3 classification tasks and 1 dense: only the dense target has 3 sources of one kind (classification)
    assert set(result["within_kind"]) == {"class"}
    within = result["within_kind"]["class"]
    assert set(within) == {*METHODS, "other_zoos"}
    assert within["modelgif"] == pytest.approx(np.mean([per_task_spearman(
        hubness_centred(np.array(s["distance"])), np.array(s["affinity"]), list(cfg.tasks))[cfg.tasks[3]]
        for s in result["per_seed"]]))
    row = next(line for line in table.splitlines() if line.startswith("within class"))
    assert f"{within['modelgif']:.3f}" in row.split() and f"other zoos {within['other_zoos']:.3f})" in row
    # two zoos cannot be split into averaged halves; four (the two, twice) can, and the table says so
    assert result["task_level"] is None and "task level" not in table
    level = task_level_spearman(result["per_seed"] * 2, list(cfg.tasks))
    assert level["halves"] == [2, 2]
    table = format_table({**result, "task_level": level})
    row = next(line for line in table.splitlines() if line.startswith("task level"))
    assert f"{level['methods']['modelgif']:.3f}" in row and f"{level['ground_truth']:.3f})" in row
    # every field variant's task level too, beside its per-zoo mean
    header = next(line for line in table.splitlines() if line.startswith("variant"))
    assert "task lvl" in header and "per seed" in header
    row = next(line for line in table.splitlines() if line.startswith(default))
    assert f"{level['methods'][default]:.3f}" in row.split()

    # The app shows this run's task zoo: similarity tree on Distances, the tasks on Zoo map.
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120).run()
    for page, trace in (("app_pages/distances.py", "heatmap"), ("app_pages/zoo_map.py", "scatter")):
        at.switch_page(page).run()
        assert not at.exception
        figure = json.loads(at.get("plotly_chart")[0].proto.spec)
        assert any(t["type"] == trace for t in figure["data"])
        shown = json.dumps(figure["data"])
        assert all(task in shown for task in cfg.tasks)
        if trace == "scatter":  # ten tasks: each point carries its name
            assert all(t["mode"] == "markers+text" for t in figure["data"])
            assert sorted(n for t in figure["data"] for n in t["text"]) == sorted(cfg.tasks)
        if trace == "heatmap":  # says which distance it shows: not the page's cosine
            assert "row → column (1 − share explained)" in json.dumps(figure["layout"], ensure_ascii=False)
    # Distances also lists each target task's score beside the baselines', as the bench prints them
    at.switch_page("app_pages/distances.py").run()
    scores = at.dataframe[0].value
    assert list(scores.index) == [*cfg.tasks, "mean", "mean, AHP", "within class"]
    assert scores.loc["within class", "feature regression"] == pytest.approx(
        result["within_kind"]["class"]["feature_regression"], abs=5e-4 + 1e-9)
    assert scores.loc["mean, AHP", "ModelGiF"] == pytest.approx(result["ahp"]["modelgif"]["spearman_mean"],
                                                                abs=5e-4 + 1e-9)
    assert list(scores.columns) == ["ModelGiF", "ModelGiF distance only", "IG only", "linear CKA",
                                    "feature regression"]
    assert scores.loc["mean", "ModelGiF distance only"] == pytest.approx(
        result["baselines"]["field_distance"]["spearman_mean"], abs=5e-4 + 1e-9)
    # shown rounded to 3 decimals: off by at most half a unit in the last (0.3125 shows as 0.312)
    assert scores.loc["mean", "ModelGiF"] == pytest.approx(result["spearman_mean"], abs=5e-4 + 1e-9)
    captions = " ".join(c.value for c in at.caption)
    assert "other zoos' mean AHP affinity" in captions and "share of the column encoder's channel fields" in captions
    assert "ranked as Taskonomy ranks them" in captions
    assert "the dense ones by their field rank, the others by field distance, hubness-centred" in captions
    assert "Field rank: the effective number" in captions
    assert f"The other zoos' mean AHP affinity reads class {result['within_kind']['class']['other_zoos']:.3f}" \
        in captions
    assert "Task level" not in captions
    # a run of 4 or more zoos adds the task level: a row of the scores and what the ground truth certifies
    _save_last({**result, "task_level": level})
    at.switch_page("app_pages/distances.py").run()
    assert not at.exception
    scores = at.dataframe[0].value
    assert list(scores.index) == [*cfg.tasks, "mean", "mean, AHP", "within class", "task level"]
    assert scores.loc["task level", "feature regression"] == pytest.approx(
        level["methods"]["feature_regression"], abs=5e-4 + 1e-9)
    captions = " ".join(c.value for c in at.caption)
    assert f"half against half, {level['ground_truth']:.3f}" in captions and "other 2's mean AHP affinity" in captions
    # a result stored in another shape (an older RESULT_SCHEMA: no AHP scores, no within-kind ones, no field
    # ranks) is not read key by key with fallbacks: the page offers to train the task zoo again instead
    old = {k: v for k, v in result.items() if k not in ("ahp", "within_kind", "dense_sources", "zoos_truth", "schema")}
    _save_last({**old, "baselines": {k: v for k, v in result["baselines"].items() if k != "field_distance"}})
    assert last_relatedness_result() is None
    at.switch_page("app_pages/distances.py").run()
    assert not at.exception
    assert not at.dataframe
    assert any("not trained yet" in e.label for e in at.expander)


def test_unknown_tasks_and_anchors_off_the_digits_grid_are_refused_before_training():
    with pytest.raises(UserError, match="Tasks must be"):
        run_bench(cfg=BenchConfig(tasks=("digit", "colour", "parity")))
    with pytest.raises(UserError, match="3x32x32"):
        run_bench(cfg=BenchConfig(anchors="natural:2"))  # 224x224 photos: refused at once


def test_the_app_worker_trains_the_task_zoo_into_its_own_store(tmp_path):
    """The app's "Train the quick task zoo": a real background worker runs the bench with progress and keeps the
    result in the worker's store, not $MODELGIF_HOME's, where the task zoo views read it; a second click is the
    same job, not a second run."""
    from modelgif_core import DONE, TASK_ZOO_KEY, FieldStore, Worker, relatedness_task

    cfg = tiny_bench_config(tasks=("digit", "parity", "autoencode"))
    worker = Worker(FieldStore(tmp_path / "store"))
    try:
        worker.submit_task(TASK_ZOO_KEY, "task zoo", relatedness_task(cfg))
        seen = set()
        while (job := worker.job(TASK_ZOO_KEY)).active:
            seen.add((job.done, job.total))
            time.sleep(0.02)
        again = worker.submit_task(TASK_ZOO_KEY, "task zoo", relatedness_task(cfg))
    finally:
        worker.stop()
    assert job.state == DONE, job.error
    assert job.total == 3 and seen <= {(0, 0), (1, 3), (2, 3), (3, 3)} and (1, 3) in seen
    stored = last_relatedness_result(tmp_path / "store")
    assert stored["tasks"] == list(cfg.tasks) and stored["spearman_mean"] == job.result["spearman_mean"]
    assert last_relatedness_result() is None
    assert again.state == DONE and again.finished == job.finished
