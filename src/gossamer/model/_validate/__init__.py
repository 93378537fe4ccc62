"""Cross-resource checks on a declared mesh. Pure: config in, problems out.

Per-document schema errors are found by the loader (``gossamer.api``); what needs the
whole mesh (references, conflicts, duplicates) is found here, in two tiers:

- ``validate``: what every apply checks. Errors refuse the change; warnings are things
  that certainly do not work as written (a match that is never selected, retries that
  cannot happen, a share of traffic sent to no instance) and are shown with the change.
- ``analyze``: ``validate`` plus advisories, risky choices that may be deliberate (a
  route relying on the mesh default timeout, two routes sharing a path). Only
  ``gossamer analyze`` reports them, so every live edit is not drowned in them.

Every code is documented in docs/reference/codes.md.
"""

from __future__ import annotations

import dataclasses

from gossamer.model._mesh import MeshConfig
from gossamer.model._problems import Problem, Severity
from gossamer.model._validate._policies import check_policies
from gossamer.model._validate._precedence import (
    advise_shared_paths,
    check_broader_shadowing,
    check_shadowing,
)
from gossamer.model._validate._resources import (
    check_calls,
    check_duplicates,
    check_external,
    check_gateways,
    check_server_first,
    check_service_ports,
)
from gossamer.model._validate._routes import advise_default_timeouts, check_routes

FORCEABLE = frozenset({"GSM0125", "GSM0126"})
"""Errors about a config Envoy can run exactly as written, though its requests would fail
(a share of traffic sent to a version with no instances, a server-first protocol
declared as http). ``apply --force`` applies a change whose only errors are these."""


def forced(problems: list[Problem]) -> list[Problem]:
    """``problems`` with forceable errors turned into warnings that say so."""
    return [
        dataclasses.replace(
            p,
            severity=Severity.WARNING,
            message=f"{p.message} (applied with --force)",
        )
        if p.code in FORCEABLE and p.severity is Severity.ERROR
        else p
        for p in problems
    ]


def validate(config: MeshConfig) -> list[Problem]:
    """Every problem in ``config`` that an apply checks; no errors means it can be applied."""
    services = {s.name: s for s in config.services()}
    return [
        *check_duplicates(config),
        *check_service_ports(config),
        *check_server_first(config),
        *check_routes(config, services),
        *check_shadowing(config, services),
        *check_broader_shadowing(config, services),
        *check_external(config, services),
        *check_calls(config, services),
        *check_gateways(config),
        *check_policies(config, services),
    ]


def analyze(config: MeshConfig) -> list[Problem]:
    """``validate`` plus the advisories only ``gossamer analyze`` reports: choices that
    are often mistakes but may be deliberate, so an apply does not warn about them."""
    services = {s.name: s for s in config.services()}
    return [
        *validate(config),
        *advise_default_timeouts(config),
        *advise_shared_paths(config, services),
    ]


__all__ = ["FORCEABLE", "analyze", "forced", "validate"]
