"""The background extraction worker: one thread per process and store that owns the device.

The app's pages never compute fields themselves; they submit jobs here and poll `job(key)`.
Jobs are keyed by what they produce (a field's store key, or a task's own key), so two browser
sessions asking for the same field share one computation, and a resubmission of a queued,
running or finished job returns that job instead of starting another. Results land in the
field store, so every session (and every other process on the same store) sees them. Nothing
here imports streamlit: the app holds the worker with `st.cache_resource`, the tests drive it
directly.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..engine.cache import cached_field, field_store_key
from ..engine.device import resolve_device
from ..engine.errors import UserError
from ..engine.progress import Progress
from ..engine.store import FieldStore

log = logging.getLogger(__name__)
# A task gets a progress callback and the worker (to queue follow-up jobs) and returns a result.
TaskFn = Callable[[Progress, "Worker"], Any]

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
# How many finished jobs a worker remembers (finished fields stay in the store regardless).
_KEEP_FINISHED = 2000


@dataclasses.dataclass
class Job:
    """One unit of work and where it stands. Callers get copies; only the worker mutates jobs."""

    key: str  # the field's store key, or the task's key
    label: str  # what the UI shows, e.g. the model's name
    kind: str  # "field" or "task"
    state: str = QUEUED
    done: int = 0  # progress: forward+backward passes (fields) or task-defined units
    total: int = 0
    error: str | None = None  # one sentence for user mistakes, else "Type: message"
    result: Any = None  # a task's return value (fields: None, read them from the store)
    submitted: float = dataclasses.field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    @property
    def active(self) -> bool:
        return self.state in (QUEUED, RUNNING)

    @property
    def fraction(self) -> float:
        if self.state == DONE:
            return 1.0
        return self.done / self.total if self.total else 0.0

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started


def store_has(store: Any, key: str) -> bool:
    """Whether the store holds a field under `key`, cheaply when the store can tell without reading."""
    for name in ("has", "exists", "__contains__"):
        check = getattr(store, name, None)
        if check is not None:
            return bool(check(key))
    try:
        return store.get(key) is not None
    except (KeyError, FileNotFoundError):
        return False


class Worker:
    """A queue and one daemon thread that runs field extractions and tasks one at a time."""

    def __init__(self, store: Any = None) -> None:
        if store is None:
            store = FieldStore()
        self.store = store
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: queue.Queue[str] = queue.Queue()
        self._jobs: dict[str, Job] = {}
        self._fns: dict[str, Callable[[Progress], Any]] = {}
        # passes per second measured on finished extractions, by (arch, input size, device)
        self._speed: dict[tuple[str, str, str], float] = {}
        self._stored: dict[str, dict[str, list[float]]] | None = None  # the store's, by device, then fingerprint
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="modelgif-worker", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ submitting

    def submit_field(self, model: Any, anchors: Any, cfg: Any) -> Job:
        """Queue the field of `model` on `anchors`; a job with the same key is shared, not repeated.

        `model` is a loaded ModelHandle and `anchors` an AnchorSet: they are held by the job until
        it runs, so nothing is loaded twice. A field already in the store is a finished job at once.
        """
        key = field_store_key(model, anchors, cfg)
        n, k = len(anchors), cfg.steps
        label = getattr(model, "name", key[:12])

        def run(progress: Progress) -> None:
            if store_has(self.store, key):  # another process or session finished it meanwhile
                return
            start = time.perf_counter()
            cached_field(model, anchors, cfg, store=self.store, progress=progress)
            seconds = time.perf_counter() - start
            speed_key = _speed_key(model, str(resolve_device(cfg.device)))
            with self._lock:
                self._speed[speed_key] = n * k / max(seconds, 1e-6)

        with self._lock:
            existing = self._jobs.get(key)
            if existing is not None and existing.state != FAILED:
                return dataclasses.replace(existing)
            if store_has(self.store, key):
                now = time.time()
                job = Job(key, label, "field", DONE, n * k, n * k, submitted=now, started=now,
                          finished=now)
                self._jobs[key] = job
                return dataclasses.replace(job)
            return self._enqueue(Job(key, label, "field", total=n * k), run)

    def submit_task(self, key: str, label: str, fn: TaskFn) -> Job:
        """Queue `fn(progress, worker)` under `key` (e.g. "demo:<settings>"); shared like fields."""
        with self._lock:
            existing = self._jobs.get(key)
            if existing is not None and existing.state != FAILED:
                return dataclasses.replace(existing)
            return self._enqueue(Job(key, label, "task"), lambda progress: fn(progress, self))

    def _enqueue(self, job: Job, fn: Callable[[Progress], Any]) -> Job:
        # caller holds the lock
        self._jobs[job.key] = job
        self._fns[job.key] = fn
        self._queue.put(job.key)
        self._forget_old()
        return dataclasses.replace(job)

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if not j.active]
        for key in finished[: max(0, len(finished) - _KEEP_FINISHED)]:
            del self._jobs[key]

    # ------------------------------------------------------------------ reading

    def job(self, key: str) -> Job | None:
        """A copy of the job under `key`, or None if this worker never saw it."""
        with self._lock:
            job = self._jobs.get(key)
            return dataclasses.replace(job) if job is not None else None

    def jobs(self, keys: Iterable[str] | None = None) -> list[Job]:
        """Copies of the given jobs (unknown keys skipped), or of all jobs in submission order."""
        with self._lock:
            if keys is None:
                return [dataclasses.replace(j) for j in self._jobs.values()]
            return [dataclasses.replace(self._jobs[k]) for k in keys if k in self._jobs]

    def is_ready(self, key: str) -> bool:
        """Whether the field under `key` is finished: a done job, or found in the store (remembered)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and (job.active or job.state == DONE):
                return job.state == DONE
        if not store_has(self.store, key):
            return False
        with self._lock:
            if key not in self._jobs:
                now = time.time()
                self._jobs[key] = Job(key, key[:12], "field", DONE, submitted=now, started=now,
                                      finished=now)
        return True

    def pending(self) -> int:
        """How many jobs are queued or running."""
        with self._lock:
            return sum(j.active for j in self._jobs.values())

    def wait(self, keys: Iterable[str], timeout: float | None = None) -> bool:
        """Block until every job in `keys` has finished (done or failed); False on timeout."""
        keys = list(keys)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._wake:
            while any(self._jobs[k].active for k in keys if k in self._jobs):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._wake.wait(left)
        return True

    def speed(self, model: Any = None, device: str | None = None) -> float | None:
        """Passes per second on `device`, the best-matched measurement first.

        This model's architecture and input size as measured here; else this model's earlier
        extractions as the store records them (another process, or this server before a restart);
        else the median over everything measured here on the device, then over the store's record.
        None when nothing has run yet.
        """
        with self._lock:
            speeds = dict(self._speed)
        if device is None:
            device = str(resolve_device("auto"))
        return pick_speed(speeds, self._stored_rates(device), model, device)

    def _stored_rates(self, device: str) -> dict[str, list[float]]:
        """Passes per second of every field the store records as extracted on `device`, by fingerprint.
        Read once per worker: what runs here afterwards is measured directly."""
        if self._stored is None:
            self._stored = stored_rates(self.store)
        return self._stored.get(device, {})

    def record_speed(self, model: Any, device: str, passes_per_second: float) -> None:
        """Record a throughput measured elsewhere (a probe task) for the cost estimate."""
        with self._lock:
            self._speed[_speed_key(model, device)] = float(passes_per_second)

    # ------------------------------------------------------------------ running

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                key = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            with self._lock:
                job, fn = self._jobs.get(key), self._fns.pop(key, None)
                if job is None or fn is None or job.state != QUEUED:
                    continue
                job.state, job.started = RUNNING, time.time()
            self._run(job, fn)

    def _run(self, job: Job, fn: Callable[[Progress], Any]) -> None:
        def progress(done: int, total: int) -> None:
            with self._lock:
                job.done, job.total = int(done), int(total)

        try:
            result = fn(progress)
        except UserError as err:
            outcome = dict(state=FAILED, error=str(err))
        except Exception as err:  # a worker must survive any job; the UI shows the message
            log.exception("job %s (%s) failed", job.key, job.label)
            outcome = dict(state=FAILED, error=f"{type(err).__name__}: {err}")
        else:
            outcome = dict(state=DONE, result=result)
        with self._wake:
            for name, value in outcome.items():
                setattr(job, name, value)
            if job.state == DONE and job.total:
                job.done = job.total
            job.finished = time.time()
            self._wake.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the running job; queued jobs stay unrun (tests and shutdown only)."""
        self._stop.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def stored_rates(store: Any) -> dict[str, dict[str, list[float]]]:
    """Passes per second of every field the store records, by device, then model fingerprint."""
    rates: dict[str, dict[str, list[float]]] = {}
    for row in store.list():
        shape, seconds = row.get("shape") or (), row.get("seconds")
        if len(shape) == 3 and seconds and seconds > 0:
            by_model = rates.setdefault(row["device"], {})
            by_model.setdefault(row["fingerprint"], []).append(shape[0] * shape[1] / seconds)
    return rates


def pick_speed(measured: dict[tuple[str, str, str], float], stored: dict[str, list[float]], model: Any,
               device: str) -> float | None:
    """The best-matched throughput: this model's architecture and size measured, else its stored record,
    else the median measured on the device, else the median of the store's record."""
    if model is not None and speed_key(model, device) in measured:
        return measured[speed_key(model, device)]
    for pool in (stored.get(getattr(model, "fingerprint", None)),
                 [v for (_, _, dev), v in measured.items() if dev == device],
                 [r for rates in stored.values() for r in rates]):
        if pool:
            return sorted(pool)[len(pool) // 2]
    return None


def speed_key(model: Any, device: str) -> tuple[str, str, str]:
    """(architecture, input size, device): what a throughput measurement is kept under."""
    return _speed_key(model, device)


def _speed_key(model: Any, device: str) -> tuple[str, str, str]:
    size = "x".join(str(v) for v in getattr(getattr(model, "input_cfg", None), "input_size", ()))
    return (str(getattr(model, "arch", "?")), size, device)


_WORKERS: dict[str, Worker] = {}
_WORKERS_LOCK = threading.Lock()


def get_worker(root: str | Path | None = None) -> Worker:
    """The process's one worker for the store at `root` ($MODELGIF_HOME by default)."""
    store = FieldStore(root)
    name = str(Path(store.root).resolve())
    with _WORKERS_LOCK:
        worker = _WORKERS.get(name)
        if worker is None or not worker.alive:
            worker = _WORKERS[name] = Worker(store)
        return worker
