"""The embedded store: values at a time, and bounded, downsampled retention."""

from __future__ import annotations

from pathlib import Path

from gossamer.telemetry import Store
from gossamer.telemetry._store import RAW_SECONDS, RETENTION_SECONDS

KEY = ("istio_requests_total", (("response_code", "200"), ("source_workload", "client")))
OTHER = ("istio_requests_total", (("response_code", "503"), ("source_workload", "client")))


def test_value_at_a_time_is_the_latest_point_before_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    store.record(100.0, {KEY: 1})
    store.record(105.0, {KEY: 4, OTHER: 1})
    store.record(110.0, {KEY: 9, OTHER: 2})
    assert store.at(99.0) == {}
    assert store.at(104.9) == {KEY: 1}
    assert store.at(107.0) == {KEY: 4, OTHER: 1}
    assert store.at(1e9) == {KEY: 9, OTHER: 2}
    assert store.oldest() == 100.0
    store.close()


def test_a_new_run_starts_empty(tmp_path: Path) -> None:
    first = Store(tmp_path / "t.db")
    first.record(1.0, {KEY: 5})
    first.close()
    assert Store(tmp_path / "t.db").oldest() is None


def test_retention_is_bounded_and_thins_old_rounds_to_a_minute(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    now = 999_960.0  # on a minute boundary, so the thinned span is exactly 120 minutes
    # Two days of 5-second rounds would be 34,560 points per series; record 3 hours' worth
    # plus some points older than the retention.
    start = now - 3 * 3600
    for i in range(0, 3 * 3600, 5):
        store.record(start + i, {KEY: float(i)})
    store.record(now - RETENTION_SECONDS - 10, {KEY: -1.0})
    store.compact(now)
    # The last hour: every round (720); the two hours before it: one a minute (120).
    assert store.point_count() == 720 + 120
    assert store.at(now - RETENTION_SECONDS) == {}
    # A thinned value is still the value at the end of its minute.
    t = now - 2 * 3600 + 30
    assert store.at(t)[KEY] <= t - start
    assert store.at(now)[KEY] == 3 * 3600 - 5
    store.close()
    assert RAW_SECONDS == 3600
