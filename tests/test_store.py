"""The field store: round trip, immutability, damage recovery, index rebuild, gc, kill and races."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from modelgif_core import FieldStore, StoredField, UserError, default_store_root, field_key, unit_field

REPO = Path(__file__).resolve().parents[1]
WRITER = Path(__file__).resolve().parent / "_store_writer.py"


def _field(n: int = 4, k: int = 5, d: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, d, generator=g)  # [N, K, D]


def _manifest(name: str = "resnet18", **extra) -> dict:
    return {
        "model_name": name,
        "fingerprint": "f" * 64,
        "anchors": "digits:4",
        "anchors_sha256": "a" * 64,
        "config": {"steps": 5, "target": "logits"},
        "versions": {"torch": torch.__version__},
        "seconds": 1.25,
        "device": "cpu",
        **extra,
    }


def _counting(field: torch.Tensor, calls: list) -> Callable[[], tuple[torch.Tensor, dict]]:
    def compute():
        calls.append(1)
        return field, _manifest()

    return compute


def _env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }


# ------------------------------------------------------------------ keys and roots


def test_field_key_is_stable_and_separates_its_parts():
    key = field_key("fp", "anchors", "cfg")
    # Pinned (sha256 of "modelgif-field-key/1\0fp\0anchors\0cfg"): a change here silently
    # orphans every field users have stored.
    assert key == "dae27c8337c4491d13b17dc4639469530e57b7a2c4e606e6c0c6e8b5ce059811"
    assert field_key("fp", "anchors", "cfg") == key
    others = {field_key("anchors", "fp", "cfg"), field_key("fp", "anchors", "cfg2")}
    others.add(field_key("f", "panchors", "cfg"))
    assert key not in others and len(others) == 3
    with pytest.raises(UserError, match="fingerprint"):
        field_key("", "a", "c")


def test_default_store_root(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELGIF_HOME", str(tmp_path / "home"))
    assert default_store_root() == tmp_path / "home"
    monkeypatch.delenv("MODELGIF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_store_root() == tmp_path / "xdg" / "modelgif"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # the XDG spec says to ignore it
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    if sys.platform != "win32":
        assert default_store_root() == tmp_path / "user" / ".cache" / "modelgif"
    store = FieldStore()
    assert store.root == default_store_root()
    assert (store.root / "fields").is_dir() and (store.root / "index.sqlite").is_file()


# ------------------------------------------------------------------ round trip


def test_roundtrip_keeps_units_norms_and_zero_vectors(tmp_path):
    field = _field(6, 7, 50)
    field[0, 0] = 0.0  # a zero gradient (saturated model): must stay exactly zero
    field[2, 3] = 0.0
    field[1] *= 1e-6  # tiny and large scales: stored as unit + norm, neither under- nor overflows
    field[3] *= 1e6
    store = FieldStore(tmp_path)
    key = field_key("fp", "an", "cfg")
    put = store.put(key, field, _manifest())
    got = FieldStore(tmp_path).get(key)
    assert isinstance(got, StoredField) and got.key == key
    assert got.path == tmp_path / "fields" / f"{key}.safetensors"
    assert got.shape == (6, 7, 50)
    assert got.unit.dtype == torch.float16 and got.norm.dtype == torch.float32
    ref_unit, ref_norm = unit_field(field)
    assert torch.equal(got.norm, ref_norm)  # norms are exact float32
    assert torch.equal(got.unit, put.unit) and torch.equal(got.norm, put.norm)
    assert (got.unit.float() - ref_unit).abs().max() <= 1e-3  # float16 rounding of values <= 1
    err = (got.field() - field).norm(dim=-1)  # [N, K]
    assert bool((err <= 1e-3 * ref_norm).all())
    assert got.field().dtype == torch.float32
    assert torch.count_nonzero(got.unit[0, 0]) == 0 and got.norm[0, 0] == 0
    assert torch.count_nonzero(got.field()[2, 3]) == 0
    added = {"key": key, "shape": [6, 7, 50], "format": "modelgif-field/1"}
    assert got.manifest == {**_manifest(), **added, "created": put.manifest["created"]}
    got.unit.mul_(0)  # copy-on-write mapping: an in-place edit must not reach the file
    assert torch.equal(store.get(key).unit, put.unit)
    private = FieldStore(tmp_path, mmap=False).get(key)  # read into memory instead of mapped
    assert torch.equal(private.unit, put.unit) and torch.equal(private.norm, put.norm)


def test_put_refuses_bad_input(tmp_path):
    store = FieldStore(tmp_path)
    key = field_key("fp", "an", "cfg")
    with pytest.raises(UserError, match=r"\[N, K, D\]"):
        store.put(key, torch.zeros(3, 4), _manifest())
    bad = _field()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(UserError, match="NaN"):
        store.put(key, bad, _manifest())
    for wrong in ("../escape", "", "a/b", ".tmp-x", "x" * 200):
        with pytest.raises(UserError, match="Invalid field key"):
            store.put(wrong, _field(), _manifest())
        with pytest.raises(UserError, match="Invalid field key"):
            store.get(wrong)
    assert store.get(key) is None and store.list() == [] and store.status()["fields"] == 0


def test_stored_field_size_for_digits64_x_50_steps(tmp_path):
    store = FieldStore(tmp_path)
    stored = store.put(field_key("fp", "an", "big"), _field(64, 50, 3072), _manifest())
    size = stored.path.stat().st_size
    assert size <= 20_000_000  # DESIGN target: one digits:64 x 50-step field of a 3x32x32 model
    assert size >= 64 * 50 * 3072 * 2 + 64 * 50 * 4  # float16 units + float32 norms: all there
    assert store.list()[0]["size_bytes"] == size == store.status()["bytes"]


def test_put_is_immutable(tmp_path):
    store = FieldStore(tmp_path)
    key = field_key("fp", "an", "cfg")
    first = store.put(key, _field(seed=1), _manifest("first"))
    mtime = first.path.stat().st_mtime_ns
    second = store.put(key, _field(seed=2), _manifest("second"))
    assert second.manifest["model_name"] == "first" and torch.equal(second.unit, first.unit)
    assert store.get(key).manifest["model_name"] == "first"
    assert first.path.stat().st_mtime_ns == mtime
    assert [r["model_name"] for r in store.list()] == ["first"]
    calls: list = []
    assert (
        store.get_or_compute(key, _counting(_field(seed=3), calls)).manifest["model_name"]
        == "first"
    )
    assert calls == []


# ------------------------------------------------------------------ damage


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong_key", "no_manifest"])
def test_damaged_file_is_a_miss_and_is_recomputed(tmp_path, damage, caplog):
    store = FieldStore(tmp_path)
    key = field_key("fp", "an", "cfg")
    path = store.put(key, _field(), _manifest()).path
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "wrong_key":  # another field's file under this name (its manifest says so)
        other = store.put(field_key("fp", "an", "other"), _field(seed=9), _manifest())
        path.write_bytes(other.path.read_bytes())
    else:
        from safetensors.torch import save

        tensors = {"unit": torch.zeros(4, 5, 12, dtype=torch.float16), "norm": torch.zeros(4, 5)}
        path.write_bytes(save(tensors))  # a valid safetensors file, but not one of ours
    assert store.get(key) is None
    assert "damaged" in caplog.text
    assert not path.exists() and key not in {r["key"] for r in store.list()}
    calls: list = []
    field = _field(seed=5)
    got = store.get_or_compute(key, _counting(field, calls))
    assert calls == [1] and torch.equal(got.norm, unit_field(field)[1])
    assert torch.equal(store.get(key).norm, got.norm)
    assert store.get_or_compute(key, _counting(field, calls)) is not None and calls == [1]


def test_verify_catches_flipped_data_bytes(tmp_path):
    store = FieldStore(tmp_path)
    key = field_key("fp", "an", "cfg")
    path = store.put(key, _field(), _manifest()).path
    data = bytearray(path.read_bytes())
    data[-300] ^= 0x01  # inside the unit data: the header still parses, the values are wrong
    path.write_bytes(bytes(data))
    assert store.get(key) is not None  # a plain get reads the header and the norms only
    assert store.get(key, verify=True) is None
    assert not path.exists()


def test_missing_file_with_index_row(tmp_path):
    store = FieldStore(tmp_path)
    key = field_key("fp", "an", "cfg")
    store.put(key, _field(), _manifest()).path.unlink()
    assert store.list() == []
    assert store.get(key) is None
    with sqlite3.connect(tmp_path / "index.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM fields").fetchone() == (0,)


# ------------------------------------------------------------------ index


def _three(store: FieldStore) -> list[str]:
    keys = [field_key("fp", "an", f"cfg{i}") for i in range(3)]
    for i, (key, name) in enumerate(zip(keys, ["alpha", "alpha", "beta"], strict=True)):
        store.put(key, _field(seed=i), _manifest(name, created=f"2025-01-0{i + 1}T00:00:00+00:00"))
    return keys


def _delete_index(root: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{root / 'index.sqlite'}{suffix}").unlink(missing_ok=True)


def test_rebuild_index_restores_every_row(tmp_path):
    store = FieldStore(tmp_path)
    keys = _three(store)
    before = store.list()
    assert [r["key"] for r in before] == keys
    assert [r["model_name"] for r in before] == ["alpha", "alpha", "beta"]
    assert before[0]["config"] == {"steps": 5, "target": "logits"} and before[0]["shape"] == [
        4,
        5,
        12,
    ]
    _delete_index(tmp_path)
    assert store.rebuild_index() == 3
    assert store.list() == before
    _delete_index(tmp_path)  # a store opened without an index rebuilds it before answering
    assert FieldStore(tmp_path).list() == before


def test_damaged_index_is_rebuilt(tmp_path, caplog):
    store = FieldStore(tmp_path)
    _three(store)
    before = store.list()
    _delete_index(tmp_path)
    (tmp_path / "index.sqlite").write_bytes(b"this is not a database" * 100)
    assert FieldStore(tmp_path).list() == before
    assert "index" in caplog.text and "damaged" in caplog.text


def test_list_remove_status(tmp_path):
    store = FieldStore(tmp_path)
    keys = _three(store)
    st = store.status()
    assert st["fields"] == 3 and st["root"] == str(tmp_path)
    assert st["bytes"] == sum(r["size_bytes"] for r in store.list())
    assert store.remove("no-such-model") == 0
    assert store.remove("alpha") == 2
    assert [r["key"] for r in store.list()] == [keys[2]]
    assert store.get(keys[0]) is None and store.get(keys[2]) is not None
    assert store.remove(keys[2][:12]) == 1
    assert store.list() == [] and store.status()["fields"] == 0
    _three(store)
    assert store.remove("all") == 3 and store.status() == {
        "root": str(tmp_path),
        "fields": 0,
        "bytes": 0,
    }
    with pytest.raises(UserError, match="which fields"):
        store.remove(" ")


def test_gc_repairs_everything_and_is_idempotent(tmp_path):
    store = FieldStore(tmp_path)
    keys = _three(store)
    fields = tmp_path / "fields"
    # 1. a row whose file is gone
    store._path(keys[0]).unlink()
    # 2. a valid file the index does not know (its writer died between rename and insert)
    with sqlite3.connect(tmp_path / "index.sqlite") as con:
        con.execute("DELETE FROM fields WHERE key = ?", (keys[1],))
    # 3. a damaged field file
    bad_key = field_key("fp", "an", "bad")
    (fields / f"{bad_key}.safetensors").write_bytes(b"\x00" * 100)
    # 4. a dead writer's temp file, and one whose writer still holds the key's lock
    dead_tmp = fields / f".tmp-{bad_key}-999999-abcd1234.safetensors"
    dead_tmp.write_bytes(b"partial")
    live_key = field_key("fp", "an", "live")
    live_tmp = fields / f".tmp-{live_key}-{os.getpid()}-00000000.safetensors"
    live_tmp.write_bytes(b"in progress")
    # 5. unused lock files (every put leaves one)
    locks = tmp_path / "locks"
    assert {f"{k}.lock" for k in keys} <= {p.name for p in locks.iterdir()}
    with FileLock(locks / f"{live_key}.lock"):
        counts = store.gc()
        assert live_tmp.exists()  # never delete a live writer's file
        assert [p.name for p in locks.iterdir()] == [f"{live_key}.lock"]  # nor a held lock
    assert counts.pop("lock_files") >= 3
    assert counts == {"temp_files": 1, "corrupt": 1, "stale_rows": 1, "readded": 1}
    assert not dead_tmp.exists() and not (fields / f"{bad_key}.safetensors").exists()
    assert [r["key"] for r in store.list()] == [keys[1], keys[2]]
    live_tmp.unlink()
    nothing = dict.fromkeys(["temp_files", "corrupt", "stale_rows", "readded"], 0)
    assert store.gc() == {**nothing, "lock_files": 1}  # the lock the test held
    assert store.gc() == {**nothing, "lock_files": 0}
    assert sorted(p.name for p in fields.iterdir()) == sorted(f"{k}.safetensors" for k in keys[1:])


# ------------------------------------------------------------------ processes and threads


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_writer_killed_mid_write_leaves_store_consistent(tmp_path):
    root = tmp_path / "store"
    FieldStore(root)
    key = field_key("fp", "an", "killed")
    cmd = [sys.executable, str(WRITER), str(root), key, "put", "--shape", "64", "50", "3072"]
    cmd += ["--slow-disk", "60"]  # fsync sleeps: the kill lands while the temp file exists
    writer = subprocess.Popen(
        cmd, env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    fields = root / "fields"
    deadline = time.monotonic() + 60
    temps: list[Path] = []
    try:
        while not temps:
            assert writer.poll() is None, writer.communicate()[1].decode()
            assert time.monotonic() < deadline, "the writer never started writing"
            temps = [p for p in fields.iterdir() if p.name.startswith(f".tmp-{key}-")]
            time.sleep(0.01)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.communicate()
    assert writer.returncode == -signal.SIGKILL
    assert [p.name for p in fields.iterdir()] == [temps[0].name]  # only the temp file; no field
    store = FieldStore(root)
    assert store.get(key) is None
    assert store.list() == [] and store.status()["fields"] == 0
    counts = store.gc()
    assert counts["temp_files"] == 1 and not any(fields.iterdir())
    calls: list = []
    field = _field(64, 50, 3072, seed=3)
    got = store.get_or_compute(key, _counting(field, calls))
    assert calls == [1] and got.shape == (64, 50, 3072)
    assert torch.equal(FieldStore(root).get(key).norm, unit_field(field)[1])


def test_two_processes_compute_a_key_once(tmp_path):
    root = tmp_path / "store"
    FieldStore(root)
    key = field_key("fp", "an", "race")
    counter, go = tmp_path / "counter.txt", tmp_path / "go"
    procs = []
    for i in range(2):
        cmd = [sys.executable, str(WRITER), str(root), key, "compute", "--counter", str(counter),
               "--out", str(tmp_path / f"out{i}.json"), "--ready", str(tmp_path / f"ready{i}"),
               "--go", str(go), "--sleep", "1.0"]  # fmt: skip
        procs.append(subprocess.Popen(cmd, env=_env(), cwd=REPO, stderr=subprocess.PIPE))
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert all(p.poll() is None for p in procs), [p.communicate()[1].decode() for p in procs]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    go.touch()  # both start get_or_compute at once
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    lines = counter.read_text().split()
    reports = [json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(2)]
    assert len(lines) == 1  # exactly one computation
    assert sorted(r["computed"] for r in reports) == [False, True]
    assert reports[0]["sha256"] == reports[1]["sha256"]
    waiter = next(r for r in reports if not r["computed"])
    maker = next(r for r in reports if r["computed"])
    assert waiter["start"] < maker["end"]  # a real race: the waiter asked before the field existed
    assert FieldStore(root).get(key).manifest["model_name"] == f"pid{lines[0]}"


def test_threads_compute_a_key_once(tmp_path):
    store = FieldStore(tmp_path)
    key = field_key("fp", "an", "threads")
    calls: list = []
    barrier = threading.Barrier(4)
    results: list = [None] * 4

    def compute():
        calls.append(1)
        time.sleep(0.3)
        return _field(seed=len(calls)), _manifest()

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = FieldStore(tmp_path).get_or_compute(key, compute)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(calls) == 1
    assert all(torch.equal(r.unit, results[0].unit) for r in results)
    assert len(store.list()) == 1


def test_get_or_compute_propagates_compute_errors_and_stores_nothing(tmp_path):
    store = FieldStore(tmp_path)
    key = field_key("fp", "an", "cfg")

    def boom():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        store.get_or_compute(key, boom)
    assert store.get(key) is None and list((tmp_path / "fields").iterdir()) == []
    calls: list = []
    assert store.get_or_compute(key, _counting(_field(), calls)) is not None and calls == [1]
