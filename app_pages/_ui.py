"""Shared UI plumbing for the app's pages: settings sidebar, workspace, caches, worker progress.

Pages stay thin (widgets -> one core call -> display); what several pages need lives here.
Every Streamlit cache is keyed on strings (specs, fingerprints, field keys); heavy objects are
passed as `_name` arguments so Streamlit never hashes tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from app_pages import _push
from modelgif_core import (
    BASELINES,
    DONE,
    FAILED,
    METHODS,
    RUNNING,
    TARGETS,
    TASK_ZOO_KEY,
    FieldConfig,
    ServerWorker,
    UserError,
    default_sketch,
    demo_task,
    distance_matrix,
    embed_distances,
    field_store_key,
    lineage_task,
    load_anchors,
    load_model,
    nearest_models,
    probe_task,
    relatedness_task,
    resolve_device,
    server_worker,
)

ANCHOR_PRESETS = ("digits:64", "digits:32", "digits:16", "natural:16", "noise:16:0",
                  "cutmix:digits:500:64:0")
STEP_CHOICES = (8, 16, 25, 32, 50, 64, 100)
# A waiting page's poll shows progress; the result itself comes by a server-side rerun (_push), so the poll
# need not be fast. It slows down after a few ticks with nothing changed (queued behind other sessions).
POLL_SECONDS = float(os.environ.get("MODELGIF_POLL_SECONDS", 2.0))
SLOW_POLL_SECONDS = max(POLL_SECONDS, 5.0)
SIDEBAR_POLL_SECONDS = 10.0  # also the session's heartbeat: well inside the job table's lapse (60 s)
_STILL_TICKS = 5
# Session keys of the sidebar widgets, and their query-parameter names (a view is a URL).
SETTINGS = {"anchors": "digits:64", "steps": 50, "method": "gausslegendre", "baseline": "black",
            "target": "predicted", "device": "auto"}


# ------------------------------------------------------------------------------ caches


def store_root() -> str:
    """The store directory this server uses ($MODELGIF_HOME, read per run so tests can set it). Only the path:
    every poll of every tab asks, and opening the store's index each time cost more than the poll's reads."""
    from modelgif_core import default_store_root

    return str(default_store_root())


@st.cache_resource(show_spinner=False)
def _worker_for(root: str) -> ServerWorker:
    return server_worker(root)


def worker() -> ServerWorker:
    """The store's job table and its runner process (which owns the device): pages submit and read jobs."""
    return _worker_for(store_root())


def requester() -> str:
    """This browser session's id in the job table (round-robin between sessions; its requests lapse when it
    stops polling)."""
    if "_requester" not in st.session_state:
        import uuid

        st.session_state["_requester"] = f"session:{uuid.uuid4().hex[:12]}"
    return str(st.session_state["_requester"])


def submit_field(m: Any, anchors: Any, cfg: FieldConfig) -> bool:
    """Queue a field for this session; False after showing why the server refused (its queue is full)."""
    try:
        worker().submit_field(m, anchors, cfg, requester=requester())
    except UserError as err:
        st.error(str(err))
        return False
    return True


def submit_task(key: str, label: str, spec: Any) -> bool:
    """Queue a named task (service.tasks) for this session; False after showing why it was refused."""
    try:
        worker().submit_task(key, label, spec, requester=requester())
    except UserError as err:
        st.error(str(err))
        return False
    return True


@st.cache_resource(show_spinner="Loading model…", max_entries=256)
def _model(spec: str) -> Any:
    return load_model(spec)


@st.cache_resource(show_spinner="Loading anchors…", max_entries=16)
def _anchors(spec: str) -> Any:
    return load_anchors(spec)


@st.cache_resource(show_spinner=False, max_entries=12)
def stored_field(root: str, key: str) -> Any:
    """A field from the store by key (float16 unit vectors + norms), held across reruns."""
    return worker().store.get(key)


@st.cache_data(show_spinner="Computing distances…", max_entries=32)
def distances(root: str, keys: tuple[str, ...]) -> np.ndarray:
    """The distance matrix of stored fields, keyed on their store keys."""
    store = worker().store
    return distance_matrix([store.get(k) for k in keys])


@st.cache_data(show_spinner="Computing the map…", max_entries=32)
def embedding(root: str, keys: tuple[str, ...], seed: int = 0) -> tuple[np.ndarray, str, str]:
    emb = embed_distances(distances(root, keys), seed=seed)
    return np.asarray(emb.coords), str(emb.method), str(getattr(emb, "note", "") or "")


# ------------------------------------------------------------------------------ settings


