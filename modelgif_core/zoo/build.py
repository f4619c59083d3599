"""Building the zoo: every missing model trained (in worker processes, one torch thread each) and saved.

Each model records its recipe in config.json's "modelgif" dict: role, family, attack, parent, seed,
data, test accuracy, the recipe and its key. `python -m modelgif_core.zoo` is a worker process.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..engine.device import one_torch_thread
from ..engine.errors import UserError
from ..engine.models import load_model, save_model_dir
from ..engine.progress import Progress
from .paths import list_zoo, read_meta, zoo_is_built, zoo_root
from .recipes import ARCHS, SIZES, Recipe, recipes
from .training import N_CLASSES, TRAINERS, Net, ZooData, accuracy, load_data


def default_workers() -> int:
    """Processes a zoo build trains in: one per usable core (at most 8, for memory). Unlike several
    OpenMP threads in one process, single-threaded processes do not spin against a busy machine;
    they only share it, so busy cores cost no more than training one model after the other."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _load_net(folder: Path) -> Net:
    handle = load_model(f"local-dir:{folder}")
    module = copy.deepcopy(handle.module).requires_grad_(True)
    return Net(module, handle.input_cfg)


def build_zoo(size: str = "small", root: str | Path | None = None, progress: Progress | None = None,
              force: bool = False, only: list[str] | None = None,
              epochs_scale: float = 1.0, workers: int | None = None) -> Path:
    """Train every missing model of the zoo (idempotent) and return its root folder.

    progress(done, total, name) is called as each model starts (done: models finished so far).
    `only` restricts the build to these names (and their parents); `epochs_scale` shortens training
    (tests). Models train on one torch thread each, in `workers` processes (default:
    `default_workers()`), a derived model after its parent; a model's weights depend only on its
    recipe, not on the process or the number of workers (one thread vs two gave different floats).
    A file lock makes two concurrent builds (app + CLI) wait for each other instead of training twice.
    """
    from filelock import FileLock

    all_recipes = recipes(size)
    root = Path(root) if root is not None else zoo_root(size)
    root.mkdir(parents=True, exist_ok=True)
    by_name = {r.name: r for r in all_recipes}
    todo = all_recipes
    if only is not None:
        unknown = sorted(set(only) - set(by_name))
        if unknown:
            raise UserError(f"Unknown zoo model(s) {unknown}; see `modelgif zoo list`.")
        need = set(only)
        for name in only:
            if by_name[name].parent:
                need.add(by_name[name].parent)
        todo = [r for r in all_recipes if r.name in need]
    total = len(todo)
    with FileLock(str(root / ".build.lock")):
        keys: dict[str, str] = {}
        tasks: list[_Task] = []
        skipped = 0
        for r in todo:
            scaled = r if epochs_scale == 1.0 else _scaled(r, epochs_scale)
            key = scaled.key(keys.get(r.parent, "") if r.parent else "")
            keys[r.name] = key
            folder = root / r.name
            meta = read_meta(folder)
            if not force and ((meta is not None and meta.get("recipe_key") == key)
                              or _reuse(r.name, key, size, folder)):
                if progress is not None:
                    progress(skipped, total, r.name)
                skipped += 1
                continue
            tasks.append(_Task(scaled, key, str(folder), str(root / r.parent) if r.parent else None))

        def started(done: int, name: str) -> None:
            if progress is not None:
                progress(skipped + done, total, name)

        n = default_workers() if workers is None else int(workers)
        _run_tasks(tasks, max(1, min(n, len(tasks))), started)
        if progress is not None:
            progress(total, total, "done")
        _write_index(root, size)
    return root


@dataclass(frozen=True)
class _Task:
    """One model to train, as handed to a worker process (picklable)."""

    recipe: Recipe  # epochs already scaled
    key: str
    folder: str
    parent_folder: str | None  # the parent's built folder: read from disk, never passed in memory


def _train_task(task: _Task) -> str:
    """Train and save one model in this process, on one torch thread (so its floats never depend on
    how many threads or processes the build has)."""
    with one_torch_thread():
        parent = _load_net(Path(task.parent_folder)) if task.parent_folder else None
        _build_one(task.recipe, parent, load_data(), Path(task.folder), task.key)
    return task.recipe.name


# Rough training cost per image and epoch (test_resnet = 1), measured on one thread here; only used
# to start the longest models first so that the workers finish together.
_ARCH_COST = {"resnet": 1.0, "effnet": 0.7, "byobnet": 0.65, "convnext": 0.65, "vit": 0.65}


def _cost(r: Recipe) -> float:
    images = 1297 if r.data == "pool" else 650
    if r.params.get("strong"):
        images *= 5
    if r.method == "adv-extract":
        images *= 3  # two fits, the second on twice the data
    return r.epochs * images * _ARCH_COST[r.arch]


def _task_message(t: _Task) -> str:
    return json.dumps({"recipe": asdict(t.recipe), "key": t.key, "folder": t.folder,
                       "parent_folder": t.parent_folder})


