"""TCP services through real Envoy: the machine's PostgreSQL, MariaDB and Redis declared as
ExternalServices (``protocol: tcp``, fixed address 127.0.0.1), and a mesh workload that
serves TCP itself, each reached through a sidecar's outbound TCP port by the real clients
(``psql``, ``mariadb``, ``redis-cli``, a socket) and checked on the answers and on which
sidecar's stats counted the bytes.

One mesh serves the whole module:

- ``orders`` and ``billing``: no ports, a long ``sleep``; the test acts as their apps by
  connecting to their sidecars' outbound TCP ports (``gossamer status -o json``:
  ``instances[].outbound_tcp_ports``). ``orders`` uses PostgreSQL and MariaDB, ``billing``
  Redis, so each database's bytes must show up on one sidecar only;
- ``tcp-echo``: serves ``tcp-echo:9000`` (``protocol: tcp``) with ``tcp_echo_app.py``,
  which greets first (``hello <instance>``) and then echoes.

Tables and keys have unique names, and each test removes them with a direct connection
(not through the mesh, so cleanup does not touch the stats a test checks). A test whose
database or client is missing on this machine is skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from meshkit import Mesh, admin_stats, shutdown, start_mesh

GSM = "gossamer.dev/v1alpha1"
TCP_ECHO = Path(__file__).resolve().with_name("tcp_echo_app.py")
DATABASES = {"postgres": 5432, "mariadb": 3306, "redis": 6379}
SERVICES = {**DATABASES, "tcp-echo": 9000}
MYSQL = shutil.which("mariadb") or shutil.which("mysql")


def _first_port() -> str:
    """Away from meshkit's default range (21000 up), which every pytest process starts
    from: two test runs at once on this machine must not race for the same ports."""
    return str(26000 + (os.getpid() % 25) * 200)


# -- the mesh ---------------------------------------------------------------------------------


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": GSM, "kind": kind, "metadata": {"name": name}, "spec": spec}


def mesh_docs() -> list[dict[str, Any]]:
    docs = [
        _doc(
            "ExternalService",
            name,
            {
                "hosts": [f"{name}.db.internal"],
                "addresses": ["127.0.0.1"],
                "ports": [{"port": port, "protocol": "tcp"}],
            },
        )
        for name, port in DATABASES.items()
    ]
    docs += [
        _doc("Workload", "orders", {"command": ["sleep", "100000"]}),
        _doc("Workload", "billing", {"command": ["sleep", "100000"]}),
        _doc(
            "Workload",
            "tcp-echo",
            {
                "ports": [{"port": 9000, "protocol": "tcp"}],
                "command": [sys.executable, str(TCP_ECHO)],
            },
        ),
    ]
    return docs


@dataclass
class Env:
    mesh: Mesh
    status: dict[str, Any]
    """``gossamer status -o json``, as read once the mesh was up."""

    def instance(self, name: str) -> dict[str, Any]:
        return next(i for i in self.status["instances"] if i["name"] == name)

    def local_port(self, instance: str, service: str) -> int:
        """The port ``instance``'s app connects to for ``service``."""
        ports = self.instance(instance)["outbound_tcp_ports"]
        return int(next(p["local_port"] for p in ports if p["service"] == service))

    def stats(self, instance: str) -> dict[str, int]:
        return admin_stats(self.instance(instance)["admin_port"])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    text = "\n---\n".join(json.dumps(d) for d in mesh_docs()) + "\n"
    mesh = start_mesh(tmp_path_factory.mktemp("databases"), text, "--first-port", _first_port())
    try:
        result = mesh.cli("status", "-o", "json")
        assert result.returncode == 0, result.stderr
        yield Env(mesh, json.loads(result.stdout))
    finally:
        shutdown(mesh)


# -- helpers ----------------------------------------------------------------------------------


def _reachable(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 2):
        return True
    return False