def _init_from_query() -> None:
    """On a session's first run, take settings and workspace from the URL."""
    if st.session_state.get("_from_query"):
        return
    st.session_state["_from_query"] = True
    qp = st.query_params
    if qp.get("demo"):  # a link to a running demo: its settings and workspace
        st.session_state["demo"] = qp.get("demo")
    ignored = []
    for name, default in SETTINGS.items():
        value = qp.get(name)
        if value is None:
            st.session_state.setdefault(name, default)
            continue
        try:
            st.session_state[name] = _setting_from_link(name, value)
        except UserError as err:  # a hand-edited or stale link: keep the default, say why
            st.session_state[name] = default
            ignored.append(f"Ignored {name}={value!r} from the link ({err}); using {default!r}.")
    try:
        field_config()  # the settings together, e.g. Riemann quadrature with a single step
    except UserError as err:
        st.session_state["method"], st.session_state["steps"] = SETTINGS["method"], SETTINGS["steps"]
        ignored.append(f"Ignored the link's quadrature settings ({err}); using the defaults.")
    st.session_state["_ignored_from_link"] = ignored
    if "workspace" not in st.session_state:
        st.session_state["workspace"] = list(dict.fromkeys(qp.get_all("m")))


def _setting_from_link(name: str, value: str) -> Any:
    """A sidebar setting from the URL, checked by the core that will use it (UserError if invalid)."""
    if name == "anchors":
        return value  # checked when loaded; the page says what is wrong with it
    if name == "device":
        resolve_device(value)  # unknown or unavailable here: a UserError naming the choices
        return value
    if name == "steps":
        if not value.strip().isdigit():
            raise UserError(f"steps must be a positive integer; got {value!r}")
        value = int(value)
    FieldConfig(**{name: value})  # the core's own check of this setting
    return value


def _sync_query() -> None:
    """Write the current settings and workspace back to the URL so the view can be shared."""
    wanted: dict[str, Any] = {k: str(st.session_state[k]) for k in SETTINGS}
    wanted["m"] = list(st.session_state.get("workspace", []))
    current = {k: st.query_params.get_all(k) for k in wanted}
    if any(current[k] != (v if isinstance(v, list) else [v]) for k, v in wanted.items()):
        st.query_params.from_dict(wanted)


def field_config() -> FieldConfig:
    """The sidebar's field settings as a FieldConfig (defaults before the sidebar ran)."""
    s = st.session_state
    return FieldConfig(
        steps=int(s.get("steps", SETTINGS["steps"])), method=s.get("method", SETTINGS["method"]),
        baseline=s.get("baseline", SETTINGS["baseline"]), target=s.get("target", SETTINGS["target"]),
        device=s.get("device", SETTINGS["device"]), sketch=_default_sketch(int(s.get("steps", SETTINGS["steps"])))[0],
    )


def _default_sketch(steps: int) -> tuple[int | None, str]:
    """The sketch a big full field gets (DESIGN §7; MODELGIF_SKETCH_ABOVE_MB), and the sentence saying so."""
    try:
        images = _anchors(anchors_spec()).images
    except (UserError, ValueError, OSError):
        return None, ""
    return default_sketch(images.shape[0], steps, images[0].numel())


def anchors_spec() -> str:
    return str(st.session_state.get("anchors", SETTINGS["anchors"]))


def sidebar() -> None:
    """Anchor set and field settings, the cost estimate and the worker's queue (every page)."""
    _push.forget()  # a full run: each panel that still waits registers again
    _init_from_query()
    worker().touch(requester())
    _adopt_running_demo()
    _adopt_demo_workspace()
    with st.sidebar:
        for message in st.session_state.pop("_ignored_from_link", []):
            st.warning(message)
        st.subheader("Field settings")
        presets = list(ANCHOR_PRESETS)
        if st.session_state["anchors"] not in presets:
            presets.append(st.session_state["anchors"])
        _bound(st.selectbox, "Anchor set", presets, "anchors", accept_new_options=True,
               help="digits:N (32×32 digits), natural:N (224×224 photos), noise:N:SEED, "
                    "cutmix:BASE:N:SEED, or dir:PATH for a folder of images.")
        steps = sorted({*STEP_CHOICES, int(st.session_state["steps"])})
        _bound(st.select_slider, "Steps K along the path", steps, "steps")
        # Full width: the quadratures' names do not fit half the sidebar.
        _bound(st.selectbox, "Quadrature", METHODS, "method", format_func=_quadrature_label,
               help="Where the K points lie on the path and how they are weighted: Gauss-Legendre (the "
                    "paper's; exact for polynomials of degree up to 2K-1) or a Riemann rule.")
        c1, c2 = st.columns(2)
        with c1:
            _bound(st.selectbox, "Target", TARGETS, "target")
        with c2:
            _bound(st.selectbox, "Baseline", BASELINES, "baseline")
        devices = ["auto", "cpu"] + (["cuda"] if resolve_device("auto").type == "cuda" else [])
        if st.session_state["device"] not in devices:
            st.session_state["device"] = "auto"
        _bound(st.selectbox, "Device", devices, "device")
        _cost_estimate()
        _queue_status()
        server_jobs()
    _sync_query()


