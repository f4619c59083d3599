"""The app's background tasks: the demo, the task zoo (relatedness bench), the throughput probe.

A task is `fn(progress, worker) -> result`, queued with `Worker.submit_task(key, label, fn)`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from ..bench.relatedness import run_bench
from ..engine.anchors import load_anchors
from ..engine.device import resolve_device
from ..engine.embedding import embed_distances
from ..engine.fields import extract_field
from ..engine.models import load_model
from ..engine.progress import Progress
from ..zoo import ensure_zoo, list_zoo
from .worker import TaskFn, Worker


def demo_task(anchors_spec: str, cfg: Any, size: str = "small") -> TaskFn:
    """A task that builds the zoo if missing, queues every zoo model's field, returns their specs."""

    def run(progress: Progress, worker: Worker) -> list[str]:
        anchors = load_anchors(anchors_spec)  # a bad spec fails before minutes of zoo building
        ensure_zoo(size, progress=lambda done, total, name: progress(done, total))
        entries = list_zoo(size)
        specs = []
        for entry in entries:
            spec = f"zoo:{entry['name']}"  # short and portable, unlike the folder (shared URLs)
            worker.submit_field(load_model(spec), anchors, cfg)
            specs.append(spec)
        # Compile UMAP's numba kernels while the user waits anyway (else the first map takes ~20 s).
        worker.submit_task("warmup:umap", "preparing the map", _warm_umap)
        return specs

    return run


# The app's one task zoo job: shared by every session, like a field
TASK_ZOO_KEY = "relatedness:quick"


def relatedness_task(cfg: Any = None) -> TaskFn:
    """A task that runs `modelgif bench relatedness` (the quick run unless `cfg` says otherwise) and keeps its
    result in the worker's store, where the app's task zoo views read it; returns the headline score."""

    def run(progress: Progress, worker: Worker) -> dict[str, Any]:
        result = run_bench(quick=cfg is None, cfg=cfg, progress=progress, root=worker.store.root)
        return {"spearman_mean": result["spearman_mean"], "tasks": result["tasks"], "seconds": result["seconds"]}

    return run


def _warm_umap(progress: Progress, worker: Worker) -> None:
    pts = np.random.default_rng(0).random((8, 3))
    embed_distances(np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)), method="umap")


def probe_task(model: Any, anchors: Any, cfg: Any, n: int = 4) -> TaskFn:
    """A task that times a few anchors' extraction to estimate the cost of a full field."""

    def run(progress: Progress, worker: Worker) -> float:
        images = anchors.images[:n]  # [n, 3, H, W]
        extract_field(model, images[:1], dataclasses.replace(cfg, steps=2))  # warm-up
        start = time.perf_counter()
        extract_field(model, images, cfg, progress)
        speed = len(images) * cfg.steps / max(time.perf_counter() - start, 1e-6)
        worker.record_speed(model, str(resolve_device(cfg.device)), speed)
        return speed

    return run
