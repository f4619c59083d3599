"""Load test of the app: N Chromium tabs on one server, each asking Distances for its own fields.

    python tests/load_app.py --tabs 2 5 10 20 [--configs 5] [--timeout 600]

For each N: a fresh store with the small zoo's stand-in (every recipe's architecture, untrained weights: the
extraction cost of the real zoo), `streamlit run app.py` on loopback, and N tabs of Debian's Chromium each
opening Distances on 8 zoo models with `digits:16` and its own steps K (M distinct configs, K = 8 .. 8+M-1,
so 128-224 passes a field) and clicking "Compute missing fields". It reports the seconds to the last tab's
heatmap, the seconds per field under load (the runner's extraction times, as the store records them) against
the same fields extracted idle in this process just before (on the runner's torch threads per job, and on
every core), how long each tab stayed stale after its last field landed (until the heatmap's message reached
the tab, from the browser's network log: the server's part, as long as the browser's network process gets the
CPU to read it; and until the page had drawn it, which adds the browser's own time on these shared cores),
the web server's and the runner's CPU, and the peak memory (VmHWM) of the web server and of the runner.
Bounded: at most 40 tabs, and every wait has the timeout.

In a class the tabs run on the students' machines, not on the server. Here they share its cores, so by
default the browser (Chromium and the Playwright driver that steers it) runs at the lowest priority: nice 19
for its processes and, where the kernel groups processes by session (autogroup), for Chromium's group
(`--browser-nice 0` keeps them at the script's priority). The web server gets nothing in exchange: it runs in
a session of its own at the priority the script was started with, as a service would, and the runner it
starts does the same.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _app_fixtures import store_at, write_quick_zoo  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
        # every tab polls as a foreground one would (a student's tab is in front on their own screen)
        "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows"]
MODELS = 8
ANCHORS = "digits:16"
HEATMAP = ("() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g.data && "
           "g.data.some(t => t.type === 'heatmap' && t.hovertemplate))")
# In every page: the time (ms since the epoch) its heatmap was first drawn, so polling many tabs from here
# adds nothing to how stale a tab looks.
HEATMAP_CLOCK = ("(() => { const shown = " + HEATMAP + "; const check = () => { if (!window.__heatmapAt && "
                 "shown()) window.__heatmapAt = Date.now(); }; new MutationObserver(check).observe(document, "
                 "{subtree: true, childList: true}); setInterval(check, 200); })();")


@contextlib.contextmanager
def streamlit_server(home: Path, env: dict[str, str] | None = None):
    """`streamlit run app.py` on a free loopback port over the store `home` (and the extra environment `env`);
    yields (URL, pid) once healthy."""
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MODELGIF_HOME": str(home), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), **(env or {})}
    with open(home / "streamlit.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
             str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)  # a service of its own, not in the load script's (and browser's) group
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 90
        try:
            while True:
                with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("streamlit did not start:\n" + (home / "streamlit.log").read_text()[-3000:])
                time.sleep(0.5)
            yield url, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _peak_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process so far (0 when it is gone)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(proc.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def lower_browser(nice: int, server: int) -> int:
    """Put this script's browser processes (Playwright's driver, Chromium and its renderers) at `nice`, and
    Chromium's autogroup too (it starts its own session, and the kernel shares CPU between sessions' groups
    before nice counts). Returns how many processes it lowered. The web server is not among them: it runs in
    its own session (see streamlit_server)."""
    lowered, serving = 0, {server, *_descendants(server)}
    for pid in set(_descendants(os.getpid())) - serving:
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"chromium" not in cmd and b"playwright" not in cmd:
                continue
            if os.getpriority(os.PRIO_PROCESS, pid) < nice:
                os.setpriority(os.PRIO_PROCESS, pid, nice)
                lowered += 1
            if b"chromium" in cmd and os.getsid(pid) == pid:
                Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    return lowered


def _runner_pids(home: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
                if b"modelgif_core.service.runner" in cmd and str(home).encode() in cmd:
                    pids.append(int(proc.name))
    return pids


def _idle_seconds(home: Path, specs: list[str], steps: list[int], threads: int) -> list[float]:
    """Seconds per field on the idle machine with `threads` torch threads, nothing else running."""
    import torch

    from modelgif_core import FieldConfig, extract_field, load_anchors, load_model

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    anchors = load_anchors(ANCHORS)
    out = []
    try:
        with store_at(home):
            for spec in specs:
                model = load_model(spec)
                extract_field(model, anchors.images[:1], FieldConfig(steps=2))  # warm-up, as the runner's first
                for k in steps:
                    start = time.perf_counter()
                    extract_field(model, anchors.images, FieldConfig(steps=k))
                    out.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return out


def _watch_delivery(page, index: int, sent: dict[int, float]) -> None:
    """Record in `sent[index]` when the tab's browser received the server's message carrying the heatmap (the
    network stack's timestamp, via the DevTools protocol): how stale the server left the tab, apart from the
    time the browser, sharing this machine's cores, took to draw it."""
    import base64

    cdp = page.context.new_cdp_session(page)
    wall: list[float] = []  # the protocol's monotonic clock -> the wall clock, from the page's first request

    def request(event: dict) -> None:
        if not wall and event.get("wallTime"):
            wall.append(event["wallTime"] - event["timestamp"])

    def frame(event: dict) -> None:
        response = event.get("response") or {}
        if index in sent or not wall or response.get("opcode") != 2:
            return
        with contextlib.suppress(ValueError):
            data = base64.b64decode(response.get("payloadData") or "")
            if b'"heatmap"' in data and b"hovertemplate" in data:
                sent[index] = event["timestamp"] + wall[0]

    cdp.on("Network.requestWillBeSent", request)
    cdp.on("Network.webSocketFrameReceived", frame)
    cdp.send("Network.enable")


def run(tabs: int, configs: int, timeout: float, workdir: Path, browser_nice: int = 19) -> dict:
    from modelgif_core import FieldConfig, FieldStore, field_store_key, load_anchors, load_model
    from modelgif_core.service.jobs import JobTable

    home = workdir / f"tabs{tabs}"
    home.mkdir(parents=True, exist_ok=False)
    with store_at(home):
        write_quick_zoo()
        from modelgif_core import list_zoo

        specs = [f"zoo:{r['name']}" for r in list_zoo("small")][:MODELS]
        handles = [load_model(s) for s in specs]
    steps = [8 + i % configs for i in range(tabs)]
    anchors = load_anchors(ANCHORS)
    from modelgif_core.service.runner import worker_slots

    # idle: the runner's thread count (the target's reference), and every core (the fastest an idle runner gets)
    slots, threads = worker_slots()  # the runner's, read from the same environment
    idle = _idle_seconds(home, specs[:2], sorted(set(steps))[:2], threads)
    idle_all = _idle_seconds(home, specs[:2], sorted(set(steps))[:2], os.cpu_count() or 1)
    keys = {k: [field_store_key(m, anchors, FieldConfig(steps=k)) for m in handles] for k in set(steps)}

    from playwright.sync_api import sync_playwright

    result: dict = {"tabs": tabs, "configs": len(set(steps)), "fields": MODELS * len(set(steps))}
    with streamlit_server(home) as (url, server_pid), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        peak = {"server": 0, "runner": 0}
        cpu = {"server": _cpu_seconds(server_pid), "runner": 0.0}
        pages: list = []
        sent: dict[int, float] = {}
        query = "&".join([f"anchors={ANCHORS}"] + [f"m={s}" for s in specs])
        for k in steps:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.add_init_script(HEATMAP_CLOCK)
            _watch_delivery(page, len(pages), sent)
            if browser_nice:
                lower_browser(browser_nice, server_pid)  # before its page loads: the tab's renderer too
            page.goto(f"{url}/distances?{query}&steps={k}", timeout=timeout * 1000)
            pages.append(page)
        start = time.monotonic()
        for page in pages:  # every tab asks for its fields (shared with tabs of the same K)
            button = page.get_by_role("button", name="Compute missing fields")
            button.or_(page.get_by_text("fields ready")).first.wait_for(timeout=timeout * 1000)
            if button.count():
                button.click()
        shown: dict[int, float] = {}
        runners: set[int] = set()
        while len(shown) < len(pages) and time.monotonic() - start < timeout:
            for i, page in enumerate(pages):
                if i not in shown:
                    at = page.evaluate("window.__heatmapAt || 0")
                    if at:
                        shown[i] = at / 1000
            peak["server"] = max(peak["server"], _peak_kb(server_pid))
            for pid in _runner_pids(home):
                runners.add(pid)
                peak["runner"] = max(peak["runner"], _peak_kb(pid))
                cpu["runner"] = max(cpu["runner"], _cpu_seconds(pid))
            time.sleep(1.0)  # the times are taken in the pages and the network log, not by this loop
        elapsed = time.monotonic() - start
        cpu["server"] = _cpu_seconds(server_pid) - cpu["server"]
        browser.close()
    log = (home / "streamlit.log").read_text(errors="replace")
    result["orphaned_fragment_lines"] = log.count("does not exist anymore")
    result["tracebacks"] = log.count("Traceback")
    table = JobTable(home)
    landed = {k: max((j.finished or 0) for j in table.jobs(ks)) for k, ks in keys.items()}
    # seconds per field under load: the extraction as the store records it (the "before" column, and
    # what `idle` times), and the job from claim to finish (+ model loading, the store's write)
    manifests = {r["key"]: r for r in FieldStore(home).list()}
    loaded = [manifests[key]["seconds"] for ks in keys.values() for key in ks
              if manifests.get(key, {}).get("seconds") is not None]
    job_s = [j.seconds for ks in keys.values() for j in table.jobs(ks) if j.seconds is not None]
    stale = [shown[i] - landed[k] for i, k in enumerate(steps) if i in shown]
    # the server's part: from the last field landing to the heatmap's message reaching the tab
    served = [sent[i] - landed[k] for i, k in enumerate(steps) if i in sent]
    last = max(shown.values()) - min(j.submitted for ks in keys.values() for j in table.jobs(ks)) if shown else None
    result.update({
        "heatmaps": len(shown), "last_heatmap_s": round(elapsed, 1) if len(shown) == len(pages) else None,
        "last_heatmap_after_submit_s": round(last, 1) if last is not None and len(shown) == len(pages) else None,
        "fields_done": sum(j.state == "done" for ks in keys.values() for j in table.jobs(ks)),
        "field_s_load_median": round(statistics.median(loaded), 3) if loaded else None,
        "field_s_load_max": round(max(loaded), 3) if loaded else None,
        "field_s_idle_median": round(statistics.median(idle), 3),
        "load_over_idle": round(statistics.median(loaded) / statistics.median(idle), 2) if loaded else None,
        "runner_slots": slots, "runner_threads": threads,
        "field_s_idle_all_cores_median": round(statistics.median(idle_all), 3),
        "load_over_idle_all_cores": (round(statistics.median(loaded) / statistics.median(idle_all), 2)
                                     if loaded else None),
        "job_s_median": round(statistics.median(job_s), 3) if job_s else None,
        "stale_s_max": round(max(stale), 1) if stale else None,
        "stale_s_median": round(statistics.median(stale), 1) if stale else None,
        "delivered": len(served),
        "served_s_median": round(statistics.median(served), 1) if served else None,
        "served_s_max": round(max(served), 1) if served else None,
        "server_cpu_s": round(cpu["server"], 1), "runner_cpu_s": round(cpu["runner"], 1),
        "server_cpu_per_tab": round(cpu["server"] / elapsed / tabs, 3),
        "server_peak_mb": round(peak["server"] / 1024), "runner_peak_mb": round(peak["runner"] / 1024),
        "browser_nice": browser_nice,
    })
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tabs", type=int, nargs="+", default=[2, 5, 10, 20])
    parser.add_argument("--configs", type=int, default=5, help="distinct steps K among the tabs")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run at most")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/modelgif-load"))
    parser.add_argument("--browser-nice", type=int, default=19, choices=range(20), metavar="0..19",
                        help="priority of the browser's processes (19, the lowest, by default: in a class the "
                             "tabs run on the students' machines, not on the server; 0 keeps the script's)")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: install Debian's chromium to run the load test.", file=sys.stderr)
        return 2
    if any(not 1 <= n <= 40 for n in args.tabs):
        print("--tabs takes 1 to 40 tabs per run.", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for n in args.tabs:  # each run's row at once: a later, larger run may hit the time limit
        rows.append(run(n, args.configs, args.timeout, args.workdir / stamp, args.browser_nice))
        print(json.dumps(rows[-1]), flush=True)
    print("| tabs (configs) | fields | heatmaps | last heatmap | s/field under load (median, max) | idle median "
          "| load/idle | heatmap received after landing (median, max) | drawn after landing (median, max) "
          "| server CPU per tab | orphaned fragments, tracebacks | server peak | runner peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        last = f"{r['last_heatmap_s']} s" if r["last_heatmap_s"] is not None else f"never ({args.timeout:.0f} s)"
        print(f"| {r['tabs']} ({r['configs']}) | {r['fields']} | {r['heatmaps']}/{r['tabs']} | {last} | "
              f"{r['field_s_load_median']}, {r['field_s_load_max']} | {r['field_s_idle_median']} | "
              f"{r['load_over_idle']}x | {r['served_s_median']}, {r['served_s_max']} s ({r['delivered']} tabs) | "
              f"{r['stale_s_median']}, {r['stale_s_max']} s | "
              f"{100 * r['server_cpu_per_tab']:.1f}% | {r['orphaned_fragment_lines']}, {r['tracebacks']} | "
              f"{r['server_peak_mb']} MB | {r['runner_peak_mb']} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
