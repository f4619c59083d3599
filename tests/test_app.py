"""The Streamlit app through AppTest: every page, the demo, uploads and the Hub, on real core calls.

Each test runs the real app script against a temporary MODELGIF_HOME with tiny models; the
background worker computes real fields (digits:8 anchors, K = 8, so it takes seconds).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _app_fixtures import quick_zoo_home, write_tiny_model
from conftest import tiny_bench_config
from streamlit.testing.v1 import AppTest

from modelgif_core import hold_task, server_worker
from modelgif_core.zoo import list_zoo, recipes

ROOT = Path(__file__).resolve().parents[1]
N_ZOO = len(recipes("small"))
APP = str(ROOT / "app.py")
PAGES = ["app_pages/models.py", "app_pages/distances.py", "app_pages/zoo_map.py", "app_pages/fields.py",
         "app_pages/triage.py"]
QUICK = {"anchors": "digits:8", "steps": "8"}


def _app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in {**QUICK, **query}.items():
        at.query_params[k] = v
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _n(values) -> int:
    """Length of a plotly array, plain or base64-packed ({"bdata": ..., "shape": "22, 22"})."""
    if isinstance(values, dict):
        shape = values.get("shape")
        if shape is None:
            import base64

            import numpy as np

            return len(np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]))
        return int(str(shape).split(",")[0])
    return len(values)


def _wait_all(home: Path, timeout: float = 300) -> None:
    worker = server_worker(home)
    deadline = time.monotonic() + timeout
    while worker.pending() and time.monotonic() < deadline:
        worker.wait([j.key for j in worker.jobs()], timeout=5)
    failed = [(j.label, j.error) for j in worker.jobs() if j.state == "failed"]
    assert not failed and not worker.pending(), failed


@pytest.fixture(scope="module")
def zoo_home(tmp_path_factory):
    """A store with the quick stand-in of the small zoo, shared by this module's demo tests."""
    return quick_zoo_home(tmp_path_factory.mktemp("app_home"))


@pytest.fixture()
def home(zoo_home, monkeypatch):
    monkeypatch.setenv("MODELGIF_HOME", str(zoo_home))
    return zoo_home


def test_every_page_explains_what_is_missing_on_an_empty_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGIF_HOME", str(tmp_path))
    at = _app()
    _ok(at)
    assert at.title[0].value == "ModelGiF Explorer"
    assert any(b.label == "Run the demo" for b in at.button)
    for page in PAGES:
        at.switch_page(page).run()
        _ok(at)
        assert at.info, page  # a guard that says what to do, not an empty page


def test_demo_fills_the_workspace_and_every_page_shows_its_results(home):
    at = _app()
    next(b for b in at.button if b.label == "Run the demo").click().run()
    _ok(at)
    assert at.session_state["demo"].startswith("demo:")
    _wait_all(home)
    at.run()
    _ok(at)
    assert any(f"Demo ready: {N_ZOO} zoo models" in s.value for s in at.success)
    links = [e.proto.label for e in at.main.get("page_link")]
    # Home's own link to the Models page, then every result page of the demo
    assert links == ["Or pick your own models", "Distances", "Zoo map", "Fields", "Triage", "Unlearning"]
    assert len(at.session_state["workspace"]) == N_ZOO
    assert at.query_params["m"][0] == "zoo:resnet-victim"  # the view is a URL

    at.switch_page("app_pages/distances.py").run()
    _ok(at)
    heat = next(t for t in _charts(at)[0]["data"] if t["type"] == "heatmap")
    assert _n(heat["z"]) == N_ZOO and "%{z:.6f}" in heat["hovertemplate"]
    assert [d.label for d in at.download_button] == ["Distances (CSV)", "Distances (JSON)"]

    at.switch_page("app_pages/zoo_map.py").run()
    _ok(at)
    scatter = _charts(at)[0]["data"]
    assert sum(_n(t["x"]) for t in scatter) == N_ZOO
    assert {t["name"] for t in scatter} >= {"independent"}

    at.switch_page("app_pages/fields.py").run()
    _ok(at)
    kinds = [[t["type"] for t in c["data"]] for c in _charts(at)]
    assert kinds[0].count("heatmap") == 2 * 8  # two models x the eight steps of K = 8
    assert kinds[1] == ["image", "heatmap"] and kinds[2] == ["scatter", "scatter"]
    assert not any("The first" in c.value for c in at.caption)  # all 8 anchors are in the gallery

    # Settings and workspace survive page changes; a cached page switch is quick (printed, not timed).
    for page in ("app_pages/distances.py", "app_pages/fields.py", "app_pages/zoo_map.py"):
        start = time.perf_counter()
        at.switch_page(page).run()
        print(f"{page}: {time.perf_counter() - start:.3f} s")
        _ok(at)
        assert at.session_state["anchors"] == "digits:8" and _charts(at)


