"""Field extraction on a Ray cluster (`--cluster`, `MODELGIF_CLUSTER`; DESIGN §7).

One Ray task per (model, config): the model loads on the node (Hub, `local-dir:`, `zoo:` and file
specs by name; models already loaded here, e.g. uploaded checkpoints, travel as object refs), the
field is extracted there (sketched when the config says so) and made into the store's file there
(float16 unit vectors, norms, checksum, signature: `prepare_field`), which comes back to this
process, the one that writes the store and only writes. A task whose worker dies is retried
(`max_retries`); the store's content keys make reruns idempotent (a node that finds its key among
the stored ones returns without extracting).
Ray is the optional extra `cluster`; it is imported only when a cluster is asked for.

Ray's token authentication stays on: a local cluster gets Ray's default token, a remote address is
reached with the token from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, and an address
without it fails with one sentence.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..engine.anchors import load_anchors
from ..engine.cache import compute_field, field_store_key, resolve_config
from ..engine.errors import UserError
from ..engine.fields import FieldConfig, extract_field
from ..engine.models import InputConfig, ModelHandle, load_model, save_model_dir
from ..engine.progress import Progress
from ..engine.store import FieldStore, StoredField, prepare_field

ENV_VAR = "MODELGIF_CLUSTER"
_ADDRESS_RE = re.compile(r"(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}")
_INSTALL_HINT = 'install the extra: pip install "modelgif-explorer[cluster]"'


@dataclass
class ClusterField:
    """What the cluster made of one model: its stored field, or one sentence saying why not."""

    index: int  # position in the models given
    model: str  # the spec (or the loaded model's name)
    key: str | None = None  # the store key (None if the model never loaded)
    field: StoredField | None = None
    error: str | None = None
    cached: bool = False  # the store had it already: nothing was extracted

    @property
    def ok(self) -> bool:
        return self.field is not None


def cluster_from_env() -> str | None:
    """The cluster MODELGIF_CLUSTER names ("local", "ray://HOST:PORT" or "HOST:PORT"), None if unset."""
    value = os.environ.get(ENV_VAR, "").strip()
    return value or None


def failure_sentence(results: Sequence[ClusterField]) -> str | None:
    """One sentence about the models that failed (None when all are stored)."""
    bad = [r for r in results if r.error is not None]
    if not bad:
        return None
    first = f"{bad[0].model}: {bad[0].error.rstrip('.')}"
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    stored = len(results) - len(bad)
    return (f"{len(bad)} of {len(results)} models failed on the cluster, the other {stored} fields are stored; "
            f"{first}{more}.")


# ----------------------------------------------------------------------------------- connecting


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(f"Extraction on a Ray cluster needs Ray; {_INSTALL_HINT}.") from None
    return ray


def _check_auth_kept_on() -> None:
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "disabled":
        raise UserError("RAY_AUTH_MODE=disabled would open the cluster to anyone who can reach it; modelgif "
                        "keeps Ray's token authentication on, so unset RAY_AUTH_MODE.")


def _require_token_auth() -> None:
    """Send (and require) a token when connecting by address: Ray enables it by default only for the
    local clusters it starts itself."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    try:  # Ray caches its config at import; refresh it the way Ray itself does (pinned ray 2.60)
        from ray._private.authentication.authentication_token_setup import _enable_token_auth

        _enable_token_auth()
    except ImportError:
        pass


def _connect_error(address: str, exc: BaseException) -> UserError:
    text = " ".join(str(e) for e in (exc, exc.__cause__, exc.__context__) if e is not None)
    kind = type(exc).__name__
    if kind == "AuthenticationError" or "token" in text.lower() or "unauthenticated" in text.lower():
        return UserError(f"The Ray cluster at {address} needs its authentication token: set RAY_AUTH_TOKEN "
                         "(or RAY_AUTH_TOKEN_PATH) to the token `ray get-auth-token` prints on its head node.")
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else kind
    return UserError(f"Could not connect to the Ray cluster at {address} ({detail.rstrip('.')}); check the "
                     "address, that the cluster runs, and that RAY_AUTH_TOKEN holds its token.")


