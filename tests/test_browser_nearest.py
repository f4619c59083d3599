"""The "Closest stored models" panel in a real browser: a small store, the Models page, and the panel
listing the stored models nearest to the workspace's model with their exact field distances."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import pytest
from _app_fixtures import store_at, write_tiny_model
from conftest import CHROMIUM
from test_browser import _no_exception, _settle, _shot, _streamlit

from modelgif_core import FieldConfig, FieldStore, cached_field, distance_matrix, load_anchors, load_model

ANCHORS, STEPS = "digits:8", 8

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install "
                              "chromium) to run the browser test"),
]


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """Four tiny models, three of them with a stored field; their names and exact distances."""
    home = tmp_path_factory.mktemp("nearest_home")
    with store_at(home):
        specs = [write_tiny_model(home / "models" / f"tiny{i}", seed=i) for i in range(4)]
        anchors, store = load_anchors(ANCHORS), FieldStore()
        fields = [cached_field(load_model(s), anchors, FieldConfig(steps=STEPS), store) for s in specs[:3]]
        names = [load_model(s).name for s in specs]
    return home, specs, names, distance_matrix(fields)


def _cells(page) -> list[str]:
    """The text of the panel's table cells (the data grid's accessible table, row by row)."""
    grid = page.locator('[data-testid="stExpander"] [data-testid="stDataFrame"]').first
    grid.wait_for(timeout=120_000)
    return grid.locator('[role="gridcell"]').all_inner_texts()


def test_closest_stored_models_panel_in_a_real_browser(small_store, browser):
    home, specs, names, d = small_store
    with _streamlit(home) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/models?" + urlencode({"anchors": ANCHORS, "steps": STEPS, "m": specs[0]}))
        page.get_by_role("heading", name="Workspace (1 model)").wait_for(timeout=120_000)
        _settle(page)
        page.get_by_text("Closest stored models").first.click()  # open the expander
        page.get_by_text("ranked by exact field distance").wait_for(timeout=120_000)
        _settle(page)
        _no_exception(page)
        _shot(page, "nearest_panel")
        caption = page.get_by_text("ranked by exact field distance").inner_text()
        assert "Among 2 stored models" in caption  # the query's own field is not a candidate
        cells = _cells(page)
        want = sorted((1, 2), key=lambda j: d[0, j])  # tiny3 has no stored field: not listed
        text = " ".join(cells)
        assert names[3] not in text
        positions = [text.index(names[j]) for j in want]
        assert positions == sorted(positions)  # nearest first
        for j in want:  # each listed with its exact field distance
            assert any(c.strip() and abs(float(c) - d[0, j]) < 1e-4 for c in cells if _number(c)), (names[j], cells)
        page.close()


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