def _quadrature_label(method: str) -> str:
    """gausslegendre -> Gauss-Legendre, riemann_trapezoid -> Riemann trapezoid (the sidebar is narrow)."""
    return "Gauss-Legendre" if method == "gausslegendre" else method.replace("_", " ").capitalize()


def _bound(widget: Any, label: str, options: Any, name: str, **kwargs: Any) -> Any:
    """A widget whose value lives in a plain session key `name`.

    Streamlit drops a widget's own state on a page change in some runs; the plain key is never
    dropped, so the setting survives navigation and seeds the widget again.
    """
    wkey = f"_w_{name}"
    if st.session_state.get(wkey) != st.session_state[name]:
        st.session_state[wkey] = st.session_state[name]
    return widget(label, options, key=wkey,
                  on_change=lambda: st.session_state.__setitem__(name, st.session_state[wkey]),
                  **kwargs)


def _cost_estimate() -> None:
    anchors = current_anchors(quiet=True)
    if anchors is None:
        return
    cfg = field_config()
    n, k = len(anchors), cfg.steps
    models = [m for m in (try_model(s) for s in st.session_state.get("workspace", [])) if m]
    missing = [m for m in models if not field_ready(field_key(m, anchors, cfg))]
    per_model = n * k
    lines = [f"**Cost:** {n} anchors × {k} steps = **{per_model:,}** forward+backward passes "
             f"per model"]
    if models:
        lines.append(f"{len(missing)} of {len(models)} workspace fields to compute "
                     f"({per_model * len(missing):,} passes).")
    device = str(resolve_device(cfg.device))
    speed = worker().speed(missing[0] if missing else None, device)
    if missing and speed:
        seconds = sum(per_model / (worker().speed(m, device) or speed) for m in missing)
        lines.append(f"Expected ≈ **{_duration(seconds)}** on {device} "
                     f"(measured {speed:,.0f} passes/s).")
    elif missing:
        lines.append(f"Throughput on {device} not measured yet.")
    if cfg.sketch is not None:
        lines.append(_default_sketch(cfg.steps)[1])
    st.caption("  \n".join(lines))
    if missing and not speed and st.button("Measure throughput", key="_probe"):
        if submit_task(f"probe:{missing[0].fingerprint}:{device}", f"probe {missing[0].name}",
                       probe_task(missing[0], anchors, cfg)):
            st.rerun()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def worker_activity() -> str | None:
    """What the background worker is doing now, by name (a bare count left users guessing); None if idle."""
    active = worker().active()
    if not active:
        return None
    running = [j for j in active if j.state == RUNNING]
    now = ", ".join(f"{j.label}'s field" if j.kind == "field" else j.label for j in running) or "starting"
    queued = len(active) - len(running)
    return now + (f"; {queued} more queued." if queued else ".")


def _queue_status() -> None:
    activity = worker_activity()
    if activity:
        st.caption(f"Worker: {activity}")


# ------------------------------------------------------------------------------ workspace


def workspace() -> list[str]:
    return list(st.session_state.get("workspace", []))


def set_workspace(specs: list[str]) -> None:
    st.session_state["workspace"] = list(dict.fromkeys(specs))
    _sync_query()


def add_to_workspace(specs: list[str]) -> None:
    set_workspace(workspace() + list(specs))


def try_model(spec: str) -> Any | None:
    """The loaded model for `spec`, or None after showing why it could not be loaded."""
    try:
        return _model(spec)
    except (UserError, ValueError, OSError) as err:
        st.error(f"{spec}: {err}")
        return None


def model(spec: str) -> Any:
    """The loaded model for `spec` (errors propagate: for specs the user has just typed)."""
    return _model(spec)


def current_anchors(quiet: bool = False) -> Any | None:
    try:
        return _anchors(anchors_spec())
    except (UserError, ValueError, OSError) as err:
        if not quiet:
            st.error(str(err))
        else:
            st.sidebar.error(str(err))
        return None