@contextlib.contextmanager
def cluster_session(cluster: str = "local", num_cpus: int | None = None, *,
                    stay_connected: bool = False) -> Iterator[Any]:
    """Ray connected to `cluster` for the duration; a session this call opened is closed after it
    unless stay_connected (a long-lived process such as the app's runner: the next call reuses it).

    "local" starts a local cluster (num_cpus, default all cores); "ray://HOST:PORT" connects through
    Ray Client, "HOST:PORT" to a cluster's GCS. An already connected Ray (an app worker, a test's
    cluster) is used as it is.
    """
    if not isinstance(cluster, str) or not cluster.strip():
        raise UserError("Say which cluster to use: 'local', 'ray://HOST:PORT' or 'HOST:PORT'.")
    cluster = cluster.strip()
    if cluster != "local" and not _ADDRESS_RE.fullmatch(cluster):
        raise UserError(f"Unknown cluster {cluster!r}; use 'local', 'ray://HOST:PORT' or 'HOST:PORT'.")
    _check_auth_kept_on()
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    try:
        with warnings.catch_warnings():  # Ray Client warns on stderr before it raises: one sentence is ours
            warnings.simplefilter("ignore")
            if cluster == "local":
                # address="local": a new cluster even where RAY_ADDRESS or a `ray start` cluster exists
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)
            else:
                _require_token_auth()
                ray.init(address=cluster, **kwargs)
    except UserError:
        raise
    except Exception as exc:  # Ray raises ConnectionError, AuthenticationError, RuntimeError, grpc errors
        raise _connect_error(cluster, exc) from None
    try:
        yield ray
    finally:
        if not stay_connected:
            ray.shutdown()


# ----------------------------------------------------------------------------------- the task


class _Reporter:
    """Progress of every task, polled by the driver (a Ray actor: tasks cannot call the driver). One per
    Ray job, kept between calls: starting an actor's process takes ~1 s of a CPU the tasks need."""

    def __init__(self) -> None:
        self.state: dict[str, dict[int, tuple[int, int]]] = {}

    def report(self, call: str, index: int, done: int, total: int) -> None:
        self.state.setdefault(call, {})[index] = (done, total)

    def poll(self, call: str) -> dict[int, tuple[int, int]]:
        return dict(self.state.get(call, {}))

    def forget(self, call: str) -> None:
        self.state.pop(call, None)


_REPORT_EVERY = 0.2  # seconds between a task's progress reports (the driver polls every 0.5 s)


def _reporter(ray: Any) -> Any:
    """This Ray job's progress actor (named, so a later call finds it; it ends with the job)."""
    return ray.remote(_Reporter).options(name="modelgif-progress", get_if_exists=True, num_cpus=0).remote()


def _node_extract(index: int, model: str | ModelHandle, load_kwargs: dict, anchors: Any, cfg: FieldConfig,
                  known: frozenset[str], wrap: Callable[[ModelHandle], ModelHandle] | None,
                  reporter: Any, call: str) -> dict[str, Any]:
    """Runs on a node: load, key, skip if stored, extract, and prepare the field file (checksum and
    signature too), so that the one process writing the store only writes. User mistakes come back
    as a sentence."""
    import ray

    from .. import zoo  # noqa: F401  registers the zoo: scheme in this worker process

    if not ray.get_gpu_ids():
        torch.set_num_threads(1)  # one CPU per task: more threads would fight the other tasks
    try:
        handle = model if isinstance(model, ModelHandle) else load_model(model, **load_kwargs)
        if wrap is not None:
            handle = wrap(handle)
        cfg = resolve_config(cfg, anchors)
        key = field_store_key(handle, anchors, cfg)
        if key in known:
            return {"index": index, "key": key, "cached": True}
        last = [0.0]

        def progress(done: int, total: int, label: str = "") -> None:
            now = time.monotonic()
            if reporter is not None and (now - last[0] >= _REPORT_EVERY or done >= total):
                last[0] = now
                reporter.report.remote(call, index, done, total)

        phi, manifest = compute_field(handle, anchors, cfg, progress)
        manifest["node"] = ray.get_runtime_context().get_node_id()[:12]
        return {"index": index, "key": key, "prepared": prepare_field(key, phi, manifest)}
    except UserError as err:
        return {"index": index, "error": str(err)}


