"""Jobs are the server's, in a real browser: a reload during the demo adopts it and shows its results, and a few
tabs on one server each get their heatmap (the small version of `tests/load_app.py`).

Playwright drives Debian's Chromium against `streamlit run app.py` on loopback, over a store holding the quick
stand-in of the small zoo, with small settings (digits:8, K = 8) so the fields take seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from _app_fixtures import quick_zoo_home

from modelgif_core.zoo import recipes

CHROMIUM = "/usr/bin/chromium"
N_ZOO = len(recipes("small"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install "
                              "chromium) to run the browser test"),
]


@pytest.fixture()
def browser():  # per test: the load test starts Playwright itself, and one sync Playwright runs at a time
    from load_app import ARGS
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def test_a_reload_during_the_demo_adopts_it_and_shows_the_heatmap(tmp_path, browser):
    from load_app import HEATMAP, streamlit_server

    from modelgif_core.service.jobs import JobTable

    home = quick_zoo_home(tmp_path / "home")
    with streamlit_server(home) as (url, _pid):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/?anchors=digits:8&steps=8")
        page.get_by_role("button", name="Run the demo").click()
        page.get_by_text("demo: build the small zoo").first.wait_for(timeout=60_000)
        page.locator('[data-testid="stSidebarNav"] a', has_text="Distances").first.click()
        page.get_by_role("heading", name="Distances").first.wait_for(timeout=60_000)
        page.reload()  # a new session: it knows nothing of this tab's demo
        page.get_by_role("heading", name="Distances").first.wait_for(timeout=60_000)
        demos = JobTable(home).running_demos()
        if demos:  # still running at the reload: the page says so instead of asking for models
            page.get_by_text("demo running").first.wait_for(timeout=60_000)
        page.wait_for_function(HEATMAP, timeout=300_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.wait_for_url("**m=zoo*", timeout=30_000)  # the demo's workspace, in the link
        fields = [j for j in JobTable(home).jobs() if j.kind == "field"]
        assert len(fields) == N_ZOO and all(j.state == "done" for j in fields)  # the demo's, all landed
        page.close()


def test_the_server_reruns_a_waiting_page_when_its_fields_land(tmp_path, browser):
    """The page's own poll is set to 10 minutes: only the server's rerun can show the heatmap in time."""
    from _app_fixtures import store_at
    from load_app import HEATMAP, streamlit_server

    from modelgif_core import list_zoo

    home = quick_zoo_home(tmp_path / "home")
    with store_at(home):
        specs = [f"zoo:{r['name']}" for r in list_zoo("small")][:3]
    query = "&".join(["anchors=digits:8", "steps=8"] + [f"m={s}" for s in specs])
    with streamlit_server(home, env={"MODELGIF_POLL_SECONDS": "600"}) as (url, _pid):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/distances?{query}")
        page.get_by_role("button", name="Compute missing fields").click()
        page.wait_for_function(HEATMAP, timeout=120_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.close()


def test_a_few_tabs_on_one_server_each_get_their_heatmap(tmp_path):
    from load_app import run

    row = run(3, 2, 300, tmp_path, browser_nice=0)  # no timing asserted: the browser may keep the CPU it has
    assert row["heatmaps"] == 3 and row["last_heatmap_s"] is not None, row
    assert row["fields_done"] == row["fields"] == 16, row  # 8 models x 2 configs, shared by the 3 tabs
    assert row["tracebacks"] == 0, row
    # A tick the browser sent just before a full rerun removed its fragment is dropped with one log line; a
    # fragment left ticking after its page moved on (the frozen tabs of the issue) logs one per tick.
    assert row["orphaned_fragment_lines"] <= 2 * row["tabs"], row
    assert row["field_s_load_median"] is not None and row["stale_s_max"] is not None, row