def model_label(m: Any) -> str:
    return str(m.meta.get("name") or m.name)


def model_details(m: Any) -> dict[str, Any]:
    meta = m.meta or {}
    acc = meta.get("test_accuracy")
    return {"arch": m.arch, "role": meta.get("role"), "family": meta.get("family"),
            "attack": meta.get("attack"), "accuracy": acc, "classes": m.num_classes}


def field_key(m: Any, anchors: Any, cfg: FieldConfig) -> str:
    return field_store_key(m, anchors, cfg)


def field_ready(key: str) -> bool:
    return worker().is_ready(key)


# ------------------------------------------------------------------------------ demo


def request_key(kind: str, **parts: Any) -> str:
    """The key of a request (a job or a download): `kind:` and a hash of everything that changes its result,
    so two sessions asking the same thing share one job."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return f"{kind}:" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def demo_key(cfg: FieldConfig, anchors: str) -> str:
    return request_key("demo", anchors=anchors, config=cfg.key())


def start_demo() -> str:
    cfg, spec = field_config(), anchors_spec()
    key = demo_key(cfg, spec)
    if not submit_task(key, "demo: build the small zoo and queue its fields", demo_task(spec, cfg)):
        return key
    st.session_state["demo"] = key
    st.session_state.pop("_demo_adopted", None)
    return key


def _adopt_demo_workspace() -> None:
    """When this session's demo has listed the zoo, its models become the workspace."""
    key = st.session_state.get("demo")
    if not key or st.session_state.get("_demo_adopted") == key:
        return
    job = worker().job(key)
    if job is not None and job.state == DONE and job.result:
        st.session_state["_demo_adopted"] = key
        st.session_state["workspace"] = list(dict.fromkeys(job.result))


def _adopt_running_demo() -> None:
    """A session with an empty workspace (a reload, a second tab) joins the demo the server is running: its
    settings, then (once listed) its models. A `?demo=KEY` link does the same for that demo."""
    key = st.session_state.get("demo")
    if not key and not st.session_state.get("workspace"):
        running = worker().running_demos()
        key = running[0] if running else None
        if key:
            st.session_state["demo"] = key
    if not key or st.session_state.get("_demo_settings") == key:
        return
    payload = worker().payload(key) or {}
    params = payload.get("params") or {}
    if not params:
        return
    st.session_state["_demo_settings"] = key
    config = params.get("config") or {}
    st.session_state["anchors"] = params.get("anchors", anchors_spec())
    for name in ("steps", "method", "baseline", "target"):
        if name in config:
            st.session_state[name] = config[name]


def demo_progress(key: str | None = None) -> str | None:
    """"demo running: 12 of 31 fields" (or its zoo step) while the demo `key` (this session's) runs; else None."""
    key = key or st.session_state.get("demo")
    if not key:
        return None
    job = worker().job(key)
    if job is None:
        return None
    if job.active:
        step = f" ({job.done} of {job.total})" if job.total else ""
        return f"demo running: building the small zoo{step}" if job.state == RUNNING else "demo queued"
    done, total = worker().children(key)
    if job.state == DONE and done < total:
        return f"demo running: {done} of {total} fields"
    return None


def demo_link(key: str) -> str:
    """A markdown link, named by the demo's settings, that opens the demo `key` in any tab: its settings and,
    once listed, its workspace."""
    params = (worker().payload(key) or {}).get("params") or {}
    steps = (params.get("config") or {}).get("steps", "?")
    return f"[the demo on {params.get('anchors', '?')}, K = {steps}](?demo={key})"


# ------------------------------------------------------------------------------ progress


@dataclass
class Ready:
    """The workspace's models with their fields, when every one is in the store."""

    models: list[Any]
    keys: list[str]
    anchors: Any
    cfg: FieldConfig


