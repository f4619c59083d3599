"""Where the demo's seconds go: the 31 shipped zoo models' fields (the app's digits:64, K = 50), phase by phase.

    python research/15_app_demo_profile.py [--models 31] [--modes seq2,threads,procs] [--profile]

1. Per field, one torch thread, into a fresh temporary store: loading the model, `extract_field`, turning the
   field into the stored form (`store._prepare`: unit vectors, float16, checksum, safetensors bytes), writing it
   (write + fsync + index), and its signature (`store.put` minus the rest).
2. `--profile`: cProfile of one field (resnet-victim) through `cached_field`, the top functions by own time.
3. The same fields three ways side by side (each into its own fresh store): one after the other with two torch
   threads (`seq2`, the runner before), two Python threads of one torch thread each in one process (`threads`),
   two processes of one torch thread each (`procs`). Wall seconds and CPU seconds of each.
Run it under the machine's measuring lock: the seconds are only worth comparing on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from modelgif_core.engine.anchors import load_anchors
from modelgif_core.engine.cache import cached_field
from modelgif_core.engine.fields import FieldConfig, extract_field
from modelgif_core.engine.models import load_model
from modelgif_core.engine.sketch import signature
from modelgif_core.engine.store import FieldStore, _prepare
from modelgif_core.zoo import list_zoo

ANCHORS, STEPS = "digits:64", 50


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def specs(n: int) -> list[str]:
    return [f"zoo:{e['name']}" for e in list_zoo("small")][:n]


def phases(names: list[str]) -> None:
    torch.set_num_threads(1)
    anchors, cfg = load_anchors(ANCHORS), FieldConfig(steps=STEPS)
    totals: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = FieldStore(tmp)
        start = time.perf_counter()
        for i, spec in enumerate(names):
            t = {}
            t0 = time.perf_counter()
            model = load_model(spec)
            t["load"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            phi = extract_field(model, anchors, cfg)
            t["extract"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            prepared = _prepare(f"{i:064x}", phi, {"model_name": spec})
            t["prepare"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            signature(prepared)  # from the float16 unit vectors, as the store computes it
            t["signature"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            store.put(f"{i:064x}", phi, {"model_name": spec})  # prepare + write + signature again
            t["write"] = time.perf_counter() - t0 - t["prepare"] - t["signature"]
            for k, v in t.items():
                totals[k] = totals.get(k, 0.0) + v
            del prepared
        wall = time.perf_counter() - start
    print(f"phases, one torch thread, {len(names)} fields ({ANCHORS}, K = {STEPS}), {wall:.1f} s in all:")
    for k, v in totals.items():
        print(f"  {k:10s} {v:7.2f} s  {100 * v / wall:5.1f}%  ({1000 * v / len(names):.0f} ms per field)")


def profile_one() -> None:
    torch.set_num_threads(1)
    anchors, cfg = load_anchors(ANCHORS), FieldConfig(steps=STEPS)
    model = load_model("zoo:resnet-victim")
    extract_field(model, anchors.images[:1], FieldConfig(steps=2))  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        prof = cProfile.Profile()
        prof.enable()
        cached_field(model, anchors, cfg, store=FieldStore(tmp))
        prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
    print("cProfile of one field (zoo:resnet-victim), top 15 by own time:")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:4000])


def run_fields(names: list[str], root: str) -> None:
    anchors, cfg = load_anchors(ANCHORS), FieldConfig(steps=STEPS)
    store = FieldStore(root)
    for spec in names:
        cached_field(load_model(spec), anchors, cfg, store=store)


def mode(name: str, names: list[str]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        c0, t0 = cpu(), time.perf_counter()
        if name == "seq2":
            torch.set_num_threads(2)
            run_fields(names, tmp)
        elif name == "threads":
            torch.set_num_threads(1)
            threads = [threading.Thread(target=run_fields, args=(names[j::2], tmp)) for j in range(2)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        elif name == "procs":
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            code = ("import sys, torch; torch.set_num_threads(1); sys.path.insert(0, sys.argv[1]);"
                    "import importlib; m = importlib.import_module('15_app_demo_profile');"
                    "m.run_fields(sys.argv[3:], sys.argv[2])")
            here = str(Path(__file__).resolve().parent)
            procs = [subprocess.Popen([sys.executable, "-c", code, here, tmp, *names[j::2]], env=env) for j in range(2)]
            if any(p.wait() for p in procs):
                raise SystemExit("a worker process failed")
        else:
            raise SystemExit(f"unknown mode {name}")
        wall, used = time.perf_counter() - t0, cpu() - c0
    return wall, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=31)
    parser.add_argument("--modes", default="seq2,threads,procs")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-phases", action="store_true")
    args = parser.parse_args()
    names = specs(args.models)
    # every mode loads the same zoo modules first (imports, anchors) so none pays them alone
    load_anchors(ANCHORS), load_model(names[0])
    if not args.no_phases:
        phases(names)
    if args.profile:
        profile_one()
    rows = []
    for name in filter(None, args.modes.split(",")):
        wall, used = mode(name, names)
        rows.append((name, wall, used))
        print(f"mode {name:8s} {len(names)} fields: {wall:6.1f} s wall, {used:6.1f} CPU s", flush=True)
    if rows:
        base = rows[0][1]
        print("wall ratios to", rows[0][0] + ":", ", ".join(f"{n} {w / base:.2f}" for n, w, _ in rows))


if __name__ == "__main__":
    main()
