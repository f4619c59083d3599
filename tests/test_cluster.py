"""Extraction on a real local Ray cluster (service/cluster.py): no mock of Ray, one cluster per module."""

import json
import os
import pickle
import signal
import sys
from dataclasses import replace

import pytest
import torch

ray = pytest.importorskip("ray")

from conftest import ROOT, run_cli  # noqa: E402

from modelgif_core import (  # noqa: E402
    DONE,
    FieldConfig,
    FieldStore,
    ServerWorker,
    UserError,
    cached_field,
    load_anchors,
    load_model,
)
from modelgif_core.cli import main  # noqa: E402
from modelgif_core.engine.models import InputConfig, save_model_dir  # noqa: E402
from modelgif_core.engine.store import PreparedField, prepare_field  # noqa: E402
from modelgif_core.service.cluster import extract_on_cluster  # noqa: E402

CFG = FieldConfig(steps=4, device="cpu")
ANCHORS = "digits:4"


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs with token authentication (Ray's default), started once."""
    assert not ray.is_initialized()
    # Workers import this checkout's package, wherever pytest was started from.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    os.environ["PYTHONPATH"] = path
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Five tiny random-init timm CNNs as local-dir specs."""
    import timm

    root = tmp_path_factory.mktemp("cluster_models")
    specs = []
    for i in range(5):
        torch.manual_seed(i)
        module = timm.create_model("test_resnet", pretrained=False, num_classes=10)
        folder = save_model_dir(module, root / f"m{i}", arch="test_resnet", num_classes=10,
                                input_cfg=InputConfig((3, 32, 32), (0.5,) * 3, (0.5,) * 3))
        specs.append(f"local-dir:{folder}")
    return specs


@pytest.fixture(scope="module")
def plain(models, tmp_path_factory):
    """The same fields through the plain in-process path (one torch thread, as a CPU task): {key: field}."""
    store = FieldStore(tmp_path_factory.mktemp("plain_store"))
    anchors = load_anchors(ANCHORS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fields = [cached_field(load_model(s), anchors, CFG, store=store) for s in models[:3]]
    finally:
        torch.set_num_threads(threads)
    return {f.key: f for f in fields}


def _same(a, b):
    return torch.equal(a.unit, b.unit) and torch.equal(a.norm, b.norm)


def _assert_stored_once_and_sound(store, plain):
    rows = store.list()
    assert sorted(r["key"] for r in rows) == sorted(plain)  # each field once, no other
    assert store.gc(verify=True)["corrupt"] == 0
    for key, ref in plain.items():
        got = store.get(key, verify=True)
        assert got is not None and _same(got, ref)


def test_fields_equal_the_plain_path_bitwise_and_reruns_skip(cluster, models, plain, tmp_path):
    store = FieldStore(tmp_path / "store")
    handle = load_model(models[2])  # a model loaded here (an uploaded checkpoint) travels as an object ref
    seen = {}
    out = extract_on_cluster([models[0], models[1], handle], ANCHORS, CFG, cluster="local", store=store,
                             model_progress=lambda i, done, total: seen.__setitem__(i, (done, total)))
    assert [r.error for r in out] == [None, None, None]
    assert not any(r.cached for r in out)
    _assert_stored_once_and_sound(store, plain)
    assert all(done == total > 0 for done, total in seen.values()) and sorted(seen) == [0, 1, 2]
    assert "node" in out[0].field.manifest

    # A rerun finds every key stored: nothing is extracted or written again.
    mtimes = {p: p.stat().st_mtime_ns for p in store.fields_dir.glob("*.safetensors")}
    again = extract_on_cluster([*models[:3], models[0]], ANCHORS, CFG, cluster="local", store=store)
    assert all(r.cached and r.error is None for r in again)
    assert {p: p.stat().st_mtime_ns for p in store.fields_dir.glob("*.safetensors")} == mtimes


def test_a_sketched_field_is_projected_on_the_node_and_equals_the_plain_one(cluster, models, tmp_path):
    cfg = replace(CFG, sketch=64)
    (out,) = extract_on_cluster(models[:1], ANCHORS, cfg, cluster="local", store=FieldStore(tmp_path / "c"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = cached_field(load_model(models[0]), load_anchors(ANCHORS), cfg, store=FieldStore(tmp_path / "p"))
    finally:
        torch.set_num_threads(threads)
    assert out.field.shape == (4, 4, 64) and out.key == ref.key and _same(out.field, ref)


def test_a_worker_killed_mid_task_still_stores_every_field_once(cluster, models, plain, tmp_path):
    marker = tmp_path / "killed-once"

    def kill_first_attempt(handle):
        """On the node: the first task to get here dies by SIGKILL in its third forward pass."""
        calls = [0]

        def hook(*_):
            calls[0] += 1
            if calls[0] == 3:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    return
                os.kill(os.getpid(), signal.SIGKILL)

        handle.module.register_forward_hook(hook)
        return handle

    store = FieldStore(tmp_path / "store")
    out = extract_on_cluster(models[:3], ANCHORS, CFG, cluster="local", store=store, wrap=kill_first_attempt,
                             max_retries=2)
    assert marker.exists()  # a worker really died
    assert [r.error for r in out] == [None, None, None]
    _assert_stored_once_and_sound(store, plain)
    assert not list(store.fields_dir.glob(".tmp-*"))


def test_a_bad_spec_among_good_ones_gives_one_sentence_and_the_rest_finish(cluster, models, plain, tmp_path,
                                                                           capsys):
    store = FieldStore(tmp_path / "store")
    specs = [models[0], f"local-dir:{tmp_path / 'missing'}", models[1], "no_such_architecture_xyz"]
    out = extract_on_cluster(specs, ANCHORS, CFG, cluster="local", store=store)
    assert [r.ok for r in out] == [True, False, True, False]
    for r in out[1::2]:
        assert r.error and "\n" not in r.error and "Traceback" not in r.error
    assert sorted(r["key"] for r in store.list()) == sorted([out[0].key, out[2].key])

    # The CLI: the good fields stored, one sentence on stderr, exit 2.
    store_dir = tmp_path / "cli_store"
    code = main(["extract", models[2], specs[1], "--anchors", ANCHORS, "--steps", "4", "--device", "cpu",
                 "--cluster", "local", "--store", str(store_dir), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and err.startswith("modelgif: error: 1 of 2 models failed")
    cli_store = FieldStore(store_dir)
    assert [cli_store.get(r["key"]).manifest["model_spec"] for r in cli_store.list()] == [models[2]]


def test_distance_on_the_cluster_matches_the_plain_command(cluster, models, tmp_path, capsys):
    args = ["distance", *models[:2], "--anchors", ANCHORS, "--steps", "4", "--device", "cpu", "--format", "json",
            "-q"]
    assert main([*args, "--store", str(tmp_path / "a"), "--cluster", "local"]) == 0
    on_cluster = capsys.readouterr().out
    assert main([*args, "--store", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out == on_cluster


def test_triage_on_the_cluster_gives_the_plain_report(cluster, models, tmp_path, capsys):
    # triage's own field settings (logit-margin outputs, applied on the node) on a small anchor set
    args = ["triage", "--victim", models[0], "--suspect", models[1], "--reference", *models[2:],
            "--anchors", "digits:4", "--format", "json", "-q"]
    assert main([*args, "--store", str(tmp_path / "a"), "--cluster", "local"]) == 0
    on_cluster = capsys.readouterr().out
    stored = FieldStore(tmp_path / "a").list()
    assert len(stored) == 5 and all(r["model_name"].endswith("(margin)") for r in stored)
    assert main([*args, "--store", str(tmp_path / "b")]) == 0
    plain, clustered = json.loads(capsys.readouterr().out), json.loads(on_cluster)
    # the report names the command that reproduces it: the only line allowed to differ
    assert clustered.pop("command").endswith(f"{tmp_path / 'a'} --cluster local")
    assert plain.pop("command").endswith(str(tmp_path / "b"))
    assert plain == clustered


def test_an_address_without_its_token_gets_one_sentence(cluster, models, tmp_path):
    # A home without ~/.ray/auth_token and no token in the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(tmp_path), PYTHONPATH=os.environ["PYTHONPATH"])
    result = run_cli("extract", models[0], "--anchors", ANCHORS, "--steps", "2", "--cluster", cluster, "-q",
                     env=env, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert lines[-1].startswith("modelgif: error: The Ray cluster at") and "token" in lines[-1]
    assert "Traceback" not in result.stderr


def test_turning_token_authentication_off_or_a_bad_address_is_refused(monkeypatch, models, tmp_path):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(UserError, match="token authentication on"):
        extract_on_cluster(models[:1], ANCHORS, CFG, cluster="local", store=FieldStore(tmp_path / "s"))
    monkeypatch.delenv("RAY_AUTH_MODE")
    with pytest.raises(UserError, match="Unknown cluster"):
        extract_on_cluster(models[:1], ANCHORS, CFG, cluster="http://example", store=FieldStore(tmp_path / "s"))


def test_a_field_prepared_in_another_process_is_stored_as_put_stores_it(tmp_path):
    # what a node sends back: the file's bytes and the signature, pickled; the writer only writes them
    torch.manual_seed(0)
    phi = torch.randn(3, 4, 50)
    phi[1, 2] = 0  # a zero vector stays zero, and counts in the signature's norm
    manifest = {"model_name": "m", "anchors_sha256": "a" * 64, "config": CFG.to_dict(), "config_key": CFG.key(),
                "created": "2026-01-01T00:00:00+00:00"}
    plain = FieldStore(tmp_path / "plain").put("k1", phi, dict(manifest))
    prepared = pickle.loads(pickle.dumps(prepare_field("k1", phi, dict(manifest))))
    store = FieldStore(tmp_path / "store")
    got = store.put_prepared(prepared)
    assert _same(got, plain) and got.manifest == plain.manifest
    again = store.get("k1", verify=True)
    assert again is not None and _same(again, plain)
    assert (store.signature("k1") == FieldStore(tmp_path / "plain").signature("k1")).all()
    # a key already stored keeps its field; bytes that are not a field file of that key are refused
    assert _same(store.put_prepared(prepare_field("k1", phi * 2, dict(manifest))), plain)
    with pytest.raises(UserError, match="not a field file"):
        store.put_prepared(PreparedField("k2", prepared.data, prepared.signature))
    assert [r["key"] for r in store.list()] == ["k1"]


def test_the_app_runner_with_modelgif_cluster_set_stores_the_cluster_fields(models, plain, tmp_path, monkeypatch):
    # The app's runner process (service/runner.py) sends field jobs to its own local Ray cluster.
    monkeypatch.setenv("MODELGIF_CLUSTER", "local")
    monkeypatch.setenv("MODELGIF_RUNNER_IDLE", "30")
    server = ServerWorker(tmp_path / "store")
    anchors = load_anchors(ANCHORS)
    try:
        jobs = [server.submit_field(load_model(s), anchors, CFG, requester="session:a") for s in models[:2]]
        assert server.wait([j.key for j in jobs], timeout=300)
        for job in jobs:
            done = server.job(job.key)
            assert done.state == DONE, done.error
            assert (done.done, done.total) == (len(anchors) * CFG.steps,) * 2
            field = server.store.get(job.key, verify=True)
            assert field is not None and _same(field, plain[job.key])
            assert "node" in field.manifest  # made on a Ray node, not in the runner
    finally:
        server.stop(timeout=30)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
