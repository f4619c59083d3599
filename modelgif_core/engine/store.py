"""The field store (DESIGN §4): immutable content-addressed field files, a rebuildable SQLite index.

Layout under the root (``$MODELGIF_HOME`` or the user cache dir):

    fields/<key>.safetensors     unit vectors (float16 [N, K, D]) and their norms (float32 [N, K]),
                                 with the manifest as JSON in the safetensors header
    fields/.tmp-<key>-<pid>-<random>.safetensors
                                 a write in progress, or what a killed one left (`gc` removes it)
    locks/<key>.lock             per-key file lock; every write holds it, so a key is computed once
    index.sqlite                 WAL; one row per field, recreated from the files' headers alone

A field file is written to a temp file in the same directory, fsynced and renamed into place, so
field and manifest appear together or not at all. Files are never modified after that: a key is
written once, and a file that fails to read is deleted and recomputed, never returned.
Loaded tensors are memory-mapped, copy-on-write: in-place edits never reach the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout
from safetensors import safe_open
from safetensors.torch import load as _safetensors_load
from safetensors.torch import save as _safetensors_bytes

from .distance import unit_field
from .errors import UserError
from .fields import FieldConfig
from .sketch import SIGNATURE_DIMS, signature

_log = logging.getLogger(__name__)

FORMAT = "modelgif-field/1"  # written into every file; a reader refuses other formats
_KEY_SCHEME = "modelgif-field-key/1"  # bump to invalidate every key at once
_KEY_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,127}")  # safe as a file name on every platform
_SUFFIX = ".safetensors"
_TMP_PREFIX = ".tmp-"
# A temp file whose name does not parse has no lock to ask; remove it only once it is this old.
_ORPHAN_TMP_SECONDS = 3600.0
_BUSY_SECONDS = 30.0  # SQLite waits this long for another writer before giving up
_COLUMNS = (
    "key", "model_name", "fingerprint", "anchors", "anchors_sha256", "config",
    "created", "size_bytes", "seconds", "device", "shape",
)  # fmt: skip
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS fields (
    key TEXT PRIMARY KEY, model_name TEXT, fingerprint TEXT, anchors TEXT, anchors_sha256 TEXT,
    config TEXT, created TEXT, size_bytes INTEGER, seconds REAL, device TEXT, shape TEXT
);
CREATE INDEX IF NOT EXISTS fields_model_name ON fields (model_name);
-- derived data (DESIGN §7): one signature per field, recomputed from the field when missing
CREATE TABLE IF NOT EXISTS signatures (
    key TEXT PRIMARY KEY, anchors_sha256 TEXT, config_key TEXT, dims INTEGER, data BLOB
);
CREATE INDEX IF NOT EXISTS signatures_config ON signatures (anchors_sha256, config_key);
-- {FORMAT}
"""


