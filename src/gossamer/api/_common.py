"""Pieces shared by every resource schema: strict models, metadata, durations."""

from __future__ import annotations

import re
from typing import Annotated, Any

import re2
from pydantic import BaseModel, ConfigDict, Field

DNS_LABEL = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
"""RFC 1035 label, as Kubernetes requires of Service names."""

Name = Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]

_DURATION = re.compile(r"^(?:[0-9]{1,5}(?:h|ms|m|s)){1,4}$")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_UNIT_MS = {"h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}


class Strict(BaseModel):
    """Unknown fields are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class Metadata(Strict):
    name: Name
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


def parse_duration_ms(value: str) -> int:
    """Gateway API duration (``1h30m``, ``10s``, ``250ms``) to milliseconds."""
    if not _DURATION.match(value):
        raise ValueError(
            f"`{value}` is not a duration; expected forms like 10s, 1m30s or 250ms "
            "(units h, m, s, ms)"
        )
    return sum(int(n) * _UNIT_MS[unit] for n, unit in _DURATION_PART.findall(value))


_RE2_OPTIONS: Any = re2.Options()
_RE2_OPTIONS.log_errors = False

HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A DNS name, optionally with a leading ``*.`` wildcard label (Gateway API Hostname)."""

Hostname = Annotated[str, Field(pattern=HOSTNAME, max_length=253)]

Percent = Annotated[float, Field(ge=0, le=100)]


ENVOY_MAX_REGEX_PROGRAM_SIZE = 100
"""Envoy refuses (NACKs) a regex whose RE2 program is larger than this (its default
``re2.max_program_size.error_level``)."""


def check_regex(value: str) -> str:
    """Envoy matches with RE2; Python's ``re`` accepts things RE2 does not (lookaround,
    backreferences), so we check with RE2 itself, and against Envoy's size limit."""
    try:
        size = re2.compile(value, options=_RE2_OPTIONS).programsize
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(
            f"`{value}` is not a valid RE2 regular expression: {reason} (RE2 has no "
            "lookaround or backreferences)"
        ) from None
    if size > ENVOY_MAX_REGEX_PROGRAM_SIZE:
        raise ValueError(
            f"`{value}` is too complex for Envoy: its RE2 program size is {size}, over "
            f"Envoy's limit of {ENVOY_MAX_REGEX_PROGRAM_SIZE}; use fewer alternatives, or "
            "split it into several matches or rules"
        )
    return value


def check_duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration_ms(value)
    return value


def ms(value: str | None) -> int | None:
    return None if value is None else parse_duration_ms(value)


def relative_to(base_dir: str, path: str) -> str:
    """A path from a config file, relative to that file's directory."""
    if not path or path.startswith("/") or not base_dir:
        return path
    return f"{base_dir.rstrip('/')}/{path}"
