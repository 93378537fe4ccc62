"""Access log files without Envoy: a full disk (failed writes, failed rotations, cut-short
lines) is counted and reported once, never raised, and never stops another proxy's logs."""

from __future__ import annotations

import errno
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gossamer.runtime import _access
from gossamer.runtime._access import (
    AccessLogHealth,
    LogQuery,
    check_access_logs,
    log_file,
    parse_counters,
    parse_line,
    read_entries,
)

FAILED = "filesystem.write_failed"
DONE = "filesystem.write_completed"
REOPEN = "filesystem.reopen_failed"


def _entry(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "start_time": f"2030-01-01T00:00:{n:02d}.000Z",
        "direction": "inbound",
        "node": "orders-0",
        "path": f"/r{n}",
        "response_code": 200,
        **extra,
    }


def _line(n: int) -> str:
    return json.dumps(_entry(n))


def test_parse_counters_reads_name_value_lines() -> None:
    text = f"{FAILED}: 3\n{DONE}: 12\nfilesystem.write_total_buffered: 0\nnoise\nx: y\n"
    assert parse_counters(text) == {FAILED: 3, DONE: 12, "filesystem.write_total_buffered": 0}


def test_a_cut_short_line_is_unreadable_and_the_entry_glued_to_it_is_recovered() -> None:
    whole = _line(1)
    assert parse_line(whole) == (_entry(1), False)
    assert parse_line(whole[:40]) == (None, True)
    # Space came back: the next entry continues on the cut-short line.
    assert parse_line(whole[:40] + _line(2)) == (_entry(2), True)
    # A path with a quote or brace inside stays a string: no false entry is found in it.
    tricky = json.dumps(_entry(3, path='/a?q={"b":1}'))
    assert parse_line(tricky[:60]) == (None, True)
    assert parse_line("[1, 2]") == (None, True)
    assert parse_line("") == (None, True)


def test_read_entries_counts_a_truncated_last_line_and_keeps_the_rest(tmp_path: Path) -> None:
    path = log_file(tmp_path, "orders-0")
    path.parent.mkdir()
    rotated = path.with_name("orders-0.log.1")
    # The disk filled up while .1 was current: its last line was cut short, and the line
    # written after space came back continues on it.
    rotated.write_text(f"{_line(1)}\n{_line(2)[:30]}{_line(3)}\n")
    path.write_bytes(f"{_line(4)}\n{_line(5)[:50]}".encode() + "\u00e9".encode()[:1])
    entries, bad = read_entries(tmp_path, ["orders-0"], 3, "||orders", {"orders-0"}, LogQuery())
    assert [e["path"] for e in entries] == ["/r1", "/r3", "/r4"]
    assert bad == 2


def test_read_entries_skips_missing_and_unreadable_files(tmp_path: Path) -> None:
    path = log_file(tmp_path, "orders-0")
    path.parent.mkdir()
    path.write_text(_line(1) + "\n")
    path.with_name("orders-0.log.2").mkdir()  # reading it raises IsADirectoryError
    entries, bad = read_entries(
        tmp_path, ["orders-0", "gone-0"], 3, "||orders", {"orders-0"}, LogQuery()
    )
    assert [e["path"] for e in entries] == ["/r1"] and bad == 0


def test_write_failures_are_totalled_and_reported_when_they_start_and_end() -> None:
    health = AccessLogHealth()
    assert health.observe("a", 100, {FAILED: 0, DONE: 5, REOPEN: 0}, 1.0) is None
    started = health.observe("a", 100, {FAILED: 2, DONE: 5, REOPEN: 0}, 2.0)
    assert started is not None and not started.recovered and started.node == "a"
    assert "2 write(s)" in started.message
    # Still failing: counted, but no second notice.
    assert health.observe("a", 100, {FAILED: 7, DONE: 6, REOPEN: 1}, 3.0) is None
    assert health.observe("a", 100, {FAILED: 7, DONE: 6, REOPEN: 1}, 4.0) is None
    described = health.describe("a")
    assert described["write_failures"] == 7 and described["reopen_failures"] == 1
    assert described["failing"] is True and described["last_failure_at"] == 3.0
    # Space is back: a write completed and none failed.
    recovered = health.observe("a", 100, {FAILED: 7, DONE: 8, REOPEN: 1}, 5.0)
    assert recovered is not None and recovered.recovered
    assert health.describe("a")["failing"] is False
    # A restarted Envoy (new pid) counts from zero; the totals go on.
    again = health.observe("a", 200, {FAILED: 1, DONE: 0, REOPEN: 0}, 6.0)
    assert again is not None and not again.recovered
    assert health.describe("a")["write_failures"] == 8
    assert health.describe("never-seen")["write_failures"] == 0