def test_workspace_from_the_url_computes_missing_fields_on_click(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGIF_HOME", str(tmp_path / "home"))
    specs = [write_tiny_model(tmp_path / f"tiny{i}", seed=i) for i in range(3)]
    at = _app(m=specs)
    at.switch_page("app_pages/distances.py").run()
    _ok(at)
    assert "3 of 3 fields are not computed yet" in at.info[0].value
    next(b for b in at.button if b.label == "Compute missing fields").click().run()
    _ok(at)
    _wait_all(tmp_path / "home")
    at.run()
    _ok(at)
    heat = next(t for t in _charts(at)[0]["data"] if t["type"] == "heatmap")
    assert heat["x"] == heat["y"] and _n(heat["x"]) == 3
    at.switch_page("app_pages/zoo_map.py").run()  # 3 models: the map says why it is not UMAP
    _ok(at)
    assert any("UMAP needs at least 4 models" in i.value for i in at.info)


def _upload_page(tmp_path, monkeypatch) -> AppTest:
    monkeypatch.setenv("MODELGIF_HOME", str(tmp_path / "home"))
    at = _app()
    at.switch_page("app_pages/models.py").run()
    _ok(at)
    return at


def test_checkpoint_upload_adds_a_model_to_the_workspace(tmp_path, monkeypatch):
    import timm
    from safetensors.torch import save

    module = timm.create_model("test_resnet", num_classes=7)
    data = save({k: v.contiguous() for k, v in module.state_dict().items()})
    at = _upload_page(tmp_path, monkeypatch)
    at.file_uploader(key="ckpt").set_value(("my-net.safetensors", data, "application/octet-stream"))
    at.selectbox(key="ckpt_arch").set_value("test_resnet").run()
    at.text_input(key="ckpt_size_test_resnet").set_value("3,32,32")
    next(b for b in at.button if b.label == "Load checkpoint").click().run()
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    assert at.success[0].value == "Added my-net.safetensors (test_resnet)."
    (spec,) = at.session_state["workspace"]
    assert spec.startswith("local-dir:") and "uploads" in spec
    # The workspace table above the tabs shows the new model in the run of the click itself.
    assert at.subheader[0].value == "Workspace (1 model)"
    table = at.dataframe[0].value
    assert list(table["classes"]) == [7] and list(table["input"]) == ["3×32×32"]


def test_a_bad_upload_is_one_clear_sentence(tmp_path, monkeypatch):
    at = _upload_page(tmp_path, monkeypatch)
    at.file_uploader(key="ckpt").set_value(("broken.safetensors", b"not a checkpoint at all",
                                            "application/octet-stream"))
    at.selectbox(key="ckpt_arch").set_value("test_resnet").run()
    next(b for b in at.button if b.label == "Load checkpoint").click().run()
    _ok(at)
    (error,) = at.error
    assert "broken.safetensors" in error.value and "\n" not in error.value.strip()
    assert "Traceback" not in error.value
    assert at.session_state["workspace"] == []


def test_offline_hub_pick_says_which_weights_are_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to find
    at = _upload_page(tmp_path, monkeypatch)
    at.text_input(key="hub_search").set_value("resnet18.a1").run()
    assert at.selectbox(key="hub_pick").value == "resnet18.a1_in1k"
    start = time.monotonic()
    next(b for b in at.button if b.label == "Add to workspace").click().run()
    print(f"offline Hub failure after {time.monotonic() - start:.1f} s")
    _ok(at)
    (error,) = at.error
    assert "resnet18.a1_in1k" in error.value and "\n" not in error.value.strip()
    assert at.session_state["workspace"] == []


def test_the_sidebar_names_what_the_worker_is_doing(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGIF_HOME", str(tmp_path))
    monkeypatch.setenv("MODELGIF_WORKER_SLOTS", "1")  # one runs, one waits
    worker, release = server_worker(tmp_path), tmp_path / "release"
    worker.submit_task("t:map", "preparing the map", hold_task(release, 60))
    worker.submit_task("t:next", "triage of 1 suspect(s)", hold_task(release, 60))
    try:
        deadline = time.monotonic() + 30
        while worker.job("t:map").state != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        at = _app()
        _ok(at)
        assert "Worker: preparing the map; 1 more queued." in [c.value for c in at.sidebar.caption]
        assert "Background worker: preparing the map; 1 more queued." in [c.value for c in at.main.caption]
    finally:
        release.touch()
        _wait_all(tmp_path, timeout=60)
    at.run()
    assert not any(c.value.startswith("Worker:") for c in at.sidebar.caption)  # idle: no line
    assert "Background worker: idle." in [c.value for c in at.main.caption]


def test_the_quadrature_menu_reads_in_words_and_keeps_the_method_name(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGIF_HOME", str(tmp_path))
    at = _app(method="riemann_trapezoid")
    _ok(at)
    menu = at.sidebar.selectbox(key="_w_method")
    assert menu.options[:2] == ["Gauss-Legendre", "Riemann left"] and "Riemann trapezoid" in menu.options
    assert menu.value == "riemann_trapezoid"  # the link's name, not the label
    menu.set_value("gausslegendre").run()
    _ok(at)
    assert at.session_state["method"] == "gausslegendre"


def test_a_bad_anchor_spec_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGIF_HOME", str(tmp_path))
    at = _app(anchors="digits:banana")
    _ok(at)
    assert at.sidebar.error and "digits" in at.sidebar.error[0].value


@pytest.mark.parametrize("query, ignored", [
    ({"steps": "0"}, ["steps"]),
    ({"method": "bogus", "target": "bogus", "baseline": "bogus"}, ["method", "target", "baseline"]),
    ({"device": "tpu"}, ["device"]),
    ({"method": "riemann_left", "steps": "1"}, ["quadrature settings"]),
])
def test_a_hand_edited_link_keeps_the_defaults_and_says_what_it_ignored(tmp_path, monkeypatch, query, ignored):
    monkeypatch.setenv("MODELGIF_HOME", str(tmp_path))
    at = _app(**query)
    _ok(at)  # was a traceback: the settings reached FieldConfig unchecked
    shown = " ".join(w.value for w in at.sidebar.warning)
    assert all(f"Ignored {name}" in shown or f"Ignored the link's {name}" in shown for name in ignored), shown
    for page in ("app_pages/distances.py", "app_pages/fields.py"):
        at.switch_page(page).run()
        _ok(at)
    assert at.session_state["steps"] == (8 if "steps" not in query else 50) and at.session_state["method"] in (
        "gausslegendre", "riemann_left")


@pytest.mark.slow
def test_triage_page_gives_verdicts_and_reports(home):
    at = _app()
    at.switch_page("app_pages/triage.py").run()
    _ok(at)
    at.selectbox(key="tri_victim").set_value("zoo:resnet-victim")
    at.multiselect(key="tri_suspects").set_value(["zoo:resnet-finetune-all-0",
                                                  "zoo:indep-test-05-convnext"])
    at.toggle(key="tri_sidebar").set_value(True).run()
    # the reference picker offers no model the zoo knows to be derived from the victim
    offered = at.multiselect(key="tri_refs").options
    names = [o.removeprefix("zoo:") for o in offered]
    assert any(n.startswith("indep-") for n in names) and not any(n.startswith("resnet-") for n in names), names
    next(b for b in at.button if b.label == "Run triage").click().run()
    _ok(at)
    _wait_all(home)
    at.run()
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    assert len(at.metric) == 2
    fig = _charts(at)[0]
    marked = [t for t in fig["data"] if t.get("marker", {}).get("symbol") == "diamond"]
    assert len(marked) == 2
    assert [d.label for d in at.download_button] == ["Report (JSON)", "Report (Markdown)", "Download report"]
    p_texts = [c.value.split(" · ")[1] for c in at.caption if c.value.startswith("score ")]
    assert len(p_texts) == 2 and "p = 0" not in p_texts  # an underflowed tail reads "p < 1e-300"


def test_triage_page_says_when_the_references_are_too_few_to_clear_a_suspect(home):
    # three references of other architectures than the victim's judge a ConvNeXt suspect (the zoo has too few
    # ConvNeXts): they cannot call even a clear copy derived, so the page says so instead of "independent"
    at = _app()
    at.switch_page("app_pages/triage.py").run()
    at.selectbox(key="tri_victim").set_value("zoo:resnet-victim")
    at.multiselect(key="tri_suspects").set_value(["zoo:indep-test-05-convnext"]).run()
    three = [o for o in at.multiselect(key="tri_refs").options
             if o.removeprefix("zoo:").startswith("indep-") and not o.endswith(("resnet", "convnext"))][:3]
    at.multiselect(key="tri_refs").set_value(three).run()
    next(b for b in at.button if b.label == "Run triage").click().run()
    _wait_all(home)
    at.run()
    _ok(at)
    assert len(three) == 3 and any("inconclusive" in m.value for m in at.markdown)
    captions = [c.value for c in at.caption if c.value.startswith("score ")]
    assert len(captions) == 1 and "too few references of its architecture to clear it" in captions[0]
    assert any("too few to call even a clear copy derived" in c.value for c in at.caption)


def test_triage_example_fills_in_the_zoo_victims_derivatives_and_the_test_independents(home):
    at = _app()
    at.switch_page("app_pages/triage.py").run()
    at.selectbox(key="tri_victim").set_value("zoo:effnet-victim").run()
    _ok(at)
    button = next(b for b in at.button if b.key == "tri_example")
    assert button.label == ("Example: effnet-victim's 7 derivatives in the zoo and its 6 independent test models "
                            "as suspects")
    button.click().run()
    _ok(at)
    rows = list_zoo("small")
    expected = [f"zoo:{r['name']}" for r in rows if r["role"] == "derived" and r["parent"] == "effnet-victim"]
    expected += [f"zoo:{r['name']}" for r in rows if r["role"] == "independent-test"]
    assert at.multiselect(key="tri_suspects").value == expected
    assert "zoo:effnet-unlearned-exact-9" not in expected and len(expected) == 13
    assert any(b.label == "Run triage" for b in at.button)
    at.selectbox(key="tri_victim").set_value("zoo:indep-test-05-convnext").run()  # not a victim: no example
    assert not [b for b in at.button if b.key == "tri_example"]


def test_the_task_zoo_is_trained_on_a_click_and_then_shown(tmp_path, monkeypatch):
    """Issue 5's views for a user who never ran the CLI bench: Distances offers the task zoo, a click trains it in
    the background worker (the quick run's config set to the bench tests' tiny size), and then Distances shows
    its tree and Zoo map its map, from the one stored run."""
    from modelgif_core import TASK_ZOO_KEY
    from modelgif_core.bench import relatedness

    monkeypatch.setenv("MODELGIF_HOME", str(tmp_path))
    tasks = tiny_bench_config().tasks
    monkeypatch.setattr(relatedness, "QUICK", tiny_bench_config())
    at = _app().switch_page("app_pages/distances.py").run()
    _ok(at)
    assert [e.label for e in at.expander] == ["Task zoo (mini-Taskonomy): not trained yet"]
    at.button(key="task_zoo_train_heatmap").click().run()
    _ok(at)
    assert server_worker(tmp_path).job(TASK_ZOO_KEY).label == "task zoo: the quick relatedness bench"
    assert server_worker(tmp_path).wait([TASK_ZOO_KEY], timeout=300)
    at.run()
    _ok(at)
    assert at.expander[0].label.startswith("Task zoo: 4 digit tasks")
    assert at.expander[0].proto.expanded  # the click leads straight to the result
    heat = next(t for c in _charts(at) for t in c["data"] if t["type"] == "heatmap")
    assert sorted(heat["y"]) == sorted(tasks)
    assert not [b for b in at.button if b.key == "task_zoo_train_heatmap"]
    assert [d.label for d in at.download_button] == ["Task zoo result (JSON)"]
    # One zoo has no other zoos' reference: the caption says why its score is not the paper's to compare with.
    assert any("One zoo: its score moves with its encoders' training seeds" in c.value for c in at.caption)

    at.switch_page("app_pages/zoo_map.py").run()
    _ok(at)
    names = [n for c in _charts(at) for t in c["data"] if t.get("mode") == "markers+text" for n in t["text"]]
    assert sorted(names) == sorted(tasks)


def test_pages_do_not_import_torch_math():
    """Pages stay thin: no torch calls in the UI layer (DESIGN §2)."""
    for path in [ROOT / "app.py", *sorted((ROOT / "app_pages").glob("*.py"))]:
        text = path.read_text()
        assert "import torch" not in text, path
        assert "modelgif_core." not in text.replace("modelgif_core.triage", ""), path
