"""The web server's watcher that reruns waiting pages: whose waits are over, read from a real job table.
(That the rerun reaches a real browser tab is tests/test_browser_jobs.py's.)"""

from __future__ import annotations

import shutil

import pytest

from app_pages import _push
from modelgif_core import DONE, FAILED
from modelgif_core.service.jobs import JobTable


@pytest.fixture()
def waiting(monkeypatch):
    monkeypatch.setattr(_push, "_waiting", {})
    return _push._waiting


def test_a_wait_is_over_once_none_of_its_jobs_is_queued_or_running(tmp_path, waiting):
    table = JobTable(tmp_path)
    for key in ("a", "b"):
        table.submit(key, "field", key, {}, requester="session:x")
    waiting[("s1", "fields")] = (table, frozenset({"a", "b"}))
    waiting[("s2", "task")] = (table, frozenset({"b"}))
    assert _push._finished() == {}
    table.finish("b", DONE)
    assert set(_push._finished()) == {("s2", "task")}
    assert list(waiting) == [("s1", "fields")]  # rerun once, then forgotten
    table.finish("a", FAILED, error="no gradient")  # failed is over too: the page says why
    assert set(_push._finished()) == {("s1", "fields")} and not waiting


def test_a_job_table_that_cannot_be_read_drops_its_waits(tmp_path, waiting):
    table = JobTable(tmp_path / "store")
    table.submit("a", "field", "a", {}, requester="session:x")
    waiting[("s1", "fields")] = (table, frozenset({"a"}))
    shutil.rmtree(tmp_path / "store")  # the store is gone: nothing to rerun for, and no retry every tick
    assert _push._finished() == {} and not waiting
