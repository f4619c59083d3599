"""The app's background tasks: the demo, the task zoo (relatedness bench), the throughput probe, triage,
the unlearning check and the zoo build.

A task is `fn(progress, worker) -> result`, queued with `Worker.submit_task(key, label, fn)`. The server's
runner process (`service/runner.py`) cannot receive a closure, so the app's tasks are named: a `TaskSpec`
(a name from `TASKS` and JSON-able parameters) is such a callable, and the runner rebuilds it from the job
table. Results are JSON-able (the runner keeps them in the table).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.lineage import family_graph
from ..analysis.report import render_triage_report
from ..analysis.triage import DEFAULT_RULE, triage
from ..analysis.unlearning import verify_unlearning
from ..bench import relatedness
from ..engine.anchors import load_anchors
from ..engine.device import resolve_device
from ..engine.embedding import embed_distances
from ..engine.errors import UserError
from ..engine.fields import FieldConfig, extract_field
from ..engine.models import load_model
from ..engine.progress import Progress
from ..zoo import ensure_zoo, list_zoo

# name -> fn(progress, worker, **params)
TASKS: dict[str, Callable[..., Any]] = {}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A named task with JSON-able parameters: callable like any task, and sendable to the runner process."""

    name: str
    params: dict[str, Any]

    def __call__(self, progress: Progress, worker: Any) -> Any:
        if self.name not in TASKS:
            raise UserError(f"Unknown task {self.name!r}; known: {', '.join(sorted(TASKS))}.")
        return TASKS[self.name](progress, worker, **self.params)


def _task(fn: Callable[..., Any]) -> Callable[..., Any]:
    TASKS[fn.__name__.removeprefix("_run_")] = fn
    return fn


def config_from_dict(d: dict[str, Any] | None) -> FieldConfig | None:
    return None if d is None else FieldConfig(**d)


def demo_task(anchors_spec: str, cfg: Any, size: str = "small") -> TaskSpec:
    """A task that builds the zoo if missing, queues every zoo model's field, returns their specs."""
    return TaskSpec("demo", {"anchors": anchors_spec, "config": cfg.to_dict(), "size": size})


@_task
def _run_demo(progress: Progress, worker: Any, anchors: str, config: dict, size: str = "small") -> list[str]:
    cfg = config_from_dict(config)
    anchor_set = load_anchors(anchors)  # a bad spec fails before minutes of zoo building
    ensure_zoo(size, progress=lambda done, total, name: progress(done, total))
    specs = []
    for entry in list_zoo(size):
        spec = f"zoo:{entry['name']}"  # short and portable, unlike the folder (shared URLs)
        worker.submit_field(load_model(spec), anchor_set, cfg)
        specs.append(spec)
    # Compile UMAP's numba kernels while the user waits anyway (else the first map takes ~20 s).
    worker.submit_task("warmup:umap", "preparing the map", TaskSpec("warm_umap", {}))
    return specs


# The app's one task zoo job: shared by every session, like a field
TASK_ZOO_KEY = "relatedness:quick"


def relatedness_task(cfg: Any = None) -> TaskSpec:
    """A task that runs `modelgif bench relatedness` (the quick run unless `cfg` says otherwise) and keeps its
    result in the worker's store, where the app's task zoo views read it; returns the headline score.
    The quick run's sizes are read when the task is made, so the runner process runs what was asked."""
    return TaskSpec("relatedness", {"quick": cfg is None, "config": dataclasses.asdict(cfg or relatedness.QUICK)})


@_task
def _run_relatedness(progress: Progress, worker: Any, quick: bool, config: dict) -> dict[str, Any]:
    cfg = relatedness.BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    result = relatedness.run_bench(quick=quick, cfg=cfg, progress=progress, root=worker.store.root)
    return {"spearman_mean": result["spearman_mean"], "tasks": result["tasks"], "seconds": result["seconds"]}


@_task
def _run_warm_umap(progress: Progress, worker: Any) -> None:
    pts = np.random.default_rng(0).random((8, 3))
    embed_distances(np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)), method="umap")


