"""`modelgif bench demo`: the demo from an empty store on the shipped zoo, the app's way (no timing asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

from modelgif_core.service.demo_bench import APP_ANCHORS, APP_STEPS
from modelgif_core.zoo import recipes

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_the_bench_uses_the_apps_default_settings():
    from app_pages._ui import SETTINGS

    assert (APP_ANCHORS, APP_STEPS) == (SETTINGS["anchors"], SETTINGS["steps"])


def test_bench_demo_reaches_demo_ready_on_the_shipped_zoo(_isolated_home):
    out = run_cli("bench", "demo", "--anchors", "digits:4", "--steps", "2", "--format", "json",
                  env={"MODELGIF_ASSETS": str(ASSETS)})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    (run,) = result["runs"]
    assert run["zoo"] == "shipped assets" and run["models"] == len(recipes("small"))
    assert run["passes"] == run["models"] * 4 * 2
    assert run["seconds"] >= run["phases"]["fields"] > 0
    assert run["store_mb"] > 0
    assert not any(_isolated_home.iterdir())  # a temporary store: the user's is untouched
