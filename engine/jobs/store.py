"""The job index: SQLite (WAL) at cache/jobs.sqlite. The job folders are the source of truth;
the index makes listing and querying cheap and can always be rebuilt by scanning them."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from engine.jobs import files
from engine.jobs.model import JobSpec, JobStatus, JobView, now_iso
from engine.jobs.status_file import read_status_strict, update_status_or_show

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    backend TEXT NOT NULL,
    state TEXT NOT NULL,
    fraction REAL NOT NULL,
    message TEXT,
    created TEXT NOT NULL,
    updated REAL,
    pid INTEGER,
    slurm_id TEXT,
    path TEXT NOT NULL,
    params TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_kind ON jobs(kind);
"""


class JobStore:
    """The index over the job folders. When its database cannot be opened or written (a full
    disk, a read-only cache), it answers from the folders themselves, slower but the same."""

    def __init__(self, root: Path | None = None, db_path: Path | None = None) -> None:
        self.root = root or files.jobs_root()
        self.db_path = db_path or self.root.parent / "jobs.sqlite"
        self.root.mkdir(parents=True, exist_ok=True)
        self.unavailable: str | None = None  # why the index is not used, when it is not
        try:
            with closing(self._connect()) as db, db:
                db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        if self.unavailable is None:
            log.warning("job index %s not used (%s): reading the job folders", self.db_path, exc)
        self.unavailable = str(exc)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.row_factory = sqlite3.Row
        return db

    def upsert(self, view: JobView) -> None:
        if self.unavailable:
            return
        s = view.status
        row = (
            view.id,
            view.spec.kind,
            view.spec.backend,
            s.state,
            s.fraction,
            s.message,
            view.spec.created,
            s.updated,
            s.pid,
            s.slurm_id,
            str(view.path),
            json.dumps(view.spec.params, default=str),
        )
        try:
            with closing(self._connect()) as db, db:
                db.execute(
                    "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row
                )
        except sqlite3.Error as exc:
            self._give_up(exc)

    def ids(self, kind: str | None = None, states: tuple[str, ...] | None = None) -> list[str]:
        """Job ids, newest first, optionally filtered by kind and state."""
        if self.unavailable:
            return self._scan(kind, states)
        query, args = "SELECT id FROM jobs WHERE 1=1", []
        if kind:
            query += " AND kind = ?"
            args.append(kind)
        if states:
            query += f" AND state IN ({', '.join('?' * len(states))})"
            args.extend(states)
        query += " ORDER BY created DESC, id DESC"
        try:
            with closing(self._connect()) as db:
                return [row["id"] for row in db.execute(query, args)]
        except sqlite3.Error as exc:
            self._give_up(exc)
            return self._scan(kind, states)

    def _scan(self, kind: str | None, states: tuple[str, ...] | None) -> list[str]:
        """ids() from the folders (ids begin with their submission time: newest first)."""
        found = []
        for job_id in sorted(self.folder_ids(), reverse=True):
            view = read_view(self.root / job_id)
            if view is None or (kind and view.spec.kind != kind):
                continue
            if states and view.status.state not in states:
                continue
            found.append(job_id)
        return found

    def remove(self, job_id: str) -> None:
        if self.unavailable:
            return
        try:
            with closing(self._connect()) as db, db:
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        except sqlite3.Error as exc:
            self._give_up(exc)

    def folder_ids(self) -> set[str]:
        return {
            p.name
            for p in self.root.iterdir()
            if files.JOB_ID.fullmatch(p.name) and (p / files.SPEC).is_file()
        }

    def sync(self) -> None:
        """Index folders the store does not know (another process submitted them, or the
        database was deleted) and forget rows whose folder is gone. The index is a cache of the
        folders: when it cannot be written (a full disk), listing goes on with what it holds."""
        if self.unavailable:
            return
        known = set(self.ids())
        on_disk = self.folder_ids()
        for job_id in on_disk - known:
            view = read_view(self.root / job_id)
            if view is not None:
                self.upsert(view)
        for job_id in known - on_disk:
            self.remove(job_id)

    def rebuild(self) -> int:
        """Drop the index and rebuild it from the folders; returns the number of jobs."""
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM jobs")
        self.sync()
        return len(self.ids())


# A folder whose spec is this old and whose status is still missing or damaged was left by a
# process that stopped between creating the job and writing its first status (submit writes the
# status before the spec, so a healthy folder never shows this).
STATUS_GRACE_S = 5.0


def read_view(job_dir: Path) -> JobView | None:
    """The job in `job_dir`; None when it holds no spec. A damaged folder is a view of its own
    (state failed, `damaged` says why) so that it never hides the other jobs."""
    data = None
    try:
        data = files.read_json_strict(job_dir / files.SPEC)
        if data is None:
            return None
        spec = JobSpec.from_json(data)
        if spec.id != job_dir.name:
            raise ValueError(f"spec.json names job {spec.id[:60]!r}, not its folder's")
    except (ValueError, TypeError) as exc:
        return _damaged_view(job_dir, data, str(exc))
    try:
        status = read_status_strict(job_dir)
    except (ValueError, TypeError) as exc:
        status = _resolve_missing_status(job_dir, str(exc))
    return JobView(path=job_dir, spec=spec, status=status)


def _damaged_view(job_dir: Path, data: object, reason: str) -> JobView:
    kind = data.get("kind") if isinstance(data, dict) else None
    spec = JobSpec(
        id=job_dir.name,
        kind=kind if isinstance(kind, str) else "unknown",
        params={},
        created=_folder_time(job_dir),
    )
    status = JobStatus(state="failed", message=f"damaged job folder: {reason}"[:300])
    return JobView(path=job_dir, spec=spec, status=status, damaged=reason)


def _folder_time(job_dir: Path) -> str:
    from datetime import UTC, datetime

    try:
        stamp = job_dir.stat().st_mtime
    except OSError:
        stamp = 0.0
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


def _resolve_missing_status(job_dir: Path, reason: str) -> JobStatus:
    try:
        age = time.time() - (job_dir / files.SPEC).stat().st_mtime
    except OSError:
        age = 0.0
    if age < STATUS_GRACE_S:
        return JobStatus(message="being created")
    return update_status_or_show(
        job_dir,
        state="failed",
        message=f"{reason}: the job stopped before writing its first status",
        finished=now_iso(),
    )
