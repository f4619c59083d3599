"""Unlearning verification: the verdict rule, class anchors, verify_unlearning on tiny trained
models, the bench's JSON contract, and the app page through AppTest."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
import torch
from _app_fixtures import store_at
from conftest import run_cli

from modelgif_core import (
    FieldConfig,
    UserError,
    build_zoo,
    extract_field,
    list_zoo,
    load_anchors,
    load_model,
    save_model_dir,
    verify_unlearning,
)
from modelgif_core.analysis.unlearning import class_anchors, judge_unlearning
from modelgif_core.bench.unlearning import (
    CANDIDATE,
    BenchConfig,
    DigitsSubspace,
    GrayInput,
    NativeDigits,
    format_table,
    gaussian_noise,
    random_crop,
    run_bench,
)
from modelgif_core.engine.anchors import digits_basis, digits_dataset
from modelgif_core.engine.device import one_torch_thread
from modelgif_core.zoo import ARCHS, UNLEARNING
from modelgif_core.zoo.training import create_net, fit, load_data

ROOT = Path(__file__).resolve().parents[1]
REFS = [0.95, 1.0, 1.05]


def test_an_approximate_unlearner_close_to_the_original_is_not_forgotten():
    r = judge_unlearning(0.3, REFS)
    assert r["verdict"] == "not forgotten"
    assert r["retained"] == pytest.approx(0.7)
    assert r["threshold"] == pytest.approx(0.9)  # (1 - RETAINED_MIN) * mean, below min(ref)
    assert r["closer_references"] == 0


def test_a_model_among_or_beyond_the_references_is_forgotten():
    assert judge_unlearning(1.02, REFS)["verdict"] == "forgotten"
    assert judge_unlearning(1.3, REFS)["verdict"] == "forgotten"


def test_closer_than_every_reference_but_retaining_little_is_still_forgotten():
    # Below min(ref) yet only 8% of the way from the references to the original (the rule needs 10%).
    r = judge_unlearning(0.92, REFS)
    assert r["verdict"] == "forgotten"
    assert r["retained"] == pytest.approx(0.08)
    assert judge_unlearning(0.88, REFS)["verdict"] == "not forgotten"  # 12%
    # round 5's rule (25%) called a relabel unlearner keeping 13-24% "forgotten"
    assert judge_unlearning(0.85, REFS, retained_min=0.25)["verdict"] == "forgotten"


def test_the_explanation_says_why_a_model_closer_than_every_reference_is_still_forgotten():
    from modelgif_core.analysis.unlearning import _explain

    extra = {"n_anchors": 56, "anchors_labelled": True, "forgotten_class": 9,
             "accuracy_on_class": {"original": 0.96, "claimed": 0.0}}
    little = _explain({**judge_unlearning(0.92, REFS), **extra})
    assert "closer to the original than every reference, but it keeps only 8% of the original's class-9 field, " \
           "under the 10% the rule needs, so the verdict is 'forgotten'" in little
    assert "at least as far from the original as an independently trained model" in _explain(
        {**judge_unlearning(1.02, REFS), **extra})
    assert "its class-9 gradients are still the original's" in _explain({**judge_unlearning(0.3, REFS), **extra})
    # the explanation names the share the verdict was judged with
    assert "keeps only 15% of the original's class-9 field, under the 25% the rule needs" in _explain(
        {**judge_unlearning(0.85, REFS, retained_min=0.25), **extra})


def test_the_threshold_is_the_closest_reference_when_references_spread_widely():
    r = judge_unlearning(0.45, [0.5, 1.0, 1.5])
    assert r["threshold"] == pytest.approx(0.5)
    assert r["verdict"] == "not forgotten"
    assert judge_unlearning(0.55, [0.5, 1.0, 1.5])["verdict"] == "forgotten"


def test_too_few_references_is_a_user_error():
    with pytest.raises(UserError, match="at least 3 reference"):
        judge_unlearning(0.3, [1.0, 1.0])


def test_class_anchors_keep_one_class_with_its_own_hash():
    base = load_anchors("digits:500")
    sub = class_anchors(base, 3)
    assert len(sub) == int((base.labels == 3).sum()) > 20
    assert bool((sub.labels == 3).all())
    assert sub.sha256 != base.sha256 and sub.spec.endswith("class=3")
    assert torch.equal(sub.images, base.images[base.labels == 3])


def test_an_anchor_set_without_the_class_is_a_clear_error():
    base = load_anchors("digits:500")
    keep = base.labels != 7
    from modelgif_core.engine.anchors import AnchorSet, anchor_sha256

    no_seven = AnchorSet(base.images[keep], anchor_sha256(base.images[keep]), "x",
                         base.labels[keep], tuple(n for n, k in zip(base.names, keep) if k))
    with pytest.raises(UserError, match="no image of class 7"):
        class_anchors(no_seven, 7)


# ----------------------------------------------------------------------------------- real models


def _save(net: torch.nn.Module, folder: Path) -> str:
    arch, args, cfg = ARCHS["resnet"]
    save_model_dir(net.module, folder, arch=arch, num_classes=10, input_cfg=cfg, model_args=args,
                   extra={"name": folder.name})
    return f"local-dir:{folder}"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """Original, its relabel-unlearned copy and three independent references, briefly trained."""
    root = tmp_path_factory.mktemp("unlearning_models")
    with one_torch_thread():  # spinning spare threads on a busy machine costs 10x
        return _train_tiny_models(root)


def _train_tiny_models(root: Path) -> dict[str, str]:
    data = load_data()
    x, y = data.x[data.pool[:400]], data.y[data.pool[:400]]
    specs = {}
    for name, seed in (("original", 1), ("ref-a", 2), ("ref-b", 3), ("ref-c", 4)):
        torch.manual_seed(seed)
        net = create_net("resnet")
        fit(net, x, y, epochs=2, lr=3e-3, seed=seed)
        specs[name] = _save(net, root / name)
        if name == "original":
            original = net
    relabel = copy.deepcopy(original).requires_grad_(True)
    y2 = y.clone()
    y2[y == 9] = 0
    fit(relabel, x, y2, epochs=1, lr=1e-3, seed=9)
    specs["claimed"] = _save(relabel, root / "claimed")
    torch.manual_seed(5)
    retrained = create_net("resnet")
    fit(retrained, x[y != 9], y[y != 9], epochs=2, lr=3e-3, seed=5)
    specs["exact"] = _save(retrained, root / "exact")
    return specs


def test_verify_unlearning_tells_a_finetuned_copy_from_a_retrained_model(tiny_models):
    refs = [tiny_models[k] for k in ("ref-a", "ref-b", "ref-c")]
    cfg = FieldConfig(steps=8, target="label")
    approx = verify_unlearning(tiny_models["original"], tiny_models["claimed"], 9,
                               references=refs, anchors="digits:200", cfg=cfg).to_dict()
    exact = verify_unlearning(tiny_models["original"], tiny_models["exact"], 9, references=refs,
                              anchors="digits:200", cfg=cfg).to_dict()
    assert approx["verdict"] == "not forgotten", approx["explanation"]
    assert exact["verdict"] == "forgotten", exact["explanation"]
    assert approx["distance"] < exact["distance"]
    assert len(approx["references"]) == 3 and approx["reference_source"] == "given"
    assert approx["n_anchors"] == int((load_anchors("digits:200").labels == 9).sum())
    assert approx["anchors_labelled"]
    assert approx["explanation"].startswith(f"On {approx['n_anchors']} anchors of class 9 ")
    assert 0.0 <= approx["accuracy_on_class"]["claimed"] <= 1.0
    json.dumps(approx)  # the report is JSON-able as returned


def test_an_unlabelled_anchor_set_is_used_whole_and_the_explanation_says_so(tiny_models):
    refs = [tiny_models[k] for k in ("ref-a", "ref-b", "ref-c")]
    r = verify_unlearning(tiny_models["original"], tiny_models["claimed"], 9, references=refs,
                          anchors="noise:6", cfg=FieldConfig(steps=4, target="label")).to_dict()
    assert r["n_anchors"] == 6 and r["anchors_labelled"] is False
    assert r["explanation"].startswith("On 6 anchors (an unlabelled set, every image taken as class 9)")


def test_verify_unlearning_rejects_the_original_itself_and_a_bad_class(tiny_models):
    refs = [tiny_models[k] for k in ("ref-a", "ref-b", "ref-c")]
    with pytest.raises(UserError, match="original itself"):
        verify_unlearning(tiny_models["original"], tiny_models["original"], 9, references=refs)
    with pytest.raises(UserError, match="0..9"):
        verify_unlearning(tiny_models["original"], tiny_models["claimed"], 10, references=refs)


# ----------------------------------------------------------------------------------- the zoo's unlearners

ZOO_UNLEARNERS = [f"resnet-unlearned-{u}-9" for u in UNLEARNING]


@pytest.fixture(scope="module")
def zoo_unlearners(tmp_path_factory) -> Path:
    """A store whose small zoo holds resnet-victim and its three unlearners, really trained at a fifth
    of their epochs (the other zoo models are not needed)."""
    with store_at(tmp_path_factory.mktemp("unlearners_home")) as home:
        build_zoo("small", only=ZOO_UNLEARNERS, epochs_scale=0.2, workers=1)
    return home


def _class_accuracy(spec: str, idx: torch.Tensor) -> float:
    from modelgif_core.analysis.unlearning import _class_accuracy

    return _class_accuracy(load_model(spec), load_data().x[idx], 9)  # the share predicted 9, as the page reports


def _relative_change(spec: str, parent: str) -> float:
    a, b = load_model(spec).module.state_dict(), load_model(parent).module.state_dict()
    num = sum(float((a[k].float() - b[k].float()).square().sum()) for k in b if b[k].is_floating_point())
    return (num / sum(float(b[k].float().square().sum()) for k in b if b[k].is_floating_point())) ** 0.5


def test_the_zoo_unlearners_are_made_as_their_names_say(zoo_unlearners, monkeypatch):
    monkeypatch.setenv("MODELGIF_HOME", str(zoo_unlearners))
    rows = {r["name"]: r for r in list_zoo("small")}
    assert all(rows[n]["role"] == "unlearned" and rows[n]["forgotten_class"] == 9 for n in ZOO_UNLEARNERS)
    assert rows["resnet-victim"]["forgotten_class"] is None
    data = load_data()
    held = data.heldout[data.y[data.heldout] == 9]
    own = data.owner[data.y[data.owner] == 9]
    victim = "zoo:resnet-victim"
    assert _class_accuracy(victim, held) > 0.3  # the original knows the class
    # exact: its own initialisation, never shown a 9
    assert _class_accuracy("zoo:resnet-unlearned-exact-9", held) == 0.0
    assert _relative_change("zoo:resnet-unlearned-exact-9", victim) > 0.5
    # approximate: the original's weights, moved a little, failing the class
    assert _relative_change("zoo:resnet-unlearned-relabel-9", victim) < 0.2
    assert _class_accuracy("zoo:resnet-unlearned-relabel-9", held) < _class_accuracy(victim, held)
    assert _relative_change("zoo:resnet-unlearned-ascent-9", victim) < 0.2
    assert _class_accuracy("zoo:resnet-unlearned-ascent-9", own) < 0.1  # where the ascent stops


def test_the_cli_tells_the_zoo_approximate_unlearners_from_the_exact_one(zoo_unlearners, tiny_models):
    refs = [tiny_models[k] for k in ("ref-a", "ref-b", "ref-c")]
    env = {"MODELGIF_HOME": str(zoo_unlearners)}
    verdicts = {}
    for how in UNLEARNING:
        out = run_cli("unlearning", "--original", "zoo:resnet-victim", "--claimed", f"zoo:resnet-unlearned-{how}-9",
                      "--class", 9, "--reference", *refs, "--anchors", "digits:200", "--steps", 8,
                      "--format", "json", env=env)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["claimed"] == f"zoo:resnet-unlearned-{how}-9" and len(result["references"]) == 3
        verdicts[how] = result["verdict"]
    assert verdicts == {"exact": "forgotten", "relabel": "not forgotten", "ascent": "not forgotten"}
    table = run_cli("unlearning", "--original", "zoo:resnet-victim", "--claimed", "zoo:resnet-unlearned-exact-9",
                    "--class", 9, "--reference", *refs, "--anchors", "digits:200", "--steps", 8, "-q", env=env)
    assert table.returncode == 0, table.stderr
    assert "verdict:  forgotten" in table.stdout and refs[0] in table.stdout


def test_the_cli_says_in_one_sentence_what_is_wrong_with_the_class(zoo_unlearners):
    out = run_cli("unlearning", "--original", "zoo:resnet-victim", "--claimed", "zoo:resnet-unlearned-exact-9",
                  "--class", 10, env={"MODELGIF_HOME": str(zoo_unlearners)})
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "0..9" in out.stderr, out.stderr
    out = run_cli("unlearning", "--original", "zoo:resnet-victim", "--claimed", "zoo:resnet-unlearned-exact-9",
                  "--class", "nine", env={"MODELGIF_HOME": str(zoo_unlearners)})
    assert out.returncode == 2 and "nine" in out.stderr and "Traceback" not in out.stderr


# ----------------------------------------------------------------------------------- the bench


@pytest.mark.parametrize(("inputs", "baseline", "augment", "first_seed"),
                         [("rgb32", "black", "noise", 0), ("gray8", "gray", "crop", 3)])
def test_bench_json_contract_and_table(inputs, baseline, augment, first_seed):
    cfg = BenchConfig(seeds=2, extra_unrelated=2, epochs=1, relabel_epochs=1, steps=5,
                      ascent_max_steps=5, train_subset=300, inputs=inputs, baseline=baseline,
                      augment=augment, first_seed=first_seed)
    result = run_bench(cfg=cfg)
    json.dumps(result)
    row = result["per_seed"][0]
    assert result["config"]["bench"]["inputs"] == inputs
    assert result["config"]["bench"]["augment"] == augment
    assert [r["seed"] for r in result["per_seed"]] == [first_seed, first_seed + 1]
    for view in ("native_8x8", "subspace", "curve_first_fifth", "curve_last_fifth", "subspace_last_fifth",
                 CANDIDATE):
        assert set(result[view]) >= {"approx_relabel", "approx_ascent", "unrelated_mean", "exact"}
        for flag in ("exact_beyond_mean", "order_holds", "approx_below_unrelated"):
            assert 0 <= result[view][flag] <= 2
        c = row[view]
        assert c["unrelated_min"] <= c["unrelated_mean"] <= c["unrelated_max"]
        assert c["order_holds"] == (max(c["approx_relabel"], c["approx_ascent"]) < c["unrelated_min"]
                                    and c["unrelated_max"] < c["exact"])
    # The candidate view is the projected last fifth of the gray-baseline fields: with a gray
    # baseline it must equal subspace_last_fifth, with black it comes from other fields.
    same = result[CANDIDATE]["exact"] == pytest.approx(result["subspace_last_fifth"]["exact"], abs=1e-6)
    assert same == (baseline == "gray")
    assert result["config"]["field"]["baseline"] == baseline
    # The last fifth of K = 5 points is the last point alone: its distance is the plain distance
    # of fields cut to that point, which differs from the whole curve's.
    assert result["curve_last_fifth"]["exact"] != pytest.approx(result["exact"], abs=1e-6)
    for key in ("approx", "unrelated", "exact", "approx_relabel", "approx_ascent"):
        assert 0.0 <= result[key] <= 2.0, key
    assert result["seeds"] == 2 and len(result["per_seed"]) == 2
    row = result["per_seed"][0]
    assert len(row["unrelated"]) == 3  # the other seed's original + 2 extra models
    assert set(row["verdicts"]) == {"exact", "approx_relabel", "approx_ascent"}
    assert result["approx"] == pytest.approx((result["approx_relabel"] + result["approx_ascent"]) / 2)
    table = format_table(result)
    assert "approx" in table and "unrelated" in table and "exact" in table
    assert f"training augment {augment}" in table.splitlines()[0]


def test_the_bench_inputs_must_be_known():
    with pytest.raises(UserError, match="inputs must be one of rgb32, gray, gray8, subspace"):
        BenchConfig(inputs="rgb16")
    with pytest.raises(UserError, match="augment must be one of none, crop, noise"):
        BenchConfig(augment="flip")


def test_random_crop_translates_each_image_by_its_own_offset_with_zero_fill():
    x = torch.zeros(200, 3, 32, 32)
    x[:, :, 10, 20] = 1.0  # one lit pixel per image
    x[:, :, 0, 0] = 0.5  # a corner pixel: it leaves the image when shifted up or left
    out = random_crop(x, torch.Generator().manual_seed(7))
    dy, dx = torch.randint(0, 9, (2, 200), generator=torch.Generator().manual_seed(7))
    for i in range(200):
        # crop offset d moves content by 4 - d: the lit pixel lands at (10 + 4 - dy, 20 + 4 - dx)
        lit = (out[i, 0] == 1.0).nonzero().tolist()
        assert lit == [[14 - int(dy[i]), 24 - int(dx[i])]]
        assert torch.equal(out[i, 0], out[i, 2])  # one offset for all channels
        corner_kept = dy[i] <= 4 and dx[i] <= 4
        assert bool((out[i] == 0.5).any()) == bool(corner_kept)
        assert int((out[i, 0] != 0).sum()) == 1 + int(corner_kept)  # the rest is zero fill
    assert set(dy.tolist()) == set(dx.tolist()) == set(range(9))  # every shift of -4..4 px occurs


def _input_gradients(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(x)[:, 9].sum(), x)
    return grad  # [B, 3, 32, 32]


def test_the_digits_lie_in_the_subspace_and_the_projected_model_sees_them_unchanged():
    x, _ = digits_dataset()
    q = digits_basis()  # [3072, 64]
    torch.testing.assert_close(q.T @ q, torch.eye(64), atol=1e-5, rtol=0)
    flat = x[:50].reshape(50, -1)
    torch.testing.assert_close((flat @ q) @ q.T, flat, atol=1e-5, rtol=0)
    torch.manual_seed(0)
    net = create_net("resnet").eval()
    torch.testing.assert_close(DigitsSubspace(net)(x[:50]), net(x[:50]), atol=1e-4, rtol=1e-4)
    # Off the subspace they differ: the projection removes what the digits never contain.
    noisy = x[:50] + 0.1 * torch.randn(50, 3, 32, 32)
    assert not torch.allclose(DigitsSubspace(net)(noisy), net(noisy), atol=1e-3)
    g = _input_gradients(DigitsSubspace(net), torch.rand(100, 3, 32, 32)).reshape(100, -1)
    torch.testing.assert_close(g, (g @ q) @ q.T, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("wrap", [NativeDigits, DigitsSubspace])
def test_a_native_resolution_model_has_its_gradients_in_the_digits_64_dim_subspace(wrap):
    torch.manual_seed(0)
    native, plain = wrap(create_net("resnet")).eval(), create_net("resnet").eval()
    x = torch.rand(100, 3, 32, 32)  # more inputs than the subspace has dimensions
    g = _input_gradients(native, x)
    # The channel mean is inside the gradient: the three channels get the same gradient.
    torch.testing.assert_close(g[:, 0], g[:, 1])
    torch.testing.assert_close(g[:, 0], g[:, 2])
    # The 8x8 resize is inside the gradient too: all 100 gradients span at most 64 dimensions.
    assert int(torch.linalg.matrix_rank(g[:, 0].reshape(100, -1).double(), rtol=1e-4)) <= 64
    # The plain 32x32 network's gradients have no such limit.
    assert int(torch.linalg.matrix_rank(_input_gradients(plain, x).reshape(100, -1).double(), rtol=1e-4)) > 64
    # And the field, computed by the core unchanged, is the same in the three channels.
    anchors = class_anchors(load_anchors("digits:200"), 9)
    phi = extract_field(native, anchors, FieldConfig(steps=2, target="label", labels=(9,) * len(anchors)))
    rgb = phi.reshape(-1, 3, 32 * 32)  # [N*K, 3, 1024]
    torch.testing.assert_close(rgb[:, 0], rgb[:, 2])


def test_gaussian_noise_is_unclamped_zero_mean_noise_of_its_sigma_drawn_from_the_generator():
    x = torch.zeros(64, 3, 32, 32)  # a black image: clamping would leave only positive noise
    noise = gaussian_noise(x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(noise, 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3)))
    assert float(noise.min()) < -0.5  # not clamped at 0
    assert abs(float(noise.mean())) < 0.01 and abs(float(noise.std()) - 0.2) < 0.01


def test_a_gray_model_sees_the_digits_unchanged_and_its_gradient_is_the_gray_part_of_the_plain_one():
    x, _ = digits_dataset()
    torch.manual_seed(0)
    net = create_net("resnet").eval()
    gray = GrayInput(net).eval()
    torch.testing.assert_close(gray(x[:50]), net(x[:50]), atol=1e-5, rtol=1e-5)  # digits are gray
    colour = torch.rand(20, 3, 32, 32)
    assert not torch.allclose(gray(colour), net(colour), atol=1e-3)
    # At a gray input the gray model's gradient is the plain one averaged over the channels
    # (the chain rule through x.mean(1)), repeated in each channel.
    g_gray, g_plain = _input_gradients(gray, x[:20]), _input_gradients(net, x[:20])
    expected = g_plain.mean(1, keepdim=True).expand_as(g_plain)
    torch.testing.assert_close(g_gray, expected, atol=1e-6, rtol=1e-4)


# ----------------------------------------------------------------------------------- the page


def _after_the_worker(at) -> None:
    """The page runs its check in the server's worker process: wait for the store's jobs, then rerun the page."""
    from modelgif_core import server_worker

    worker = server_worker()  # the page's store: $MODELGIF_HOME
    deadline = time.monotonic() + 300
    while worker.pending() and time.monotonic() < deadline:
        worker.wait([j.key for j in worker.jobs()], timeout=5)
    assert not worker.pending()
    at.run()


def test_unlearning_page_gives_a_verdict(tiny_models):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app_pages" / "unlearning.py"), default_timeout=120)
    at.session_state["workspace"] = list(tiny_models.values())  # as the Models page leaves it
    at.run()
    assert not at.exception
    assert any("Pick the original" in i.value for i in at.info)
    assert any("the sidebar's field settings do not apply" in c.value for c in at.caption)
    at.selectbox(key="unl_original").set_value(tiny_models["original"]).run()
    at.selectbox(key="unl_claimed").set_value(tiny_models["claimed"]).run()
    at.text_input(key="unl_anchors").set_value("digits:200").run()
    at.select_slider(key="unl_steps").set_value(8).run()
    at.text_area(key="unl_refs").set_value(
        "\n".join(tiny_models[k] for k in ("ref-a", "ref-b", "ref-c"))).run()
    next(b for b in at.button if b.label == "Verify").click().run()
    _after_the_worker(at)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("not forgotten" in m.value for m in at.markdown)
    assert [d.label for d in at.get("download_button")] == ["Report (JSON)", "Report (Markdown)"]
    (chart,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert chart["layout"]["xaxis"]["title"]["text"] == "field distance to the original"  # not "victim"


def test_unlearning_page_turns_a_bad_spec_into_one_message(tiny_models):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app_pages" / "unlearning.py"), default_timeout=60)
    at.session_state["workspace"] = [tiny_models["original"], "local-dir:/nonexistent/model"]
    at.run()
    at.selectbox(key="unl_original").set_value(tiny_models["original"]).run()
    at.selectbox(key="unl_claimed").set_value("local-dir:/nonexistent/model").run()
    at.text_area(key="unl_refs").set_value(
        "\n".join(tiny_models[k] for k in ("ref-a", "ref-b", "ref-c"))).run()
    next(b for b in at.button if b.label == "Verify").click().run()
    _after_the_worker(at)
    assert not at.exception
    assert len(at.error) == 1 and "nonexistent" in at.error[0].value


def test_unlearning_page_without_references_or_zoo_says_what_to_do(tiny_models):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app_pages" / "unlearning.py"), default_timeout=60)
    at.session_state["workspace"] = [tiny_models["original"], tiny_models["claimed"]]
    at.run()
    at.selectbox(key="unl_original").set_value(tiny_models["original"]).run()
    at.selectbox(key="unl_claimed").set_value(tiny_models["claimed"]).run()
    assert not at.exception
    assert not [b for b in at.button if b.label == "Verify"]
    assert any("three reference models" in i.value for i in at.info)


def test_unlearning_page_offers_the_zoo_unlearners_as_examples(tmp_path_factory, monkeypatch):
    from _app_fixtures import quick_zoo_home
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MODELGIF_HOME", str(quick_zoo_home(tmp_path_factory.mktemp("quick_zoo"))))
    at = AppTest.from_file(str(ROOT / "app_pages" / "unlearning.py"), default_timeout=120)
    at.run()
    assert not at.exception
    assert any("unlearners of resnet-victim, class 9" in c.value for c in at.caption)
    assert any("or an example above" in i.value for i in at.info)
    examples = [b for b in at.button if b.key and b.key.startswith("unl_example_")]
    assert [b.label for b in examples] == ["fine-tuned with the class relabelled", "gradient ascent on the class",
                                           "retrained without the class"]
    at.number_input(key="unl_class").set_value(3).run()
    next(b for b in examples if b.label == "retrained without the class").click().run()
    assert at.selectbox(key="unl_original").value == "zoo:resnet-victim"
    assert at.selectbox(key="unl_claimed").value == "zoo:resnet-unlearned-exact-9"
    assert at.number_input(key="unl_class").value == 9
    at.text_input(key="unl_anchors").set_value("digits:200").run()
    at.select_slider(key="unl_steps").set_value(8).run()
    next(b for b in at.button if b.label == "Verify").click().run()
    _after_the_worker(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state["unl_claimed"] == "zoo:resnet-unlearned-exact-9"
    assert any("forgotten" in m.value and "badge" in m.value for m in at.markdown)  # a verdict, whichever