def _label(model: str | ModelHandle) -> str:
    return model if isinstance(model, str) else (model.spec or model.name)


def _known_keys(store: FieldStore, anchors_sha256: str) -> frozenset[str]:
    return frozenset(r["key"] for r in store.list() if r.get("anchors_sha256") == anchors_sha256)


def _task_error(ray: Any, exc: BaseException, label: str, retries: int) -> str:
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        return f"{type(cause).__name__}: {first}".rstrip(": ")
    if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        return f"the Ray worker extracting {label} died {retries + 1} times"
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}".rstrip(": ")


def extract_on_cluster(models: Sequence[str | ModelHandle], anchors: Any, cfg: FieldConfig | None = None, *,
                       cluster: str = "local", store: FieldStore | None = None, progress: Progress | None = None,
                       model_progress: Callable[[int, int, int], None] | None = None,
                       wrap: Callable[[ModelHandle], ModelHandle] | None = None, load_kwargs: dict | None = None,
                       max_retries: int = 3, max_workers: int | None = None,
                       num_cpus: int | None = None, stay_connected: bool = False) -> list[ClusterField]:
    """Extract the field of every model on `cluster` and store it here; one ClusterField per model.

    progress(done, total, label): (anchor, step) points over all models, label the model that moved;
    model_progress(index, done, total): the same per model. wrap (picklable) is applied to each loaded
    model on the node (e.g. triage's margin outputs). max_workers caps the tasks in flight (None: as
    many as the cluster's resources run at once). stay_connected keeps a Ray session this call opened
    (see `cluster_session`). A bad model gives its ClusterField an error sentence
    and the others finish; only a bad cluster address or token raises (UserError).
    """
    if isinstance(models, (str, ModelHandle)):
        models = [models]
    if not models:
        raise UserError("Give at least one model to extract on the cluster.")
    if max_workers is not None and max_workers < 1:
        raise UserError(f"max_workers must be at least 1; got {max_workers}.")
    cfg = cfg or FieldConfig()
    anchor_set = load_anchors(anchors) if isinstance(anchors, str) else anchors
    if not hasattr(anchor_set, "sha256"):
        raise UserError("Extraction on a cluster needs an anchor set from load_anchors(...) (it carries a sha256).")
    cfg = resolve_config(cfg, anchor_set)
    store = store if store is not None else FieldStore()
    results = [ClusterField(index=i, model=_label(m)) for i, m in enumerate(models)]
    points = len(anchor_set) * cfg.steps
    done_points: dict[int, int] = {}

    def report(index: int, done: int, total: int) -> None:
        done_points[index] = done * points // max(total, 1)
        if model_progress is not None:
            model_progress(index, done, total)
        if progress is not None:
            progress(sum(done_points.values()), points * len(models), results[index].model)

    # Models loaded here know their key: a stored one needs no task at all.
    todo = []
    for i, m in enumerate(models):
        if isinstance(m, ModelHandle) and wrap is None:
            key = field_store_key(m, anchor_set, cfg)
            found = store.get(key)
            if found is not None:
                results[i].key, results[i].field, results[i].cached = key, found, True
                report(i, points, points)
                continue
        todo.append(i)
    if not todo:
        return results

    with cluster_session(cluster, num_cpus=num_cpus, stay_connected=stay_connected) as ray:
        gpus = ray.cluster_resources().get("GPU", 0) >= 1
        task = ray.remote(_node_extract).options(
            num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1, max_retries=max_retries, retry_exceptions=False)
        listening = progress is not None or model_progress is not None
        reporter = _reporter(ray) if listening else None
        call = os.urandom(8).hex()  # this call's entries in the reporter
        anchors_ref = ray.put(anchor_set)
        kwargs = dict(load_kwargs or {})

        def submit(i: int, known: Any) -> Any:
            model = models[i] if isinstance(models[i], str) else ray.put(models[i])
            return task.remote(i, model, kwargs, anchors_ref, cfg, known, wrap, reporter, call)

        keys = _known_keys(store, anchor_set.sha256)
        known = ray.put(keys)  # once, not once per task
        queue, pending, retried = list(todo), {}, set()
        limit = max_workers or len(queue)
        poll = None  # the reporter's answer in flight; never waited for (the actor may still be starting)

        def fill() -> None:
            while queue and len(pending) < limit:
                i = queue.pop(0)
                pending[submit(i, known)] = i

        try:
            while queue or pending:
                fill()
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                finished = [(ref, pending.pop(ref)) for ref in ready]
                fill()  # the next task starts before this process stores the finished one
                if reporter is not None:
                    if poll is not None and ray.wait([poll], timeout=0)[0]:
                        with contextlib.suppress(Exception):  # progress is best effort; results are not
                            for i, (done, total) in ray.get(poll).items():
                                if results[i].field is None and results[i].error is None:
                                    report(i, done, total)
                        poll = None
                    if poll is None:
                        poll = reporter.poll.remote(call)
                for ref, i in finished:
                    try:
                        out = ray.get(ref)
                    except Exception as exc:  # the task raised, or its worker died more than max_retries times
                        results[i].error = _task_error(ray, exc, results[i].model, max_retries)
                        continue
                    if "error" in out:
                        results[i].error = out["error"]
                        continue
                    key = results[i].key = out["key"]
                    if out.get("cached"):
                        found = store.get(key)
                        if found is None and i not in retried:  # removed since we listed it: extract it after all
                            retried.add(i)
                            pending[submit(i, ray.put(keys - {key}))] = i
                            continue
                        results[i].field, results[i].cached = found, found is not None
                        if found is None:
                            results[i].error = "its stored field vanished while the cluster ran"
                            continue
                    else:
                        results[i].field = store.put_prepared(out["prepared"])  # a key stored meanwhile keeps its field
                    report(i, points, points)
        finally:
            if reporter is not None:
                reporter.forget.remote(call)
    return results


