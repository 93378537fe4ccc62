"""Offline config commands: ``validate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gossamer.api import load_config
from gossamer.sources import load_sources


def validate(args: argparse.Namespace) -> int:
    """The same loading and checks as ``up`` and a live edit, minus what needs this machine
    (whether each command exists), so it can run in a CI pipeline."""
    sources, problems = load_sources(Path(args.path))
    config = None
    if sources:
        config, problems = load_config(sources)
    if args.output == "json":
        valid = config is not None
        print(json.dumps({"valid": valid, "problems": [p.to_dict() for p in problems]}, indent=2))
    else:
        for p in problems:
            print(p, file=sys.stderr)
        if config is not None:
            print(
                f"valid: {len(config.workloads)} workloads, {len(config.services())} services, "
                f"{len(config.routes)} routes"
            )
    return 0 if config is not None else 1
