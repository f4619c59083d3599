"""The server's job table: one SQLite file next to the field store, shared by every web session and the runner.

Pages write requests and read job state here (a few indexed SQL reads per tick); the runner process
(`service/runner.py`) is the only one that runs jobs. A job is keyed by what it produces (a field's store
key, or a task's own key), so every session asking for the same field shares one job; each session's
interest is a row in `requests` under its requester id. The runner takes the next job round-robin over
requesters (the one served longest ago first), so one session's 40 fields cannot starve another's one.
A session that stops polling lapses: its requests go, and queued jobs that nobody else wants are dropped;
a running job always finishes (others may want its field). Follow-up jobs a task queues (the demo's
fields) are requested by the task itself (`task:<key>`), which never lapses: they are the server's.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..engine.errors import UserError
from .worker import DONE, FAILED, QUEUED, RUNNING, Job

TABLE_FILE = "jobs.sqlite"
# A session that has not polled for this long has left (pages poll at least every 5 s while they wait).
LAPSE_SECONDS = float(os.environ.get("MODELGIF_LAPSE_SECONDS", "60"))
# The most forward+backward passes the server holds queued at once, summed over every session.
MAX_QUEUED_POINTS = int(os.environ.get("MODELGIF_MAX_QUEUED_POINTS", "2000000"))
_KEEP_FINISHED = 2000


def lapse_seconds() -> float:
    """How long a silent session is kept (MODELGIF_LAPSE_SECONDS, read now: a server's env may differ from
    the runner's at import)."""
    return float(os.environ.get("MODELGIF_LAPSE_SECONDS") or LAPSE_SECONDS)


SESSION, TASK = "session:", "task:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT UNIQUE NOT NULL, kind TEXT NOT NULL, label TEXT NOT NULL,
    state TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, error TEXT,
    result TEXT, payload TEXT NOT NULL, points INTEGER NOT NULL DEFAULT 0, parent TEXT,
    submitted REAL NOT NULL, started REAL, finished REAL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_parent ON jobs(parent);
CREATE TABLE IF NOT EXISTS requests (
    key TEXT NOT NULL, requester TEXT NOT NULL, asked REAL NOT NULL, PRIMARY KEY (key, requester));
CREATE INDEX IF NOT EXISTS requests_requester ON requests(requester);
CREATE TABLE IF NOT EXISTS requesters (id TEXT PRIMARY KEY, last_seen REAL NOT NULL, last_served REAL NOT NULL);
CREATE TABLE IF NOT EXISTS speeds (key TEXT PRIMARY KEY, pps REAL NOT NULL);
"""
_COLUMNS = "key, label, kind, state, done, total, error, result, submitted, started, finished"


class QueueFull(UserError):
    """The server's queue holds its cap of points; the message says so in one sentence."""


class JobTable:
    """The job table of the store at `root` (`root/jobs.sqlite`); safe to use from many processes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / TABLE_FILE
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")  # kept in the file: readers never wait for the writer
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        # A page's tick is a read: a connection and one query, no pragma (WAL is the file's; sync is the writer's).
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            if write:
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            else:
                yield db
        finally:
            db.close()

    # ------------------------------------------------------------------ submitting (pages, tasks)

    def submit(self, key: str, kind: str, label: str, payload: dict, requester: str, points: int = 0,
               total: int = 0, parent: str | None = None, cap: int | None = None) -> Job:
        """Queue a job under `key` for `requester`, or join the queued, running or finished one.

        Raises QueueFull (one sentence) when a new job would take the queued points past `cap`.
        """
        now = time.time()
        cap = MAX_QUEUED_POINTS if cap is None else cap
        with self._db(write=True) as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE key=?", (key,)).fetchone()
            if row is None or row[3] == FAILED:
                queued = db.execute("SELECT COALESCE(SUM(points), 0) FROM jobs WHERE state=?", (QUEUED,)).fetchone()[0]
                if points and queued + points > cap:
                    raise QueueFull(f"The server's queue is full ({queued:,} of {cap:,} forward+backward passes "
                                    "queued); try again when the running jobs have finished.")
                db.execute("DELETE FROM jobs WHERE key=?", (key,))
                db.execute("INSERT INTO jobs (key, kind, label, state, total, payload, points, parent, submitted, "
                           "updated) VALUES (?,?,?,?,?,?,?,?,?,?)",
                           (key, kind, label, QUEUED, total, json.dumps(payload), points, parent, now, now))
                row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE key=?", (key,)).fetchone()
            if row[3] in (QUEUED, RUNNING):
                db.execute("INSERT OR IGNORE INTO requests VALUES (?,?,?)", (key, requester, now))
            if parent is not None:
                db.execute("UPDATE jobs SET parent=? WHERE key=? AND parent IS NULL", (parent, key))
            _touch(db, requester, now)
        return _job(row)

    def mark_done(self, key: str, label: str, total: int = 0, parent: str | None = None) -> Job:
        """Record a field found in the store as a finished job (so every session reads it as done)."""
        now = time.time()
        with self._db(write=True) as db:
            db.execute("INSERT OR IGNORE INTO jobs (key, kind, label, state, done, total, payload, submitted, started, "
                       "finished, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (key, "field", label, DONE, total, total, "{}", now, now, now, now))
            if parent is not None:
                db.execute("UPDATE jobs SET parent=? WHERE key=? AND parent IS NULL", (parent, key))
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE key=?", (key,)).fetchone()
        return _job(row)

    def touch(self, requester: str) -> None:
        """The requester is still here (every poll of a page that waits on jobs)."""
        with self._db(write=True) as db:
            _touch(db, requester, time.time())

    def touch_requesters_of(self, keys: Iterable[str]) -> None:
        """Someone waits on these jobs (a blocking `wait`): every requester of them is still here."""
        keys, now = list(keys), time.time()
        with self._db(write=True) as db:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                db.execute("UPDATE requesters SET last_seen=? WHERE id IN (SELECT requester FROM requests WHERE key IN "
                           f"({','.join('?' * len(chunk))}))", (now, *chunk))

    # ------------------------------------------------------------------ reading (pages)

    def job(self, key: str) -> Job | None:
        with self._db() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE key=?", (key,)).fetchone()
        return None if row is None else _job(row)

    def jobs(self, keys: Iterable[str] | None = None) -> list[Job]:
        """The given jobs (unknown keys skipped), or every job, in submission order."""
        with self._db() as db:
            if keys is None:
                rows = db.execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY seq").fetchall()
            else:
                keys = list(dict.fromkeys(keys))
                rows = []
                for i in range(0, len(keys), 500):
                    chunk = keys[i:i + 500]
                    rows += db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE key IN ({','.join('?' * len(chunk))}) "
                                       "ORDER BY seq", chunk).fetchall()
        return [_job(r) for r in rows]

    def active(self) -> list[Job]:
        """Every queued or running job, running first."""
        with self._db() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE state IN (?, ?) ORDER BY state='queued', seq",
                              (RUNNING, QUEUED)).fetchall()
        return [_job(r) for r in rows]

    def children(self, parent: str) -> tuple[int, int]:
        """(finished, all) of the jobs that the task `parent` queued: the demo's fields."""
        with self._db() as db:
            done, total = db.execute("SELECT COALESCE(SUM(state=?), 0), COUNT(*) FROM jobs WHERE parent=?",
                                     (DONE, parent)).fetchone()
        return int(done), int(total)

    def payload(self, key: str) -> dict | None:
        """What the job was asked with (a task's name and parameters, a field's specs and settings)."""
        with self._db() as db:
            row = db.execute("SELECT payload FROM jobs WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def running_demos(self) -> list[str]:
        """Keys of demo tasks that run, or whose fields are still queued or running; the newest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT key FROM jobs j WHERE key LIKE 'demo:%' AND (state IN (?, ?) OR EXISTS "
                "(SELECT 1 FROM jobs c WHERE c.parent = j.key AND c.state IN (?, ?))) ORDER BY seq DESC",
                (QUEUED, RUNNING, QUEUED, RUNNING)).fetchall()
        return [r[0] for r in rows]

    def pending(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)", (QUEUED, RUNNING)).fetchone()[0])

    def queued_points(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT COALESCE(SUM(points), 0) FROM jobs WHERE state=?", (QUEUED,)).fetchone()[0])

    def requesters_of(self, key: str) -> list[str]:
        with self._db() as db:
            return [r[0] for r in db.execute("SELECT requester FROM requests WHERE key=? ORDER BY asked", (key,))]

    def speeds(self) -> dict[str, float]:
        with self._db() as db:
            return dict(db.execute("SELECT key, pps FROM speeds").fetchall())

    def record_speed(self, key: str, pps: float) -> None:
        with self._db(write=True) as db:
            db.execute("INSERT OR REPLACE INTO speeds VALUES (?, ?)", (key, float(pps)))

    # ------------------------------------------------------------------ running (the runner only)

    def claim_next(self) -> tuple[Job, dict] | None:
        """The next queued job, round-robin over requesters (the one served longest ago first), now running."""
        with self._db() as db:  # the idle runner polls: a read, no write lock, until something is queued
            if db.execute("SELECT 1 FROM jobs WHERE state=? LIMIT 1", (QUEUED,)).fetchone() is None:
                return None
        now = time.time()
        with self._db(write=True) as db:
            row = db.execute(
                "SELECT j.key, q.id FROM requests r JOIN jobs j ON j.key = r.key JOIN requesters q ON q.id=r.requester "
                "WHERE j.state = ? ORDER BY q.last_served, r.asked, j.seq LIMIT 1",
                (QUEUED,)).fetchone()
            if row is None:  # queued with no requester left (it cannot happen through submit; be safe)
                row = db.execute("SELECT key, NULL FROM jobs WHERE state=? ORDER BY seq LIMIT 1", (QUEUED,)).fetchone()
                if row is None:
                    return None
            key, requester = row
            if requester is not None:
                db.execute("UPDATE requesters SET last_served=? WHERE id=?", (now, requester))
            db.execute("UPDATE jobs SET state=?, started=?, updated=? WHERE key=?", (RUNNING, now, now, key))
            full = db.execute(f"SELECT {_COLUMNS}, payload FROM jobs WHERE key=?", (key,)).fetchone()
        return _job(full[:-1]), json.loads(full[-1])

    def claim_like(self, like: dict, limit: int) -> list[tuple[Job, dict]]:
        """Up to `limit` more queued field jobs on the anchors and settings of `like`, now running: the cluster
        backend extracts them in one call, in parallel."""
        now = time.time()
        with self._db(write=True) as db:
            rows = db.execute("SELECT key, payload FROM jobs WHERE state=? AND kind='field' ORDER BY seq",
                              (QUEUED,)).fetchall()
            keys = []
            for key, text in rows:
                payload = json.loads(text)
                if payload.get("anchors") == like.get("anchors") and payload.get("config") == like.get("config"):
                    keys.append(key)
                    if len(keys) == limit:
                        break
            db.executemany("UPDATE jobs SET state=?, started=?, updated=? WHERE key=?",
                           [(RUNNING, now, now, k) for k in keys])
            out = []
            for key in keys:
                full = db.execute(f"SELECT {_COLUMNS}, payload FROM jobs WHERE key=?", (key,)).fetchone()
                out.append((_job(full[:-1]), json.loads(full[-1])))
        return out

    def progress(self, key: str, done: int, total: int) -> None:
        with self._db(write=True) as db:  # a late write never moves a finished job back
            db.execute("UPDATE jobs SET done=?, total=?, updated=? WHERE key=? AND state=?",
                       (int(done), int(total), time.time(), key, RUNNING))

    def finish(self, key: str, state: str, result: Any = None, error: str | None = None) -> None:
        now = time.time()
        with self._db(write=True) as db:
            db.execute("UPDATE jobs SET state=?, result=?, error=?, finished=?, updated=?, "
                       "done=CASE WHEN ?=? AND total>0 THEN total ELSE done END WHERE key=?",
                       (state, json.dumps(result, default=str), error, now, now, state, DONE, key))
            db.execute("DELETE FROM requests WHERE key=?", (key,))
            old = db.execute("SELECT seq FROM jobs WHERE state NOT IN (?, ?) ORDER BY seq DESC LIMIT -1 OFFSET ?",
                             (QUEUED, RUNNING, _KEEP_FINISHED)).fetchall()
            db.executemany("DELETE FROM jobs WHERE seq=?", old)

    def drop_lapsed(self, timeout: float | None = None) -> list[str]:
        """Forget sessions that stopped polling; drop queued jobs nobody wants any more. Returns their keys."""
        cutoff = time.time() - (LAPSE_SECONDS if timeout is None else timeout)
        with self._db() as db:  # swept every few seconds: write only when someone lapsed
            if db.execute("SELECT 1 FROM requesters WHERE last_seen < ? AND id LIKE ? LIMIT 1",
                          (cutoff, SESSION + "%")).fetchone() is None and db.execute(
                    "SELECT 1 FROM jobs j WHERE state=? AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.key=j.key) "
                    "LIMIT 1", (QUEUED,)).fetchone() is None:
                return []
        with self._db(write=True) as db:
            gone = [r[0] for r in db.execute("SELECT id FROM requesters WHERE last_seen < ? AND id LIKE ?",
                                             (cutoff, SESSION + "%"))]
            for requester in gone:
                db.execute("DELETE FROM requests WHERE requester=?", (requester,))
                db.execute("DELETE FROM requesters WHERE id=?", (requester,))
            dropped = [r[0] for r in db.execute(
                "SELECT key FROM jobs j WHERE state=? AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.key=j.key)",
                (QUEUED,))]
            db.executemany("DELETE FROM jobs WHERE key=?", [(k,) for k in dropped])
        return dropped

    def requeue_running(self) -> int:
        """A runner that starts finds no other runner (the lock): jobs left running by a dead one run again."""
        with self._db(write=True) as db:
            return db.execute("UPDATE jobs SET state=?, started=NULL, done=0 WHERE state=?", (QUEUED, RUNNING)).rowcount


def _touch(db: sqlite3.Connection, requester: str, now: float) -> None:
    db.execute("INSERT INTO requesters VALUES (?, ?, 0) ON CONFLICT(id) DO UPDATE SET last_seen=excluded.last_seen",
               (requester, now))


def _job(row: tuple) -> Job:
    key, label, kind, state, done, total, error, result, submitted, started, finished = row
    return Job(key, label, kind, state, int(done), int(total), error, json.loads(result) if result else None,
               submitted, started, finished)