def probe_task(model: Any, anchors: Any, cfg: Any, n: int = 4) -> TaskSpec:
    """A task that times a few anchors' extraction to estimate the cost of a full field."""
    return TaskSpec("probe", {"model": model.spec, "anchors": anchors.spec, "config": cfg.to_dict(), "n": n})


@_task
def _run_probe(progress: Progress, worker: Any, model: str, anchors: str, config: dict, n: int = 4) -> float:
    handle, cfg = load_model(model), config_from_dict(config)
    images = load_anchors(anchors).images[:n]  # [n, 3, H, W]
    extract_field(handle, images[:1], dataclasses.replace(cfg, steps=2))  # warm-up
    start = time.perf_counter()
    extract_field(handle, images, cfg, progress)
    speed = len(images) * cfg.steps / max(time.perf_counter() - start, 1e-6)
    worker.record_speed(handle, str(resolve_device(cfg.device)), speed)
    return speed


def triage_task(victim: str, suspects: list[str], references: list[str] | None, anchors: str | None,
                cfg: FieldConfig | None, rule: str = DEFAULT_RULE) -> TaskSpec:
    """`analysis.triage` of model specs; returns the report as a dict (TriageReport.from_dict reads it) with
    its self-contained HTML evidence report under "html"."""
    return TaskSpec("triage", {"victim": victim, "suspects": list(suspects), "references": references,
                               "anchors": anchors, "config": cfg.to_dict() if cfg else None, "rule": rule})


@_task
def _run_triage(progress: Progress, worker: Any, victim: str, suspects: list[str], references: list[str] | None,
                anchors: str | None, config: dict | None, rule: str = DEFAULT_RULE) -> dict:
    kwargs: dict[str, Any] = {}
    if anchors is not None:
        kwargs["anchors"] = anchors
    if config is not None:
        kwargs["cfg"] = config_from_dict(config)
    report = triage(victim, suspects, references=references, store=worker.store, progress=progress, rule=rule,
                    **kwargs)
    return {**report.to_dict(), "html": render_triage_report(report, store=worker.store)}


def lineage_task(models: list[str], anchors: str | None = None, steps: int | None = None) -> TaskSpec:
    """`analysis.lineage.family_graph` of model specs (its fields on `anchors` with `steps`, default
    triage's); returns the graph as a dict (its "edges", "families")."""
    return TaskSpec("lineage", {"models": list(models), "anchors": anchors, "steps": steps})


@_task
def _run_lineage(progress: Progress, worker: Any, models: list[str], anchors: str | None = None,
                 steps: int | None = None) -> dict:
    graph = family_graph(models, store=worker.store, progress=progress, anchors=anchors, steps=steps)
    return {**graph.to_dict(), "anchors": anchors, "steps": steps}


def unlearning_task(original: str, claimed: str, forgotten_class: int, anchors: str | None, steps: int,
                    references: list[str] | None) -> TaskSpec:
    """`analysis.unlearning.verify_unlearning` of model specs; returns the report as a dict."""
    return TaskSpec("unlearning", {"original": original, "claimed": claimed, "forgotten": int(forgotten_class),
                                   "anchors": anchors, "steps": int(steps), "references": references})


@_task
def _run_unlearning(progress: Progress, worker: Any, original: str, claimed: str, forgotten: int, anchors: str | None,
                    steps: int, references: list[str] | None) -> dict:
    cfg = FieldConfig(steps=int(steps), target="label")
    return verify_unlearning(original, claimed, forgotten, anchors=anchors, references=references, cfg=cfg,
                             store=worker.store, progress=progress).to_dict()


def zoo_task(size: str = "small") -> TaskSpec:
    """Build the zoo of `size` if missing; returns its folder."""
    return TaskSpec("zoo", {"size": size})


@_task
def _run_zoo(progress: Progress, worker: Any, size: str) -> str:
    return str(ensure_zoo(size, progress=lambda done, total, _name: progress(done, total)))


def hold_task(path: str | Path, timeout: float = 60.0) -> TaskSpec:
    """A task that waits until the file `path` exists (at most `timeout` seconds): holds the queue in tests."""
    return TaskSpec("hold", {"path": str(path), "timeout": float(timeout)})


@_task
def _run_hold(progress: Progress, worker: Any, path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True

