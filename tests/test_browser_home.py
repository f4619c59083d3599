"""Home in a real Chromium: nothing on it stays an empty grey box, before or after the demo.

The path strip draws with the page, the demo (on the shipped small zoo) ends with its links written
out, and the status panel counts the fields the demo stored (it is re-read, not the first run's view).
Skipped, with the reason, where Debian's Chromium is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import CHROMIUM
from test_browser import N_ZOO, _no_exception, _shot, _streamlit

ASSETS = Path(__file__).resolve().parents[1] / "assets"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install "
                              "chromium) to run the browser test"),
]

# Visible boxes in the main area with neither text nor anything drawn: a skeleton, an empty
# element container or a blank block. A fragment's or a column's wrapper counts only through
# its children.
EMPTY = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const drawn = 'img, svg, canvas, input, button, textarea, iframe, video, .js-plotly-plot';
  const out = [];
  for (const el of main.querySelectorAll('[data-testid="stElementContainer"], [data-testid="stSkeleton"], '
                                         + '[data-testid="stPageLink"], [data-testid="stVerticalBlock"]')) {
    const r = el.getBoundingClientRect();
    if (r.height < 2 || r.width < 2) continue;
    if (el.getAttribute('data-testid') === 'stSkeleton' || (!el.innerText.trim() && !el.querySelector(drawn)))
      out.push((el.getAttribute('data-testid') || '') + ' ' + (el.className || '').toString().slice(0, 60)
               + ' ' + Math.round(r.width) + 'x' + Math.round(r.height));
  }
  return out;
}"""


def _nothing_stays_empty(page, when: str, seconds: float = 20) -> None:
    """No empty box left within `seconds` (a box may be empty for a moment while the page runs)."""
    try:
        page.wait_for_function(f"() => ({EMPTY})().length === 0", timeout=seconds * 1000)
    except Exception:  # noqa: BLE001 (playwright's TimeoutError: say which boxes)
        pytest.fail(f"{when}: these stayed empty: {page.evaluate(EMPTY)}")


def test_home_has_no_empty_box_before_or_after_the_demo(tmp_path, browser, monkeypatch):
    monkeypatch.setenv("MODELGIF_ASSETS", str(ASSETS))  # the shipped zoo: no training
    with _streamlit(tmp_path) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/?anchors=digits:8&steps=8")
        page.get_by_role("heading", name="ModelGiF Explorer").wait_for(timeout=60_000)
        page.get_by_text("The path from the black baseline").wait_for(timeout=30_000)
        images = page.locator('[data-testid="stMain"] [data-testid="stImage"] img')
        images.nth(4).wait_for(timeout=30_000)
        assert images.count() == 5  # the path strip: 5 points from the baseline to the anchor
        _nothing_stays_empty(page, "Home before the demo")
        assert page.get_by_text("0 stored fields, 0.0 MB.").count() == 1

        page.get_by_role("button", name="Run the demo").click()
        page.get_by_text(f"Demo ready: {N_ZOO} zoo models").wait_for(timeout=300_000)
        links = page.locator('[data-testid="stMain"] [data-testid="stPageLink"]')
        links.filter(has_text="Unlearning").wait_for(timeout=20_000)
        _nothing_stays_empty(page, "Home after the demo")
        texts = [t.strip() for t in links.all_inner_texts()]
        for title in ("Distances", "Zoo map", "Fields", "Triage", "Unlearning"):
            assert any(t.endswith(title) for t in texts), texts
        assert all(re.search(r"[A-Za-z]", t) for t in texts), texts  # every link has its words
        # The status panel counts what the demo stored (live, not the page run's first view).
        page.get_by_text(re.compile(rf"^{N_ZOO} stored fields, \d+\.\d MB\.$")).wait_for(timeout=20_000)
        page.get_by_text(re.compile(r"^Background worker: (idle|preparing the map)")).wait_for(timeout=20_000)
        _no_exception(page)
        _shot(page, "home-after-demo")
        page.close()
