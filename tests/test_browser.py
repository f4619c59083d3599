"""The app in a real browser: Playwright drives Debian's Chromium against `streamlit run app.py`.

What AppTest cannot see: the charts really render, clicks and navigation work, no exception box
appears. Chromium comes from apt (`apt-get install chromium`), never from `playwright install`.
Set MODELGIF_SCREENSHOTS=DIR to keep a screenshot of every page.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _app_fixtures import quick_zoo_home
from conftest import CHROMIUM, tiny_bench_config, write_hostile

from modelgif_core.zoo import recipes

ROOT = Path(__file__).resolve().parents[1]
N_ZOO = len(recipes("small"))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install "
                              "chromium) to run the browser test"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _streamlit(home: Path):
    """`streamlit run app.py` on a free port over the store `home`; yields its URL once healthy."""
    port = _free_port()
    env = {**os.environ, "MODELGIF_HOME": str(home), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log = open(home / "streamlit.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail("streamlit did not start:\n" + (home / "streamlit.log").read_text()[-3000:])
        time.sleep(0.5)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


SERVER_HOMES: dict[str, Path] = {}  # the server's URL -> its store


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a fresh store holding the quick zoo."""
    home = quick_zoo_home(tmp_path_factory.mktemp("browser_home"))
    with _streamlit(home) as url:
        SERVER_HOMES[url] = home
        yield url




def _shot(page, name: str) -> None:
    folder = os.environ.get("MODELGIF_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def _no_exception(page) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, boxes.first.inner_text()


PLOTS = "[...document.querySelectorAll('.js-plotly-plot')].filter(g => g.data && g.data.length)"
# What each page's charts must contain once drawn (old charts can linger while a page changes).
DRAWN = {
    "Distances": f"{PLOTS}.some(g => g.data.some(t => t.type === 'heatmap' && t.hovertemplate))",
    "Zoo map": f"{PLOTS}.some(g => g.data.length && g.data.every(t => t.mode === 'markers'))",
    "Fields": f"{PLOTS}.some(g => g.data.some(t => t.name === 'mean over anchors'))",
}


def _goto(page, title: str) -> float:
    """Click a page in the sidebar navigation; seconds until its charts have drawn."""
    start = time.perf_counter()
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
    page.wait_for_function(f"() => {DRAWN[title]}", timeout=120_000)
    return time.perf_counter() - start


def _settle(page) -> None:
    """Wait until the rerun a widget change has just asked for is over (as Streamlit's own e2e tests do)."""
    page.wait_for_timeout(500)
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=60_000)


def _eval(page, body: str):
    return page.evaluate(f"() => {{ const plots = {PLOTS}; return {body}; }}")


def test_demo_in_a_real_browser(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/?anchors=digits:8&steps=8")
    page.get_by_role("heading", name="ModelGiF Explorer").wait_for(timeout=60_000)
    page.get_by_role("button", name="Run the demo").click()
    page.get_by_text(f"Demo ready: {N_ZOO} zoo models").wait_for(timeout=300_000)
    page.locator('[data-testid="stMain"] a', has_text="Zoo map").wait_for()  # the run has finished
    _no_exception(page)
    _shot(page, "1-home")

    seconds = _goto(page, "Distances")
    heat = _eval(page, "plots.flatMap(g => g.data).find(t => t.type === 'heatmap')")
    heat = {"hovertemplate": heat["hovertemplate"]}
    assert _eval(page, "plots.find(g => g.data.some(t => t.type === 'heatmap'))"
                       "._fullData.find(t => t.type === 'heatmap').y.length") == N_ZOO
    assert "%{z:.6f}" in heat["hovertemplate"]  # the hover shows the exact value
    _no_exception(page)
    _shot(page, "2-distances")
    print(f"Distances: {seconds:.2f} s from click to drawn heatmap")

    # The downloads are what `modelgif distance ... --format csv|json` prints for these models, byte for byte.
    specs = [f"zoo:{r.name}" for r in recipes("small")]
    for fmt, label in (("csv", "Distances (CSV)"), ("json", "Distances (JSON)")):
        with page.expect_download() as download:
            page.get_by_role("button", name=label).click()
        cli = subprocess.run([sys.executable, "-m", "modelgif_core", "distance", *specs, "--anchors", "digits:8",
                              "--steps", "8", "--format", fmt, "-q"], capture_output=True, cwd=ROOT, timeout=300,
                             env={**os.environ, "MODELGIF_HOME": str(SERVER_HOMES[server])})  # bytes: CSV's CRLF kept
        assert cli.returncode == 0, cli.stderr.decode()[-2000:]
        assert Path(download.value.path()).read_bytes() == cli.stdout, fmt

    seconds = _goto(page, "Zoo map")
    # count the markers really drawn in the SVG, one per model
    points = _eval(page, "plots.find(g => g.data.every(t => t.mode === 'markers'))"
                         ".querySelectorAll('.scatterlayer .point').length")
    assert points == N_ZOO
    _no_exception(page)
    _shot(page, "3-zoo-map")
    print(f"Zoo map: {seconds:.2f} s")

    seconds = _goto(page, "Fields")
    types = _eval(page, "plots.map(g => g.data.map(t => t.type).join(','))")
    assert any(t.startswith("heatmap,heatmap") for t in types)  # the gradient maps
    assert "image,heatmap" in types  # the attribution overlay
    _no_exception(page)
    _shot(page, "4-fields")
    print(f"Fields: {seconds:.2f} s")

    # Back to a page already seen: its results come from the caches.
    seconds = _goto(page, "Distances")
    print(f"Distances again (cached): {seconds:.2f} s")
    assert "m=zoo%3Aresnet-victim" in page.url or "m=zoo:resnet-victim" in page.url

    for title in ("Models", "Triage"):
        page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
        page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)  # let the page finish its run before looking for errors
        _no_exception(page)
        _shot(page, f"5-{title.lower()}")

    # Unlearning: one of the zoo's own unlearners, filled in by its example button, then verified.
    page.locator('[data-testid="stSidebarNav"] a', has_text="Unlearning").first.click()
    page.get_by_role("heading", name="Unlearning").first.wait_for(timeout=60_000)
    page.get_by_role("button", name="gradient ascent on the class").click()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stSelectbox\"] input')]"
                           ".some(i => i.value === 'resnet-unlearned-ascent-9')", timeout=30_000)  # claimed, filled in
    page.get_by_role("button", name="Verify").click()
    page.get_by_role("heading", name="Verdict").wait_for(timeout=300_000)
    page.wait_for_function(f"() => {PLOTS}.some(g => g.data.some(t => (t.name || '')"
                           ".startsWith('resnet-unlearned-ascent-9 (')))", timeout=60_000)  # the claimed model's mark
    _no_exception(page)
    _shot(page, "8-unlearning")
    page.close()


