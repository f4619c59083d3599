"""The server's job table and its runner process: shared jobs, round-robin, the queue cap, lapsed sessions.

Every test runs the real runner (`python -m modelgif_core.service.runner`) on a temporary store, started on
demand by `ServerWorker` as the app starts it, with tiny models and anchors so a field takes well under a
second. A `hold` task keeps the runner busy while a test queues what it wants to order.
"""

from __future__ import annotations

import time

import pytest
import timm
import torch

from modelgif_core import (
    DONE,
    FieldConfig,
    InputConfig,
    QueueFull,
    ServerWorker,
    hold_task,
    load_anchors,
    load_model,
    save_model_dir,
)
from modelgif_core.service import jobs as jobs_module
from modelgif_core.service.runner import runner_alive

CFG = FieldConfig(steps=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    module = timm.create_model("test_resnet", num_classes=10)
    cfg = InputConfig(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    save_model_dir(module, root / "m", arch="test_resnet", num_classes=10, input_cfg=cfg)
    return load_model(f"local-dir:{root / 'm'}")


@pytest.fixture()
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGIF_WORKER_THREADS", "1")
    monkeypatch.setenv("MODELGIF_WORKER_SLOTS", "1")  # one job at a time: a hold task holds the whole queue
    monkeypatch.setenv("MODELGIF_RUNNER_IDLE", "30")
    monkeypatch.setenv("MODELGIF_LAPSE_SECONDS", "60")
    w = ServerWorker(tmp_path / "store")
    yield w
    (tmp_path / "release").touch()
    w.stop()


def _hold(server, tmp_path, requester="session:holder"):
    job = server.submit_task("hold", "hold the queue", hold_task(tmp_path / "release", 120), requester)
    deadline = time.monotonic() + 60
    while server.job("hold").state != "running":
        assert time.monotonic() < deadline, "the runner never started the hold task"
        time.sleep(0.05)
    return job


def _cfg(steps):
    return FieldConfig(steps=steps)


def test_sessions_share_one_job_by_key_and_the_field_lands_in_the_store(server, tmp_path, tiny):
    anchors = load_anchors("digits:2")
    _hold(server, tmp_path)
    a = server.submit_field(tiny, anchors, CFG, requester="session:a")
    b = server.submit_field(tiny, anchors, CFG, requester="session:b")
    assert a.key == b.key and a.state == "queued"
    assert sorted(server.table.requesters_of(a.key)) == ["session:a", "session:b"]
    assert [j.kind for j in server.jobs()] == ["task", "field"]
    assert runner_alive(server.root)
    (tmp_path / "release").touch()
    assert server.wait([a.key], timeout=120)
    job = server.job(a.key)
    assert job.state == DONE, job.error
    assert (job.done, job.total) == (2 * 2, 2 * 2)
    assert server.store.get(a.key) is not None and server.is_ready(a.key)
    assert server.speed(tiny) > 0  # measured by the runner, read here
    # asked again later, by anyone: done at once, nothing queued
    assert server.submit_field(tiny, anchors, CFG, requester="session:c").state == DONE
    assert server.pending() == 0


def test_round_robin_serves_every_session_before_anyone_gets_a_second_job(server, tmp_path, tiny):
    anchors = load_anchors("digits:2")
    _hold(server, tmp_path)
    many = [server.submit_field(tiny, anchors, _cfg(k), requester="session:many").key for k in (2, 3, 4)]
    one = server.submit_field(tiny, anchors, _cfg(5), requester="session:one").key
    (tmp_path / "release").touch()
    assert server.wait([*many, one], timeout=120)
    order = [j.key for j in sorted(server.jobs([*many, one]), key=lambda j: j.started)]
    assert order == [many[0], one, many[1], many[2]]  # submitted: many, many, many, one


def test_the_queue_cap_is_one_sentence_and_keeps_what_was_queued(server, tmp_path, tiny, monkeypatch):
    anchors = load_anchors("digits:2")
    _hold(server, tmp_path)
    monkeypatch.setattr(jobs_module, "MAX_QUEUED_POINTS", 2 * 2 + 2 * 3)
    first = server.submit_field(tiny, anchors, _cfg(2), requester="session:a")
    server.submit_field(tiny, anchors, _cfg(3), requester="session:b")
    with pytest.raises(QueueFull) as err:
        server.submit_field(tiny, anchors, _cfg(4), requester="session:a")
    message = str(err.value)
    assert message.count(". ") == 0 and message.endswith(".") and "queue is full" in message
    assert "10 of 10" in message
    # joining a queued job costs nothing, so it is never refused
    assert server.submit_field(tiny, anchors, _cfg(2), requester="session:c").key == first.key
    assert server.table.queued_points() == 10


def test_a_lapsed_session_leaves_its_running_job_and_drops_what_only_it_wanted(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("MODELGIF_WORKER_THREADS", "1")
    monkeypatch.setenv("MODELGIF_WORKER_SLOTS", "1")
    monkeypatch.setenv("MODELGIF_LAPSE_SECONDS", "2")  # the runner's: a session silent for 2 s has left
    server = ServerWorker(tmp_path / "store")
    try:
        _lapse(server, tmp_path, tiny)
    finally:
        (tmp_path / "release").touch()
        server.stop()


def _lapse(server, tmp_path, tiny):
    anchors = load_anchors("digits:2")
    _hold(server, tmp_path, requester="session:gone")  # the running job of the session that will leave
    only_gone = server.submit_field(tiny, anchors, _cfg(2), requester="session:gone").key
    shared = server.submit_field(tiny, anchors, _cfg(3), requester="session:gone").key
    server.submit_field(tiny, anchors, _cfg(3), requester="session:stays")
    deadline = time.monotonic() + 60
    while server.job(only_gone) is not None:  # the runner drops it once "gone" has not polled for 2 s
        assert time.monotonic() < deadline, "the lapsed session's queued job was never dropped"
        server.touch("session:stays")
        time.sleep(0.2)
    assert server.job(shared).state == "queued"
    assert server.table.requesters_of(shared) == ["session:stays"]
    assert server.job("hold").state == "running"  # left to finish
    (tmp_path / "release").touch()
    assert server.wait([shared, "hold"], timeout=120)
    assert server.job("hold").state == DONE and server.job(shared).state == DONE
    assert server.job(only_gone) is None and not server.is_ready(only_gone)


def test_closures_are_refused_by_the_server_worker(server):
    with pytest.raises(TypeError, match="named tasks"):
        server.submit_task("x", "x", lambda progress, w: None)


def test_two_slots_run_two_jobs_at_once_and_a_field_beside_a_held_one(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("MODELGIF_WORKER_SLOTS", "2")
    monkeypatch.setenv("MODELGIF_WORKER_THREADS", "1")
    monkeypatch.setenv("MODELGIF_RUNNER_IDLE", "30")
    server = ServerWorker(tmp_path / "store")
    try:
        _hold(server, tmp_path)  # one slot held until "release" exists
        key = server.submit_field(tiny, load_anchors("digits:2"), CFG, requester="session:a").key
        assert server.wait([key], timeout=120)  # the other slot ran it meanwhile
        assert server.job(key).state == DONE and server.store.get(key) is not None
        assert server.job("hold").state == "running"
        demo_release = tmp_path / "demo-release"
        server.submit_task("second", "hold too", hold_task(demo_release, 120), "session:b")
        deadline = time.monotonic() + 60
        while server.job("second").state != "running":
            assert time.monotonic() < deadline, "the second slot never started the second hold task"
            time.sleep(0.05)
        assert server.job("hold").state == "running"  # both at once
        demo_release.touch()
        (tmp_path / "release").touch()
        assert server.wait(["hold", "second"], timeout=60)
        assert server.job("hold").state == DONE and server.job("second").state == DONE
    finally:
        (tmp_path / "release").touch()
        server.stop()
