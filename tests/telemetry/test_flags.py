"""Response flags: flagged requests from the access log service split Istio's counts."""

from __future__ import annotations

from typing import Any

from gossamer.api import Source, load_config
from gossamer.model import MeshState, place, sequential_ports
from gossamer.telemetry import Totals, flagged_counts
from gossamer.telemetry._aggregate import SeriesKey

MESH = """
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: client}
spec: {command: [sleep, "1"]}
---
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: orders}
spec: {ports: [{port: 80}], command: [sleep, "1"], version: v1}
"""


def _state() -> MeshState:
    config, problems = load_config([Source("mesh.yaml", MESH)])
    assert config is not None, problems
    return MeshState(config, place(config, None, sequential_ports(40000)))


def _entry(**kw: Any) -> dict[str, Any]:
    return {"kind": "http", "response_code": 503, "response_flags": "UF", **kw}


def _labels(key: SeriesKey) -> dict[str, str]:
    return dict(key[1])


def test_router_flags_are_counted_ones_and_fault_aborts_are_not() -> None:
    state = _state()
    counts = flagged_counts(
        state,
        [
            _entry(node="client-0", direction="outbound", upstream_cluster="outbound|80||orders"),
            _entry(
                node="client-0",
                direction="outbound",
                upstream_cluster="outbound|80||orders",
                response_flags="FI",
            ),
            _entry(
                node="orders-0",
                direction="inbound",
                response_flags="UC",
                request_headers={"x-gossamer-source-workload": "client"},
            ),
            # No source header: the inbound statistics did not count it per edge either.
            _entry(node="orders-0", direction="inbound", response_flags="UC"),
            _entry(node="client-0", direction="outbound", response_flags="-"),
            _entry(node="nobody", direction="outbound", upstream_cluster="outbound|80||orders"),
        ],
    )
    [(counted_uf, n1), (counted_uc, n2)] = sorted(counts.counted.items(), key=lambda kv: kv[0])
    assert n1 == n2 == 1
    by_flag = {_labels(k)["response_flags"]: _labels(k) for k in (counted_uf, counted_uc)}
    assert by_flag["UF"]["reporter"] == "source"
    assert by_flag["UF"]["destination_workload"] == "orders"
    assert by_flag["UC"]["reporter"] == "destination"
    assert by_flag["UC"]["source_workload"] == "client"
    assert by_flag["UC"]["destination_version"] == "v1"
    [(fault, n3)] = counts.uncounted.items()
    assert n3 == 1 and _labels(fault)["response_flags"] == "FI"


def test_settle_moves_flagged_requests_without_any_counter_going_down() -> None:
    state = _state()
    entry = _entry(node="client-0", direction="outbound", upstream_cluster="outbound|80||orders")
    counts = flagged_counts(state, [entry, entry, entry])
    [flagged] = counts.counted
    plain = (flagged[0], tuple((k, "-" if k == "response_flags" else v) for k, v in flagged[1]))
    totals = Totals()
    totals.add("client-0", {plain: 5})  # the statistics counted 5, 2 of them flagged so far
    totals.add_flagged(flagged_counts(state, [entry, entry]))
    totals.settle()
    assert totals.series[plain] == 3 and totals.series[flagged] == 2
    # The third flagged request arrives before the statistics count it: nothing moves yet
    # (the "-" series may not go below what was shown).
    totals.add_flagged(flagged_counts(state, [entry]))
    totals.settle()
    assert totals.series[plain] == 3 and totals.series[flagged] == 2
    totals.add("client-0", {plain: 6})
    totals.settle()
    assert totals.series[plain] == 3 and totals.series[flagged] == 3
    assert not totals.pending_flags
