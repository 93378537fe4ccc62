"""One Workload document, `web`, with one more spec field: for tests of a single field."""

from __future__ import annotations

from gossamer.api import Source, load_config
from gossamer.model import MeshConfig, Problem, Workload

FILE = "mesh.yaml"


def workload(field: str = "", value: str = "") -> str:
    text = (
        "apiVersion: gossamer.dev/v1alpha1\n"
        "kind: Workload\n"
        "metadata: {name: web}\n"
        "spec:\n"
        "  ports: [{port: 80}]\n"
        "  command: [python3, app.py]\n"
    )
    return text + (f"  {field}: {value}\n" if value else "")


def load(text: str) -> tuple[MeshConfig | None, list[Problem]]:
    return load_config([Source(FILE, text, "")])


def web(field: str = "", value: str = "") -> Workload:
    """The loaded workload; the document must load without any problem."""
    config, problems = load(workload(field, value))
    assert config is not None, problems
    assert problems == []
    found = config.workload("web")
    assert found is not None
    return found
