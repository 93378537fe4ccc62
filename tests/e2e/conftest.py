"""End-to-end fixtures: every test here starts real processes and is marked `e2e`."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from meshkit import Mesh, pid_alive, start_mesh


@pytest.fixture
def mesh_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Mesh] = []

    def make(text: str, *extra: str, name: str = "mesh") -> Mesh:
        mesh = start_mesh(tmp_path / name, text, *extra)
        started.append(mesh)
        return mesh

    yield make
    for mesh in started:
        with contextlib.suppress(Exception):
            mesh.stop(signal.SIGTERM)
        for pid in mesh.pids_seen:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
