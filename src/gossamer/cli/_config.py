"""Offline config commands: ``validate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gossamer.api import load_config
from gossamer.sources import ConfigPathError, read_sources


def validate(args: argparse.Namespace) -> int:
    try:
        sources = read_sources(Path(args.path))
    except (ConfigPathError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config, problems = load_config(sources)
    if args.output == "json":
        print(
            json.dumps(
                {"valid": config is not None, "problems": [p.to_dict() for p in problems]}, indent=2
            )
        )
    else:
        for p in problems:
            print(p, file=sys.stderr)
        if config is not None:
            print(
                f"valid: {len(config.workloads)} workloads, {len(config.services())} services, "
                f"{len(config.routes)} routes"
            )
    return 0 if config is not None else 1
