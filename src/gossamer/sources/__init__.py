"""Where mesh config comes from. Each source yields complete states, never fragments."""

from gossamer.sources._files import (
    ConfigPathError,
    config_files,
    load_sources,
    read_sources,
    watch,
)

__all__ = ["ConfigPathError", "config_files", "load_sources", "read_sources", "watch"]
