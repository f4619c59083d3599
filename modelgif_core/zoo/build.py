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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..engine.device import one_torch_thread
from ..engine.errors import UserError
from ..engine.models import load_model, save_model_dir
from ..engine.progress import Progress
from .paths import list_zoo, read_meta, shipped_model_dir, shipped_zoo_root, zoo_is_built, zoo_location, zoo_root
from .recipes import ARCHS, SIZES, Recipe, recipes
from .training import N_CLASSES, TRAINERS, Net, ZooData, accuracy, load_data, predict


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
              epochs_scale: float = 1.0, workers: int | None = None, reuse: bool = True) -> Path:
    """Train every missing model of the zoo (idempotent) and return its root folder.

    progress(done, total, name) is called as each model starts (done: models finished so far).
    `only` restricts the build to these names (and their parents); `epochs_scale` shortens training
    (tests). Models train on one torch thread each, in `workers` processes (default:
    `default_workers()`), a derived model after its parent; a model's weights depend only on its
    recipe, not on the process, the number of workers or the CPU (one thread vs two gave different floats;
    see DETERMINISTIC_ENV for the instruction sets).
    A file lock makes two concurrent builds (app + CLI) wait for each other instead of training twice.
    With `reuse`, a model with the same recipe key in the other size's zoo or in the shipped assets
    is copied instead of trained (`zoo verify` turns it off: it must train).
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
                              or (reuse and _reuse(r.name, key, size, folder))):
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


# A zoo worker's floats must not depend on the CPU it runs on, or the shipped zoo could not be checked
# by a rebuild elsewhere. Measured here (AVX-512 CPU): ATen's vectorised kernels, oneDNN's convolutions
# and MKL's GEMM each pick code by instruction set, and each changed the trained weights (capped at
# AVX2 or SSE4 they differed from the native build). With ATen's portable kernels, MKL's conditional
# numerical reproducibility mode and oneDNN off, the AVX-512, AVX2 and SSE4.2 builds were bitwise equal,
# at about the same speed. Read by ATen and MKL at process start, hence the environment. Not every CPU
# obeys it (see MAX_DRIFT).
DETERMINISTIC_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default",
                     "MKL_CBWR": "COMPATIBLE"}


def _start_worker() -> subprocess.Popen:
    """A `python -m modelgif_core.zoo` process (runs `worker_main`). Not a multiprocessing child: spawn re-runs the
    caller's __main__ in every child, and inside a Streamlit server that is the page being run."""
    env = dict(os.environ, **DETERMINISTIC_ENV)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-m", "modelgif_core.zoo"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1, env=env)


def _run_tasks(tasks: list[_Task], workers: int, started: Callable[[int, str], None]) -> None:
    """Train the tasks (topologically ordered) in worker processes (even one: see DETERMINISTIC_ENV), a
    parent before its children; the parents of other models first, then the longest ready model."""
    if not tasks:
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
    torch.backends.mkldnn.enabled = False  # its convolutions differ by instruction set (DETERMINISTIC_ENV)
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
    """Copy a model with the same recipe key from the other size's zoo (small is a subset of full) or
    from the shipped assets."""
    import shutil

    sources = [zoo_root(other) / name for other in SIZES if other != size]
    sources += [p for p in (shipped_model_dir(name, s) for s in SIZES) if p is not None]
    for src in sources:
        if src == folder:
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
    torch.manual_seed(r.seed)
    net, labels = TRAINERS[r.method](r, parent, data)
    net.eval().requires_grad_(False)
    acc = accuracy(net, data, labels)
    name, args, _ = ARCHS[r.arch]
    extra = {
        "zoo": True, "name": r.name, "role": r.role, "family": r.family, "attack": r.attack,
        "variant": r.variant, "parent": r.parent, "seed": r.seed, "data": r.data, "labels": labels,
        "test_accuracy": round(acc, 4),  # no training time: config.json is as reproducible as the weights
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
    if zoo_is_built(size):  # in the store, or shipped in the assets
        return zoo_location(size)
    return build_zoo(size, progress=progress)



# ----------------------------------------------------------------------------------- shipped assets

SHIPPED_FILES = ("model.safetensors", "config.json")
MANIFEST = "manifest.json"


def file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path, size: str = "small") -> Path:
    """The shipped zoo's manifest: per model its recipe key, role, accuracy and each file's sha256."""
    models = []
    for row in list_zoo(size, folder):
        model_dir = folder / row["name"]
        meta = read_meta(model_dir) or {}
        models.append({"name": row["name"], "role": row["role"], "arch": row["arch"],
                       "recipe_key": meta.get("recipe_key"), "test_accuracy": row["test_accuracy"],
                       "sha256": {f: file_sha256(model_dir / f) for f in SHIPPED_FILES}})
    path = folder / MANIFEST
    path.write_text(json.dumps({"size": size, "models": models}, indent=1) + "\n")
    return path


