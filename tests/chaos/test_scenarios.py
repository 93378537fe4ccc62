"""Chaos scenarios (issue 7): steady load between several services while an upstream
restarts, crashes, flaps or gets rejected config, or the control plane dies; failed
requests counted exactly and written to a report per scenario.

The mesh of every scenario::

    client-0 --+--> front (1 instance; calls orders on every request) --> orders
               +--> orders (3 instances: orders-0, orders-1, orders-2)

The load alternates ``http://front/`` and ``http://orders/`` from client-0's sidecar, so
half the requests cross two hops and half go straight to an orders instance (whose
access log entry at client-0 names the instance that served it). Each scenario starts a
mesh of its own and keeps its phases to a few seconds.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from load import Load, Outcome, Report, client_key, deepest_failure, upstream_host
from meshkit import SHOP, Mesh, config_dump, free_port, workload

GATEWAY_API = "gateway.networking.k8s.io/v1"
CLIENT = "client-0"
ORDERS = ["orders-0", "orders-1", "orders-2"]
URLS = ["http://front/", "http://orders/"]

Record = Callable[[Report], Path]


# -- the mesh ------------------------------------------------------------------------------


def _route(name: str, parent: dict[str, Any], backend: str, timeout: str) -> dict[str, Any]:
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [parent],
            "rules": [
                {"backendRefs": [{"name": backend, "port": 80}], "timeouts": {"request": timeout}}
            ],
        },
    }


def mesh_text(
    *,
    orders_env: dict[str, str] | None = None,
    orders_timeout: str = "5s",
    gateway_port: int | None = None,
    extra: list[dict[str, Any]] | None = None,
) -> str:
    orders = json.loads(workload("orders", services=["orders"], replicas=len(ORDERS)))
    if orders_env:
        orders["spec"]["env"] = orders_env
    docs: list[dict[str, Any]] = [
        json.loads(workload("client", port=None, command=["sleep", "100000"])),
        json.loads(
            workload(
                "front",
                services=["front"],
                command=[sys.executable, str(SHOP), "--name", "front", "--calls", "http://orders/"],
            )
        ),
        orders,
        _route(
            "orders", {"kind": "Service", "name": "orders", "port": 80}, "orders", orders_timeout
        ),
        _route("front", {"kind": "Service", "name": "front", "port": 80}, "front", "5s"),
    ]
    if gateway_port is not None:
        docs.append(
            {
                "apiVersion": GATEWAY_API,
                "kind": "Gateway",
                "metadata": {"name": "ingress"},
                "spec": {"listeners": [{"name": "http", "port": gateway_port, "protocol": "HTTP"}]},
            }
        )
        docs.append(
            _route(
                "site",
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "ingress"},
                "front",
                "5s",
            )
        )
    docs += extra or []
    return "\n---\n".join(json.dumps(d) for d in docs) + "\n"


# -- helpers -------------------------------------------------------------------------------


def start_load(mesh: Mesh, scenario: str, **kwargs: Any) -> Load:
    port = mesh.instance(CLIENT)["outbound_http_port"]
    return Load(port, URLS, scenario=scenario, **kwargs)


def finish(load: Load, mesh: Mesh) -> Report:
    return load.report(mesh.state_dir / "access", CLIENT)


def proxies(mesh: Mesh) -> list[dict[str, Any]]:
    with urllib.request.urlopen(mesh.api + "/api/v1/proxies", timeout=10) as r:
        data: dict[str, Any] = json.loads(r.read())
    return list(data.get("proxies", []))


def all_synced(mesh: Mesh, nodes: set[str]) -> bool:
    """Whether the control plane answers, knows every proxy in ``nodes`` and has every
    proxy in sync (as `gossamer proxy-status` exits 0)."""
    try:
        found = proxies(mesh)
    except OSError:
        return False
    return {p["node"] for p in found} >= nodes and all(
        t.get("state") in ("SYNCED", "NOT_SENT") for p in found for t in p.get("types", {}).values()
    )


def conclude(record: Record, report: Report, problems: list[str]) -> None:
    """Write the report, then fail with every unmet expectation."""
    report.passed = not problems
    report.details["problems"] = problems
    path = record(report)
    assert not problems, f"{report.summary()}\nreport: {path}\n" + "\n".join(problems)


def inbound_hosts(mesh: Mesh) -> dict[str, str]:
    """``127.0.0.1:<inbound port>`` -> instance, for the orders instances."""
    return {
        f"127.0.0.1:{i['inbound_ports']['80']}": i["name"]
        for i in mesh.status()["instances"]
        if i["name"] in ORDERS
    }


def served_counts(load: Load) -> dict[str, int]:
    """Successful direct calls to orders, by the instance that answered."""
    return dict(Counter(o.served_by for o in load.outcomes if o.ok and o.url.endswith("//orders/")))


def failures_by_instance(load: Load, hosts: dict[str, str]) -> Counter[str]:
    """Failed requests by the orders instance their hop to orders went to (``unknown``
    when no proxy logged such a hop, ``none`` when the request never reached orders)."""
    out: Counter[str] = Counter()
    for o in load.failed():
        chain = load.entries.get(o.request_id, [])
        host = upstream_host(chain, "orders")
        out[hosts.get(host, f"unknown {host}") if host else "none"] += 1
    return out


def wait_until(predicate: Callable[[], Any], within_s: float, what: str) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {within_s}s waiting for {what}")


# -- a. rolling restart --------------------------------------------------------------------


def test_rolling_restart_of_an_upstream_fails_no_request(mesh_factory: Any, record: Record) -> None:
    mesh = mesh_factory(mesh_text())
    before = {i["name"]: i["app_pid"] for i in mesh.status()["instances"]}

    def restarted(s: dict[str, Any]) -> bool:
        return all(
            i["app_pid"] not in (None, before[i["name"]]) and i["state"] == "running"
            for i in s["instances"]
            if i["name"] in ORDERS
        )

    with start_load(mesh, "rolling-restart") as load:
        time.sleep(1.0)
        started = time.monotonic()
        revision = mesh.edit(mesh_text(orders_env={"RELEASE": "2"}))
        mesh.wait_for(lambda s: s["revision"] > revision and restarted(s), 40, "orders restarted")
        restart_s = time.monotonic() - started
        time.sleep(1.0)
    report = finish(load, mesh)
    report.durations["rolling_restart"] = round(restart_s, 3)
    after = {i["name"]: i["app_pid"] for i in mesh.status()["instances"]}
    report.details["served_by"] = served_counts(load)
    problems = []
    if report.failed:
        problems.append(
            f"{report.failed} failed requests: {report.failures} (causes {report.causes})"
        )
    untouched = [n for n in ("client-0", "front-0") if after[n] != before[n]]
    if untouched:
        problems.append(f"workloads that did not change were restarted: {untouched}")
    conclude(record, report, problems)


# -- b. a config Envoy rejects -------------------------------------------------------------

# What validation cannot see: the certificate files exist (GSM0207 checks that), but hold
# no certificate. Envoy reads them when it builds the listener, and NACKs it.
BAD_CERT = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"


def with_bad_tls_listener(text: str, port: int) -> str:
    """The mesh with an HTTPS listener on the gateway whose certificate Envoy cannot load."""
    docs = [json.loads(d) for d in text.split("\n---\n")]
    for doc in docs:
        if doc["kind"] == "Gateway":
            doc["spec"]["listeners"].append(
                {
                    "name": "https",
                    "port": port,
                    "protocol": "HTTPS",
                    "hostname": "secure.shop.example",
                    "tls": {
                        "mode": "Terminate",
                        "options": {
                            "gossamer.dev/certificate-file": "bad.crt",
                            "gossamer.dev/private-key-file": "bad.key",
                        },
                    },
                }
            )
    return "\n---\n".join(json.dumps(d) for d in docs) + "\n"


def proxy_types(mesh: Mesh, node: str) -> dict[str, Any]:
    return dict(next(p for p in proxies(mesh) if p["node"] == node)["types"])


def route_timeout(admin_port: int, route_name: str) -> str | None:
    """The timeout of route ``route_name`` as the Envoy at ``admin_port`` runs it."""
    dump = config_dump(admin_port, "dynamic_route_configs")
    for config in dump.get("configs", []):
        for vhost in config.get("route_config", {}).get("virtual_hosts", []):
            for route in vhost.get("routes", []):
                if route.get("name") == route_name:
                    return str(route.get("route", {}).get("timeout"))
    return None


def test_config_envoy_rejects_stays_with_its_gateway(mesh_factory: Any, record: Record) -> None:
    gateway_port, tls_port = free_port(), free_port()
    mesh = mesh_factory(mesh_text(gateway_port=gateway_port))
    for name in ("bad.crt", "bad.key"):
        (mesh.dir / name).write_text(BAD_CERT)
    client_admin = mesh.instance(CLIENT)["admin_port"]
    sidecars = [CLIENT, "front-0", *ORDERS]
    problems: list[str] = []
    with start_load(mesh, "nack-isolation") as load:
        time.sleep(1.0)
        rejected = with_bad_tls_listener(mesh_text(gateway_port=gateway_port), tls_port)
        revision = mesh.edit(rejected)
        mesh.wait_for(lambda s: s["revision"] > revision, 20, "the bad listener applied")
        nacked = wait_until(
            lambda: proxy_types(mesh, "ingress.gateway")["listeners"].get("state") == "NACKED",
            10,
            "the gateway to NACK its listeners",
        )
        # A harmless change after it: another route's timeout, for the sidecars only.
        routes_before = {n: proxy_types(mesh, n)["routes"]["acked_version"] for n in sidecars}
        changed_at = time.monotonic()
        revision = mesh.edit(
            with_bad_tls_listener(
                mesh_text(gateway_port=gateway_port, orders_timeout="7s"), tls_port
            )
        )
        mesh.wait_for(lambda s: s["revision"] > revision, 20, "the timeout change applied")
        wait_until(
            lambda: all(
                proxy_types(mesh, n)["routes"]["state"] == "SYNCED"
                and proxy_types(mesh, n)["routes"]["acked_version"] != routes_before[n]
                for n in (CLIENT, "front-0")
            ),
            10,
            "the callers of orders to apply the new timeout",
        )
        propagated_s = time.monotonic() - changed_at
        applied = route_timeout(client_admin, "orders/rule-0")
        # The gateway keeps serving its last good listeners.
        gateway_replies = Counter(get_via_gateway(gateway_port, "shop.example") for _ in range(5))
        time.sleep(1.0)
    report = finish(load, mesh)
    report.durations["timeout_change_reached_callers"] = round(propagated_s, 3)
    proxy_status = mesh.cli("proxy-status", "-o", "json")
    status_json = mesh.status()
    status_text = mesh.cli("status")
    gateway_listeners = next(
        p for p in json.loads(proxy_status.stdout)["proxies"] if p["node"] == "ingress.gateway"
    )["types"]["listeners"]
    json_listeners = status_json["gateways"][0]["proxy"]["types"]["listeners"]
    report.details.update(
        {
            "nacked": bool(nacked),
            "envoy_error": gateway_listeners.get("error", ""),
            "nacks": gateway_listeners.get("nacks"),
            "proxy_status_user_resources": gateway_listeners.get("user_resources"),
            "status_json_gateway_listeners": json_listeners,
            "status_text_nack_lines": [
                line
                for line in status_text.stdout.splitlines()
                if "NACK" in line or "from " in line
            ],
            "client_orders_route_timeout": applied,
            "gateway_replies": {str(k): v for k, v in gateway_replies.items()},
            "sidecar_routes": {n: proxy_types(mesh, n)["routes"]["state"] for n in sidecars},
        }
    )
    if report.failed:
        problems.append(
            f"{report.failed} failed requests: {report.failures} (causes {report.causes})"
        )
    if "bad.crt" not in gateway_listeners.get("error", ""):
        problems.append(f"the gateway's NACK is not the certificate's: {gateway_listeners}")
    for where, listeners in (("proxy-status", gateway_listeners), ("status", json_listeners)):
        if not any("Gateway/ingress" in r for r in listeners.get("user_resources", [])):
            problems.append(f"{where} does not map the NACK to Gateway/ingress: {listeners}")
    if applied != "7s":
        problems.append(f"client-0 runs orders/rule-0 with timeout {applied}, not the new 7s")
    if gateway_replies != Counter({200: 5}):
        problems.append(f"the gateway stopped serving its last good listeners: {gateway_replies}")
    not_synced = {n: s for n, s in report.details["sidecar_routes"].items() if s != "SYNCED"}
    if not_synced:
        problems.append(f"sidecars not in sync after the NACK: {not_synced}")
    if not any("ingress.gateway" in line for line in report.details["status_text_nack_lines"]):
        problems.append(
            "`gossamer status` shows no NACK line for ingress.gateway; it printed:\n"
            + status_text.stdout
        )
    conclude(record, report, problems)


def get_via_gateway(port: int, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/", headers={"Host": host})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


# -- c. flapping endpoints -----------------------------------------------------------------


def test_flapping_endpoint_fails_no_request_on_healthy_ones(
    mesh_factory: Any, record: Record
) -> None:
    mesh = mesh_factory(mesh_text())
    victim = "orders-2"
    hosts = inbound_hosts(mesh)
    kills: list[float] = []
    with start_load(mesh, "flapping-endpoint") as load:
        time.sleep(1.0)
        flap_start = time.monotonic()
        killed: set[int] = set()
        back: dict[int, float] = {}
        # Kill the app each time it has been back in callers' endpoints for a moment (so
        # it takes some requests): the supervisor restarts it (0.2 s backoff, doubling)
        # and `up` removes, then re-adds, its endpoint.
        while time.monotonic() - flap_start < 4.0:
            inst = mesh.instance(victim)
            pid = inst["app_pid"]
            if inst["state"] == "running" and pid and pid not in killed:
                since = back.setdefault(pid, time.monotonic())
                if time.monotonic() - since >= FLAP_DWELL_S:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                    kills.append(round(time.monotonic() - flap_start, 3))
            time.sleep(0.02)
        flap_end = time.monotonic()
        mesh.wait_for(
            lambda s: all(i["state"] == "running" for i in s["instances"]),
            20,
            "the flapping instance running again",
        )
        time.sleep(1.0)
    report = finish(load, mesh)
    by_instance = failures_by_instance(load, hosts)
    on_victim = [
        o
        for o in load.failed()
        if hosts.get(upstream_host(load.entries.get(o.request_id, []), "orders")) == victim
    ]
    report.details.update(
        {
            "flapping": victim,
            "kills_at_s": kills,
            "failures_by_instance": dict(by_instance),
            "failures_on_flapping_by_flags": dict(Counter(report_key(load, o) for o in on_victim)),
            "served_by": served_counts(load),
            "served_by_flapping_while_it_flapped": sum(
                o.ok and o.served_by == victim and flap_start <= o.started <= flap_end
                for o in load.outcomes
            ),
        }
    )
    problems = []
    healthy = {k: v for k, v in by_instance.items() if k != victim}
    if healthy:
        problems.append(
            f"failed requests not on the flapping {victim}: {healthy} "
            f"(all failures: {report.failures}, causes {report.causes})"
        )
    if len(kills) < 3:
        problems.append(f"the endpoint flapped only {len(kills)} times")
    conclude(record, report, problems)


FLAP_DWELL_S = 0.15
"""How long the flapping instance serves before each kill."""


def report_key(load: Load, outcome: Outcome) -> str:
    """The client's ``<status> <flags>`` and, after ``<-``, where it failed."""
    chain = load.entries.get(outcome.request_id, [])
    cause = deepest_failure(chain)
    where = (
        f" <- {cause['node']} {cause.get('direction')} {cause.get('response_code')} "
        f"{cause.get('response_flags') or '-'}"
        if cause
        else ""
    )
    return client_key(outcome, chain, CLIENT) + where


