"""A 10,000-model zoo in a real browser: the Zoo map draws a WebGL map with hover and search, and the
Distances page shows the block view with drill-down, from a set of synthetic signatures in families.

Signatures are 256-dim (the store's are 16,384) so the set is written and read in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import CHROMIUM
from test_browser import _shot, _streamlit

from modelgif_core import save_signature_set

M, S, FAMILIES = 10_000, 256, 25

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install "
                              "chromium) to run the browser test"),
]


def synthetic_zoo(m: int = M, s: int = S, families: int = FAMILIES, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    """m unit signatures around `families` random centres (each family a victim and its derivatives)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((families, s))
    fam = rng.integers(0, families, m)
    x = centres[fam] + 0.6 * rng.standard_normal((m, s))
    rows = [{"model_name": f"fam{f:02d}-model{i:05d}", "family": f"fam{f:02d}",
             "role": "victim" if i < families else "derived", "arch": "resnet"} for i, f in enumerate(fam)]
    return rows, (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def big_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("bigzoo_home")
    rows, matrix = synthetic_zoo()
    save_signature_set(home, "synthetic", rows, matrix, anchors="digits:8")
    with _streamlit(home) as url:
        yield url




PLOTS = "[...document.querySelectorAll('.js-plotly-plot')].filter(g => g.data && g.data.length)"


def _no_exception(page) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, boxes.first.inner_text()


def _settle(page) -> None:
    page.wait_for_timeout(500)
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=120_000)


def test_a_10k_zoo_map_and_block_view_in_a_real_browser(big_server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{big_server}/zoo_map?anchors=digits:8&steps=8")
    page.get_by_role("heading", name="Zoo map").first.wait_for(timeout=60_000)
    # No workspace: the page shows every model of the set, as a WebGL scatter.
    # a fresh server compiles UMAP's numba code on its first map: minutes on a busy 2-core machine
    page.wait_for_function(f"() => {PLOTS}.some(g => g.data.some(t => t.type === 'scattergl'))",
                           timeout=480_000)
    _settle(page)
    _no_exception(page)
    n_points = page.evaluate(f"() => {PLOTS}.flatMap(g => g._fullData).filter(t => t.type === 'scattergl')"
                             ".reduce((n, t) => n + t.x.length, 0)")
    assert n_points == M
    assert page.locator(".js-plotly-plot canvas").count() > 0  # drawn by WebGL, not 10,000 SVG nodes
    assert page.locator(".js-plotly-plot .scatterlayer .point").count() == 0
    hover = page.evaluate(f"() => {PLOTS}.flatMap(g => g.data).find(t => t.type === 'scattergl').hovertext[0]")
    assert "family: fam" in hover and "role:" in hover and "config: digits:8" in hover
    # A real hover: the mouse over one point brings up its label.
    xy = page.evaluate(f"""() => {{
        const g = {PLOTS}.find(g => g.data.some(t => t.type === 'scattergl'));
        g.scrollIntoView();
        const fl = g._fullLayout, t = g._fullData.find(t => t.type === 'scattergl');
        const r = g.getBoundingClientRect();
        return [r.left + fl._size.l + fl.xaxis.l2p(t.x[0]), r.top + fl._size.t + fl.yaxis.l2p(t.y[0])];
    }}""")
    page.mouse.move(xy[0] + 1, xy[1] + 1)
    page.mouse.move(xy[0], xy[1])
    label = page.locator(".js-plotly-plot .hoverlayer .hovertext").first
    label.wait_for(timeout=30_000)
    assert "family: fam" in (label.text_content() or "")

    # Search: the matches get their own ringed trace and the axes zoom to them.
    page.get_by_label("Search", exact=True).fill("fam07")
    page.get_by_label("Search", exact=True).press("Enter")
    page.wait_for_function(f"() => {PLOTS}.some(g => g.data.some(t => (t.name || '').startsWith('matches')))",
                           timeout=60_000)
    _settle(page)
    matches = page.evaluate(f"() => {PLOTS}.flatMap(g => g._fullData).find(t => (t.name || '').startsWith('matches'))"
                            ".x.length")
    rows, _ = synthetic_zoo()
    assert matches == sum(r["family"] == "fam07" for r in rows)
    assert page.evaluate(f"() => {PLOTS}[0].layout.xaxis.range !== undefined")
    _no_exception(page)
    _shot(page, "bigzoo-map-search")

    # Distances: 10,000 models become a block heatmap of 25 families; a block opens as its own heatmap.
    page.locator('[data-testid="stSidebarNav"] a', has_text="Distances").first.click()
    page.get_by_role("heading", name="Distances").first.wait_for(timeout=60_000)
    page.wait_for_function(f"() => {PLOTS}.filter(g => g.data.some(t => t.type === 'heatmap')).length >= 2",
                           timeout=180_000)
    _settle(page)
    _no_exception(page)
    sizes = page.evaluate(f"() => {PLOTS}.map(g => g._fullData.filter(t => t.type === 'heatmap')"
                          ".map(t => t.z.length)).flat()")
    assert FAMILIES in sizes  # the block view: one row per family, never 10,000
    assert max(sizes) <= 150
    first = page.evaluate(f"() => {PLOTS}.map(g => g.layout.title && g.layout.title.text).filter(Boolean)")
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Open a block").click()
    page.keyboard.type("fam07")
    page.get_by_role("option").filter(has_text="fam07").first.click()
    _settle(page)
    _no_exception(page)
    second = page.evaluate(f"() => {PLOTS}.map(g => g.layout.title && g.layout.title.text).filter(Boolean)")
    assert first != second and any("fam07 (" in t and "signature distances" in t for t in second)
    _shot(page, "bigzoo-distances")
