"""Talking to a running mesh's admin API, found via its state file or an explicit address."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = ".gossamer"
DEFAULT_API = "http://127.0.0.1:15080"


class NotRunning(RuntimeError):
    pass


def api_base(state_dir: str, api: str | None) -> str:
    if api:
        return api.rstrip("/")
    state = Path(state_dir) / "up.json"
    if state.exists():
        try:
            return str(json.loads(state.read_text())["api"])
        except (ValueError, KeyError):
            pass
    return DEFAULT_API


def call(base: str, path: str, method: str = "GET", timeout: float = 10.0, body: Any = None) -> Any:
    """The API's JSON answer (also for error statuses); ``body`` is sent as JSON."""
    data = json.dumps(body).encode() if body is not None else b"" if method == "POST" else None
    req = urllib.request.Request(base + path, method=method, data=data)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise NotRunning(
            f"no mesh answers at {base} ({getattr(exc, 'reason', exc)}); is `gossamer up` running? "
            "pass --api or --state-dir to point at it"
        ) from exc


NOT_RUNNING = 3
"""The exit status of a command that needs a running mesh when none answers."""


def ask(
    args: argparse.Namespace,
    path: str,
    method: str = "GET",
    *,
    body: Any = None,
    timeout: float = 10.0,
    hint: str = "",
) -> Any:
    """A command's call to the admin API: the answer, or, having said why there is none,
    the command's exit status (an ``int``): ``NOT_RUNNING`` when no mesh answers (``hint``
    says what else to try), 1 when the answer is an error."""
    try:
        data = call(api_base(args.state_dir, args.api), path, method, timeout, body)
    except NotRunning as exc:
        print(f"error: {exc}{hint}", file=sys.stderr)
        return NOT_RUNNING
    if isinstance(data, dict) and "error" in data:
        print(f"error: {data['error']}", file=sys.stderr)
        return 1
    return data
