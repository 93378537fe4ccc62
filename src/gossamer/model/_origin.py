"""Where a resource was declared, so every later finding can point back at it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a resource was declared: file, document index (1-based) and kind/name."""

    file: str
    document: int
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.file} (document {self.document}, {self.kind}/{self.name})"
