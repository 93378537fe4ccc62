"""The service graph: who calls whom, how often, how well, how fast. Pure: built from two
points of the mesh-wide series (rates are differences over the window between them).

Health per edge and node follows Kiali's default request thresholds: an error rate of
5xx above 0.1 % is degraded and above 20 % is a failure (configurable)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gossamer.model import MeshConfig
from gossamer.telemetry._aggregate import SeriesKey


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    degraded_error_percent: float = 0.1
    failure_error_percent: float = 20.0

    def health(self, error_percent: float, requests: float) -> str:
        if requests == 0:
            return "idle"
        if error_percent > self.failure_error_percent:
            return "failure"
        if error_percent > self.degraded_error_percent:
            return "degraded"
        return "healthy"


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (upper bound, count) buckets."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            span = count - lower_count
            return lower_bound + (bound - lower_bound) * (
                (rank - lower_count) / span if span else 0
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def _delta(
    new: Mapping[SeriesKey, float], old: Mapping[SeriesKey, float]
) -> dict[SeriesKey, float]:
    return {k: v - old.get(k, 0.0) for k, v in new.items()}


def graph(
    config: MeshConfig,
    old: Mapping[SeriesKey, float],
    new: Mapping[SeriesKey, float],
    seconds: float,
    thresholds: HealthThresholds = HealthThresholds(),
) -> dict[str, Any]:
    """Nodes (workloads, services, external services, gateways) and edges (source
    workload -> destination service) with request rate, error %, p50/p90/p99 latency,
    and TCP bytes per second, over the ``seconds`` between ``old`` and ``new``."""
    delta = _delta(new, old)
    seconds = max(seconds, 1e-9)
    edges: dict[tuple[str, str, str], dict[str, Any]] = {}
    buckets: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for (name, labels), value in delta.items():
        lab = dict(labels)
        if lab.get("reporter") != ("source" if name.startswith("istio_tcp") else "destination"):
            continue
        key = (
            lab.get("source_workload", "unknown"),
            lab.get("destination_service", ""),
            "tcp" if name.startswith("istio_tcp") else "http",
        )
        edge = edges.setdefault(
            key,
            {
                "source": key[0],
                "destination": key[1],
                "protocol": key[2],
                "requests": 0.0,
                "errors": 0.0,
                "sent_bytes": 0.0,
                "received_bytes": 0.0,
            },
        )
        if name == "istio_requests_total":
            edge["requests"] += value
            if lab.get("response_code", "").startswith("5"):
                edge["errors"] += value
        elif name == "istio_request_duration_milliseconds_bucket":
            le = lab.get("le", "+Inf")
            bound = float("inf") if le == "+Inf" else float(le)
            per = buckets.setdefault(key, [])
            for i, (b, c) in enumerate(per):
                if b == bound:
                    per[i] = (b, c + value)
                    break
            else:
                per.append((bound, value))
        elif name == "istio_tcp_sent_bytes_total":
            edge["sent_bytes"] += value
        elif name == "istio_tcp_received_bytes_total":
            edge["received_bytes"] += value
    out_edges = []
    for key, e in sorted(edges.items()):
        error_percent = 100 * e["errors"] / e["requests"] if e["requests"] else 0.0
        item: dict[str, Any] = {
            "source": e["source"],
            "destination": e["destination"],
            "source_node": _node_of(config, e["source"], "source"),
            "destination_node": _node_of(config, e["destination"], "destination"),
            "protocol": e["protocol"],
        }
        if e["protocol"] == "http":
            item.update(
                {
                    "requests_per_second": round(e["requests"] / seconds, 3),
                    "error_percent": round(error_percent, 3),
                    **{
                        f"p{int(q * 100)}_ms": _round(quantile(q, buckets.get(key, [])))
                        for q in (0.5, 0.9, 0.99)
                    },
                    "health": thresholds.health(error_percent, e["requests"]),
                }
            )
        else:
            item.update(
                {
                    "sent_bytes_per_second": round(e["sent_bytes"] / seconds, 3),
                    "received_bytes_per_second": round(e["received_bytes"] / seconds, 3),
                    "health": "healthy" if e["sent_bytes"] or e["received_bytes"] else "idle",
                }
            )
        out_edges.append(item)
    return {
        "window_seconds": round(seconds, 3),
        "nodes": _nodes(config, out_edges),
        "edges": out_edges,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _nodes(config: MeshConfig, edges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Workloads, services, external services and gateways, each with the worst health of
    the edges into it. Ids are ``<type>/<name>``: a workload and a service may share a name."""
    nodes: list[dict[str, Any]] = [
        {
            "id": f"workload/{w.name}",
            "type": "workload",
            "name": w.name,
            "version": w.version or "unknown",
            "services": list(w.services),
        }
        for w in config.workloads
    ]
    nodes += [
        {
            "id": f"service/{s.name}",
            "type": "service",
            "name": s.name,
            "workloads": list(s.workloads),
        }
        for s in config.services()
    ]
    nodes += [
        {"id": f"external/{e.name}", "type": "external", "name": e.name, "hosts": list(e.hosts)}
        for e in config.external_services
    ]
    nodes += [
        {"id": f"gateway/{g.name}", "type": "gateway", "name": g.name} for g in config.gateways
    ]
    order = {"healthy": 0, "idle": 0, "degraded": 1, "failure": 2}
    for node in nodes:
        inbound = [e["health"] for e in edges if e["destination_node"] == node["id"]]
        node["health"] = max(inbound, key=lambda h: order[h]) if inbound else "idle"
    return sorted(nodes, key=lambda n: n["id"])


def _node_of(config: MeshConfig, name: str, side: str) -> str:
    if side == "source":
        return f"gateway/{name}" if config.gateway(name) else f"workload/{name}"
    if any(e.name == name for e in config.external_services):
        return f"external/{name}"
    return f"service/{name}"


def dot(data: Mapping[str, Any]) -> str:
    """Graphviz DOT, for `gossamer graph -o dot | dot -Tsvg`."""
    colors = {"healthy": "darkgreen", "degraded": "orange", "failure": "red", "idle": "gray"}
    shapes = {"workload": "box", "service": "ellipse", "external": "octagon", "gateway": "house"}
    lines = ["digraph mesh {", "  rankdir=LR;"]
    for n in data["nodes"]:
        lines.append(f'  "{n["id"]}" [shape={shapes[n["type"]]}, color={colors[n["health"]]}];')
    for e in data["edges"]:
        if e["protocol"] == "http":
            label = f"{e['requests_per_second']} rps, {e['error_percent']}% err"
        else:
            label = f"{e['sent_bytes_per_second']}/{e['received_bytes_per_second']} B/s"
        lines.append(
            f'  "{e["source_node"]}" -> "{e["destination_node"]}" '
            f'[label="{label}", color={colors[e["health"]]}];'
        )
    lines.append("}")
    return "\n".join(lines) + "\n"