@pytest.mark.parametrize("path", ["distances", "zoo_map", "fields"])
def test_a_page_url_is_the_first_request_of_a_fresh_server(tmp_path, browser, path):
    """A bookmark, or a reload after a restart: the page must still run inside the app (its navigation,
    sidebar and Home link). Streamlit runs a script in a `pages/` folder beside the entry point on its
    own in that case, which crashed these pages on an empty workspace; the pages live in app_pages/."""
    with _streamlit(tmp_path) as url:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(f"{url}/{path}")
        page.get_by_text("needs at least 2 model(s) in the workspace").wait_for(timeout=60_000)
        page.locator('[data-testid="stMain"] a', has_text="Run the demo").wait_for()
        _no_exception(page)
        assert page.locator('[data-testid="stSidebarNav"] a', has_text="Home").count() == 1
        page.close()


def test_the_task_zoo_and_its_scores_in_a_real_browser(_isolated_home, browser):
    """Issue 5's views, after a (tiny) `modelgif bench relatedness` of 4 zoos: Distances shows the task zoo's
    similarity tree and its scores, the task level against the zoos' mean AHP affinity among them; Zoo map
    places the tasks, each point named."""
    from modelgif_core.bench.relatedness import run_bench

    cfg = tiny_bench_config()
    result = run_bench(cfg=cfg, seeds=4)  # kept in the store, as the CLI keeps it
    level = result["task_level"]
    with _streamlit(_isolated_home) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/distances")
        page.get_by_text("Task zoo: 4 digit tasks").click()  # the expander
        page.wait_for_function(f"() => {PLOTS}.some(g => g.data.some(t => t.type === 'heatmap' && "
                               "t.y && t.y.length === 4))", timeout=60_000)
        heat = _eval(page, "plots.find(g => g.data.some(t => t.type === 'heatmap'))._fullData"
                           ".find(t => t.type === 'heatmap')")
        assert sorted(heat["y"]) == sorted(cfg.tasks)
        text = page.locator('[data-testid="stExpander"]').first.inner_text()
        assert f"the other 2's mean AHP affinity read {level['methods']['modelgif']:.3f}" in text
        assert f"half against half, {level['ground_truth']:.3f}" in text
        assert f"mean over target tasks: {result['spearman_mean']:.3f}" in text
        assert "One zoo:" not in text  # 4 zoos: the other zoos' reference is there instead
        scores = page.locator('[data-testid="stExpander"] [data-testid="stDataFrame"]')
        scores.first.wait_for(timeout=30_000)  # the table's component loads after the heatmap's
        assert scores.count() == 1
        _no_exception(page)
        _shot(page, "6-task-zoo-tree")

        page.goto(f"{url}/zoo_map")
        page.get_by_text("Task zoo: 4 digit tasks").click()
        page.wait_for_function(f"() => {PLOTS}.some(g => g.data.some(t => t.mode === 'markers+text'))",
                               timeout=60_000)
        names = _eval(page, "plots.find(g => g.data.some(t => t.mode === 'markers+text'))"
                            ".data.flatMap(t => t.text)")
        assert sorted(names) == sorted(cfg.tasks)
        _no_exception(page)
        _shot(page, "7-task-zoo-map")
        page.close()


