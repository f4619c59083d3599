"""The server's worker process: the one process per store that owns the device and runs the job table's jobs.

`python -m modelgif_core.service.runner --root STORE [--parent PID]`. The app never runs it by hand:
`ServerWorker` (what the pages hold) starts it when a job is queued and none runs. A file lock in the store
(`runner.lock`) makes it exactly one per store, whichever server or session started it; it exits when idle
for `MODELGIF_RUNNER_IDLE` seconds (default 300) or when the server that started it is gone, and the next
submission starts it again. Sessions' Python never shares its interpreter, so a room of polling tabs cannot
slow an extraction down.

On the CPU it runs several jobs at once, one per core (at most 4: `MODELGIF_WORKER_SLOTS`), each on one torch
thread (cores // slots: `MODELGIF_WORKER_THREADS`): the demo's small fields kept two cores only ~70% busy as one
two-thread extraction at a time, and OpenMP threads spin when other processes want the cores. On a GPU (or with
a cluster) one job at a time owns the device.

With `MODELGIF_CLUSTER` set, field jobs go to the cluster backend (`service/cluster.py`) instead of this
process's device, up to 16 on one anchor set and settings in one call (`MODELGIF_CLUSTER_BATCH`); tasks always
run here.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..engine.anchors import load_anchors
from ..engine.cache import cached_field, field_store_key
from ..engine.device import resolve_device
from ..engine.errors import UserError
from ..engine.models import load_model
from ..engine.store import FieldStore
from .jobs import SESSION, TASK, JobTable
from .tasks import TaskSpec, config_from_dict
from .worker import DONE, FAILED, Job, pick_speed, speed_key, store_has, stored_rates

log = logging.getLogger(__name__)
LOCK_FILE = "runner.lock"
IDLE_SECONDS = float(os.environ.get("MODELGIF_RUNNER_IDLE", "300"))
_PROGRESS_EVERY = 0.25  # seconds between progress writes to the table
_LOCAL = SESSION + "local"  # the requester of calls that name none (the CLI, tests)
_UNCAPPED = 2**62  # follow-ups of a running task are the server's own work, never refused
CLUSTER_BATCH = int(os.environ.get("MODELGIF_CLUSTER_BATCH", "16"))  # field jobs handed to the cluster at once
_KEEP_LOADED = 32  # models (and anchor sets) the runner keeps loaded
_MAX_DEFAULT_SLOTS = 4  # more jobs at once than this hold more fields in memory for little gain


def worker_slots() -> tuple[int, int]:
    """(jobs at once, torch threads) of the runner: from MODELGIF_WORKER_SLOTS / _THREADS, else by the device."""
    cores = os.cpu_count() or 1
    if os.environ.get("MODELGIF_WORKER_SLOTS"):
        slots = max(1, int(os.environ["MODELGIF_WORKER_SLOTS"]))
    elif os.environ.get("MODELGIF_CLUSTER") or resolve_device("auto").type != "cpu":
        slots = 1
    else:
        slots = min(cores, _MAX_DEFAULT_SLOTS)
    threads = int(os.environ.get("MODELGIF_WORKER_THREADS") or max(1, cores // slots))
    return slots, threads


def runner_alive(root: str | Path) -> bool:
    """Whether a runner holds the store's lock (one flock attempt: cheap enough for every poll)."""
    path = Path(root) / LOCK_FILE
    if not path.exists():
        return False
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


