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
    out = run_cli("bench", "demo", "--anchors", "digits:4", "--steps", "2", "--format", "json", "--slots", "1,2",
                  env={"MODELGIF_ASSETS": str(ASSETS), "MODELGIF_WORKER_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert [(r["slots"], r["threads"]) for r in result["runs"]] == [(1, 1), (2, 1)]  # side by side, the runner's
    assert len(result["over_first"]) == 2 and result["over_first"][0] == 1.0
    for run in result["runs"]:
        assert run["zoo"] == "shipped assets" and run["models"] == len(recipes("small"))
        assert run["passes"] == run["models"] * 4 * 2
        assert run["seconds"] >= run["phases"]["fields"] > 0
        assert run["store_mb"] > 0 and run["cpu_seconds"] > 0
    assert not any(_isolated_home.iterdir())  # a temporary store: the user's is untouched
