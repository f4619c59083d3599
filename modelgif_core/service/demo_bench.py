"""`modelgif bench demo`: "Run the demo" from an empty store to "Demo ready", the way the app runs it.

The app's demo task on the app's background worker (the store's runner process, as the app starts it: its
default jobs at once and torch threads, `MODELGIF_WORKER_SLOTS` / `_THREADS`), with the app's default settings,
over a fresh temporary store: the zoo is looked up (the shipped assets, or trained when they are missing), every
zoo model's field is extracted and stored. Reported: the total, and the phases (zoo, fields) with
what each field job took, so a reader sees what dominates. Not a test: seconds on a shared machine
vary; `--train` adds the same run without the shipped assets (training the zoo) side by side.
"""

from __future__ import annotations

import contextlib
import os
import resource
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..engine.anchors import load_anchors
from ..engine.cache import field_store_key
from ..engine.fields import FieldConfig
from ..engine.models import load_model
from ..engine.store import FieldStore
from .runner import ServerWorker, worker_slots
from .tasks import demo_task
from .worker import DONE

# The app's defaults (app_pages/_ui.py SETTINGS; tests/test_demo_bench.py checks they agree).
APP_ANCHORS, APP_STEPS = "digits:64", 50


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _one_run(anchors: str, cfg: FieldConfig, assets: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="modelgif-demo-bench-") as tmp:
        env = {"MODELGIF_HOME": tmp}
        if not assets:
            env["MODELGIF_ASSETS"] = str(Path(tmp) / "no-assets")
        with _env(**env):
            worker = ServerWorker(tmp)
            try:
                cpu_start = _cpu_seconds()
                start = time.perf_counter()
                job = worker.submit_task("demo:bench", "demo", demo_task(anchors, cfg))
                worker.wait([job.key])
                job = worker.job(job.key)
                if job is None or job.state != DONE:
                    raise RuntimeError(f"The demo task failed: {job.error if job else 'lost'}")
                zoo_done = time.perf_counter()
                anchor_set = load_anchors(anchors)  # the keys as the Home page computes them
                keys = [field_store_key(load_model(spec), anchor_set, cfg) for spec in job.result]
                worker.wait(keys)
                ready = time.perf_counter()
                fields = worker.jobs(keys)
                failed = [j.label for j in fields if j.state != DONE]
                if failed:
                    raise RuntimeError(f"Fields failed: {', '.join(failed)}")
                seconds = sorted(j.seconds or 0.0 for j in fields)
                store_bytes = FieldStore(tmp).status()["bytes"]
            finally:
                worker.stop()  # the runner; waited for, so its CPU time counts below
            cpu = _cpu_seconds() - cpu_start
    passes = len(keys) * len(anchor_set) * cfg.steps
    return {
        "zoo": "shipped assets" if assets else "trained", "models": len(keys),
        "seconds": round(ready - start, 2),
        "cpu_seconds": round(cpu, 1),  # this process's and the runner's CPU time: the run's cost on an idle machine
        "phases": {"zoo and queueing": round(zoo_done - start, 2), "fields": round(ready - zoo_done, 2)},
        "field_seconds": {"sum": round(sum(seconds), 2), "median": round(seconds[len(seconds) // 2], 3),
                          "max": round(seconds[-1], 3)},
        "passes": passes, "passes_per_second": round(passes / max(ready - zoo_done, 1e-9)),
        "store_mb": round(store_bytes / 2**20, 1),
    }


def run_demo_bench(anchors: str = APP_ANCHORS, steps: int = APP_STEPS, device: str = "auto",
                   train: bool = False, slots: Sequence[int] = ()) -> dict[str, Any]:
    """Time the demo from an empty store (shipped assets); with `train`, also without them (training).

    `slots`: run the shipped demo once per runner setting (jobs at once, each on cores // slots torch threads),
    side by side, instead of once with the runner's default.
    """
    cfg = FieldConfig(steps=steps, device=device)
    settings = [{"MODELGIF_WORKER_SLOTS": str(n)} for n in slots] or [{}]
    runs = []
    for env in settings:
        with _env(**env):
            runs.append({**_one_run(anchors, cfg, assets=True), **dict(zip(("slots", "threads"), worker_slots(),
                                                                          strict=True))})
    if train:
        runs.append({**_one_run(anchors, cfg, assets=False), **dict(zip(("slots", "threads"), worker_slots(),
                                                                       strict=True))})
    out: dict[str, Any] = {"anchors": anchors, "steps": steps, "device": device, "runs": runs}
    if len(settings) > 1:
        out["over_first"] = [round(r["seconds"] / max(runs[0]["seconds"], 1e-9), 2) for r in runs[:len(settings)]]
    if train:
        out["trained_over_shipped"] = round(runs[-1]["seconds"] / max(runs[0]["seconds"], 1e-9), 2)
    return out


def _cpu_seconds() -> float:
    own, runner = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + runner.ru_utime + runner.ru_stime


def format_demo_bench(result: dict[str, Any]) -> str:
    lines = [f"Demo from an empty store ({result['anchors']}, K = {result['steps']}, device {result['device']}):"]
    for run in result["runs"]:
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in run["phases"].items())
        f = run["field_seconds"]
        lines.append(f"  zoo from {run['zoo']}, runner {run['slots']} job(s) at once x {run['threads']} torch "
                     f"thread(s): Demo ready in {run['seconds']:.1f} s ({phases}; {run['cpu_seconds']:.0f} CPU "
                     f"seconds); {run['models']} fields, {run['passes']:,} passes, {run['passes_per_second']:,}/s; "
                     f"per field median {f['median']:.2f} s, max {f['max']:.2f} s; store {run['store_mb']} MB")
    if "over_first" in result:
        lines.append("  seconds over the first run's: " + ", ".join(f"{r:.2f}" for r in result["over_first"]))
    if "trained_over_shipped" in result:
        lines.append(f"  training the zoo instead: {result['trained_over_shipped']}x the shipped run")
    return "\n".join(lines)