def need(service: str, client: str | None) -> str:
    """The client's path; skips the test if the client or the database is missing."""
    if client is None or shutil.which(client) is None:
        pytest.skip(f"no `{client}` client on this machine")
    if not _reachable(DATABASES[service]):
        pytest.skip(f"{service} is not listening on 127.0.0.1:{DATABASES[service]}")
    return str(shutil.which(client))


def run(*argv: str, stdin: str | None = None) -> str:
    """Runs a client; its stdout, or the test fails with what it printed."""
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stderr}"
    return done.stdout


def tcp_stats(stats: dict[str, int], service: str) -> dict[str, int]:
    """Connections and bytes of a sidecar's outbound TCP listener for ``service``: ``rx``
    is what the app sent, ``tx`` what it got back. ``upstream_cx`` is the cluster's count
    of connections to the destination."""
    prefix = f"tcp.outbound|{SERVICES[service]}|tcp|{service}."
    return {
        "cx": stats[prefix + "downstream_cx_total"],
        "rx": stats[prefix + "downstream_cx_rx_bytes_total"],
        "tx": stats[prefix + "downstream_cx_tx_bytes_total"],
        "upstream_cx": stats[f"cluster.outbound|{SERVICES[service]}||{service}.upstream_cx_total"],
    }


def snapshot(env: Env) -> dict[tuple[str, str], dict[str, int]]:
    """Every (client instance, TCP service) counter set, to compare before and after."""
    out = {}
    for instance in ("orders-0", "billing-0"):
        stats = env.stats(instance)
        for service in SERVICES:
            out[instance, service] = tcp_stats(stats, service)
    return out


def settle(read: Callable[[], Any], done: Callable[[Any], bool], within_s: float = 5.0) -> Any:
    """``read()`` until ``done`` says its value is final (Envoy counts a connection's last
    bytes as it closes it), or the last value after ``within_s``."""
    deadline = time.monotonic() + within_s
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


def assert_only(
    env: Env,
    before: dict[tuple[str, str], dict[str, int]],
    used: tuple[str, str],
    connections: int,
    min_sent: int,
) -> None:
    """Exactly ``connections`` connections and at least ``min_sent`` bytes from the app
    went through ``used`` = (instance, service), some bytes came back, and no other
    (instance, TCP service) pair counted anything."""
    after = settle(
        lambda: snapshot(env),
        lambda s: s[used]["cx"] - before[used]["cx"] >= connections,
    )
    delta = {k: {m: after[k][m] - before[k][m] for m in after[k]} for k in after}
    assert delta[used]["cx"] == connections, delta[used]
    assert delta[used]["upstream_cx"] == connections, delta[used]
    assert delta[used]["rx"] >= min_sent, delta[used]
    assert delta[used]["tx"] > 0, delta[used]
    others = {k: v for k, v in delta.items() if k != used and any(v.values())}
    assert not others, f"traffic counted against the wrong source or service: {others}"


# -- tests ------------------------------------------------------------------------------------


def test_every_instance_has_a_local_port_per_tcp_service(env: Env) -> None:
    taken: list[int] = []
    for inst in env.status["instances"]:
        ports = {(p["service"], p["port"]): p["local_port"] for p in inst["outbound_tcp_ports"]}
        assert set(ports) == set(SERVICES.items()), inst["name"]
        taken += ports.values()
    assert len(taken) == len(set(taken)), "two outbound TCP listeners share a local port"


def test_apps_find_tcp_services_in_their_environment(env: Env) -> None:
    """``<NAME>_SERVICE_HOST``/``_PORT`` (and ``_PORT_<port>``), NAME upper-cased with
    ``-`` as ``_``, as the orders app really sees them (its /proc environ)."""
    inst = env.instance("orders-0")
    raw = Path(f"/proc/{inst['app_pid']}/environ").read_bytes()
    environ = dict(v.split("=", 1) for v in raw.decode().split("\0") if "=" in v)
    for service, port in SERVICES.items():
        name = service.upper().replace("-", "_")
        local = str(env.local_port("orders-0", service))
        assert environ.get(f"{name}_SERVICE_HOST") == "127.0.0.1", name
        assert environ.get(f"{name}_SERVICE_PORT") == local, name
        assert environ.get(f"{name}_SERVICE_PORT_{port}") == local, name


