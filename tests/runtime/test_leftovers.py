"""What a killed `up` leaves running, and taking it over: the record and the process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from gossamer.model import Instance
from gossamer.runtime._leftovers import Leftovers, read_leftovers, write_leftovers
from gossamer.sidecar._process import ManagedProcess, process_argv

ORDERS = Instance("orders-0", "orders", 0, ((80, 23002),), ((80, 23003),), 23004, (), 23005)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_the_record_round_trips_and_only_a_dead_writer_leaves_leftovers(tmp_path: Path) -> None:
    record = Leftovers(
        pid=_dead_pid(),
        revision=3,
        instances={"orders-0": ORDERS},
        pids={"orders-0": (11, 12)},
        not_serving=["orders-0"],
        gateways={"shop": ("shop.gateway", 23010, 13)},
    )
    write_leftovers(tmp_path, record)
    assert read_leftovers(tmp_path) == record
    write_leftovers(tmp_path, Leftovers(os.getppid(), 3, {}, {}, [], {}))
    assert read_leftovers(tmp_path) is None  # its writer still runs
    (tmp_path / "processes.json").write_text("{not json")
    assert read_leftovers(tmp_path) is None


def test_an_instance_is_taken_over_only_where_it_is_placed_now(tmp_path: Path) -> None:
    record = Leftovers(1, 1, {"orders-0": ORDERS}, {"orders-0": (11, 12)}, [], {})
    moved = Instance("orders-0", "orders", 0, ((80, 1),), ((80, 23003),), 23004, (), 23005)
    assert record.take_instance(moved) is None
    assert record.take_instance(ORDERS) == (11, 12)
    assert record.unadopted(tmp_path) == []  # taken, or not ours (pids 11, 12)


def _orphan(argv: list[str]) -> int:
    """Started by a process that then exits, as a killed `up` leaves its children."""
    spawner = (
        "import subprocess, sys; "
        f"print(subprocess.Popen({argv!r}, start_new_session=True, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)"
    )
    return int(subprocess.run([sys.executable, "-c", spawner], capture_output=True).stdout)


async def test_a_process_left_running_is_supervised_and_stopped(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    pid = _orphan(argv)
    try:
        managed = ManagedProcess("x", argv, env={}, cwd=".", log_path=tmp_path / "x.log")
        assert not ManagedProcess(
            "y", ["other"], env={}, cwd=".", log_path=tmp_path / "y.log"
        ).adopt(pid)
        assert managed.adopt(pid) and managed.pid == pid
        await asyncio.sleep(0.3)
        assert managed.running
        await managed.stop(grace_s=5)
        assert not managed.running and managed.last_exit is None
        await asyncio.sleep(0.5)
        assert process_argv(pid) is None  # gone (or a zombie for its new parent to reap)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
