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
            for entry, value in _finished().items():
                _rerun(entry, value)
        except Exception:  # noqa: BLE001 - the pages' polls still deliver; the next wait restarts this thread
            _LOG.exception("rerunning the pages whose jobs are over failed")


def _finished() -> dict[tuple[str, str], tuple[Any, frozenset[str]]]:
    """The waits that are over, dropped from the table, after one read per job table. A table that cannot
    be read drops its waits: their pages' own polls still deliver, and say what is wrong."""
    with _lock:
        waiting = dict(_waiting)
    by_worker: dict[int, tuple[Any, set[str]]] = {}
    for worker, keys in waiting.values():
        by_worker.setdefault(id(worker), (worker, set()))[1].update(keys)
    active: set[str] = set()
    unreadable: set[int] = set()
    for ident, (worker, keys) in by_worker.items():
        try:
            active.update(j.key for j in worker.jobs(keys) if j.active)
        except Exception as err:  # noqa: BLE001 - a store gone or locked must not stop this thread
            _LOG.warning("cannot read the job table for waiting pages: %s", err)
            unreadable.add(ident)
    readable = {entry for entry, (worker, _keys) in waiting.items() if id(worker) not in unreadable}
    over = {entry for entry in readable if not waiting[entry][1] & active}
    with _lock:
        for entry in over | (waiting.keys() - readable):
            if _waiting.get(entry) == waiting[entry]:
                del _waiting[entry]
    return {entry: waiting[entry] for entry in over}


def _rerun(entry: tuple[str, str], value: tuple[Any, frozenset[str]]) -> None:
    """A full run of session `entry[0]`, with the page and widget state of its last run, on the server's event
    loop; a session in the middle of a run (which may carry newer widget state) or before its first is left
    to finish it, and looked at again next time."""
    try:
        from streamlit.proto.ClientState_pb2 import ClientState
        from streamlit.runtime import Runtime

        if not Runtime.exists():
            return
        session = Runtime.instance().get_app_session(entry[0])
        if session is None:  # closed meanwhile
            return

        def on_loop() -> None:
            try:
                running = session._state.name != "APP_NOT_RUNNING"
                last = session._client_state
            except AttributeError as err:  # another Streamlit: polling alone
                _LOG.debug("server-side rerun unavailable: %s", err)
                return
            if running or not last.page_script_hash:
                with _lock:
                    _waiting.setdefault(entry, value)
                return
            state = ClientState()
            state.CopyFrom(last)
            state.fragment_id = ""  # the last run may have been a poll's fragment: the whole page now
            state.is_auto_rerun = False
            del state.cached_message_hashes[:]  # what the browser still holds is its to say: send every message
            session.request_rerun(state)

        session._event_loop.call_soon_threadsafe(on_loop)
    except (AttributeError, ImportError, RuntimeError) as err:  # another Streamlit: polling alone
        _LOG.debug("server-side rerun unavailable: %s", err)