def default_store_root() -> Path:
    """``$MODELGIF_HOME`` if set, else ``modelgif`` in the user cache dir (XDG_CACHE_HOME too)."""
    home = os.environ.get("MODELGIF_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says relative values are to be ignored
        return Path(xdg) / "modelgif"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "modelgif" / "Cache"
    return Path.home() / ".cache" / "modelgif"


def field_key(fingerprint: str, anchors_sha256: str, cfg_key: str) -> str:
    """The store key of a field: sha256 hex of model fingerprint, anchor set hash and config key."""
    parts = {"fingerprint": fingerprint, "anchors_sha256": anchors_sha256, "cfg_key": cfg_key}
    for name, value in parts.items():
        if not isinstance(value, str) or not value:
            raise UserError(f"field_key needs a non-empty string for {name}; got {value!r}.")
    # NUL cannot occur in the hex strings, so the join is unambiguous.
    return hashlib.sha256("\0".join([_KEY_SCHEME, *parts.values()]).encode()).hexdigest()


@dataclass(frozen=True, eq=False)  # eq on tensors is ambiguous
class StoredField:
    """One stored field: unit vectors and norms per (anchor, step), and their manifest."""

    key: str
    unit: torch.Tensor  # [N, K, D] float16, each (anchor, step) vector of unit norm (0 stays 0)
    norm: torch.Tensor  # [N, K] float32
    manifest: dict
    path: Path

    @property
    def shape(self) -> tuple[int, int, int]:
        n, k, d = self.unit.shape
        return n, k, d

    def field(self) -> torch.Tensor:
        """The field itself, float32 [N, K, D] (unit vectors times their norms)."""
        return self.unit.float() * self.norm[..., None]  # [N, K, D]


@dataclass(frozen=True)
class _Prepared:
    """A field ready to publish: the file's bytes and the tensors they hold."""

    data: bytes
    unit: torch.Tensor  # [N, K, D] float16
    norm: torch.Tensor  # [N, K] float32
    manifest: dict


@dataclass(frozen=True, eq=False)
class PreparedField:
    """A field made ready to store where it was computed (a cluster node): the field file's bytes and its
    signature, from `prepare_field`. `FieldStore.put_prepared` only writes and indexes them, so the one
    process that writes a store does no per-field arithmetic."""

    key: str
    data: bytes  # the field file: float16 unit vectors, float32 norms, the manifest in the header
    signature: np.ndarray  # float32 [SIGNATURE_DIMS]


class _Corrupt(Exception):
    """A field file that exists but does not hold a valid field."""


class FieldStore:
    """The on-disk cache of Model Gradient Fields; safe to share between threads and processes."""

    def __init__(self, root: str | Path | None = None, *, mmap: bool = True) -> None:
        """Open (creating if needed) the store at `root`, by default `default_store_root()`.

        mmap=True maps loaded fields from the page cache (fast, shared between processes);
        mmap=False reads them into private memory.
        """
        self.root = Path(root).expanduser() if root is not None else default_store_root()
        self.fields_dir = self.root / "fields"
        self.locks_dir = self.root / "locks"
        self.index_path = self.root / "index.sqlite"
        self._backend = "mmap" if mmap else "pread"
        # Keys this instance has seen in the index: spares a query per get (set ops are atomic).
        self._indexed: set[str] = set()
        try:
            self.fields_dir.mkdir(parents=True, exist_ok=True)
            self.locks_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"Cannot use {self.root} as the field store ({exc.strerror or exc}); "
                "set MODELGIF_HOME to a writable directory."
            ) from None
        with self._db():
            pass  # creates the index (or rebuilds a missing or damaged one) now, not on first use

    # ---------------------------------------------------------------- public API

    def get(self, key: str, *, verify: bool = False) -> StoredField | None:
        """The field stored under `key`, or None when it is missing or its file is damaged.

        A damaged file (garbage, truncated, wrong key, bad header) is logged and deleted so the next
        get_or_compute recomputes it. verify=True also checks the data checksum (reads every byte).
        """
        return self._get(_check_key(key), verify=verify, locked=False)

    def put(self, key: str, field: torch.Tensor, manifest: dict) -> StoredField:
        """Store `field` (float32 [N, K, D]) under `key`; a key already stored keeps its field."""
        key = _check_key(key)
        prepared = _prepare(key, field, manifest)  # outside the lock: pure work
        with self._lock(key):
            existing = self._get(key, verify=False, locked=True)
            if existing is not None:
                return existing
            return self._publish(key, prepared)

    def put_prepared(self, prepared: PreparedField) -> StoredField:
        """Store a field `prepare_field` made (in any process): the same file and signature `put` of
        that field writes; a key already stored keeps its field."""
        key = _check_key(prepared.key)
        try:
            size = int.from_bytes(prepared.data[:8], "little")
            header = json.loads(prepared.data[8:8 + size])
            meta = header.pop("__metadata__", None)
            unit_h, norm_h = header["unit"], header["norm"]
            manifest = _check_header(meta, set(header), key, unit_h["shape"], unit_h["dtype"], norm_h["shape"],
                                     norm_h["dtype"])
        except (ValueError, KeyError, TypeError, _Corrupt) as exc:
            raise UserError(f"The prepared field for key {key} is not a field file ({exc}).") from None
        tensors = _safetensors_load(prepared.data)
        with self._lock(key):
            existing = self._get(key, verify=False, locked=True)
            if existing is not None:
                return existing
            return self._publish(key, _Prepared(prepared.data, tensors["unit"], tensors["norm"], manifest),
                                 sig=prepared.signature)

    def get_or_compute(
        self,
        key: str,
        compute: Callable[[], tuple[torch.Tensor, dict]],
        *,
        timeout: float | None = None,
    ) -> StoredField:
        """The field under `key`, computed by `compute()` -> (field [N, K, D], manifest) if missing.

        Threads and processes asking for the same key at once compute it once: the others wait on
        the key's file lock (up to `timeout` seconds; None waits for as long as it takes).
        """
        key = _check_key(key)
        found = self._get(key, verify=False, locked=False)
        if found is not None:
            return found
        with self._lock(key, timeout):
            # Check again: another thread or process may have made it while we waited.
            found = self._get(key, verify=False, locked=True)
            if found is not None:
                return found
            result = compute()
            if not (isinstance(result, tuple) and len(result) == 2):
                raise TypeError(
                    f"compute() must return (field, manifest); got {type(result).__name__}."
                )
            field, manifest = result
            return self._publish(key, _prepare(key, field, manifest))

    def list(self) -> list[dict]:
        """One row per stored field, oldest first, from the index.

        Each row: key, model_name, fingerprint, anchors, anchors_sha256, config (dict),
        created (ISO time), size_bytes, seconds, device, shape ([N, K, D]).
        """
        with self._db() as con:
            rows = con.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM fields ORDER BY created, key"
            ).fetchall()
        out, gone = [], []
        for row in rows:
            if self._path(row[0]).exists():
                out.append(_row_to_dict(row))
            else:
                gone.append(row[0])
        self._drop_rows(gone)
        return out

    def remove(self, selector: str) -> int:
        """Remove fields by key prefix or model name ("all": every field); returns how many.

        A field goes when its key starts with `selector` or its model_name equals it.
        """
        if not isinstance(selector, str) or not selector.strip():
            raise UserError("Say which fields to remove: a key prefix, a model name, or 'all'.")
        with self._db() as con:
            rows = con.execute("SELECT key, model_name FROM fields").fetchall()
        on_disk = [p.name[: -len(_SUFFIX)] for p in self._field_files()]
        if selector == "all":
            keys = {k for k, _ in rows} | set(on_disk)
        else:
            keys = {k for k, name in rows if k.startswith(selector) or name == selector}
            keys |= {k for k in on_disk if k.startswith(selector)}
        indexed = {k for k, _ in rows}
        removed = 0
        for key in sorted(keys):
            try:
                self._path(key).unlink()
                removed += 1
            except FileNotFoundError:
                removed += key in indexed  # a row without its file still counts
        self._drop_rows(sorted(keys))
        return removed

    def gc(self, *, verify: bool = False) -> dict:
        """Repair the store: delete leftover temp files of dead writers, damaged field files and
        unused lock files; drop index rows whose file is gone; index files the index lacks.

        verify=True also checks every file's data checksum (reads the whole store). Returns counts.
        """
        counts = {"temp_files": 0, "corrupt": 0, "stale_rows": 0, "readded": 0, "lock_files": 0}
        counts["temp_files"] = self._gc_temp_files()
        rows: dict[str, tuple] = {}
        for path in self._field_files():
            key = path.name[: -len(_SUFFIX)]
            try:
                stat = path.stat()
                if verify:
                    _read_field(path, key, backend=self._backend, verify=True)
                manifest, shape = _read_header(path, key)
            except FileNotFoundError:
                continue  # removed meanwhile
            except _Corrupt as exc:
                counts["corrupt"] += self._discard(key, path, stat, exc, locked=False)
                continue
            rows[key] = _index_row(key, manifest, shape, stat.st_size)
        with self._db() as con:
            con.execute("BEGIN IMMEDIATE")
            indexed = {k for (k,) in con.execute("SELECT key FROM fields")}
            stale = sorted(k for k in indexed - rows.keys() if not self._path(k).exists())
            con.executemany("DELETE FROM fields WHERE key = ?", [(k,) for k in stale])
            new = [rows[k] for k in sorted(rows.keys() - indexed)]
            con.executemany(_INSERT, new)
            con.execute("COMMIT")
        self._indexed.difference_update(stale)
        counts["stale_rows"], counts["readded"] = len(stale), len(new)
        counts["lock_files"] = self._gc_lock_files()
        return counts

    def rebuild_index(self) -> int:
        """Recreate the index from the field files' headers alone; returns the number of fields."""
        with self._index_lock():
            try:
                return self._rebuild()
            except sqlite3.OperationalError:
                raise  # busy or read-only: not damage
            except sqlite3.DatabaseError as exc:
                self._discard_index(exc)
                return self._rebuild()

    def signature(self, key: str) -> np.ndarray | None:
        """The signature (float32 [SIGNATURE_DIMS], engine/sketch.py) of the field under `key`,
        computed from the field and kept in the index if missing; None when the field is missing."""
        key = _check_key(key)
        with self._db() as con:
            row = con.execute("SELECT data FROM signatures WHERE key = ? AND dims = ?",
                              (key, SIGNATURE_DIMS)).fetchone()
        if row is not None and self._path(key).exists():
            return np.frombuffer(row[0], dtype=np.float32).copy()
        found = self.get(key)
        if found is None:
            return None
        return self._save_signature(key, found.manifest, found)

    def signature_groups(self) -> list[dict]:
        """The (anchor set, config) groups of stored fields whose signatures can be compared:
        one dict per group {anchors_sha256, config_key, anchors, config, shape, count}, largest first."""
        groups: dict[tuple, dict] = {}
        for row in self.list():
            gk = (row["anchors_sha256"], _config_key(row))
            if gk[0] is None or gk[1] is None:
                continue
            g = groups.setdefault(gk, {"anchors_sha256": gk[0], "config_key": gk[1], "anchors": row["anchors"],
                                       "config": row["config"], "shape": row["shape"], "count": 0})
            g["count"] += 1
        return sorted(groups.values(), key=lambda g: -g["count"])

    def signatures(self, anchors_sha256: str, config_key: str, *,
                   compute_missing: bool = True) -> tuple[list[dict], np.ndarray]:
        """All signatures of one (anchor set, config) as one matrix: (rows, float32 [M, SIGNATURE_DIMS]).

        rows[j] is the `list()` row of the field whose signature is matrix[j] (oldest first). Fields
        stored before signatures existed get theirs computed now (once), unless
        compute_missing=False (then they are left out). 1 - matrix @ matrix.T estimates the distances.
        """
        rows = [r for r in self.list()
                if r["anchors_sha256"] == anchors_sha256 and _config_key(r) == config_key]
        with self._db() as con:
            have = dict(con.execute(
                "SELECT key, data FROM signatures WHERE anchors_sha256 = ? AND config_key = ? AND dims = ?",
                (anchors_sha256, config_key, SIGNATURE_DIMS)).fetchall())
        out_rows, vectors = [], []
        for row in rows:
            data = have.get(row["key"])
            if data is not None:
                vec = np.frombuffer(data, dtype=np.float32)
            elif compute_missing:
                found = self.get(row["key"])
                if found is None:
                    continue
                vec = self._save_signature(row["key"], found.manifest, found)
            else:
                continue
            out_rows.append(row)
            vectors.append(vec)
        matrix = np.stack(vectors).astype(np.float32, copy=False) if vectors else \
            np.zeros((0, SIGNATURE_DIMS), np.float32)
        return out_rows, matrix

    def _save_signature(self, key: str, manifest: dict, stored: Any, vec: np.ndarray | None = None) -> np.ndarray:
        if vec is None or vec.shape != (SIGNATURE_DIMS,) or vec.dtype != np.float32:  # e.g. another version's
            vec = signature(stored)
        try:
            with self._db() as con:
                con.execute("INSERT OR REPLACE INTO signatures (key, anchors_sha256, config_key, dims, data) "
                            "VALUES (?, ?, ?, ?, ?)",
                            (key, manifest.get("anchors_sha256"), _manifest_config_key(manifest),
                             SIGNATURE_DIMS, vec.tobytes()))
        except sqlite3.Error as exc:  # derived data: the next call computes it again
            _log.warning("Could not keep the signature of field %s (%s).", key, exc)
        return vec

    def status(self) -> dict:
        """Where the store is, how many fields it holds and their total size in bytes."""
        n = size = 0
        for path in self._field_files():
            try:
                size += path.stat().st_size
                n += 1
            except FileNotFoundError:
                pass
        return {"root": str(self.root), "fields": n, "bytes": size}

    def __repr__(self) -> str:
        return f"FieldStore({str(self.root)!r})"

    # ---------------------------------------------------------------- reading

    def _path(self, key: str) -> Path:
        return self.fields_dir / f"{key}{_SUFFIX}"

    def _field_files(self) -> list[Path]:
        return sorted(
            p for p in self.fields_dir.glob(f"*{_SUFFIX}")
            if not p.name.startswith(_TMP_PREFIX) and _KEY_RE.fullmatch(p.name[: -len(_SUFFIX)])
        )  # fmt: skip

    def _get(self, key: str, *, verify: bool, locked: bool) -> StoredField | None:
        path = self._path(key)
        try:
            stat = path.stat()
            found = _read_field(path, key, backend=self._backend, verify=verify)
        except FileNotFoundError:
            self._drop_rows([key])  # a row may outlive its file (removed by hand, or by `remove`)
            return None
        except _Corrupt as exc:
            self._discard(key, path, stat, exc, locked=locked)
            return None
        except OSError as exc:
            # Permissions or I/O trouble say nothing about the content: keep the file; a miss.
            _log.warning("Cannot read field %s (%s); treating it as missing.", path, exc)
            return None
        self._ensure_row(key, found.manifest, found.shape, stat.st_size)
        return found

    def _discard(
        self, key: str, path: Path, stat: os.stat_result, reason: Exception, *, locked: bool
    ) -> int:
        """Delete a damaged field file unless a writer replaced it meanwhile; 1 if deleted."""
        _log.warning("Field %s is damaged (%s); deleting it so it is recomputed.", path, reason)
        # Under the key's lock no writer can swap a good file in between our check and the unlink.
        # If a writer holds it, that writer is about to replace the file anyway: leave it alone.
        with nullcontext(True) if locked else self._try_lock(key) as held:
            if not held:
                return 0
            try:
                now = path.stat()
            except FileNotFoundError:
                self._drop_rows([key])
                return 0
            if _identity(now) != _identity(stat):
                return 0
            path.unlink(missing_ok=True)
        self._drop_rows([key])
        return 1

    # ---------------------------------------------------------------- writing

    def _publish(self, key: str, prepared: _Prepared, sig: np.ndarray | None = None) -> StoredField:
        """Write to a temp name, fsync, rename into place, index. Caller holds the key lock."""
        path = self._path(key)
        tmp = self.fields_dir / f"{_TMP_PREFIX}{key}-{os.getpid()}-{secrets.token_hex(4)}{_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(prepared.data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.fields_dir)  # make the rename itself durable
        try:
            self._insert_rows(
                [_index_row(key, prepared.manifest, tuple(prepared.unit.shape), len(prepared.data))]
            )
        except sqlite3.Error as exc:  # the field is safely stored; the index can catch up later
            _log.warning(
                "Stored field %s but could not index it (%s); `modelgif cache gc` will.", key, exc
            )
        stored = StoredField(key, prepared.unit, prepared.norm, prepared.manifest, path)
        self._save_signature(key, prepared.manifest, stored, sig)  # maps and nearest-model queries read these
        return stored

    def _gc_temp_files(self) -> int:
        removed = 0
        for tmp in sorted(self.fields_dir.glob(f"{_TMP_PREFIX}*")):
            key = _temp_key(tmp.name)
            if key is None:
                try:
                    old = time.time() - tmp.stat().st_mtime > _ORPHAN_TMP_SECONDS
                except FileNotFoundError:
                    continue
                if old:
                    tmp.unlink(missing_ok=True)
                    removed += 1
                continue
            # Writers hold the key's lock while their temp file exists: a free lock, a dead writer.
            with self._try_lock(key) as held:
                if held and tmp.exists():
                    tmp.unlink(missing_ok=True)
                    removed += 1
        return removed

    def _gc_lock_files(self) -> int:
        removed = 0
        for lock_path in sorted(self.locks_dir.glob("*.lock")):
            lock = FileLock(lock_path)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue  # in use
            try:
                # Unlinking while held is safe: filelock sees a waiter's inode unlinked and retries.
                lock_path.unlink(missing_ok=True)
                removed += 1
            finally:
                lock.release()
        return removed

    # ---------------------------------------------------------------- locks

    def _lock(self, key: str, timeout: float | None = None) -> Any:
        return _WaitingLock(FileLock(self.locks_dir / f"{key}.lock"), key, timeout)

    @contextmanager
    def _try_lock(self, key: str) -> Iterator[bool]:
        lock = FileLock(self.locks_dir / f"{key}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def _index_lock(self) -> FileLock:
        return FileLock(self.locks_dir / "index.lock")

    # ---------------------------------------------------------------- index

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One short connection per operation: safe across threads and processes."""
        fresh = not self.index_path.exists()
        try:
            con = self._connect()
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as exc:  # "file is not a database": the index is damaged
            with self._index_lock():
                self._discard_index(exc)
                self._rebuild()
            con = self._connect()
        else:
            if fresh and self._field_files():  # the index was deleted: restore it before answering
                con.close()
                self.rebuild_index()
                con = self._connect()
        try:
            yield con
        finally:
            con.close()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.index_path, timeout=_BUSY_SECONDS, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout = {int(_BUSY_SECONDS * 1000)}")
            con.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: no fsync per commit; at worst a crash loses rows that gc restores.
            con.execute("PRAGMA synchronous = NORMAL")
            con.executescript(_SCHEMA)
        except BaseException:
            con.close()
            raise
        return con

    def _rebuild(self) -> int:
        rows = []
        for path in self._field_files():
            key = path.name[: -len(_SUFFIX)]
            try:
                manifest, shape = _read_header(path, key)
                rows.append(_index_row(key, manifest, shape, path.stat().st_size))
            except FileNotFoundError:
                continue
            except _Corrupt as exc:
                _log.warning(
                    "Skipping damaged field %s while rebuilding the index (%s).", path, exc
                )
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("DELETE FROM fields")
            con.executemany(_INSERT, rows)
            con.execute("COMMIT")
        finally:
            con.close()
        self._indexed.clear()
        self._indexed.update(row[0] for row in rows)
        return len(rows)

    def _discard_index(self, reason: Exception) -> None:
        _log.warning(
            "The store index %s is damaged (%s); rebuilding it from the field files.",
            self.index_path,
            reason,
        )
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.index_path}{suffix}").unlink(missing_ok=True)

    def _insert_rows(self, rows: list[tuple]) -> None:
        with self._db() as con:
            con.executemany(_INSERT, rows)
        self._indexed.update(row[0] for row in rows)

    def _ensure_row(self, key: str, manifest: dict, shape: tuple[int, ...], size: int) -> None:
        """Index a valid file the index lacks (its writer died between rename and insert)."""
        if key in self._indexed:
            return
        try:
            with self._db() as con:
                if con.execute("SELECT 1 FROM fields WHERE key = ?", (key,)).fetchone() is None:
                    con.execute(_INSERT_OR_IGNORE, _index_row(key, manifest, shape, size))
            self._indexed.add(key)
        except sqlite3.Error as exc:  # reading must not fail because the index is busy
            _log.warning("Could not index field %s (%s).", key, exc)

    def _drop_rows(self, keys: list[str]) -> None:
        self._indexed.difference_update(keys)
        if keys:
            with self._db() as con:
                con.executemany("DELETE FROM fields WHERE key = ?", [(k,) for k in keys])
                con.executemany("DELETE FROM signatures WHERE key = ?", [(k,) for k in keys])


_INSERT = "INSERT OR REPLACE INTO fields ({}) VALUES ({})".format(
    ", ".join(_COLUMNS), ", ".join("?" * len(_COLUMNS))
)
_INSERT_OR_IGNORE = _INSERT.replace("OR REPLACE", "OR IGNORE")


class _WaitingLock:
    """A key's file lock whose timeout error names the key and what is going on."""

    def __init__(self, lock: FileLock, key: str, timeout: float | None) -> None:
        self._lock, self._key, self._timeout = lock, key, timeout

    def __enter__(self) -> None:
        try:
            self._lock.acquire(timeout=-1 if self._timeout is None else self._timeout)
        except Timeout:
            raise TimeoutError(
                f"Waited {self._timeout} s for another process writing field {self._key}; "
                "try again later, or run `modelgif cache gc` if no other modelgif process runs."
            ) from None

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


# -------------------------------------------------------------------- file format


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise UserError(
            f"Invalid field key {key!r}: keys are letters, digits, '-' and '_' (at most 128), "
            "as made by field_key()."
        )
    return key


def _temp_key(name: str) -> str | None:
    """The key in a temp file name `.tmp-<key>-<pid>-<random>.safetensors`, else None."""
    if not (name.startswith(_TMP_PREFIX) and name.endswith(_SUFFIX)):
        return None
    parts = name[len(_TMP_PREFIX) : -len(_SUFFIX)].rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not _KEY_RE.fullmatch(parts[0]):
        return None
    return parts[0]


def _prepare(key: str, field: torch.Tensor, manifest: dict) -> _Prepared:
    """Split the field into float16 unit vectors and float32 norms; serialise with manifest."""
    if not isinstance(field, torch.Tensor) or field.dim() != 3 or not field.is_floating_point():
        is_tensor = isinstance(field, torch.Tensor)
        got = f"shape {tuple(field.shape)} {field.dtype}" if is_tensor else type(field).__name__
        raise UserError(f"A field to store must be a float tensor [N, K, D]; got {got}.")
    if field.numel() == 0:
        raise UserError(f"A field to store must not be empty; got shape {tuple(field.shape)}.")
    if not isinstance(manifest, dict):
        raise UserError(f"A field's manifest must be a dict; got {type(manifest).__name__}.")
    unit, norm = unit_field(field.detach().to("cpu", torch.float32))  # [N, K, D], [N, K]
    if not bool(torch.isfinite(norm).all()):  # any NaN or inf in a vector makes its norm one
        raise UserError(
            f"The field for key {key} has NaN or infinite values, so it was not stored; "
            "check that the model's outputs are finite on the anchors."
        )
    unit = unit.to(torch.float16).contiguous()  # |values| <= 1: float16 cannot overflow
    norm = norm.to(torch.float32).contiguous()
    full = dict(manifest)
    now = datetime.now(timezone.utc)  # noqa: UP017 (datetime.UTC is 3.11+; pyproject allows 3.10)
    full.setdefault("created", now.isoformat(timespec="seconds"))
    full.update(key=key, shape=list(unit.shape), format=FORMAT)
    try:
        text = json.dumps(full, sort_keys=True, default=str)
    except (TypeError, ValueError) as exc:
        raise UserError(f"A field's manifest must be JSON-serialisable: {exc}.") from None
    full = json.loads(text)  # what a later get() returns, exactly
    metadata = {"format": FORMAT, "manifest": text, "data_sha256": _data_sha256(unit, norm)}
    data = _safetensors_bytes({"unit": unit, "norm": norm}, metadata=metadata)
    return _Prepared(data, unit, norm, full)


def prepare_field(key: str, field: torch.Tensor, manifest: dict) -> PreparedField:
    """`FieldStore.put`'s work before the write, done where the field was computed: the file's bytes
    (float16 unit vectors, norms, manifest, checksum) and the signature; `put_prepared` stores them."""
    key = _check_key(key)
    p = _prepare(key, field, manifest)
    return PreparedField(key, p.data, signature(StoredField(key, p.unit, p.norm, p.manifest, Path())))


def _data_sha256(unit: torch.Tensor, norm: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in (unit, norm):
        h.update(memoryview(t.contiguous().view(torch.uint8).numpy()))
    return h.hexdigest()


def _check_header(meta: dict | None, names: set[str], key: str, unit_shape: list, unit_dtype: str,
                  norm_shape: list, norm_dtype: str) -> dict:  # fmt: skip
    """The manifest of a field file whose header is consistent; raises _Corrupt otherwise."""
    if not meta or meta.get("format") != FORMAT or "manifest" not in meta:
        raise _Corrupt(f"no {FORMAT} manifest in the header")
    if names != {"unit", "norm"}:
        raise _Corrupt(f"tensors {sorted(names)} instead of unit and norm")
    fits = len(unit_shape) == 3 and list(norm_shape) == list(unit_shape[:2])
    if unit_dtype != "F16" or norm_dtype != "F32" or not fits:
        raise _Corrupt(f"unit {unit_dtype}{unit_shape} and norm {norm_dtype}{norm_shape} differ")
    try:
        manifest = json.loads(meta["manifest"])
    except ValueError as exc:
        raise _Corrupt(f"manifest is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        got = manifest.get("key") if isinstance(manifest, dict) else None
        raise _Corrupt(f"manifest names key {got!r}, not the file's")
    return manifest


def _open(path: Path, backend: str) -> Any:
    # `backend` is new in safetensors 0.8; pass it only when it is not the (older) default, mmap.
    kwargs = {} if backend == "mmap" else {"backend": backend}
    try:
        return safe_open(path, framework="pt", **kwargs)
    except (FileNotFoundError, PermissionError, TypeError):
        raise  # missing, unreadable, or a safetensors too old for `backend`: not a damaged file
    except Exception as exc:  # SafetensorError: bad or truncated header, file shorter than it says
        raise _Corrupt(str(exc)) from None


def _read_header(path: Path, key: str) -> tuple[dict, tuple[int, int, int]]:
    """Manifest and shape from the header only (the data is not read); raises _Corrupt."""
    with _open(path, "mmap") as f:
        try:
            names = set(f.keys())
            if names != {"unit", "norm"}:
                raise _Corrupt(f"tensors {sorted(names)} instead of unit and norm")
            u, n = f.get_slice("unit"), f.get_slice("norm")
            manifest = _check_header(
                f.metadata(), names, key, u.get_shape(), u.get_dtype(), n.get_shape(), n.get_dtype()
            )
            shape = tuple(u.get_shape())
        except _Corrupt:
            raise
        except Exception as exc:
            raise _Corrupt(str(exc)) from None
    return manifest, shape


def _read_field(path: Path, key: str, *, backend: str, verify: bool) -> StoredField:
    """Load and validate one field file; raises _Corrupt for any content problem."""
    with _open(path, backend) as f:
        try:
            meta = f.metadata()
            names = set(f.keys())
            if names != {"unit", "norm"}:
                raise _Corrupt(f"tensors {sorted(names)} instead of unit and norm")
            unit = f.get_tensor("unit")  # [N, K, D] float16
            norm = f.get_tensor("norm")  # [N, K] float32
        except _Corrupt:
            raise
        except Exception as exc:
            raise _Corrupt(str(exc)) from None
    dtypes = {torch.float16: "F16", torch.float32: "F32"}
    manifest = _check_header(
        meta, names, key, list(unit.shape), dtypes.get(unit.dtype, str(unit.dtype)),
        list(norm.shape), dtypes.get(norm.dtype, str(norm.dtype)),
    )  # fmt: skip
    if not bool((torch.isfinite(norm) & (norm >= 0)).all()):
        raise _Corrupt("norms are negative or not finite")
    if verify and _data_sha256(unit, norm) != meta.get("data_sha256"):
        raise _Corrupt("data checksum mismatch")
    return StoredField(key, unit, norm, manifest, path)


def _index_row(key: str, manifest: dict, shape: tuple[int, ...], size: int) -> tuple:
    def text(name: str) -> str | None:
        value = manifest.get(name)
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, sort_keys=True)

    seconds = manifest.get("seconds")
    return (
        key, text("model_name"), text("fingerprint"), text("anchors"), text("anchors_sha256"),
        json.dumps(manifest.get("config") or {}, sort_keys=True), text("created"), int(size),
        float(seconds) if isinstance(seconds, int | float) else None, text("device"),
        json.dumps(list(shape)),
    )  # fmt: skip


def _manifest_config_key(manifest: dict) -> str | None:
    value = manifest.get("config_key")
    return value if isinstance(value, str) and value else None


def _config_key(row: dict) -> str | None:
    """The FieldConfig key of an index row (its config dict), or None for a config that is not one."""
    try:
        return FieldConfig(**row["config"]).key()
    except (TypeError, UserError):
        return None


def _row_to_dict(row: tuple) -> dict:
    out = dict(zip(_COLUMNS, row, strict=True))
    out["config"] = json.loads(out["config"]) if out["config"] else {}
    out["shape"] = json.loads(out["shape"]) if out["shape"] else None
    return out


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_ino, st.st_dev, st.st_mtime_ns, st.st_size


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return  # Windows cannot open a directory for fsync; its rename is already journaled
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename still happened
    finally:
        os.close(fd)
