"""The config store: every applied revision of the mesh's config, in SQLite.

A revision is the complete set of config files (path, text) the mesh ran from, with when,
who, why, and what changed. Writing one is a single transaction (the revision row and
the head pointer together), so a crash mid-apply leaves the old head or the new one,
never a mix; ``check`` verifies every revision against its digest.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gossamer.api import Source


@dataclass(frozen=True, slots=True)
class StoredRevision:
    number: int
    at: float
    author: str
    message: str
    sources: tuple[Source, ...]
    digest: str
    changes: dict[str, Any]
    """What changed from the revision before: resources added, removed and changed (with a
    unified diff each), and the proxies that got new config."""

    def summary(self) -> dict[str, Any]:
        resources = self.changes.get("resources", {})
        return {
            "revision": self.number,
            "at": self.at,
            "author": self.author,
            "message": self.message,
            "files": len(self.sources),
            "added": len(resources.get("added", [])),
            "removed": len(resources.get("removed", [])),
            "changed": len(resources.get("changed", [])),
            "proxies": len(self.changes.get("proxies", {})),
        }


def digest(sources: Sequence[Source]) -> str:
    return hashlib.sha256(_encode(sources).encode()).hexdigest()


def _encode(sources: Sequence[Source]) -> str:
    return json.dumps(
        [[s.name, s.text, s.base_dir] for s in sources], sort_keys=True, separators=(",", ":")
    )


class StoreCorrupt(RuntimeError):
    pass


class ConfigStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.executescript(
            """
            PRAGMA journal_mode = WAL;
            PRAGMA synchronous = FULL;
            CREATE TABLE IF NOT EXISTS revisions (
                number INTEGER PRIMARY KEY, at REAL NOT NULL, author TEXT NOT NULL,
                message TEXT NOT NULL, sources TEXT NOT NULL, digest TEXT NOT NULL,
                changes TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS head (
                id INTEGER PRIMARY KEY CHECK (id = 1), number INTEGER NOT NULL
                REFERENCES revisions (number));
            """
        )

    def commit(
        self,
        sources: Sequence[Source],
        *,
        author: str,
        message: str,
        changes: dict[str, Any],
        expect_head: int | None = None,
    ) -> StoredRevision:
        """Record a new head revision. With ``expect_head``, refuses (``Conflict``) if the
        head moved since the caller looked."""
        encoded = _encode(sources)
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            head = self.head_number()
            if expect_head is not None and head != expect_head:
                raise Conflict(expect_head, head)
            number = (self._db.execute("SELECT MAX(number) FROM revisions").fetchone()[0] or 0) + 1
            self._db.execute(
                "INSERT INTO revisions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    number,
                    now,
                    author,
                    message,
                    encoded,
                    hashlib.sha256(encoded.encode()).hexdigest(),
                    json.dumps(changes),
                ),
            )
            self._db.execute("INSERT OR REPLACE INTO head (id, number) VALUES (1, ?)", (number,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        revision = self.get(number)
        assert revision is not None
        return revision

    def head_number(self) -> int:
        row = self._db.execute("SELECT number FROM head WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def head(self) -> StoredRevision | None:
        number = self.head_number()
        return self.get(number) if number else None

    def get(self, number: int) -> StoredRevision | None:
        row = self._db.execute(
            "SELECT number, at, author, message, sources, digest, changes FROM revisions "
            "WHERE number = ?",
            (number,),
        ).fetchone()
        return _revision(row) if row else None

    def history(self, limit: int = 50) -> list[StoredRevision]:
        rows = self._db.execute(
            "SELECT number, at, author, message, sources, digest, changes FROM revisions "
            "ORDER BY number DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_revision(r) for r in rows]

    def check(self) -> None:
        """Raise StoreCorrupt unless every revision matches its digest and the head
        names a stored revision."""
        status = self._db.execute("PRAGMA integrity_check").fetchone()[0]
        if status != "ok":
            raise StoreCorrupt(f"{self.path}: {status}")
        for number, sources, stored in self._db.execute(
            "SELECT number, sources, digest FROM revisions"
        ):
            if hashlib.sha256(sources.encode()).hexdigest() != stored:
                raise StoreCorrupt(f"{self.path}: revision {number} does not match its digest")
        head = self.head_number()
        if head and self.get(head) is None:
            raise StoreCorrupt(f"{self.path}: the head names revision {head}, which is missing")

    def close(self) -> None:
        self._db.close()


class Conflict(RuntimeError):
    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(
            f"the mesh moved from revision {expected} to {actual} since this change was "
            f"prepared; review it again (gossamer diff) and re-apply"
        )
        self.expected = expected
        self.actual = actual


def _revision(row: tuple[Any, ...]) -> StoredRevision:
    number, at, author, message, sources, stored_digest, changes = row
    return StoredRevision(
        number=int(number),
        at=float(at),
        author=str(author),
        message=str(message),
        sources=tuple(Source(name=n, text=t, base_dir=b) for n, t, b in json.loads(sources)),
        digest=str(stored_digest),
        changes=json.loads(changes),
    )