def prefetch_triage_fields(victim: str | ModelHandle, suspects: Sequence[str | ModelHandle],
                           references: Sequence[str | ModelHandle] | None = None, *, anchors: Any = None,
                           cfg: FieldConfig | None = None, store: FieldStore | None = None, cluster: str = "local",
                           progress: Progress | None = None) -> list[ClusterField]:
    """Extract on `cluster` the fields `triage(...)` with the same arguments reads, so that it finds them
    all in the store: the victim's, the suspects' and the references' (the zoo's calibration models for a
    digits victim given none), with triage's margin outputs when no cfg is given."""
    import functools

    from ..analysis.probes import output_handle
    from ..analysis.triage import DEFAULT_ANCHORS, DEFAULT_FIELD, zoo_references

    anchors = anchors if anchors is not None else DEFAULT_ANCHORS
    if isinstance(suspects, (str, ModelHandle)):
        suspects = [suspects]
    models = [victim, *suspects]
    if references:
        models += list(references)
    else:  # triage takes the zoo's references for a digits victim (and refuses any other without its own)
        spec = anchors if isinstance(anchors, str) else getattr(anchors, "spec", "")
        if spec.startswith(("digits:", "cutmix:digits:")) or _label(victim).startswith("zoo:"):
            models += zoo_references()
    wrap = None if cfg is not None else functools.partial(output_handle, kind="margin")
    results = extract_on_cluster(models, anchors, cfg or DEFAULT_FIELD, cluster=cluster, store=store,
                                 progress=progress, wrap=wrap)
    problem = failure_sentence(results)
    if problem:
        raise UserError(problem)
    return results