def require_fields(min_models: int = 1, what: str = "this page") -> Ready:
    """Load the workspace and make sure its fields exist; otherwise explain, offer and stop."""
    specs = workspace()
    demo = worker().job(st.session_state.get("demo") or "")
    if len(specs) < min_models and demo is not None and demo.active:
        _wait_for_demo()
    if len(specs) < min_models:
        st.info(f"{what} needs at least {min_models} model(s) in the workspace. Pick models on "
                "the Models page, or run the demo on Home.")
        st.page_link("app_pages/models.py", label="Choose models", icon=":material/view_list:")
        st.page_link(home_page(), label="Run the demo", icon=":material/play_arrow:")
        st.stop()
    anchors = current_anchors()
    if anchors is None:
        st.stop()
    cfg = field_config()
    models = [m for m in (try_model(s) for s in specs) if m is not None]
    if len(models) < min_models:
        st.stop()
    keys = [field_key(m, anchors, cfg) for m in models]
    missing = [(m, k) for m, k in zip(models, keys, strict=True) if not field_ready(k)]
    if not missing:
        return Ready(models, keys, anchors, cfg)
    jobs = {j.key: j for j in worker().jobs(k for _, k in missing)}
    unqueued = [(m, k) for m, k in missing if k not in jobs or not jobs[k].active]
    failed = [jobs[k] for _, k in missing if k in jobs and jobs[k].state == FAILED]
    for job in failed:
        st.error(f"{job.label}: {job.error}")
    if unqueued:
        n = len(anchors) * cfg.steps
        st.info(f"{len(unqueued)} of {len(models)} fields are not computed yet for "
                f"{anchors_spec()} with K = {cfg.steps} ({n * len(unqueued):,} forward+backward "
                "passes; see the estimate in the sidebar).")
        if st.button("Compute missing fields", type="primary", key="_compute"):
            if all([submit_field(m, anchors, cfg) for m, _k in unqueued]):
                st.rerun()
    if len(unqueued) < len(missing):
        text = demo_progress()
        if text:
            st.info(f"{text}; this page shows the results when they land.")
        progress_panel([k for _, k in missing])
    st.stop()


def _interval(name: str) -> float:
    return float(st.session_state.get(f"_poll_{name}", POLL_SECONDS))


def _observe(name: str, signature: Any) -> None:
    """One tick of the poller `name`: after a few ticks with nothing changed it slows to SLOW_POLL_SECONDS for as
    long as the page waits. A fragment's interval is fixed per full run, so each switch costs a full app rerun:
    one, not one per change (speeding up again on every change cost a tab a full rerun per field it waited
    for, which with a room of tabs slowed everyone's ticks more than the faster ticks gained)."""
    seen = st.session_state.setdefault(f"_seen_{name}", [None, 0])
    if signature != seen[0]:
        seen[0], seen[1] = signature, 0
        return
    seen[1] += 1
    if seen[1] >= _STILL_TICKS and _interval(name) != SLOW_POLL_SECONDS:
        st.session_state[f"_poll_{name}"] = SLOW_POLL_SECONDS
        st.rerun(scope="app")


def _done_waiting(name: str) -> None:
    """The poller `name` saw its jobs finish: the page again, and the next wait starts at POLL_SECONDS."""
    st.session_state.pop(f"_poll_{name}", None)
    st.session_state.pop(f"_seen_{name}", None)
    st.rerun(scope="app")


def _wait_for_demo() -> None:
    """The page waits on the demo (a reload, a second tab): say so, and rerun once it has listed its models."""
    key = st.session_state["demo"]
    _push.wait_for("demo", worker(), [key])

    @st.fragment(run_every=_interval("demo"))
    def _panel() -> None:
        worker().touch(requester())
        job = worker().job(key)
        if job is None or not job.active:  # listed (the sidebar adopts its models) or failed: the page again
            _done_waiting("demo")
        text = demo_progress(key)
        st.info(f"{text}. This page shows its results when they land ({demo_link(key)}).")
        _observe("demo", text)

    _panel()
    st.stop()


def progress_panel(keys: list[str], rerun_when_done: bool = True) -> None:
    """Progress of the given jobs, read from the job table each tick (POLL_SECONDS, slower when nothing moves);
    reruns the page once none is queued or running, whatever ticks were missed (it reads state, not changes).
    The server reruns the page then anyway (_push), without waiting for a tick."""
    if rerun_when_done:
        _push.wait_for("fields", worker(), keys)

    @st.fragment(run_every=_interval("fields"))
    def _panel() -> None:
        w = worker()
        w.touch(requester())
        jobs = w.jobs(keys)
        active = [j for j in jobs if j.active]
        if not active and rerun_when_done:
            _done_waiting("fields")
        done = sum(j.state == DONE for j in jobs)
        st.progress(done / max(1, len(keys)), text=f"{done} of {len(keys)} fields ready")
        for job in active[:6]:
            state = "running" if job.state == RUNNING else "queued"
            st.progress(job.fraction, text=f"{job.label}: {state} ({job.done:,}/{job.total:,})")
        if len(active) > 6:
            st.caption(f"…and {len(active) - 6} more queued.")
        for job in jobs:
            if job.state == FAILED:
                st.error(f"{job.label}: {job.error}")
        _observe("fields", [(j.key, j.state, j.done) for j in jobs])

    _panel()


