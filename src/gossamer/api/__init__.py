"""User-facing resource schemas and the loader that turns YAML into the mesh model."""

from gossamer.api._common import parse_duration_ms
from gossamer.api._diff import config_diff
from gossamer.api._load import Source, load_config

__all__ = ["Source", "config_diff", "load_config", "parse_duration_ms"]
