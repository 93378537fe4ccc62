"""Checks on the order Envoy tries route candidates in: matches that are never selected
(identical to, or covered by, one tried first), and the advisory on two routes sharing a
path on one parent."""

from __future__ import annotations

from dataclasses import dataclass

from gossamer.model._mesh import MeshConfig, Service
from gossamer.model._problems import Problem, Severity
from gossamer.model._routing import (
    HTTPRoute,
    ParentKind,
    PathMatch,
    PathMatchType,
    Precedence,
    RouteMatch,
    precedence,
)
from gossamer.model._validate._common import (
    REGEX_SPECIAL,
    attaches,
    regex_literal_prefix,
    served_hosts,
)


def _match_key(match: RouteMatch) -> tuple[object, ...]:
    return (
        match.path,
        frozenset(match.headers),
        frozenset(match.query_params),
        match.method,
    )


def check_shadowing(config: MeshConfig, services: dict[str, Service]) -> list[Problem]:
    """A match identical to one that Envoy tries first on the same service port, or
    gateway port and host, can never be selected."""
    problems = []
    reported: set[tuple[str, int, int]] = set()
    for found in _candidates_by_slot(config, services).values():
        seen: dict[tuple[object, ...], _Candidate] = {}
        for then in found:
            first = seen.setdefault(_match_key(then.match), then)
            key = (then.route.name, then.rule, then.index)
            if (first.route is then.route and first.rule == then.rule) or key in reported:
                continue
            reported.add(key)
            problems.append(
                Problem.at(
                    then.route.origin,
                    "GSM0110",
                    f"this match is identical to one in {first.where(then.route)}, which "
                    "takes precedence: it never selects this rule",
                    field=f"spec.rules[{then.rule}].matches[{then.index}]",
                    hint="remove one of them, or make this match more specific",
                    severity=Severity.WARNING,
                )
            )
    return problems


@dataclass(frozen=True, slots=True)
class _Candidate:
    """One (route, rule, match) attached to one parent slot (see ``_slots``)."""

    route: HTTPRoute
    rule: int
    index: int
    match: RouteMatch

    def precedence(self) -> Precedence:
        """The order Envoy tries candidates in: the same as the translation's."""
        return precedence(self.match, self.route.name, self.rule)

    def where(self, other: HTTPRoute) -> str:
        """This candidate's rule, as seen from a finding on ``other``."""
        if self.route is other:
            return f"rule {self.rule} of this route"
        return f"{self.route.origin or self.route.name} rule {self.rule}"


Slot = tuple[str, str, int, str]
"""(kind, service or gateway, port, host) where candidates compete for the same requests."""


def _slots(config: MeshConfig, services: dict[str, Service], route: HTTPRoute) -> list[Slot]:
    """Where a route's candidates go: each HTTP port of a service parent, each (port, host)
    of a gateway parent. Unknown parents (reported elsewhere) have none."""
    slots: list[Slot] = []
    for parent in route.parents:
        if parent.kind is ParentKind.SERVICE:
            svc = services.get(parent.service)
            if svc is None:
                continue
            ports = [p.port for p in svc.ports if p.protocol.is_http]
            for port in [parent.port] if parent.port is not None else ports:
                slots.append(("Service", svc.name, port, ""))
        else:
            gateway = config.gateway(parent.name)
            for lst in gateway.listeners if gateway else ():
                if attaches(parent, lst):
                    for host in served_hosts(route, lst):
                        slots.append(("Gateway", parent.name, lst.port, host))
    return list(dict.fromkeys(slots))


def _candidates_by_slot(
    config: MeshConfig, services: dict[str, Service]
) -> dict[Slot, list[_Candidate]]:
    """Every slot's candidates, in the order Envoy tries them."""
    out: dict[Slot, list[_Candidate]] = {}
    for route in config.routes:
        for slot in _slots(config, services, route):
            for r, rule in enumerate(route.rules):
                for m, match in enumerate(rule.matches):
                    out.setdefault(slot, []).append(_Candidate(route, r, m, match))
    for found in out.values():
        found.sort(key=_Candidate.precedence)
    return out


def _describe_slot(slot: Slot) -> str:
    kind, name, port, host = slot
    if kind == "Service":
        return f"service `{name}` port {port}"
    return f"gateway `{name}` port {port}" + (f" host {host}" if host != "*" else "")