# ----------------------------------------------------------------------------------- bench scale


def _tiny_models(root: Path, count: int) -> list[str]:
    """`count` random-init tiny timm CNNs (32 px, 10 classes) as local-dir specs."""
    import timm

    specs = []
    for i in range(count):
        torch.manual_seed(1000 + i)
        module = timm.create_model("test_resnet", pretrained=False, num_classes=10)
        cfg = InputConfig((3, 32, 32), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        specs.append("local-dir:" + str(save_model_dir(module, root / f"m{i}", arch="test_resnet",
                                                       num_classes=10, input_cfg=cfg)))
    return specs


def bench_cluster(quick: bool = True, progress: Progress | None = None, *, num_cpus: int = 2) -> dict[str, Any]:
    """Fields per minute with 1 and 2 local Ray workers (one torch thread each), measured side by side
    on one local cluster in this process, and whether the fields equal the plain path's bitwise.

    quick: 8 fields per run at 32 anchors x 20 steps (CI size, ~0.4 s of extraction each); else 16
    fields at 64 anchors x 25 steps (~1 s each). Runs alternate 1 and 2 workers; each count's best of 3.
    """
    try:
        import ray  # noqa: F401
    except ImportError:
        return {"skipped": f"Ray is not installed; {_INSTALL_HINT}."}
    n, anchors_spec, steps = (8, "digits:32", 20) if quick else (16, "digits:64", 25)
    cfg = FieldConfig(steps=steps, device="cpu")
    anchors = load_anchors(anchors_spec)
    workers = [1, 2]
    rounds = [1, 2, 2, 1, 1, 2]  # interleaved, so drift in the machine's load hits both alike; best of 3
    seconds: dict[int, list[float]] = {w: [] for w in workers}
    with tempfile.TemporaryDirectory(prefix="modelgif-cluster-bench-") as tmp:
        specs = _tiny_models(Path(tmp) / "models", n)
        with cluster_session("local", num_cpus=num_cpus):
            # Warm-up: start both worker processes and load torch and timm in each.
            extract_on_cluster(specs[:2], anchors, replace(cfg, steps=2), store=FieldStore(Path(tmp) / "warm"))
            for r, w in enumerate(rounds):
                store = FieldStore(Path(tmp) / f"run{r}")
                start = time.perf_counter()
                moved: dict[int, int] = {}  # per-model progress, as the CLI's bars and the app get it
                out = extract_on_cluster(specs, anchors, cfg, store=store, max_workers=w,
                                         model_progress=lambda i, done, _total, m=moved: m.__setitem__(i, done))
                seconds[w].append(time.perf_counter() - start)
                bad = failure_sentence(out)
                if bad:
                    raise UserError(bad)
                if progress is not None:
                    progress(r + 1, len(rounds) + 1, f"{w} worker(s)")
        # The plain path for one model, one torch thread, against the last cluster run's field.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            plain = extract_field(load_model(specs[0]), anchors, cfg)
        finally:
            torch.set_num_threads(threads)
        stored = out[0].field
        plain_store = FieldStore(Path(tmp) / "plain")
        mirror = plain_store.put(stored.key, plain, dict(stored.manifest))
        equal = bool(torch.equal(mirror.unit, stored.unit) and torch.equal(mirror.norm, stored.norm))
        if progress is not None:
            progress(len(rounds) + 1, len(rounds) + 1, "plain")
    best = [min(seconds[w]) for w in workers]
    per_min = [round(60 * n / s, 2) for s in best]
    return {"workers": workers, "fields_per_min": per_min, "speedup": round(per_min[1] / per_min[0], 3),
            "equal_to_plain": equal, "fields": n, "anchors": anchors_spec, "steps": steps,
            "seconds": {str(w): [round(s, 2) for s in seconds[w]] for w in workers},
            "cpus": os.cpu_count(), "torch_threads_per_worker": 1}