# -- d. a killed sidecar -------------------------------------------------------------------


def test_killed_sidecar_fails_only_requests_in_flight(mesh_factory: Any, record: Record) -> None:
    mesh = mesh_factory(mesh_text())
    victim = "orders-1"
    hosts = inbound_hosts(mesh)
    with start_load(mesh, "killed-sidecar") as load:
        time.sleep(1.0)
        before = mesh.instance(victim)
        in_flight = load.in_flight()
        killed_at = time.monotonic()
        os.kill(before["envoy_pid"], signal.SIGKILL)
        mesh.wait_for(
            lambda s: any(
                i["name"] == victim
                and i["envoy_restarts"] == 1
                and i["state"] == "running"
                and i["proxy"]["synced"]
                for i in s["instances"]
            ),
            20,
            "the sidecar restarted and synced",
        )
        synced_s = time.monotonic() - killed_at
        served = wait_until(
            lambda: next(
                (
                    o
                    for o in list(load.outcomes)
                    if o.ok and o.served_by == victim and o.started > killed_at
                ),
                None,
            ),
            20,
            f"a request served by {victim} again",
        )
        time.sleep(1.0)
    report = finish(load, mesh)
    report.durations["sidecar_synced_again"] = round(synced_s, 3)
    report.durations["recovery"] = round(served.ended - killed_at, 3)
    by_instance = failures_by_instance(load, hosts)
    failed = load.failed()
    report.details.update(
        {
            "killed": f"{victim} envoy pid {before['envoy_pid']}",
            "in_flight_at_kill": in_flight,
            "failures_by_instance": dict(by_instance),
            "failures_sent_after_kill": sum(o.started > killed_at for o in failed),
            "last_failure_sent_after_kill_s": round(
                max((o.started - killed_at for o in failed), default=0.0), 3
            ),
            "failures_by_flags": dict(Counter(report_key(load, o) for o in failed)),
        }
    )
    problems = []
    others = {k: v for k, v in by_instance.items() if k != victim}
    if others:
        problems.append(f"failed requests not through {victim}'s sidecar: {others}")
    if report.failed > in_flight:
        problems.append(
            f"{report.failed} failed requests, more than the {in_flight} in flight at the kill; "
            f"{report.details['failures_sent_after_kill']} were sent after it, the last "
            f"{report.details['last_failure_sent_after_kill_s']}s after "
            f"({report.details['failures_by_flags']})"
        )
    conclude(record, report, problems)


