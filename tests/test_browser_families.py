"""The family graph in a real browser: the Zoo map's "Family edges" toggle draws the graph's edges, and
Distances lists the same graph's families (one worker job for both pages)."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import pytest
from _app_fixtures import quick_zoo_home
from conftest import CHROMIUM
from test_browser import PLOTS, _no_exception, _settle, _shot, _streamlit

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]

WORKSPACE = ["zoo:resnet-victim", "zoo:resnet-finetune-all-0", "zoo:resnet-prune-0", "zoo:indep-test-03-resnet"]
# the drawn edge trace's segments (x, x, NaN per edge; plotly's decoded data, a typed array)
SEGMENTS = (f"{PLOTS}.flatMap(g => g._fullData || []).filter(t => t.name === 'family edges')"
            ".reduce((n, t) => n + Array.from(t.x || []).filter(v => v !== null && !Number.isNaN(v)).length / 2, 0)")


def test_family_edges_on_the_zoo_map_and_families_on_distances(tmp_path, browser):
    start = time.perf_counter()
    home = quick_zoo_home(tmp_path / "home")
    query = "&".join(f"m={quote(m)}" for m in WORKSPACE)
    with _streamlit(home) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/zoo_map?anchors=digits:8&steps=8&{query}")
        page.get_by_role("heading", name="Zoo map").first.wait_for(timeout=60_000)
        page.get_by_role("button", name="Compute missing fields").click()  # the workspace's own fields first
        toggle = page.get_by_text("Family edges", exact=True)
        toggle.wait_for(timeout=120_000)
        print(f"map with the workspace's fields: {time.perf_counter() - start:.1f} s")
        toggle.click()
        _settle(page)
        page.wait_for_function(f"() => ({SEGMENTS}) > 0", timeout=120_000)
        # the quick zoo's derived models are near copies of the victim: both are linked to it
        print(f"family edges drawn: {time.perf_counter() - start:.1f} s")
        segments = page.evaluate(f"() => {SEGMENTS}")
        assert segments >= 2
        caption = page.get_by_text("family edges; each points parent").first.inner_text()
        assert int(caption.split()[0]) == segments
        _no_exception(page)
        _shot(page, "families-1-zoo-map")

        page.locator('[data-testid="stSidebarNav"] a', has_text="Distances").first.click()
        page.get_by_role("heading", name="Families").wait_for(timeout=60_000)
        page.get_by_text("Find families", exact=True).click()
        page.get_by_text(f"among {len(WORKSPACE)} models").wait_for(timeout=60_000)  # the same job: done
        text = page.get_by_text(f"among {len(WORKSPACE)} models").inner_text()
        assert f"({segments} edges" in text
        grid = page.locator('[data-testid="stDataFrame"]').first
        grid.wait_for()
        _no_exception(page)
        _shot(page, "families-2-distances")
        page.close()
