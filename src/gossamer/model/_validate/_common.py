"""Helpers the checks share: hints, and how routes meet gateway listeners and paths."""

from __future__ import annotations

import difflib

from gossamer.model._mesh import GatewayListener, Service
from gossamer.model._routing import HTTPRoute, ParentRef


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    if choices:
        return "known: " + ", ".join(sorted(choices)[:10])
    return ""


def ports_hint(svc: Service) -> str:
    return f"ports of `{svc.name}`: " + ", ".join(str(p.port) for p in svc.ports)


def kind_of(route: HTTPRoute) -> str:
    return route.origin.kind if route.origin else "HTTPRoute"


REGEX_SPECIAL = frozenset(".^$*+?()[]{}|\\")


def regex_literal_prefix(regex: str) -> str | None:
    """``L`` when ``regex`` is a literal ``L`` followed by ``.*`` (``/api/.*``), else None."""
    if not regex.endswith(".*"):
        return None
    literal = regex[:-2]
    if any(c in REGEX_SPECIAL for c in literal):
        return None
    return literal


def _host_matches(pattern: str, host: str) -> bool:
    """A listener hostname (``*.example.com`` or exact) against a route hostname, as the
    gateway translation intersects them."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) or host == pattern
    return host == pattern


def served_hosts(route: HTTPRoute, listener: GatewayListener) -> list[str]:
    """The hosts a gateway route serves on one listener (``*``: any)."""
    if route.hostnames:
        if listener.hostname is None:
            return list(route.hostnames)
        return [h for h in route.hostnames if _host_matches(listener.hostname, h)]
    return [listener.hostname or "*"]


def attaches(parent: ParentRef, listener: GatewayListener) -> bool:
    return parent.section in (None, listener.name) and parent.port in (None, listener.port)
