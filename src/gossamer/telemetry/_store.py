"""The embedded store: a bounded, downsampled history of the mesh-wide series in SQLite,
for when there is no Prometheus. Enough for the graph and ``top`` over the last hours.

Every collection round is kept for an hour; older rounds are thinned to one point per
series per minute, and dropped after a day. Values are cumulative counters, so any two
points give a rate. The store belongs to one ``gossamer up`` run (counters start at zero
with it), so it starts empty.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from gossamer.telemetry._aggregate import SeriesKey

RAW_SECONDS = 3600
"""Every round is kept this long."""
RETENTION_SECONDS = 86_400
"""Minute points are kept this long."""


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.executescript(
            """
            PRAGMA journal_mode = WAL;
            CREATE TABLE series (id INTEGER PRIMARY KEY, name TEXT, labels TEXT,
                                 UNIQUE (name, labels));
            CREATE TABLE points (ts REAL, series_id INTEGER, value REAL);
            CREATE INDEX points_by_series ON points (series_id, ts);
            """
        )
        self._ids: dict[SeriesKey, int] = {}

    def _id(self, key: SeriesKey) -> int:
        found = self._ids.get(key)
        if found is None:
            name, labels = key
            cursor = self._db.execute(
                "INSERT INTO series (name, labels) VALUES (?, ?)", (name, json.dumps(labels))
            )
            found = self._ids[key] = int(cursor.lastrowid or 0)
        return found

    def record(self, ts: float, series: Mapping[SeriesKey, float]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT INTO points (ts, series_id, value) VALUES (?, ?, ?)",
                [(ts, self._id(key), value) for key, value in series.items()],
            )

    def oldest(self) -> float | None:
        row = self._db.execute("SELECT MIN(ts) FROM points").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def at(self, ts: float) -> dict[SeriesKey, float]:
        """Every series' value at ``ts``: its latest point at or before it."""
        rows = self._db.execute(
            """
            SELECT s.name, s.labels, p.value FROM points p JOIN series s ON s.id = p.series_id
            WHERE p.rowid IN (SELECT MAX(rowid) FROM points WHERE ts <= ? GROUP BY series_id)
            """,
            (ts,),
        ).fetchall()
        return {
            (name, tuple(tuple(pair) for pair in json.loads(labels))): value
            for name, labels, value in rows
        }

    def compact(self, now: float) -> None:
        """Thin rounds older than an hour to one per minute; drop those older than a day."""
        with self._db:
            self._db.execute("DELETE FROM points WHERE ts < ?", (now - RETENTION_SECONDS,))
            self._db.execute(
                """
                DELETE FROM points WHERE ts < ? AND rowid NOT IN (
                    SELECT MAX(rowid) FROM points WHERE ts < ?
                    GROUP BY series_id, CAST(ts / 60 AS INTEGER))
                """,
                (now - RAW_SECONDS, now - RAW_SECONDS),
            )

    def point_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM points").fetchone()[0])

    def close(self) -> None:
        self._db.close()