# -- e. the control plane killed and restarted -----------------------------------------------


def test_killed_control_plane_restarts_with_no_failed_request(
    mesh_factory: Any, record: Record
) -> None:
    mesh = mesh_factory(mesh_text())
    before = {i["name"]: (i["envoy_pid"], i["app_pid"]) for i in mesh.status()["instances"]}
    with start_load(mesh, "killed-control-plane") as load:
        time.sleep(1.0)
        killed_at = time.monotonic()
        mesh.proc.kill()
        mesh.proc.wait()
        time.sleep(2.0)  # the mesh runs on without a control plane
        restarted_at = time.monotonic()
        # `restart` returns once `up` logs that it runs; meanwhile, watch the proxies.
        restart_error: list[BaseException] = []
        running_at: list[float] = []
        restarter = threading.Thread(target=_restart, args=(mesh, running_at, restart_error))
        restarter.start()
        converged = True
        try:
            wait_until(lambda: all_synced(mesh, set(before)), 15, "every proxy in sync")
        except AssertionError:
            converged = False
        convergence_s = time.monotonic() - restarted_at
        restarter.join()
        if restart_error:
            raise restart_error[0]
        running_s = running_at[0] - restarted_at
        proxy_status = mesh.cli("proxy-status")
        time.sleep(1.0)
    report = finish(load, mesh)
    report.durations.update(
        {
            "control_plane_down": round(restarted_at - killed_at, 3),
            "up_running_again": round(running_s, 3),
            "convergence": round(convergence_s, 3),
        }
    )
    after = {i["name"]: (i["envoy_pid"], i["app_pid"]) for i in mesh.status()["instances"]}
    report.details.update(
        {
            "proxy_status_exit": proxy_status.returncode,
            "proxy_status": proxy_status.stdout,
            "instances_taken_over": sorted(n for n in before if after.get(n) == before[n]),
            "instances_restarted": sorted(n for n in before if after.get(n) != before[n]),
            "failures_by_flags": dict(Counter(report_key(load, o) for o in load.failed())),
        }
    )
    problems = []
    if report.failed:
        problems.append(f"{report.failed} failed requests: {report.details['failures_by_flags']}")
    if not converged or proxy_status.returncode != 0:
        problems.append(
            f"proxies not in sync {convergence_s:.1f}s after the restart "
            f"(proxy-status exit {proxy_status.returncode}):\n{proxy_status.stdout}"
        )
    elif convergence_s > CONVERGENCE_BOUND_S:
        problems.append(f"convergence took {convergence_s:.1f}s, over {CONVERGENCE_BOUND_S}s")
    conclude(record, report, problems)