def quick_verify_names(size: str = "small") -> list[str]:
    """The cheapest model of each recipe method (scratch, finetune, prune, ...): what `zoo verify`
    retrains without --all."""
    cheapest: dict[str, Recipe] = {}
    for r in recipes(size):
        if r.method not in cheapest or _cost(r) < _cost(cheapest[r.method]):
            cheapest[r.method] = r
    return [r.name for r in cheapest.values()]


# A rebuild on a CPU whose kernels round differently is not bitwise the shipped model (DETERMINISTIC_ENV does
# not cover every CPU: on an AVX512-FP16/AMX Xeon, 7 of the 8 quick models trained to other bytes). Float
# rounding then moves the weights a little: measured there, the derived models by at most 0.006 of what their
# recipe changed, the from-scratch ByobNet by 0.19 of its weights' norm, all with >= 98 % of the held-out
# predictions unchanged. A changed recipe or seed moves them by the whole change (another seed: 1.16).
MAX_DRIFT = 0.5  # ||rebuilt - shipped|| / ||shipped - start||; start: the parent's weights, else zero
MIN_AGREEMENT = 0.95  # held-out digits on which the rebuild predicts the shipped model's class


class ManifestMismatch(UserError):
    """Shipped files that are not the ones the manifest lists; `changed`: one sentence per file."""

    def __init__(self, changed: list[str]):
        super().__init__(" ".join(changed))
        self.changed = changed


def check_manifest(size: str = "small", names: list[str] | None = None) -> list[str]:
    """One sentence per shipped file whose sha256 is not the manifest's (changed after the build); [] when
    the assets hold no manifest."""
    shipped = shipped_zoo_root(size)
    path = shipped / MANIFEST
    if not path.is_file():
        return []
    wanted = set(names) if names is not None else None
    bad = []
    for m in json.loads(path.read_text())["models"]:
        if wanted is not None and m["name"] not in wanted or not (shipped / m["name"]).is_dir():
            continue
        for f, digest in m["sha256"].items():
            actual = file_sha256(shipped / m["name"] / f)
            if actual != digest:
                bad.append(f"{m['name']}: the shipped {f} is not the one {MANIFEST} lists (sha256 {actual[:12]} "
                           f"on disk, {digest[:12]} listed): it changed after the build; restore it from the "
                           f"repository or rebuild it with `modelgif zoo build --size {size} --force`.")
    return bad


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v.double() for k, v in load_file(folder / "model.safetensors").items() if v.is_floating_point()}


def _config_sans_accuracy(folder: Path) -> dict:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.get("modelgif", {}).pop("test_accuracy", None)
    return cfg


def rebuild_drift(shipped: Path, rebuilt: Path, parent: Path | None) -> tuple[float, float]:
    """How far the rebuild lies from the shipped model, as a fraction of how far the recipe moved it from its
    start, and the share of held-out digits on which both predict the same class."""
    a, b = _weights(shipped), _weights(rebuilt)
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return float("inf"), 0.0
    start = _weights(parent) if parent is not None else {}
    moved = sum(float((a[k] - start[k]).pow(2).sum()) if k in start and start[k].shape == a[k].shape
                else float(a[k].pow(2).sum()) for k in a)
    off = sum(float((a[k] - b[k]).pow(2).sum()) for k in a)
    data = load_data()
    x = data.x[data.heldout]
    same = predict(_load_net(shipped), x).argmax(1) == predict(_load_net(rebuilt), x).argmax(1)
    return (off / moved) ** 0.5 if moved else float("inf"), float(same.double().mean())


