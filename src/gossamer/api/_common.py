"""Pieces shared by every resource schema: strict models, metadata, durations."""

from __future__ import annotations

import re
from typing import Annotated

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


def check_duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration_ms(value)
    return value
