"""The first Zoo map after a fresh server start on a warm store (its fields, and for this code its numba cache,
already there): seconds from opening the page to the drawn markers, in real Chromium, for this checkout and
for another one side by side (e.g. the commit before UMAP's kernels were cached).

    python research/14_app_first_map.py --home DIR [--before OTHER_CHECKOUT] [--restarts 2]

DIR gets the small zoo (copied from assets/, so any checkout can read it) and the 31 fields at
digits:8, K = 8; every server then starts fresh on it. The first start of this checkout also fills the store's
numba cache (reported as "cold"); later starts are the warm store a user has the day after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking"]
MARKERS = ("() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g.data && g.data.length "
           "&& g.data.every(t => t.mode === 'markers'))")


def prepare(home: Path) -> list[str]:
    from modelgif_core.zoo import recipes

    names = [r.name for r in recipes("small")]
    if not (home / "zoo-small").exists():
        shutil.copytree(ROOT / "assets" / "zoo-small", home / "zoo-small")
    specs = [f"zoo:{n}" for n in names]
    subprocess.run([sys.executable, "-m", "modelgif_core", "distance", *specs, "--anchors", "digits:8",
                    "--steps", "8", "-q", "--format", "json"], check=True, cwd=ROOT, capture_output=True,
                   env={**os.environ, "MODELGIF_HOME": str(home)})
    return specs


def first_map(checkout: Path, home: Path, specs: list[str], browser) -> float:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MODELGIF_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(checkout)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--browser.gatherUsageStats", "false",
                             "--server.fileWatcherType", "none"], cwd=checkout, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                time.sleep(0.5)
        query = urllib.parse.urlencode([("anchors", "digits:8"), ("steps", "8"), *(("m", s) for s in specs)])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        start = time.perf_counter()
        page.goto(f"{url}/zoo_map?{query}")
        page.wait_for_function(MARKERS, timeout=300_000)
        seconds = time.perf_counter() - start
        page.close()
        return seconds
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--before", type=Path, default=None, help="another checkout, timed the same way")
    parser.add_argument("--restarts", type=int, default=2, help="fresh starts of each checkout on the warm store")
    args = parser.parse_args()
    args.home.mkdir(parents=True, exist_ok=True)
    specs = prepare(args.home)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        fresh_cache = not (args.home / "numba-cache").exists()
        rows = [("this checkout, " + ("cold numba cache" if fresh_cache else "warm store"),
                 first_map(ROOT, args.home, specs, browser))]
        for i in range(args.restarts):
            rows.append((f"this checkout, warm store (restart {i + 1})", first_map(ROOT, args.home, specs, browser)))
            if args.before is not None:
                rows.append((f"{args.before.name}, warm store (restart {i + 1})",
                             first_map(args.before, args.home, specs, browser)))
        browser.close()
    for label, seconds in rows:
        print(f"{label}: first Zoo map {seconds:.1f} s")


if __name__ == "__main__":
    main()
