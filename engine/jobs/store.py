"""The job index: SQLite (WAL) at cache/jobs.sqlite. The job folders are the source of truth;
the index makes listing and querying cheap and can always be rebuilt by scanning them."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

from engine.jobs import files
from engine.jobs.model import JobSpec, JobView
from engine.jobs.status_file import read_status

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
    def __init__(self, root: Path | None = None, db_path: Path | None = None) -> None:
        self.root = root or files.jobs_root()
        self.db_path = db_path or self.root.parent / "jobs.sqlite"
        self.root.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.row_factory = sqlite3.Row
        return db

    def upsert(self, view: JobView) -> None:
        s = view.status
        row = (
            view.id, view.spec.kind, view.spec.backend, s.state, s.fraction, s.message,
            view.spec.created, s.updated, s.pid, s.slurm_id, str(view.path),
            json.dumps(view.spec.params, default=str),
        )  # fmt: skip
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row
            )

    def ids(self, kind: str | None = None, states: tuple[str, ...] | None = None) -> list[str]:
        """Job ids, newest first, optionally filtered by kind and state."""
        query, args = "SELECT id FROM jobs WHERE 1=1", []
        if kind:
            query += " AND kind = ?"
            args.append(kind)
        if states:
            query += f" AND state IN ({', '.join('?' * len(states))})"
            args.extend(states)
        query += " ORDER BY created DESC, id DESC"
        with closing(self._connect()) as db:
            return [row["id"] for row in db.execute(query, args)]

    def remove(self, job_id: str) -> None:
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def folder_ids(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if (p / files.SPEC).is_file()}

    def sync(self) -> None:
        """Index folders the store does not know (another process submitted them, or the
        database was deleted) and forget rows whose folder is gone."""
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


def read_view(job_dir: Path) -> JobView | None:
    data = files.read_json(job_dir / files.SPEC)
    if data is None:
        return None
    return JobView(path=job_dir, spec=JobSpec.from_json(data), status=read_status(job_dir))
