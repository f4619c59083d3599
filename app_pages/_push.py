"""A page that waits on jobs is rerun by the server the moment they are over, not on its next poll.

A waiting page polls (a fragment whose timer runs in the browser) to show progress, but a timer fires late
in a busy or background tab, and a result that waits on it looks frozen. So each full run of a waiting page
registers what it waits on here, and one thread per web server reads the job table for all of them twice a
second (one query) and reruns a session, with the widget state and page it last ran with, once none of its
jobs is queued or running. This is how Streamlit itself reruns a session when its source changes
(`runner.runOnSave`); where that internal path is missing, pages fall back to their poll alone.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

PERIOD_SECONDS = 0.5
_LOG = logging.getLogger(__name__)
_lock = threading.Lock()
_waiting: dict[tuple[str, str], tuple[Any, frozenset[str]]] = {}  # (session, what) -> (worker, job keys)
_thread: threading.Thread | None = None


def session_id() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    return None if ctx is None else ctx.session_id


def wait_for(what: str, worker: Any, keys: list[str]) -> None:
    """This session's page waits on `keys` (its panel `what`): rerun it once none of them is active."""
    sid = session_id()
    if sid is None or not keys:
        return
    with _lock:
        _waiting[(sid, what)] = (worker, frozenset(keys))
    _start()


def forget() -> None:
    """A full run of this session starts: what it waits on now, its pages register again."""
    sid = session_id()
    with _lock:
        for entry in [e for e in _waiting if e[0] == sid]:
            del _waiting[entry]


def _start() -> None:
    global _thread
    with _lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_watch, name="modelgif-push", daemon=True)
            _thread.start()


def _watch() -> None:
    while True:
        time.sleep(PERIOD_SECONDS)
        try:
            for sid in _finished():
                _rerun(sid)
        except Exception:  # the pages' own polls still deliver; never let this thread die on one bad read
            _LOG.exception("checking the jobs that pages wait on failed")


def _finished() -> set[str]:
    """Sessions one of whose waits is over (dropped from the table), after one read per job table."""
    with _lock:
        waiting = dict(_waiting)
    by_worker: dict[int, tuple[Any, set[str]]] = {}
    for worker, keys in waiting.values():
        by_worker.setdefault(id(worker), (worker, set()))[1].update(keys)
    active: set[str] = set()
    for worker, keys in by_worker.values():
        active.update(j.key for j in worker.jobs(keys) if j.active)
    over = [entry for entry, (_w, keys) in waiting.items() if not keys & active]
    with _lock:
        for entry in over:
            if _waiting.get(entry) == waiting[entry]:
                del _waiting[entry]
    return {sid for sid, _what in over}


def _rerun(sid: str) -> None:
    """A full run of session `sid` with the client state of its last run, on the server's event loop."""
    try:
        from streamlit.proto.ClientState_pb2 import ClientState
        from streamlit.runtime import Runtime

        if not Runtime.exists():
            return
        session = Runtime.instance().get_app_session(sid)
        if session is None:  # closed meanwhile
            return
        state = ClientState()
        state.CopyFrom(session._client_state)
        state.fragment_id = ""  # the last run may have been a poll's fragment: the whole page now
        state.is_auto_rerun = False
        del state.cached_message_hashes[:]  # what the browser still holds is its to say: send every message
        session._event_loop.call_soon_threadsafe(session.request_rerun, state)
    except (AttributeError, ImportError, RuntimeError) as err:  # another Streamlit: polling alone
        _LOG.debug("server-side rerun unavailable: %s", err)
