"""Problems found in user config: the one error shape every front-end and check uses.

A problem names the file, the document, the resource and the field, says what was
expected, and gives a hint. Codes are stable and documented in docs/reference/codes.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gossamer.model._origin import Origin


class Severity(enum.Enum):
    """How a problem affects an apply."""

    ERROR = "error"
    """The config is refused; the running mesh keeps its previous config."""
    WARNING = "warning"
    """The config is applied; the finding is shown to the user."""


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    message: str
    file: str = ""
    document: int = 0
    resource: str = ""
    """``Kind/name``, or empty when the document could not be read that far."""
    field: str = ""
    """Dotted path inside the document, e.g. ``spec.rules[0].backendRefs[1].port``."""
    hint: str = ""
    severity: Severity = Severity.ERROR

    @classmethod
    def at(
        cls,
        origin: Origin | None,
        code: str,
        message: str,
        *,
        field: str = "",
        hint: str = "",
        severity: Severity = Severity.ERROR,
    ) -> Problem:
        if origin is None:
            return cls(code, message, field=field, hint=hint, severity=severity)
        return cls(
            code,
            message,
            file=origin.file,
            document=origin.document,
            resource=f"{origin.kind}/{origin.name}",
            field=field,
            hint=hint,
            severity=severity,
        )

    def location(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file)
        if self.document:
            parts.append(f"document {self.document}")
        if self.resource:
            parts.append(self.resource)
        where = ", ".join(parts)
        if self.field:
            where = f"{where}: {self.field}" if where else self.field
        return where

    def __str__(self) -> str:
        where = self.location()
        text = f"{self.severity.value} {self.code}: " + (f"{where}: " if where else "")
        text += self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    @classmethod
    def from_dict(cls, data: dict[str, str | int]) -> Problem:
        """The inverse of ``to_dict``: for clients reading problems from the admin API."""
        fields = {k: v for k, v in data.items() if k != "severity"}
        return cls(severity=Severity(data.get("severity", "error")), **fields)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, str | int]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "file": self.file,
            "document": self.document,
            "resource": self.resource,
            "field": self.field,
            "hint": self.hint,
        }


def errors(problems: list[Problem] | tuple[Problem, ...]) -> list[Problem]:
    return [p for p in problems if p.severity is Severity.ERROR]