def task_result(key: str, asked: str) -> Any:
    """The result of the task `key` once this session has asked for it (session key `asked` holds the key it
    asked for) and it has finished; until then its progress, and the page stops here."""
    if st.session_state.get(asked) != key:
        st.stop()
    job = task_panel(key)
    if job is None or job.state != DONE:
        st.stop()
    return job.result


def task_panel(key: str) -> Any:
    """Progress of a task (demo, triage); returns the finished job, or None while it runs."""
    job = worker().job(key)
    if job is None:
        return None
    if job.state == FAILED:
        st.error(job.error)
        return job
    if job.state == DONE:
        return job
    _push.wait_for("task", worker(), [key])

    @st.fragment(run_every=_interval("task"))
    def _panel() -> None:
        w = worker()
        w.touch(requester())
        now = w.job(key)
        if now is None or not now.active:
            _done_waiting("task")
        text = f"{now.label}: {'running' if now.state == RUNNING else 'queued'}"
        if now.total:
            text += f" ({now.done}/{now.total})"
        st.progress(now.fraction, text=text)
        _observe("task", (now.state, now.done))

    _panel()
    return None


def server_jobs() -> None:
    """The server's running jobs (demo, extraction, bench, triage) with their progress: every page's sidebar.
    Polls every 5 s; it is also this session's heartbeat, so its queued fields are kept while it is open."""

    @st.fragment(run_every=SIDEBAR_POLL_SECONDS)
    def _jobs() -> None:
        w = worker()
        w.touch(requester())
        active = w.active()
        demos = w.running_demos()
        if not active and not demos:
            return
        st.markdown("**Server jobs**")
        for key in demos:
            text = demo_progress(key)
            if text:
                done, total = w.children(key)
                st.progress(done / total if total else 0.0, text=text)
                if st.session_state.get("demo") != key:
                    st.markdown(f"Open {demo_link(key)}")
        tasks = [j for j in active if j.kind == "task"]
        for job in tasks[:4]:
            state = "running" if job.state == RUNNING else "queued"
            st.progress(job.fraction, text=f"{job.label}: {state}")
        fields = [j for j in active if j.kind == "field"]
        if fields:
            running = [j for j in fields if j.state == RUNNING]
            now = f"{running[0].label} running, " if running else ""
            st.caption(f"Extraction: {now}{len(fields) - len(running)} field(s) queued.")

    _jobs()


# ------------------------------------------------------------------------------ misc


HOME: Any = None  # the Home page object; app.py sets it on every run


def home_page() -> Any:
    return HOME


def download_name(stem: str, keys: list[str] | tuple[str, ...]) -> str:
    """A file name for a download of what `keys` hold: `stem-<8 hex>`."""
    return request_key(stem, keys=list(keys))[: len(stem) + 9].replace(":", "-")


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, default=str).encode()


def upload_dir() -> str:
    path = os.path.join(store_root(), "uploads")
    os.makedirs(path, exist_ok=True)
    return path


def _offer_task_zoo(kind: str) -> None:
    """No relatedness bench has run on this store: say what the task zoo is and train the quick one on a click."""
    job = worker().job(TASK_ZOO_KEY)
    with st.expander("Task zoo (mini-Taskonomy): not trained yet", expanded=job is not None):
        st.markdown(
            "Ten tasks on the same digits, from 10-way classification and parity to rotation prediction, "
            "denoising and inpainting, with one encoder each. How well each encoder's frozen features serve every "
            "other task (transfer) is the ground truth that ModelGiF's field distances should predict: closer "
            "fields, better transfer (the paper's Taskonomy testbed). The quick zoo (one zoo, 5 epochs, K = 10) "
            "trains in the background in about 2 minutes (one CPU core); fields asked for meanwhile wait behind "
            "it. The full run, three zoos: `modelgif bench relatedness`.")
        if job is None or job.state == FAILED:
            if st.button("Train the quick task zoo", icon=":material/play_arrow:", key=f"task_zoo_train_{kind}"):
                if submit_task(TASK_ZOO_KEY, "task zoo: the quick relatedness bench", relatedness_task()):
                    st.session_state["task_zoo_clicked"] = True
                    st.rerun()
        elif job.state == DONE:  # finished, but its result is no longer in the store
            st.warning("The task zoo trained by this server is gone from the store; run "
                       "`modelgif bench relatedness --quick` to train it again.")
        if job is not None:
            task_panel(TASK_ZOO_KEY)