def test_orders_uses_postgres_through_its_sidecar(env: Env) -> None:
    psql = need("postgres", "psql")
    port = str(env.local_port("orders-0", "postgres"))
    table = f"gossamer_e2e_{uuid.uuid4().hex[:12]}"

    def sql(text: str) -> list[str]:
        args = [psql, "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "test"]
        out = run(*args, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-", stdin=text)
        return out.splitlines()

    statements = [
        f"create table {table} (id int primary key, item text not null, qty int not null);",
        f"insert into {table} values (1, 'apple', 3), (2, 'pear', 5), (3, 'plum', 7);",
        f"select item || '=' || qty from {table} order by id;"
        f" select sum(qty) from {table}; select inet_server_port();",
        # A temporary table lives and dies within one connection.
        "create temp table scratch (n int); insert into scratch select generate_series(1, 100);"
        " select count(*), sum(n) from scratch; drop table scratch;",
    ]
    before = snapshot(env)
    try:
        # Three connections, one after another: the rows outlive each of them.
        assert sql(statements[0]) == []
        assert sql(statements[1]) == []
        assert sql(statements[2]) == ["apple=3", "pear=5", "plum=7", "15", "5432"]
        assert sql(statements[3]) == ["100|5050"]
        assert_only(
            env,
            before,
            ("orders-0", "postgres"),
            connections=4,
            min_sent=sum(len(s) for s in statements),
        )
    finally:
        direct = [psql, "-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", "test", "-X"]
        subprocess.run(
            [*direct, "-q", "-c", f"drop table if exists {table}"],
            capture_output=True,
            timeout=20,
        )


def _greeting(port: int) -> tuple[bytes, float]:
    """Connects, sends nothing, and reads the first packet the server sends."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        data = b""
        while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:3], "little"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data, time.monotonic() - start


def test_orders_uses_mariadb_a_server_first_protocol(env: Env) -> None:
    client = need("mariadb", MYSQL)
    port = env.local_port("orders-0", "mariadb")
    table = f"gossamer_e2e_{uuid.uuid4().hex[:12]}"

    def sql(text: str) -> list[str]:
        args = [client, "--protocol=TCP", "-h", "127.0.0.1", "-P", str(port), "-u", "root"]
        return run(*args, "-N", "-B", "test", "-e", text).splitlines()

    statements = [
        f"create table {table} (id int primary key, item varchar(20) not null, qty int);",
        f"insert into {table} values (1, 'apple', 3), (2, 'pear', 5), (3, 'plum', 7);",
        f"select concat(item, '=', qty) from {table} order by id;"
        f" select sum(qty) from {table}; select @@port;",
        "create temporary table scratch (n int); insert into scratch values (4), (5), (6);"
        " select count(*), sum(n) from scratch; drop temporary table scratch;",
    ]
    before = snapshot(env)
    try:
        # The server speaks first: its handshake arrives through the sidecar while the
        # client has sent nothing (a mesh that sniffs the protocol would wait for bytes).
        hello, took = _greeting(port)
        assert len(hello) >= 5 and hello[3] == 0, hello[:16]  # packet sequence 0
        assert hello[4] == 10, hello[:16]  # protocol version 10
        assert b"MariaDB" in hello or b"mysql" in hello.lower(), hello[:64]
        assert took < 1.0, f"the greeting took {took:.2f}s"
        assert sql(statements[0]) == []
        assert sql(statements[1]) == []
        assert sql(statements[2]) == ["apple=3", "pear=5", "plum=7", "15", "3306"]
        assert sql(statements[3]) == ["3\t15"]
        assert_only(
            env,
            before,
            ("orders-0", "mariadb"),
            connections=5,
            min_sent=sum(len(s) for s in statements),
        )
    finally:
        direct = [client, "--protocol=TCP", "-h", "127.0.0.1", "-P", "3306", "-u", "root"]
        subprocess.run(
            [*direct, "test", "-e", f"drop table if exists {table}"],
            capture_output=True,
            timeout=20,
        )


def test_billing_uses_redis_through_its_sidecar(env: Env) -> None:
    cli = need("redis", "redis-cli")
    port = str(env.local_port("billing-0", "redis"))
    key = f"gossamer-e2e:{uuid.uuid4().hex}"
    value = f"invoice-{uuid.uuid4().hex}"

    def redis(*command: str) -> str:
        return run(cli, "-h", "127.0.0.1", "-p", port, *command).strip()

    before = snapshot(env)
    try:
        assert redis("SET", key, value, "EX", "120") == "OK"
        assert redis("GET", key) == value
        assert redis("INCRBY", key + ":n", "40") == "40"
        assert redis("INCRBY", key + ":n", "2") == "42"
        info = redis("INFO", "server")
        assert "tcp_port:6379" in info.replace("\r", "").splitlines(), info[:300]
        assert redis("DEL", key, key + ":n") == "2"
        assert redis("EXISTS", key) == "0"
        assert_only(
            env,
            before,
            ("billing-0", "redis"),
            connections=7,
            min_sent=len(key) * 5 + len(value),
        )
    finally:
        direct = [cli, "-h", "127.0.0.1", "-p", "6379"]
        subprocess.run([*direct, "DEL", key, key + ":n"], capture_output=True, timeout=20)


def _round_trip(port: int, payload: bytes) -> tuple[bytes, bytes, float]:
    """Reads the greeting (sending nothing first), then sends ``payload`` from a thread
    while reading, half-closes, and reads to the end. (greeting, echoed, seconds to
    greeting)."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        banner = b""
        while not banner.endswith(b"\n"):
            chunk = s.recv(1)
            assert chunk, f"closed after {banner!r}"
            banner += chunk
        took = time.monotonic() - start

        def send() -> None:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        echoed = bytearray()
        while chunk := s.recv(65536):
            echoed += chunk
        sender.join(10)
    return banner, bytes(echoed), took


def test_a_mesh_tcp_service_round_trips_bytes(env: Env) -> None:
    payload = random.Random(9000).randbytes(1 << 20)
    inbound = "tcp.inbound|9000."
    client_before = tcp_stats(env.stats("orders-0"), "tcp-echo")
    server_before = env.stats("tcp-echo-0")

    banner, echoed, took = _round_trip(env.local_port("orders-0", "tcp-echo"), payload)
    assert banner == b"hello tcp-echo-0\n"
    assert took < 1.0, f"the server's first bytes took {took:.2f}s"
    assert len(echoed) == len(payload)
    assert echoed == payload

    # Byte for byte on both sidecars: the caller's outbound listener and the server's
    # inbound one each carried one connection, the payload in and banner + payload out.
    sent, got = len(payload), len(banner) + len(payload)
    client = settle(
        lambda: tcp_stats(env.stats("orders-0"), "tcp-echo"),
        lambda s: s["rx"] - client_before["rx"] >= sent and s["tx"] - client_before["tx"] >= got,
    )
    assert {k: client[k] - client_before[k] for k in client} == {
        "cx": 1,
        "rx": sent,
        "tx": got,
        "upstream_cx": 1,
    }
    server = settle(
        lambda: env.stats("tcp-echo-0"),
        lambda s: (
            s[inbound + "downstream_cx_tx_bytes_total"]
            - server_before[inbound + "downstream_cx_tx_bytes_total"]
            >= got
        ),
    )
    delta = {
        m: server[inbound + m] - server_before[inbound + m]
        for m in ("downstream_cx_total", "downstream_cx_rx_bytes_total")
    }
    delta["downstream_cx_tx_bytes_total"] = (
        server[inbound + "downstream_cx_tx_bytes_total"]
        - server_before[inbound + "downstream_cx_tx_bytes_total"]
    )
    assert delta == {
        "downstream_cx_total": 1,
        "downstream_cx_rx_bytes_total": sent,
        "downstream_cx_tx_bytes_total": got,
    }


def test_concurrent_tcp_connections_are_each_counted(env: Env) -> None:
    port = env.local_port("billing-0", "tcp-echo")
    before = tcp_stats(env.stats("billing-0"), "tcp-echo")
    inbound = "tcp.inbound|9000.downstream_cx_total"
    server_before = env.stats("tcp-echo-0")[inbound]
    results: list[tuple[bytes, bytes, float]] = []
    payloads = [f"connection {i}\n".encode() * 1000 for i in range(5)]

    def one(payload: bytes) -> None:
        results.append(_round_trip(port, payload))

    threads = [threading.Thread(target=one, args=(p,), daemon=True) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(r[1] for r in results) == sorted(payloads)
    assert all(r[0] == b"hello tcp-echo-0\n" for r in results)
    after = settle(
        lambda: tcp_stats(env.stats("billing-0"), "tcp-echo"),
        lambda s: s["rx"] - before["rx"] >= sum(map(len, payloads)),
    )
    assert after["cx"] - before["cx"] == 5
    assert after["rx"] - before["rx"] == sum(map(len, payloads))
    assert env.stats("tcp-echo-0")[inbound] - server_before == 5


def test_adding_a_tcp_service_live_gives_every_app_its_port(env: Env) -> None:
    """A new ExternalService (port 15432 to the database's 5432) applied by editing the
    file: every instance restarts with the new variables, and the new port works. Last in
    the module: it restarts every instance."""
    psql = need("postgres", "psql")
    old_pids = {i["name"]: i["app_pid"] for i in env.mesh.status()["instances"]}
    alias = _doc(
        "ExternalService",
        "pg-alias",
        {
            "hosts": ["pg-alias.db.internal"],
            "addresses": ["127.0.0.1"],
            "ports": [{"port": 15432, "protocol": "tcp", "targetPort": 5432}],
        },
    )
    text = "\n---\n".join(json.dumps(d) for d in [*mesh_docs(), alias]) + "\n"
    revision = env.mesh.edit(text)

    def restarted(status: dict[str, Any]) -> bool:
        return status["revision"] > revision and all(
            i["state"] == "running"
            and i["proxy"]["synced"]
            and i["app_pid"] not in (None, old_pids[i["name"]])
            for i in status["instances"]
        )

    status = env.mesh.wait_for(
        lambda s: s if restarted(s) else None, within_s=15, what="every instance restarted"
    )
    orders = next(i for i in status["instances"] if i["name"] == "orders-0")
    local = next(
        p["local_port"] for p in orders["outbound_tcp_ports"] if p["service"] == "pg-alias"
    )
    raw = Path(f"/proc/{orders['app_pid']}/environ").read_bytes()
    environ = dict(v.split("=", 1) for v in raw.decode().split("\0") if "=" in v)
    assert environ.get("PG_ALIAS_SERVICE_HOST") == "127.0.0.1"
    assert environ.get("PG_ALIAS_SERVICE_PORT") == str(local)
    assert environ.get("PG_ALIAS_SERVICE_PORT_15432") == str(local)
    out = run(
        psql,
        *("-h", "127.0.0.1", "-p", str(local), "-U", "postgres", "-d", "test", "-X", "-A", "-t"),
        *("-c", "select inet_server_port()"),
    )
    assert out.split() == ["5432"]
    stat = "tcp.outbound|15432|tcp|pg-alias.downstream_cx_total"
    counted = settle(lambda: admin_stats(orders["admin_port"])[stat], lambda n: n >= 1)
    assert counted == 1