def test_the_quick_task_zoo_trains_from_a_click_in_a_real_browser(_isolated_home, browser):
    """Distances on a store with no relatedness run: the panel's button trains the real quick task zoo in the
    server's background worker (about 2 minutes), the page polls its progress, and the panel then opens by
    itself on the tree of the 10 tasks, with the score the run stored."""
    from modelgif_core import last_relatedness_result

    with _streamlit(_isolated_home) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/distances")
        page.get_by_text("Task zoo (mini-Taskonomy): not trained yet").click()
        page.get_by_role("button", name="Train the quick task zoo").click()
        # queued until the server's runner (a process of its own, started with the server) takes it: on a
        # loaded machine that can take longer than a minute
        page.get_by_text(re.compile(r"task zoo: the quick relatedness bench: (queued|running)")).first.wait_for(
            timeout=60_000)
        _shot(page, "8-task-zoo-training")
        page.get_by_text("Task zoo: 10 digit tasks").wait_for(timeout=600_000)
        page.wait_for_function(f"() => {PLOTS}.some(g => g.data.some(t => t.type === 'heatmap' && "
                               "t.y && t.y.length === 10))", timeout=60_000)
        assert page.locator('[data-testid="stExpander"] details[open]').count() == 1  # opened by itself
        stored = last_relatedness_result(_isolated_home)
        assert stored["quick"] and len(stored["tasks"]) == 10
        text = page.locator('[data-testid="stExpander"]').first.inner_text()
        assert f"mean over target tasks: {stored['spearman_mean']:.3f}" in text
        _no_exception(page)
        _shot(page, "9-task-zoo-trained")
        page.close()


def test_checkpoint_uploads_through_the_real_upload_path(tmp_path, browser):
    """Models, Upload a checkpoint, as a user does it: files go through Streamlit's real HTTP upload. A
    hostile pickle is refused and never run; two good checkpoints in a row are each added and listed in the
    workspace table at once, and the page stays on the upload tab between them (it used to jump back to
    the first tab as soon as the workspace table appeared above the tabs)."""
    import timm
    from safetensors.torch import save_file

    hostile, marker = write_hostile(tmp_path)
    good = []
    for classes in (10, 7):
        module = timm.create_model("test_resnet", num_classes=classes)
        good.append(tmp_path / f"net{classes}.safetensors")
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, good[-1])
    home = tmp_path / "home"
    home.mkdir()
    with _streamlit(home) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/models")
        page.get_by_role("tab", name="Upload a checkpoint").click()
        _settle(page)  # every step waits for the rerun it causes: a file given mid-rerun can be dropped
        page.locator('[data-testid="stSelectbox"]').filter(has_text="timm architecture").click()
        page.keyboard.type("test_resnet")
        page.get_by_role("option", name="test_resnet", exact=True).click()
        _settle(page)
        size = page.get_by_label("Input size C,H,W")  # keyed by the architecture: one box once rerun
        size.fill("3,32,32")
        size.press("Enter")
        _settle(page)
        alerts = page.locator('[data-testid="stMain"] [data-testid="stAlert"]')

        def load(path, expect: str) -> None:
            page.locator('input[type="file"]').set_input_files(str(path))
            page.get_by_test_id("stFileChipName").filter(has_text=path.name).wait_for(timeout=30_000)
            _settle(page)
            assert page.locator('[role="tab"][aria-selected="true"]').inner_text() == "Upload a checkpoint"
            page.get_by_role("button", name="Load checkpoint").click()
            _settle(page)
            assert alerts.filter(has_text=expect).count() == 1, alerts.all_inner_texts()

        load(hostile, "Refused hostile.pth")
        assert not marker.exists()
        load(good[0], "Added net10.safetensors (test_resnet).")
        page.get_by_role("heading", name="Workspace (1 model)").wait_for(timeout=10_000)
        load(good[1], "Added net7.safetensors (test_resnet).")
        page.get_by_role("heading", name="Workspace (2 models)").wait_for(timeout=10_000)
        assert page.locator('[data-testid="stDataFrame"]').count() == 1  # the workspace's table
        assert len(list((home / "uploads").glob("*/model.safetensors"))) == 2
        _no_exception(page)
        _shot(page, "10-uploads")
        page.close()