def test_a_repeated_rotation_error_is_reported_once_until_a_rotation_succeeds() -> None:
    health = AccessLogHealth()
    first = health.rotation_failed("a", "x.log: [Errno 28] No space left on device", 1.0)
    assert first is not None and "No space left" in first.message
    assert health.rotation_failed("a", "x.log: [Errno 28] No space left on device", 2.0) is None
    assert health.describe("a")["rotation_failures"] == 2
    health.rotated("a")
    assert health.describe("a")["rotation_error"] == ""
    assert health.rotation_failed("a", "x.log: [Errno 28] No space left on device", 3.0)


class FakeAdmin:
    """An Envoy admin: /stats with the file counters, and /reopen_logs."""

    def __init__(self) -> None:
        self.counters = {FAILED: 0, DONE: 0, REOPEN: 0}
        self.reopened = 0
        self.port = 0

    async def stats(self, request: web.Request) -> web.Response:
        assert request.query["filter"].startswith("^filesystem")
        return web.Response(text="".join(f"{k}: {v}\n" for k, v in self.counters.items()))

    async def reopen(self, _request: web.Request) -> web.Response:
        self.reopened += 1
        return web.Response(text="OK\n")


@pytest.fixture
async def admins() -> AsyncIterator[Callable[[], Any]]:
    runners: list[web.AppRunner] = []

    async def make() -> FakeAdmin:
        admin = FakeAdmin()
        app = web.Application()
        app.router.add_get("/stats", admin.stats)
        app.router.add_post("/reopen_logs", admin.reopen)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        admin.port = runner.addresses[0][1]
        return admin

    yield make
    for runner in runners:
        await runner.cleanup()


async def test_a_failed_rotation_is_noted_and_the_other_proxies_go_on(
    tmp_path: Path, admins: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await admins(), await admins()
    for node in ("a", "b", "c"):
        path = log_file(tmp_path, node)
        path.parent.mkdir(exist_ok=True)
        path.write_text("x" * 200)
    real = _access.rotate_files

    def rotate(path: Path, keep: int) -> None:
        if path.name == "a.log":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, keep)

    monkeypatch.setattr(_access, "rotate_files", rotate)
    a.counters[FAILED] = 3
    health = AccessLogHealth()
    # "c" has no admin listening: its reopen and its counters fail, nothing raises.
    proxies = {"a": (a.port, 1), "b": (b.port, 2), "c": (1, 3)}
    result = await check_access_logs(tmp_path, proxies, 100, 3, health)
    assert result.rotated == ["b", "c"]
    assert b.reopened == 1 and a.reopened == 0
    assert log_file(tmp_path, "b").with_name("b.log.1").exists()
    said = {
        n.node: "\n".join(x.message for x in result.notices if x.node == n.node)
        for n in result.notices
    }
    assert not any(n.recovered for n in result.notices)
    assert "No space left on device" in said["a"] and "3 write(s)" in said["a"]
    assert "did not reopen" in said["c"]
    assert "b" not in said
    assert health.describe("a")["rotation_failures"] == 1
    assert health.describe("a")["write_failures"] == 3
    assert health.describe("b")["write_failures"] == 0

    # The next round: the same errors are counted, not reported again.
    a.counters[FAILED] = 4
    result = await check_access_logs(tmp_path, proxies, 100, 3, health)
    assert result.notices == [] and result.rotated == []
    assert health.describe("a")["write_failures"] == 4
    assert health.describe("a")["rotation_failures"] == 2

    # Space is back: a's writes complete again.
    a.counters[DONE] = 1
    result = await check_access_logs(tmp_path, proxies, 100, 3, health)
    assert [(n.node, n.recovered) for n in result.notices] == [("a", True)]

    # A proxy that is gone is forgotten.
    await check_access_logs(tmp_path, {"b": (b.port, 2)}, 100, 3, health)
    assert set(health.proxies) == {"b"}