def _restart(mesh: Mesh, running_at: list[float], error: list[BaseException]) -> None:
    try:
        mesh.restart()
        running_at.append(time.monotonic())
    except BaseException as exc:
        error.append(exc)


CONVERGENCE_BOUND_S = 10.0
"""From starting `up` again to every proxy in sync: its own start plus the sidecars' xDS
reconnect backoff (at most 2 s)."""


# -- f. two control planes, one killed -----------------------------------------------------


def replica_proxies(api_port: int) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{api_port}/api/v1/proxies"
    with urllib.request.urlopen(url, timeout=5) as r:
        data: dict[str, Any] = json.loads(r.read())
    return list(data["proxies"])


def all_on_replica(api_port: int, nodes: set[str]) -> bool:
    """Whether every proxy in ``nodes`` is connected to the standby and in sync with it."""
    try:
        found = {p["node"]: p for p in replica_proxies(api_port)}
    except OSError:
        return False
    return all(n in found and found[n]["connected"] and found[n]["synced"] for n in nodes)


def replica_pid(mesh: Mesh) -> int:
    return int(json.loads((mesh.state_dir / "processes.json").read_text())["replica_pid"])


def test_two_control_planes_one_killed_fails_no_request(mesh_factory: Any, record: Record) -> None:
    """`up --replica-xds-port`: kill -9 the standby (up restarts it), then kill -9 `up`
    (sidecars fail over to the standby, which serves the same snapshots), then start `up`
    again (they come back to it). No request may fail."""
    xds, api = free_port(), free_port()
    mesh = mesh_factory(mesh_text(), "--replica-xds-port", str(xds), "--replica-api-port", str(api))
    nodes = {i["name"] for i in mesh.status()["instances"]}
    standby = wait_until(lambda: replica_pid(mesh), 10, "the standby's pid")
    with start_load(mesh, "two-control-planes") as load:
        time.sleep(1.0)
        os.kill(standby, signal.SIGKILL)
        respawned = wait_until(
            lambda: (pid := replica_pid(mesh)) != standby and pid, 15, "a new standby"
        )
        time.sleep(1.0)
        killed_at = time.monotonic()
        mesh.proc.kill()
        mesh.proc.wait()
        wait_until(lambda: all_on_replica(api, nodes), 15, "every proxy on the standby")
        failover_s = time.monotonic() - killed_at
        time.sleep(1.0)  # serving from the standby alone
        restarted_at = time.monotonic()
        mesh.restart()
        wait_until(lambda: all_synced(mesh, nodes), 20, "every proxy back on `up`")
        handback_s = time.monotonic() - restarted_at
        time.sleep(1.0)
    report = finish(load, mesh)
    report.durations.update({"failover": round(failover_s, 3), "back_on_up": round(handback_s, 3)})
    report.details.update(
        {
            "standby_pids": [standby, respawned],
            "standby_taken_over_by_restarted_up": replica_pid(mesh) == respawned,
            "failures_by_flags": dict(Counter(report_key(load, o) for o in load.failed())),
        }
    )
    problems = []
    if report.failed:
        problems.append(f"{report.failed} failed requests: {report.details['failures_by_flags']}")
    if replica_pid(mesh) != respawned:
        problems.append("the restarted `up` did not take over the running standby")
    conclude(record, report, problems)
