"""The background worker: shared jobs, results in the store, failures that do not stop it."""

from __future__ import annotations

import threading

import pytest
import timm

from modelgif_core import (
    DONE,
    FAILED,
    FieldConfig,
    FieldStore,
    InputConfig,
    Worker,
    get_worker,
    load_anchors,
    load_model,
    save_model_dir,
)
from modelgif_core import field_store_key as field_job_key

CFG = FieldConfig(steps=4)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Two tiny timm models written as local-dir folders, as the zoo and uploads are."""
    root = tmp_path_factory.mktemp("models")
    specs = []
    for seed in (0, 1):
        import torch

        torch.manual_seed(seed)
        module = timm.create_model("test_resnet", num_classes=10)
        cfg = InputConfig(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
        save_model_dir(module, root / f"m{seed}", arch="test_resnet", num_classes=10, input_cfg=cfg)
        specs.append(f"local-dir:{root / f'm{seed}'}")
    return [load_model(s) for s in specs]


@pytest.fixture()
def worker(tmp_path):
    w = Worker(FieldStore(tmp_path / "store"))
    yield w
    w.stop()


def test_field_lands_in_the_store_and_resubmission_shares_the_job(worker, tiny_models):
    anchors = load_anchors("digits:3")
    first = worker.submit_field(tiny_models[0], anchors, CFG)
    again = worker.submit_field(tiny_models[0], anchors, CFG)
    assert again.key == first.key == field_job_key(tiny_models[0], anchors, CFG)
    assert len(worker.jobs()) == 1
    assert worker.wait([first.key], timeout=120)
    job = worker.job(first.key)
    assert job.state == DONE, job.error
    assert (job.done, job.total) == (3 * 4, 3 * 4)
    stored = worker.store.get(first.key)
    assert tuple(stored.unit.shape) == (3, 4, 3 * 32 * 32)
    assert worker.speed(tiny_models[0]) > 0

    # A fresh worker on the same store (another server process) finds it done without computing, and its
    # cost estimate starts from the store's record of that extraction instead of "not measured yet".
    other = Worker(worker.store)
    try:
        found = other.submit_field(tiny_models[0], anchors, CFG)
        assert found.state == DONE and found.key == first.key
        (row,) = worker.store.list()
        recorded = 3 * 4 / row["seconds"]
        assert other.speed(tiny_models[0], row["device"]) == pytest.approx(recorded)
        assert other.speed(tiny_models[1], row["device"]) == pytest.approx(recorded)  # the device's median
        assert other.speed(tiny_models[0], "no-such-device") is None
    finally:
        other.stop()


def test_two_sessions_submitting_at_once_share_one_computation(worker, tiny_models):
    anchors = load_anchors("digits:2")
    gate = threading.Event()
    worker.submit_task("blocker", "hold the queue", lambda progress, w: gate.wait(60))
    got: list = []
    threads = [
        threading.Thread(target=lambda: got.append(worker.submit_field(tiny_models[1], anchors, CFG)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({j.key for j in got}) == 1
    assert [j.kind for j in worker.jobs()] == ["task", "field"]
    assert worker.job(got[0].key).state == "queued"
    assert not worker.wait([got[0].key], timeout=0.2)  # still held behind the blocker
    gate.set()
    assert worker.wait([got[0].key], timeout=120)
    assert worker.job(got[0].key).state == DONE


def test_a_failing_job_reports_one_sentence_and_the_worker_goes_on(worker, tiny_models):
    def bad(progress, w):
        from modelgif_core import UserError

        raise UserError("The anchors are wrong; pick another set.")

    def crash(progress, w):
        raise RuntimeError("boom")

    worker.submit_task("bad", "bad task", bad)
    worker.submit_task("crash", "crashing task", crash)
    ok = worker.submit_field(tiny_models[0], load_anchors("digits:2"), CFG)
    assert worker.wait(["bad", "crash", ok.key], timeout=120)
    assert worker.job("bad").state == FAILED
    assert worker.job("bad").error == "The anchors are wrong; pick another set."
    assert worker.job("crash").error == "RuntimeError: boom"
    assert worker.job(ok.key).state == DONE
    # a failed job can be submitted again
    assert worker.submit_task("bad", "bad task", bad).state == "queued"


def test_a_task_reports_progress_and_queues_follow_up_fields(worker, tiny_models):
    anchors = load_anchors("digits:2")

    def demo(progress, w):
        keys = []
        for i, model in enumerate(tiny_models):
            keys.append(w.submit_field(model, anchors, CFG).key)
            progress(i + 1, len(tiny_models))
        return keys

    task = worker.submit_task("demo", "demo", demo)
    assert worker.wait([task.key], timeout=60)
    keys = worker.job("demo").result
    assert worker.job("demo").fraction == 1.0 and len(keys) == 2
    assert worker.wait(keys, timeout=120)
    assert all(worker.store.get(k) is not None for k in keys)


def test_get_worker_is_one_per_store(tmp_path):
    a = get_worker(tmp_path / "s1")
    assert get_worker(tmp_path / "s1") is a
    b = get_worker(tmp_path / "s2")
    assert b is not a
    for w in (a, b):
        w.stop()
