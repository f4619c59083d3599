"""The triage evidence report: one self-contained HTML file, opened in real Chromium with every
non-file request blocked (and recorded): it renders, asks for nothing, and shows the JSON's verdicts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import timm
import torch
from conftest import ARGS, CHROMIUM

from modelgif_core import FieldConfig, FieldStore, InputConfig, save_model_dir, triage
from modelgif_core.analysis.report import render_triage_report, strip_svg, write_triage_report


def _save(tmp_path: Path, name: str, module: torch.nn.Module) -> str:
    cfg = InputConfig((3, 32, 32), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    save_model_dir(module, tmp_path / name, arch="test_resnet", num_classes=10, input_cfg=cfg)
    return f"local-dir:{tmp_path / name}"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("report_models")
    torch.manual_seed(0)
    victim = timm.create_model("test_resnet", num_classes=10)
    copy = timm.create_model("test_resnet", num_classes=10)
    copy.load_state_dict(victim.state_dict())
    with torch.no_grad():
        for p in copy.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    v, c = _save(tmp_path, "victim", victim), _save(tmp_path, "copy", copy)
    refs = []
    for i in range(4):
        torch.manual_seed(10 + i)
        refs.append(_save(tmp_path, f"ref{i}", timm.create_model("test_resnet", num_classes=10)))
    return triage(v, [c, refs[3]], references=refs[:3], anchors="digits:6", points="digits:8:0",
                  cfg=FieldConfig(steps=4), store=FieldStore(tmp_path / "store"))


def test_the_strip_marks_the_suspect_among_the_references():
    svg = strip_svg([1.0, 1.1, 1.2], [("s", 0.5, "#f00")])
    assert svg.count("<line") == 4 and svg.count("<circle") == 1  # axis + 3 references, 1 suspect
    assert 'cx="' in svg and "s 0.5" in svg


@pytest.mark.browser
def test_report_is_self_contained_and_its_verdicts_equal_the_json(report, tmp_path):
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing")
    report.command = "modelgif triage --victim V --suspect S"
    path = write_triage_report(report, tmp_path / "triage.html")
    text = path.read_text()
    for ref in ("<link", "<script", "src='http", 'src="http', "url(http"):
        assert ref not in text
    expected = [(s["model"], s["verdict"]) for s in json.loads(json.dumps(report.to_dict()))["suspects"]]
    attempted, failed = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()

            def route(r):
                if r.request.url.startswith(("file:", "data:")):
                    r.continue_()
                else:
                    attempted.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            rows = page.eval_on_selector_all(
                "#verdicts tr.suspect",
                "rs => rs.map(r => [r.dataset.model, r.querySelector('[data-verdict]').dataset.verdict])")
            shown = page.eval_on_selector_all("img", "is => is.map(i => i.complete && i.naturalWidth > 0)")
            svgs = page.eval_on_selector_all("svg circle", "cs => cs.length")
            command = page.inner_text("#command")
        finally:
            browser.close()
    assert attempted == [] and failed == []
    assert [tuple(r) for r in rows] == expected
    assert expected[0][1] == "derived"  # the near-copy
    assert shown and all(shown)  # every anchor / probe image decoded from its data: URI
    assert svgs == 2 * len(report.components)  # one marked strip per suspect and component
    assert command == "modelgif triage --victim V --suspect S"


def test_report_without_samples_still_names_every_suspect(report):
    html = render_triage_report(report, samples=False)
    assert all(s.name in html for s in report.suspects) and "<img" not in html
