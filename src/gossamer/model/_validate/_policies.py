"""Checks on TrafficPolicies: targets, one policy per target, health checks, outlier
detection, locality and zones, compression."""

from __future__ import annotations

from gossamer.model._mesh import MeshConfig, Service
from gossamer.model._policy import Locality, PolicyTargetKind, TrafficPolicy
from gossamer.model._problems import Problem, Severity
from gossamer.model._validate._common import did_you_mean


def _check_shared_compression(config: MeshConfig, policy: TrafficPolicy) -> list[Problem]:
    """Compression happens in a workload's sidecar, for every service it backs: they must
    agree, or one service's setting would silently apply to another."""
    problems = []
    for target in policy.targets:
        for w in config.workloads:
            if target not in w.services:
                continue
            for other in w.services:
                other_policy = config.policy_for(other)
                theirs = other_policy.compression if other_policy else None
                if theirs != policy.compression:
                    problems.append(
                        Problem.at(
                            policy.origin,
                            "GSM0121",
                            f"workload `{w.name}` backs `{target}` and `{other}`, whose "
                            "compression settings differ; one sidecar compresses for both",
                            field="spec.compression",
                            hint=f"give `{other}` the same compression (e.g. add it to this "
                            "policy's targetRefs)",
                        )
                    )
                    return problems
    return problems


_COMPRESSED_TYPES = (
    "image/",
    "video/",
    "audio/",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/zstd",
    "font/woff2",
)


def check_policies(config: MeshConfig, services: dict[str, Service]) -> list[Problem]:
    problems: list[Problem] = []
    owner: dict[tuple[PolicyTargetKind, str], str] = {}
    for policy in config.policies:
        o = policy.origin
        for i, target in enumerate(policy.targets):
            field = f"spec.targetRefs[{i}].name"
            if policy.target_kind is PolicyTargetKind.GATEWAY:
                known = [g.name for g in config.gateways]
            else:
                known = list(services)
            if target not in known:
                problems.append(
                    Problem.at(
                        o,
                        "GSM0115",
                        f"target {policy.target_kind.value.lower()} `{target}` does not exist",
                        field=field,
                        hint=did_you_mean(target, known),
                    )
                )
                continue
            first = owner.setdefault((policy.target_kind, target), policy.name)
            if first != policy.name:
                problems.append(
                    Problem.at(
                        o,
                        "GSM0116",
                        f"{policy.target_kind.value} `{target}` already has TrafficPolicy "
                        f"`{first}`; two policies would disagree",
                        field=field,
                        hint="merge them into one TrafficPolicy",
                    )
                )
            svc = services.get(target)
            hc = policy.health_check
            http_check = hc is not None and hc.http_path is not None
            if svc is not None and http_check and not any(p.protocol.is_http for p in svc.ports):
                problems.append(
                    Problem.at(
                        o,
                        "GSM0120",
                        f"an HTTP health check on `{target}`, which has only tcp ports",
                        field="spec.healthCheck.http",
                        hint="use `tcp: {}` for tcp services",
                    )
                )
            if svc is not None and policy.locality is not None:
                zoneless = [
                    w
                    for w in svc.workloads
                    if (wl := config.workload(w)) is not None and not wl.zone
                ]
                if zoneless:
                    problems.append(
                        Problem.at(
                            o,
                            "GSM0118",
                            f"locality routing for `{target}`, but workload(s) "
                            f"{', '.join(zoneless)} declare no zone",
                            field="spec.locality",
                            hint="set spec.zone on every workload backing the service",
                            severity=Severity.WARNING,
                        )
                    )
        if policy.locality is not None and policy.target_kind is PolicyTargetKind.SERVICE:
            problems += _check_locality_zones(config, services, policy, policy.locality)
        od = policy.outlier_detection
        if od is not None and od.max_ejection_percent == 100:
            problems.append(
                Problem.at(
                    o,
                    "GSM0117",
                    "outlier detection may eject every endpoint (maxEjectionPercent 100), "
                    "leaving callers with none",
                    field="spec.outlierDetection.maxEjectionPercent",
                    hint="keep some endpoints in rotation, e.g. 50",
                    severity=Severity.WARNING,
                )
            )
        comp = policy.compression
        if comp is not None and policy.target_kind is PolicyTargetKind.SERVICE:
            problems += _check_shared_compression(config, policy)
        if comp is not None:
            already = [t for t in comp.content_types if t.startswith(_COMPRESSED_TYPES)]
            if already:
                problems.append(
                    Problem.at(
                        o,
                        "GSM0119",
                        f"compressing content that is already compressed: {already}",
                        field="spec.compression.contentTypes",
                        hint="compression helps text, JSON, XML and JavaScript; remove these",
                        severity=Severity.WARNING,
                    )
                )
    return problems


def _check_locality_zones(
    config: MeshConfig, services: dict[str, Service], policy: TrafficPolicy, locality: Locality
) -> list[Problem]:
    """``distribute`` entries for zones where nothing runs match no caller, and shares to
    zones without instances of the service go nowhere."""
    problems = []
    zones = sorted({w.zone for w in config.workloads if w.zone})
    known = ", ".join(zones) if zones else "none (no workload sets spec.zone)"
    for i, share in enumerate(locality.distribute):
        field = f"spec.locality.distribute[{i}]"
        if share.from_zone not in zones:
            problems.append(
                Problem.at(
                    policy.origin,
                    "GSM0129",
                    f"no workload runs in zone `{share.from_zone}`, so this entry applies to "
                    "no caller",
                    field=f"{field}.from",
                    hint=f"zones in this mesh: {known}",
                    severity=Severity.WARNING,
                )
            )
        for target in policy.targets:
            svc = services.get(target)
            if svc is None:
                continue
            has = {
                w.zone
                for name in svc.workloads
                if (w := config.workload(name)) is not None and w.replicas > 0 and w.zone
            }
            empty = [(zone, pct) for zone, pct in share.to if pct and zone not in has]
            if not empty:
                continue
            left = sum(pct for zone, pct in share.to if zone in has)
            what = ", ".join(f"{pct}% to zone `{zone}`" for zone, pct in empty)
            outcome = (
                f"callers in `{share.from_zone}` get no instance of `{target}` at all"
                if not left
                else "those calls go to the other zones listed"
            )
            problems.append(
                Problem.at(
                    policy.origin,
                    "GSM0129",
                    f"{what}, where `{target}` has no instance: {outcome}",
                    field=f"{field}.to",
                    hint="zones with instances of `"
                    + target
                    + "`: "
                    + (", ".join(sorted(has)) or "none"),
                    severity=Severity.WARNING,
                )
            )
    return problems