def _task_from_message(line: str) -> _Task:
    msg = json.loads(line)
    return _Task(Recipe(**msg["recipe"]), msg["key"], msg["folder"], msg["parent_folder"])


def _start_worker() -> subprocess.Popen:
    """A `python -m modelgif_core.zoo` process (runs `worker_main`). Not a multiprocessing child: spawn re-runs the
    caller's __main__ in every child, and inside a Streamlit server that is the page being run."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-m", "modelgif_core.zoo"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1, env=env)


def _run_tasks(tasks: list[_Task], workers: int, started: Callable[[int, str], None]) -> None:
    """Train the tasks (topologically ordered), a parent before its children; with several workers
    in worker processes, the parents of other models first, then the longest ready model."""
    if workers <= 1 or len(tasks) <= 1:
        for done, t in enumerate(tasks):
            started(done, t.recipe.name)
            _train_task(t)
        return
    import selectors

    names = {t.recipe.name for t in tasks}
    n_children = {name: sum(t.recipe.parent == name for t in tasks) for name in names}
    pending = sorted(tasks, key=lambda t: (-n_children[t.recipe.name], -_cost(t.recipe)))
    finished: set[str] = set()
    procs = [_start_worker() for _ in range(workers)]
    idle = list(procs)
    running: dict[subprocess.Popen, _Task] = {}
    sel = selectors.DefaultSelector()
    for proc in procs:
        sel.register(proc.stdout, selectors.EVENT_READ, proc)
    try:
        while pending or running:
            ready = [t for t in pending if t.recipe.parent not in names or t.recipe.parent in finished]
            while ready and idle:
                t, proc = ready.pop(0), idle.pop()
                pending.remove(t)
                started(len(finished), t.recipe.name)
                proc.stdin.write(_task_message(t) + "\n")
                proc.stdin.flush()
                running[proc] = t
            assert running, "zoo tasks must be topologically ordered"
            for key, _ in sel.select():
                proc = key.data
                line = proc.stdout.readline()
                name = running[proc].recipe.name
                if not line:
                    raise RuntimeError(f"A zoo worker process died while training {name} "
                                       f"(exit code {proc.wait()}); see its error above.")
                reply = json.loads(line)
                if "error" in reply:
                    raise RuntimeError(f"Training {name} failed: {reply['error']}")
                finished.add(running.pop(proc).recipe.name)
                idle.append(proc)
    finally:
        sel.close()
        for proc in procs:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # a worker exits at the end of its input
        for proc in procs:
            try:
                proc.wait(timeout=0 if running else 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def worker_main() -> None:
    """The loop of a zoo worker process: one task (JSON) per input line, one reply line per task."""
    torch.set_num_threads(1)
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything the training prints goes to stderr, never into the reply channel
    for line in sys.stdin:
        task = _task_from_message(line)
        try:
            _train_task(task)
            replies.write(json.dumps({"done": task.recipe.name}) + "\n")
        except Exception as exc:  # reported to the parent, which stops the build with it
            replies.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")


def _reuse(name: str, key: str, size: str, folder: Path) -> bool:
    """Copy a model with the same recipe key from the other size's zoo (small is a subset of full)."""
    import shutil

    for other in SIZES:
        src = zoo_root(other) / name
        if other == size or src == folder:
            continue
        meta = read_meta(src)
        if meta is not None and meta.get("recipe_key") == key:
            tmp = folder.with_name(f".{name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src, tmp)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
            return True
    return False


def _scaled(r: Recipe, scale: float) -> Recipe:
    from dataclasses import replace

    return replace(r, epochs=max(1, round(r.epochs * scale)) if r.epochs else 0)


def _build_one(r: Recipe, parent: Net | None, data: ZooData, folder: Path, key: str) -> Net:
    start = time.perf_counter()
    torch.manual_seed(r.seed)
    net, labels = TRAINERS[r.method](r, parent, data)
    net.eval().requires_grad_(False)
    acc = accuracy(net, data, labels)
    name, args, _ = ARCHS[r.arch]
    extra = {
        "zoo": True, "name": r.name, "role": r.role, "family": r.family, "attack": r.attack,
        "variant": r.variant, "parent": r.parent, "seed": r.seed, "data": r.data, "labels": labels,
        "test_accuracy": round(acc, 4), "train_seconds": round(time.perf_counter() - start, 2),
        "recipe": {"method": r.method, "epochs": r.epochs, "lr": r.lr, **r.params},
        "recipe_key": key,
    }
    save_model_dir(net.module, folder, arch=name, num_classes=N_CLASSES[labels],
                   input_cfg=net.input_cfg, model_args=args, extra=extra)
    return net


def _write_index(root: Path, size: str) -> None:
    rows = list_zoo(size, root)
    tmp = root / ".zoo.json.tmp"
    tmp.write_text(json.dumps({"size": size, "models": rows}, indent=1))
    os.replace(tmp, root / "zoo.json")


def ensure_zoo(size: str = "small", progress: Progress | None = None) -> Path:
    """The zoo's root, building it first if any model is missing (first use of the app or CLI)."""
    if zoo_is_built(size):
        return zoo_root(size)
    return build_zoo(size, progress=progress)