def verify_zoo(size: str = "small", names: list[str] | None = None, progress: Progress | None = None,
               workers: int | None = None) -> list[dict]:
    """Retrain zoo models in a scratch folder and compare them with the shipped ones.

    names: which models (default: `quick_verify_names`, the cheapest of each method). A model whose
    parent is not retrained derives from the shipped parent (its own check covers that parent).
    Returns one row per model: name; per file the shipped and rebuilt sha256; exact (both files bitwise
    equal); drift and agreement (see MAX_DRIFT) and the config apart from the test accuracy, when not exact;
    ok (exact, or within float rounding: drift <= MAX_DRIFT, agreement >= MIN_AGREEMENT, same config).
    A shipped file that is not the manifest's stops it first (`check_manifest`, raised as ManifestMismatch): no
    rebuild can tell a changed bit from float rounding."""
    import shutil
    import tempfile

    shipped = shipped_zoo_root(size)
    by_name = {r.name: r for r in recipes(size)}
    names = list(names) if names is not None else quick_verify_names(size)
    unknown = sorted(set(names) - set(by_name))
    if unknown:
        raise UserError(f"Unknown {size} zoo model(s) {unknown}; see `modelgif zoo list`.")
    missing = [n for n in names if shipped_model_dir(n, size) is None]
    if missing:
        raise UserError(f"The shipped assets ({shipped}) do not hold {', '.join(missing)} with today's "
                        f"recipe; rebuild them with `modelgif zoo build --size {size} --force` and copy them in.")
    changed = check_manifest(size, names)
    if changed:
        raise ManifestMismatch(changed)
    with tempfile.TemporaryDirectory(prefix="modelgif-verify-") as tmp:
        root = Path(tmp)
        for name in names:
            parent = by_name[name].parent
            if parent and parent not in names and not (root / parent).exists():
                shutil.copytree(shipped / parent, root / parent)
        build_zoo(size, root=root, only=names, progress=progress, workers=workers, reuse=False, force=False)
        rows = []
        for name in names:
            files = {f: {"shipped": file_sha256(shipped / name / f), "rebuilt": file_sha256(root / name / f)}
                     for f in SHIPPED_FILES}
            row = {"name": name, "exact": all(v["shipped"] == v["rebuilt"] for v in files.values()), "files": files}
            if not row["exact"]:
                parent = by_name[name].parent
                row["drift"], row["agreement"] = rebuild_drift(shipped / name, root / name,
                                                        shipped / parent if parent else None)
                row["same_config"] = _config_sans_accuracy(shipped / name) == _config_sans_accuracy(root / name)
            row["ok"] = row["exact"] or (row["drift"] <= MAX_DRIFT and row["agreement"] >= MIN_AGREEMENT
                                         and row["same_config"])
            rows.append(row)
    return rows


def verify_message(row: dict) -> str:
    """One sentence for a model whose rebuild is not bitwise the shipped one: within float rounding or not."""
    bad = [f for f, v in row["files"].items() if v["shipped"] != v["rebuilt"]]
    first = row["files"][bad[0]]
    verb = "differs" if len(bad) == 1 else "differ"
    head = (f"{row['name']}: the rebuilt {' and '.join(bad)} {verb} from the shipped one "
            f"(sha256 {first['rebuilt'][:12]} rebuilt, {first['shipped'][:12]} shipped)")
    how = (f"weights {row['drift']:.3g} of the recipe's change away (limit {MAX_DRIFT}), "
           f"{100 * row['agreement']:.1f} % of held-out predictions the same (limit {100 * MIN_AGREEMENT:.0f} %)"
           + ("" if row["same_config"] else ", config.json different beyond the test accuracy"))
    if row["ok"]:
        return f"{head}, only by float rounding (this CPU's kernels round differently from the build's): {how}."
    return f"{head}, by more than float rounding: {how}."