def task_zoo_section(kind: str) -> None:
    """The mini-Taskonomy's task encoders from the last `modelgif bench relatedness`, if it ran:
    their field distances as a similarity tree (kind="heatmap") or a map (kind="map")."""
    from modelgif_core import figures, last_relatedness_result, zoos_truth_name

    result = last_relatedness_result(store_root())
    if not result:
        _offer_task_zoo(kind)
        return
    tasks = list(result["tasks"])
    dist = np.asarray(result["distance_mean"], dtype=float)  # [T, T], mean over seeds
    title = (f"Task zoo: {len(tasks)} digit tasks, one encoder each "
             f"(mini-Taskonomy, `modelgif bench relatedness`, {result['seeds']} seed(s))")
    # opened for the session whose click trained it, so that click leads straight to the result
    with st.expander(title, expanded=st.session_state.get("task_zoo_clicked", False)):
        if kind == "heatmap":
            # the bench's per-channel defaults are not the page's cosine; the regression is asymmetric
            how = {"per-channel": " (1 − CKA of their channels' fields)",
                   "per-channel-regression": ", row → column (1 − share explained)"}.get(result["field_target"], "")
            st.plotly_chart(figures.distance_heatmap(dist, tasks, title=f"Field distances between task encoders{how}"),
                            key="task_heatmap")
            if result["field_target"] == "per-channel-regression":
                st.caption("Row → column: 1 − the share of the column encoder's channel fields that one linear map of "
                           "the row encoder's explains at every anchor and step, as a transfer readout maps the row's "
                           "features to the column's task. Asymmetric, as transfer is; the tree uses both "
                           "directions' mean.")
        else:
            # a map needs one distance per pair: the mean of both directions of an asymmetric one
            emb = embed_distances(0.5 * (dist + dist.T), method="mds" if len(tasks) < 12 else "auto")
            kinds = [result["task_kinds"][t] for t in tasks]
            st.plotly_chart(figures.embedding_scatter(emb.coords, tasks, kinds, color_label="kind", labels=True,
                                                      title=f"{len(tasks)} task encoders · {emb.method}"),
                            key="task_map")
            if not np.allclose(dist, dist.T):
                st.caption("The bench's distance is asymmetric (source → target); the map places each pair by the "
                           "mean of both directions.")
        reference = result["other_zoos_reference"]
        zoos_truth = zoos_truth_name(result)  # what pooled zoos are scored against
        what = ("ModelGiF's order of each target's sources (the dense ones by their field rank, the others by "
                f"field distance{', hubness-centred' if result['centre'] else ''})")
        st.caption(f"Spearman between {what} and transfer affinity, mean "
                   f"over target tasks: {result['spearman_mean']:.3f} (the paper: -0.835 on Taskonomy). Closer "
                   "encoders should transfer better, so the expected sign is negative."
                   + (f" Reference: the other zoos' mean {zoos_truth} predicts each zoo's at "
                      f"{reference['spearman_mean']:.3f}." if reference else
                      " One zoo: its score moves with its encoders' training seeds, and on a single zoo even a "
                      "perfect task-level predictor stays short of the paper's score. `modelgif bench relatedness` "
                      "runs 3 zoos and adds that reference; docs/BENCHMARKS.md has the results and where the "
                      "method falls short."))
        level = result["task_level"]  # with 4 or more zoos
        if level:
            st.caption(f"Task level ({result['seeds']} zoos): {level['halves'][0]} zoos' averaged distances against "
                       f"the other {level['halves'][1]}'s mean {zoos_truth} read {level['methods']['modelgif']:.3f} "
                       f"(mean over {level['splits']} random splits); the ground truth itself, half against half, "
                       f"{level['ground_truth']:.3f}: no score can be certified beyond it.")
        if kind == "heatmap":
            st.dataframe(_task_scores(result), key="task_scores", height="content")  # every row, the mean too
            st.caption("Field rank: the effective number of independent channel fields of an encoder, a property "
                       "of the source alone. Among dense encoders the richer source transfers better whatever the "
                       "target, which the distance to each target misses (docs/BENCHMARKS.md); ModelGiF "
                       "distance only ranks every source by its distance, as the tree above does.")
            st.caption("mean, AHP: the same transfers ranked as Taskonomy ranks them, by the held-out examples "
                       "each source wins against each other (AHP), not by its mean loss; a second ground truth.")
            within = result["within_kind"]
            if within:
                reference = "; ".join(f"{kind} {row['other_zoos']:.3f}" for kind, row in within.items()
                                      if "other_zoos" in row)
                st.caption("within class / within dense: each target ranks only its sources of one kind. "
                           "Classification encoders read out dense targets poorly and the reverse, so part of the "
                           "mean is that split alone; within a kind is how well a method orders similar encoders."
                           + (f" The other zoos' mean {zoos_truth} reads {reference} there." if reference else ""))
            st.download_button("Task zoo result (JSON)", json_bytes(result), "relatedness.json", "application/json",
                               key="task_zoo_json", help="The whole bench result: every zoo's losses, affinities, "
                               "distances and scores, as `modelgif bench relatedness --format json` prints it.")


