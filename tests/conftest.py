"""Shared fixtures: every test gets its own store ($MODELGIF_HOME) and runs offline."""

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """A fresh MODELGIF_HOME per test so no test sees another's fields (or the user's), and no shipped assets."""
    home = tmp_path_factory.mktemp("modelgif_home")
    monkeypatch.setenv("MODELGIF_HOME", str(home))
    # No shipped zoo unless a test asks for it (tests/test_assets.py): tests train their own small zoos.
    monkeypatch.setenv("MODELGIF_ASSETS", str(home / "no-assets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield home


def tiny_bench_config(**changes):
    """The relatedness bench at the size its tests run it: 4 tasks, one zoo, seconds instead of minutes."""
    from modelgif_core.bench.relatedness import BenchConfig

    return BenchConfig(**{"tasks": ("digit", "parity", "rotation", "autoencode"), "seeds": 1, "epochs": 1, "width": 8,
                          "transfer_train": 200, "readout_steps": 30, "anchors": "cutmix:digits:500:8:0", "steps": 3,
                          **changes})


def run_cli(*args, env=None, timeout=300):
    """Run the real `python -m modelgif_core` in a subprocess; returns CompletedProcess."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "modelgif_core", *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=ROOT, timeout=timeout)


def write_hostile(folder):
    """A `torch.save`d checkpoint whose unpickling would run `touch PWNED`: (its path, the marker)."""
    import subprocess
    import textwrap

    code = textwrap.dedent("""
        import os, pickle, sys, torch
        class Boom:
            def __reduce__(self):
                return (os.system, ("touch " + sys.argv[2],))
        torch.save({"fc.weight": torch.zeros(2, 2), "payload": Boom()}, sys.argv[1])
    """)
    path, marker = Path(folder) / "hostile.pth", Path(folder) / "PWNED"
    subprocess.run([sys.executable, "-c", code, str(path), str(marker)], check=True)
    assert path.is_file() and not marker.exists()
    return path, marker


# Debian's Chromium for the real-browser tests (never `playwright install`), and the flags it needs here.
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()
