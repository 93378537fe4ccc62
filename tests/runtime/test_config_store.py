"""The config store: revisions, head, conflicts, and what a crash mid-apply leaves."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gossamer.api import Source
from gossamer.runtime._store import ConfigStore, Conflict


def _sources(n: int, size: int = 10) -> list[Source]:
    return [Source(f"f{i}.yaml", f"# revision {n}\n" + "x" * size, "/tmp") for i in range(3)]


def test_revisions_are_kept_in_order_with_their_changes(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config.db")
    assert store.head() is None
    first = store.commit(_sources(1), author="a@h", message="one", changes={"x": 1})
    second = store.commit(_sources(2), author="b@h", message="two", changes={})
    assert (first.number, second.number) == (1, 2)
    head = store.head()
    assert head is not None and head.number == 2 and head.sources == tuple(_sources(2))
    assert [r.message for r in store.history()] == ["two", "one"]
    got = store.get(1)
    assert got is not None and got.changes == {"x": 1} and got.author == "a@h"
    store.close()
    reopened = ConfigStore(tmp_path / "config.db")  # survives a restart
    assert reopened.head() == head
    reopened.check()


def test_a_commit_on_a_stale_head_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config.db")
    store.commit(_sources(1), author="a", message="one", changes={})
    store.commit(_sources(2), author="a", message="two", changes={}, expect_head=1)
    with pytest.raises(Conflict, match="moved from revision 1 to 2"):
        store.commit(_sources(3), author="b", message="three", changes={}, expect_head=1)
    assert [r.number for r in store.history()] == [2, 1]


WRITER = """
import sys
from gossamer.api import Source
from gossamer.runtime._store import ConfigStore
store = ConfigStore(__import__("pathlib").Path(sys.argv[1]))
n = 0
print("ready", flush=True)
while True:
    n += 1
    sources = [Source(f"f{i}.yaml", f"# {n}\\n" + "y" * 200_000, "/tmp") for i in range(5)]
    store.commit(sources, author="w", message=str(n), changes={"n": n})
"""


def test_killing_the_process_mid_apply_leaves_a_consistent_store(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    rng = random.Random(7)
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))  # somewhere in the middle of a commit
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        store = ConfigStore(path)
        store.check()  # every revision matches its digest; the head names one of them
        head = store.head()
        history = store.history(limit=1_000_000)
        if head is not None:
            assert head.number == history[0].number
            assert all(len(r.sources) == 5 for r in history)
            assert all(r.changes == {"n": int(r.message)} for r in history[:5])
        store.close()
    final = ConfigStore(path)
    assert final.head() is not None  # some commits completed across the runs
