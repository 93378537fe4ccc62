"""Chaos scenarios: real meshes under steady load while something breaks.

The meshes come from the end-to-end kit (tests/e2e/meshkit.py and its ``mesh_factory``
fixture, reused here rather than copied); every test here is marked ``e2e`` and
``chaos``. Each scenario writes a JSON report (see load.py) and a line to the summary at
the end of the session.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from load import Report, reports_dir

E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))


def _e2e_conftest() -> object:
    """tests/e2e/conftest.py under a name of its own (pytest already knows one module
    called ``conftest``)."""
    spec = importlib.util.spec_from_file_location("gossamer_e2e_conftest", E2E / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mesh_factory = _e2e_conftest().mesh_factory  # type: ignore[attr-defined]

_REPORTS = pytest.StashKey[list[Report]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: a chaos scenario under load (tests/chaos)")
    config.stash[_REPORTS] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/chaos/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.chaos)


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[[Report], Path]:
    """Write a scenario's report and add it to the session summary."""

    def write(report: Report) -> Path:
        path = report.write()
        request.config.stash[_REPORTS].append(report)
        return path

    return write


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reports = terminalreporter.config.stash.get(_REPORTS, [])
    if not reports:
        return
    terminalreporter.section("chaos scenarios")
    for report in reports:
        terminalreporter.write_line(report.summary())
    terminalreporter.write_line(f"reports in {reports_dir()}")