class ServerWorker:
    """What the app's pages hold: submit jobs to the store's job table and read their state.

    The same reading API as the in-process `Worker` (job, jobs, is_ready, pending, wait, speed, store), so
    pages and tests read either. Submissions name their requester (a browser session), for round-robin and
    for dropping what a closed tab alone wanted; tasks must be named (`TaskSpec`): they run in the runner.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.store = FieldStore(root)
        self.root = Path(self.store.root)
        self.table = JobTable(self.root)
        self._proc: subprocess.Popen | None = None
        self._ready: set[str] = set()
        self._stored: tuple[float, dict] | None = None

    # ------------------------------------------------------------------ submitting

    def submit_field(self, model: Any, anchors: Any, cfg: Any, requester: str = _LOCAL) -> Job:
        """Queue the field of `model` on `anchors` for `requester`; shared by key with every other session."""
        key = field_store_key(model, anchors, cfg)
        points = len(anchors) * cfg.steps
        label = getattr(model, "name", key[:12])
        if self.is_ready(key):
            return self.table.mark_done(key, label, points)
        job = self.table.submit(key, "field", label, field_payload(model, anchors, cfg), requester, points=points,
                                total=points)
        self.ensure_runner()
        return job

    def submit_task(self, key: str, label: str, fn: TaskSpec, requester: str = _LOCAL) -> Job:
        """Queue the named task `fn` under `key` (e.g. "demo:<settings>"); shared like fields."""
        if not isinstance(fn, TaskSpec):
            raise TypeError("The server's worker runs named tasks (a TaskSpec from service.tasks), not closures.")
        job = self.table.submit(key, "task", label, {"task": fn.name, "params": fn.params}, requester)
        self.ensure_runner()
        return job

    def touch(self, requester: str) -> None:
        """The session is still here (each poll); also restarts the runner if jobs wait and none runs."""
        self.table.touch(requester)
        self.ensure_runner()

    # ------------------------------------------------------------------ reading

    def job(self, key: str) -> Job | None:
        return self.table.job(key)

    def jobs(self, keys: Iterable[str] | None = None) -> list[Job]:
        return self.table.jobs(keys)

    def active(self) -> list[Job]:
        return self.table.active()

    def children(self, key: str) -> tuple[int, int]:
        """(done, all) of the fields the task `key` queued (the demo's)."""
        return self.table.children(key)

    def pending(self) -> int:
        return self.table.pending()

    def payload(self, key: str) -> dict | None:
        return self.table.payload(key)

    def running_demos(self) -> list[str]:
        return self.table.running_demos()

    def is_ready(self, key: str) -> bool:
        """Whether the field under `key` is in the store (remembered once seen; stored fields stay)."""
        if key in self._ready:
            return True
        job = self.table.job(key)
        if job is not None and job.active:
            return False
        if store_has(self.store, key):
            self._ready.add(key)
            return True
        return False

    def wait(self, keys: Iterable[str], timeout: float | None = None) -> bool:
        """Block until every job in `keys` has finished (done, failed or dropped); False on timeout."""
        keys = list(keys)
        deadline = None if timeout is None else time.monotonic() + timeout
        last_touch = 0.0
        while any(j.active for j in self.table.jobs(keys)):
            if deadline is not None and time.monotonic() > deadline:
                return False
            if time.monotonic() - last_touch > 1:  # a waiter wants them: their sessions have not left
                self.table.touch_requesters_of(keys)
                last_touch = time.monotonic()
            self.ensure_runner()
            time.sleep(0.1)
        return True

    def speed(self, model: Any = None, device: str | None = None) -> float | None:
        """Passes per second on `device`, as the runner measured them, else as the store records them."""
        device = device or str(resolve_device("auto"))
        measured = {tuple(k.split("|")): v for k, v in self.table.speeds().items()}
        if self._stored is None or time.monotonic() - self._stored[0] > 60:  # the store's record: read a minute
            self._stored = (time.monotonic(), stored_rates(self.store))
        return pick_speed(measured, self._stored[1].get(device, {}), model, device)

    def record_speed(self, model: Any, device: str, passes_per_second: float) -> None:
        self.table.record_speed("|".join(speed_key(model, device)), passes_per_second)

    # ------------------------------------------------------------------ the runner process

    def ensure_runner(self) -> None:
        """Start the store's runner if jobs are queued and none holds the lock."""
        if self._proc is not None and self._proc.poll() is None:
            return  # ours runs (or is taking the lock)
        if runner_alive(self.root) or not self.table.pending():
            return
        self._proc = start_runner(self.root)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the runner this client started (tests and shutdown); queued jobs stay in the table."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout)

    @property
    def alive(self) -> bool:
        return True  # the client itself has no thread; the runner is restarted on demand


_SERVERS: dict[str, ServerWorker] = {}


def server_worker(root: str | Path | None = None) -> ServerWorker:
    """The process's one client of the store's job table at `root` ($MODELGIF_HOME by default)."""
    name = str(Path(FieldStore(root).root).resolve())
    if name not in _SERVERS:
        _SERVERS[name] = ServerWorker(name)
    return _SERVERS[name]


def start_runner(root: Path) -> subprocess.Popen:
    """The runner process for the store at `root`, started by (and watching) this process."""
    package_parent = str(Path(__file__).resolve().parents[2])  # this checkout's package, whatever the cwd
    env = {**os.environ, "MODELGIF_HOME": str(root),
           "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))}
    with open(root / "runner.log", "ab") as logfile:
        return subprocess.Popen([sys.executable, "-m", "modelgif_core.service.runner", "--root", str(root),
                                 "--parent", str(os.getpid())], env=env, stdout=logfile, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def field_payload(model: Any, anchors: Any, cfg: Any) -> dict:
    return {"model": model.spec, "anchors": anchors.spec, "config": cfg.to_dict()}


class _Runner:
    """The loop of the runner process, and the `worker` its tasks see (submit_field, submit_task, store)."""

    def __init__(self, root: Path, slots: int = 1) -> None:
        self.store = FieldStore(root)
        self.table = JobTable(root)
        self.slots = slots
        # Per slot thread: its job (the parent of what a task queues) and its loaded models, so two jobs never
        # share one module (extraction switches its parameters' requires_grad and its mode while it runs).
        self._local = threading.local()
        self._state = threading.Condition()
        self._busy = 0
        self._last_work = time.monotonic()

    @property
    def _current(self) -> Job | None:
        return getattr(self._local, "current", None)

    @_current.setter
    def _current(self, job: Job | None) -> None:
        self._local.current = job

    def _cache(self, name: str) -> OrderedDict:
        if not hasattr(self._local, name):
            setattr(self._local, name, OrderedDict())
        return getattr(self._local, name)

    # what tasks call
    def submit_field(self, model: Any, anchors: Any, cfg: Any) -> Job:
        key = field_store_key(model, anchors, cfg)
        points, parent = len(anchors) * cfg.steps, self._current.key if self._current else None
        self._remember(self._cache("models"), model.spec, model)
        self._remember(self._cache("anchors"), anchors.spec, anchors)
        if store_has(self.store, key):
            return self.table.mark_done(key, model.name, points, parent=parent)
        return self.table.submit(key, "field", model.name, field_payload(model, anchors, cfg), self._requester(),
                                 points=points, total=points, parent=parent, cap=_UNCAPPED)

    def submit_task(self, key: str, label: str, fn: TaskSpec) -> Job:
        return self.table.submit(key, "task", label, {"task": fn.name, "params": fn.params}, self._requester(),
                                 cap=_UNCAPPED)

    def record_speed(self, model: Any, device: str, passes_per_second: float) -> None:
        self.table.record_speed("|".join(speed_key(model, device)), passes_per_second)

    def _requester(self) -> str:
        return TASK + (self._current.key if self._current else "runner")

    # the loop
    def serve(self, parent: int | None, idle: float) -> None:
        self.table.requeue_running()
        # Sessions lapse while a long job runs too: sweep on a thread of its own.
        threading.Thread(target=self._sweep, name="lapsed-sessions", daemon=True).start()
        self._last_work = time.monotonic()
        slots = [threading.Thread(target=self._slot, args=(parent, idle), name=f"slot-{i}") for i in range(self.slots)]
        for thread in slots:
            thread.start()
        for thread in slots:
            thread.join()

    def _slot(self, parent: int | None, idle: float) -> None:
        """One slot's loop: claim the next job and run it, until the server is gone or every slot is idle."""
        while True:
            if parent is not None and not _alive(parent):
                log.info("the server that started this runner is gone; exiting")
                return
            with self._state:
                claimed = self.table.claim_next()
                if claimed is None:
                    if not self._busy and time.monotonic() - self._last_work > idle:
                        log.info("idle for %.0f s; exiting", idle)
                        return
                else:
                    self._busy += 1
            if claimed is None:
                time.sleep(0.1)
                continue
            job, payload = claimed
            try:
                if job.kind == "field" and os.environ.get("MODELGIF_CLUSTER"):
                    self._run_on_cluster(os.environ["MODELGIF_CLUSTER"],
                                         [claimed, *self.table.claim_like(payload, CLUSTER_BATCH - 1)])
                else:
                    self._run(job, payload)
            finally:
                with self._state:
                    self._busy -= 1
                    self._last_work = time.monotonic()

    def _sweep(self) -> None:
        while True:
            time.sleep(1.0)
            try:
                dropped = self.table.drop_lapsed()
            except Exception:  # a locked or busy table now; the next sweep tries again
                log.exception("sweeping lapsed sessions failed")
                continue
            if dropped:
                log.info("dropped %d queued job(s) nobody waits for", len(dropped))

    def _run(self, job: Job, payload: dict) -> None:
        self._current = job
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= _PROGRESS_EVERY or done >= total:
                last[0] = now
                self.table.progress(job.key, done, total)

        try:
            if job.kind == "field":
                result = self._field(job, payload, progress)
            else:
                result = TaskSpec(payload["task"], payload.get("params") or {})(progress, self)
        except UserError as err:
            self.table.finish(job.key, FAILED, error=str(err))
        except Exception as err:  # the runner must survive any job; the page shows the message
            log.exception("job %s (%s) failed", job.key, job.label)
            self.table.finish(job.key, FAILED, error=f"{type(err).__name__}: {err}")
        else:
            self.table.finish(job.key, DONE, result=result)
        finally:
            self._current = None

    def _run_on_cluster(self, address: str, batch: list[tuple[Job, dict]]) -> None:
        """Field jobs on one anchor set and settings, extracted together by the cluster backend
        (`service.cluster.extract_on_cluster`), which stores them here; each job finishes with its own outcome."""
        keys = [job.key for job, _ in batch]
        _, payload = batch[0]
        try:
            cluster = importlib.import_module(f"{__package__}.cluster")
            anchors = self._load(self._cache("anchors"), payload["anchors"], load_anchors)
            results = cluster.extract_on_cluster(
                [p["model"] for _, p in batch], anchors, config_from_dict(payload["config"]), cluster=address,
                store=self.store, model_progress=lambda i, done, total: self.table.progress(keys[i], done, total),
                stay_connected=True)  # this process lives on: a local cluster starts once, not per batch
        except ModuleNotFoundError:
            outcome = [(FAILED, f"MODELGIF_CLUSTER={address} is set but this install has no cluster backend "
                                "(service/cluster.py); unset it to extract here.")] * len(batch)
        except UserError as err:
            outcome = [(FAILED, str(err))] * len(batch)
        except Exception as err:  # the runner must survive any backend failure; the pages show the message
            log.exception("cluster extraction of %d field(s) failed", len(batch))
            outcome = [(FAILED, f"{type(err).__name__}: {err}")] * len(batch)
        else:
            outcome = [(FAILED, r.error) if r.error else (DONE, None) for r in results]
        for key, (state, error) in zip(keys, outcome, strict=True):
            self.table.finish(key, state, error=error)

    def _field(self, job: Job, payload: dict, progress: Any) -> None:
        if store_has(self.store, job.key):  # another process finished it meanwhile
            return
        model = self._load(self._cache("models"), payload["model"], load_model)
        anchors = self._load(self._cache("anchors"), payload["anchors"], load_anchors)
        cfg = config_from_dict(payload["config"])
        start = time.perf_counter()
        cached_field(model, anchors, cfg, store=self.store, progress=progress)
        seconds = time.perf_counter() - start
        self.record_speed(model, str(resolve_device(cfg.device)), len(anchors) * cfg.steps / max(seconds, 1e-6))

    def _load(self, cache: OrderedDict, spec: str, load: Any) -> Any:
        if spec not in cache:
            self._remember(cache, spec, load(spec))
        cache.move_to_end(spec)
        return cache[spec]

    def _remember(self, cache: OrderedDict, spec: str, value: Any) -> None:
        cache[spec] = value
        while len(cache) > max(4, _KEEP_LOADED // self.slots):  # the slots together keep about as many
            cache.popitem(last=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelgif_core.service.runner", description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="the field store whose job table to serve")
    parser.add_argument("--parent", type=int, default=None, help="exit when this process (the server) is gone")
    parser.add_argument("--idle", type=float, default=IDLE_SECONDS, help="exit after this many idle seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s runner %(process)d %(levelname)s %(message)s")
    root = Path(FieldStore(args.root).root)
    with open(root / LOCK_FILE, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # another runner serves this store: exactly one
        import torch

        slots, threads = worker_slots()
        torch.set_num_threads(threads)  # every slot thread's ops use this many
        log.info("serving %s, %d job(s) at once, %d torch thread(s) each", root, slots, torch.get_num_threads())
        _Runner(root, slots).serve(args.parent, args.idle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