def _task_scores(result: dict[str, Any]) -> Any:
    """Per target task: Spearman of ModelGiF and the baselines (the rows `modelgif bench relatedness` prints)."""
    import pandas as pd

    scores = {"modelgif": result, **result["baselines"]}
    columns = {"ModelGiF": "modelgif", "ModelGiF distance only": "field_distance", "IG only": "ig_attribution",
               "linear CKA": "linear_cka", "feature regression": "feature_regression"}  # column -> method
    rows = {t: {name: scores[key]["spearman_per_task"][t] for name, key in columns.items()} for t in result["tasks"]}
    rows["mean"] = {name: scores[key]["spearman_mean"] for name, key in columns.items()}
    rows["mean, AHP"] = {name: result["ahp"][key]["spearman_mean"] for name, key in columns.items()}  # as Taskonomy
    for kind, within in result["within_kind"].items():  # each kind's sources alone
        rows[f"within {kind}"] = {name: within[key] for name, key in columns.items()}
    level = result["task_level"]  # with 4 or more zoos: halves of them, averaged
    if level:
        rows["task level"] = {name: level["methods"][key] for name, key in columns.items()}
    return pd.DataFrame.from_dict(rows, orient="index").round(3)


# ------------------------------------------------------------------------------ closest stored models


@st.cache_data(show_spinner="Searching the store…", max_entries=64)
def _closest(root: str, spec: str, anchors: str, cfg_key: str, stored: int, k: int) -> dict[str, Any]:
    # `stored` (how many fields the store holds) is in the cache key: a new field can change the answer.
    return nearest_models(model(spec), "store", k=k, anchors=_anchors(anchors), cfg=field_config(),
                          store=worker().store)


def closest_models_panel(specs: list[str], *, key: str, k: int = 5) -> None:
    """"Closest stored models": for one of `specs`, the k stored models nearest by field distance
    (signature shortlist, exact re-rank) with the sidebar's anchors and settings. Reads stored fields
    only: a model whose field is not computed yet gets a sentence, not a long extraction."""
    specs = [s for s in specs if s]
    if not specs:
        st.caption("Add a model to see its closest stored models.")
        return
    spec = specs[0] if len(specs) == 1 else st.selectbox(
        "Model", specs, key=f"{key}_model", format_func=lambda s: s.removeprefix("zoo:"))
    m, anchors = try_model(spec), current_anchors(quiet=True)
    if m is None or anchors is None:
        return
    cfg = field_config()
    if not field_ready(field_key(m, anchors, cfg)):
        st.caption(f"{model_label(m)} has no stored field with these anchors and settings yet; its closest "
                   "stored models show once it is computed (Distances page, or `modelgif extract`).")
        return
    try:
        result = _closest(store_root(), spec, anchors_spec(), cfg.key(), worker().store.status()["fields"], k)
    except UserError as err:
        st.error(str(err))
        return
    if not result["results"]:
        st.caption("No other stored model has a field with these anchors and settings.")
        return
    st.dataframe([{"model": r["model"], "distance": r["distance"], "family": r["family"], "role": r["role"]}
                  for r in result["results"]], hide_index=True, key=f"{key}_table")
    st.caption(f"Among {result['candidates']} stored models: {result['shortlist']} picked by signature, "
               "ranked by exact field distance.")


def family_graph_job(ready: Ready) -> dict[str, Any] | None:
    """The workspace's family graph (pairwise triage in the worker, on the workspace's anchors and steps),
    shared by Zoo map and Distances: the graph's dict once done, None while it runs (progress shown)."""
    specs = [m.spec for m in ready.models]
    anchors, steps = ready.anchors.spec, int(ready.cfg.steps)
    key = request_key("lineage", models=specs, anchors=anchors, steps=steps)
    if worker().job(key) is None and not submit_task(key, f"family graph of {len(specs)} models",
                                                     lineage_task(specs, anchors, steps)):
        return None
    job = task_panel(key)
    return job.result if job is not None and job.result else None