def _describe_path(match: RouteMatch) -> str:
    return f"{match.path.type.value} `{match.path.value}`"


def _path_covers(first: PathMatch, then: PathMatch) -> bool:
    """Whether every request path ``then`` matches is matched by ``first`` as well."""
    if first == then:
        return True
    regex = PathMatchType.REGULAR_EXPRESSION
    if first.type is PathMatchType.PATH_PREFIX and then.type is not regex:
        prefix = first.value.rstrip("/")
        value = then.value.rstrip("/") if then.type is PathMatchType.PATH_PREFIX else then.value
        return not prefix or value == prefix or value.startswith(prefix + "/")
    if first.type is regex:
        literal = regex_literal_prefix(first.value)
        if literal is None:
            return False
        if then.type is regex:
            inner = regex_literal_prefix(then.value)
            if inner is None and not any(c in REGEX_SPECIAL for c in then.value):
                inner = then.value  # a regular expression without specials is a literal
            return inner is not None and inner.startswith(literal)
        return then.value.startswith(literal)
    return False


def _covers(first: RouteMatch, then: RouteMatch) -> bool:
    """Whether every request ``then`` matches is matched by ``first``: its path covers, and
    its other conditions are a subset of ``then``'s."""
    return (
        _path_covers(first.path, then.path)
        and first.method in (None, then.method)
        and set(first.headers) <= set(then.headers)
        and set(first.query_params) <= set(then.query_params)
    )


def check_broader_shadowing(config: MeshConfig, services: dict[str, Service]) -> list[Problem]:
    """A match that a broader one tried earlier covers entirely (identical ones are
    GSM0110): in practice a regular expression such as ``/.*``, which Envoy tries before
    every prefix, hiding them."""
    problems = []
    reported: set[tuple[str, int, int]] = set()
    for found in _candidates_by_slot(config, services).values():
        for n, then in enumerate(found):
            key = (then.route.name, then.rule, then.index)
            if key in reported:
                continue
            first = next(
                (
                    c
                    for c in found[:n]
                    if not (c.route is then.route and c.rule == then.rule)
                    and _match_key(c.match) != _match_key(then.match)
                    and _covers(c.match, then.match)
                ),
                None,
            )
            if first is None:
                continue
            reported.add(key)
            problems.append(
                Problem.at(
                    then.route.origin,
                    "GSM0123",
                    f"this match is never selected: {first.where(then.route)} matches "
                    f"{_describe_path(first.match)}, is tried first, and matches every request "
                    "this one does",
                    field=f"spec.rules[{then.rule}].matches[{then.index}]",
                    hint="regular expressions are tried before path prefixes; narrow the "
                    "broader match, or make it a PathPrefix",
                    severity=Severity.WARNING,
                )
            )
    return problems


def advise_shared_paths(config: MeshConfig, services: dict[str, Service]) -> list[Problem]:
    """Two routes with a rule for the same path on the same parent: Gateway API merges
    them, and which one a request reaches depends on their other conditions, then on route
    names. Identical matches are GSM0110 instead."""
    problems = []
    reported: set[tuple[str, str, PathMatch]] = set()
    for slot, found in _candidates_by_slot(config, services).items():
        for n, then in enumerate(found):
            for first in found[:n]:
                if first.route.name == then.route.name or first.match.path != then.match.path:
                    continue
                if _match_key(first.match) == _match_key(then.match):
                    continue
                earlier, later = sorted((first, then), key=lambda c: c.route.name)
                key = (later.route.name, earlier.route.name, later.match.path)
                if key in reported:
                    continue
                reported.add(key)
                problems.append(
                    Problem.at(
                        later.route.origin,
                        "GSM0122",
                        f"{earlier.route.origin or earlier.route.name} also routes "
                        f"{_describe_path(later.match)} on {_describe_slot(slot)}: which of "
                        "the two routes a request reaches depends on their other conditions, "
                        "then on route names",
                        field=f"spec.rules[{later.rule}].matches[{later.index}].path",
                        hint="give each parent and path one route: move these rules into one "
                        "route, where their order is explicit",
                        severity=Severity.WARNING,
                    )
                )
    return problems
