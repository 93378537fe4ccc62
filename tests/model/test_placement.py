"""Placement: unique local ports, and stability across config edits."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from gossamer.model import (
    Instance,
    MeshConfig,
    MeshState,
    Port,
    Protocol,
    Workload,
    place,
    sequential_ports,
)


def wl(
    name: str, *ports: Port, replicas: int = 1, services: tuple[str, ...] | None = None
) -> Workload:
    return Workload(
        name=name,
        services=services if services is not None else ((name,) if ports else ()),
        ports=ports,
        command=("app",),
        replicas=replicas,
    )


HTTP80 = Port("http", 80, Protocol.HTTP)
GRPC90 = Port("grpc", 90, Protocol.GRPC)
SQL = Port("sql", 5432, Protocol.TCP)
REDIS = Port("redis", 6379, Protocol.TCP)

CONFIG = MeshConfig(
    workloads=(
        wl("db", SQL),
        wl("loadgen"),
        wl("web", HTTP80, GRPC90, replicas=2),
    )
)


class Counting:
    """An allocator that counts its calls."""

    def __init__(self, allocate: Callable[[], int]) -> None:
        self._allocate = allocate
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self._allocate()


def all_ports(instance: Instance) -> list[int]:
    return [
        *(local for _, local in instance.app_ports),
        *(local for _, local in instance.inbound_ports),
        *(local for _, _, local in instance.outbound_tcp_ports),
        instance.outbound_http_port,
        instance.admin_port,
    ]


def test_sequential_ports_counts_up_from_start() -> None:
    allocate = sequential_ports(20000)
    assert [allocate() for _ in range(3)] == [20000, 20001, 20002]


def test_one_instance_per_replica_with_stable_names() -> None:
    instances = place(CONFIG, None, sequential_ports(20000))
    assert [(i.name, i.workload, i.index) for i in instances] == [
        ("db-0", "db", 0),
        ("loadgen-0", "loadgen", 0),
        ("web-0", "web", 0),
        ("web-1", "web", 1),
    ]


def test_ports_are_unique_across_all_instances() -> None:
    instances = place(CONFIG, None, sequential_ports(20000))
    ports = [p for i in instances for p in all_ports(i)]
    assert len(ports) == len(set(ports))
    # web: 2 app + 2 inbound + 1 tcp + http + admin = 7 each; db: 1+1+1+2 = 5; loadgen: 1+2 = 3.
    assert len(ports) == 7 * 2 + 5 + 3


def test_every_workload_port_gets_an_app_and_an_inbound_port() -> None:
    instances = {i.name: i for i in place(CONFIG, None, sequential_ports(20000))}
    web0 = instances["web-0"]
    assert [svc_port for svc_port, _ in web0.app_ports] == [80, 90]
    assert [svc_port for svc_port, _ in web0.inbound_ports] == [80, 90]
    assert web0.app_port(80) != web0.inbound_port(80)
    assert instances["loadgen-0"].app_ports == ()
    assert instances["loadgen-0"].inbound_ports == ()


def test_tcp_services_get_an_outbound_port_on_every_instance() -> None:
    config = dataclasses.replace(
        CONFIG, workloads=(*CONFIG.workloads, wl("cache", REDIS, replicas=2))
    )
    instances = place(config, None, sequential_ports(20000))

    assert len(instances) == 6
    for instance in instances:
        targets = [(svc, port) for svc, port, _ in instance.outbound_tcp_ports]
        assert targets == [("cache", 6379), ("db", 5432)], instance.name
    # Each instance has its own local port for each TCP target.
    locals_ = [local for i in instances for _, _, local in i.outbound_tcp_ports]
    assert len(set(locals_)) == len(locals_)


def test_http_services_get_no_outbound_tcp_port() -> None:
    config = MeshConfig(workloads=(wl("web", HTTP80, GRPC90),))
    (instance,) = place(config, None, sequential_ports(20000))
    assert instance.outbound_tcp_ports == ()


def test_replacing_with_the_previous_state_keeps_every_port_and_allocates_nothing() -> None:
    allocate = Counting(sequential_ports(20000))
    first = place(CONFIG, None, allocate)
    calls = allocate.calls

    second = place(CONFIG, MeshState(CONFIG, first), allocate)

    assert second == first
    assert allocate.calls == calls


def test_scaling_up_keeps_existing_instances_and_gives_new_replicas_new_ports() -> None:
    allocate = sequential_ports(20000)
    first = place(CONFIG, None, allocate)
    scaled = dataclasses.replace(
        CONFIG,
        workloads=tuple(
            dataclasses.replace(w, replicas=4) if w.name == "web" else w for w in CONFIG.workloads
        ),
    )

    second = place(scaled, MeshState(CONFIG, first), allocate)

    before = {i.name: i for i in first}
    after = {i.name: i for i in second}
    assert sorted(after) == ["db-0", "loadgen-0", "web-0", "web-1", "web-2", "web-3"]
    for name, instance in before.items():
        assert after[name] == instance
    old_ports = {p for i in first for p in all_ports(i)}
    new_ports = [p for name in ("web-2", "web-3") for p in all_ports(after[name])]
    assert len(new_ports) == 2 * 7
    assert not old_ports & set(new_ports)
    assert len(set(new_ports)) == len(new_ports)


def test_a_new_tcp_service_adds_a_port_without_moving_existing_ones() -> None:
    allocate = sequential_ports(20000)
    first = place(CONFIG, None, allocate)
    grown = dataclasses.replace(CONFIG, workloads=(*CONFIG.workloads, wl("cache", REDIS)))

    second = {i.name: i for i in place(grown, MeshState(CONFIG, first), allocate)}

    old_ports = {p for i in first for p in all_ports(i)}
    for old in first:
        new = second[old.name]
        assert new.app_ports == old.app_ports
        assert new.inbound_ports == old.inbound_ports
        assert new.outbound_http_port == old.outbound_http_port
        assert new.admin_port == old.admin_port
        tcp = {(s, p): local for s, p, local in new.outbound_tcp_ports}
        old_tcp = {(s, p): local for s, p, local in old.outbound_tcp_ports}
        assert tcp[("db", 5432)] == old_tcp[("db", 5432)]
        assert tcp[("cache", 6379)] not in old_ports


def test_a_new_workload_port_keeps_the_existing_ones() -> None:
    allocate = sequential_ports(20000)
    config = MeshConfig(workloads=(wl("web", HTTP80),))
    (old,) = place(config, None, allocate)
    wider = MeshConfig(workloads=(wl("web", HTTP80, GRPC90),))

    (new,) = place(wider, MeshState(config, (old,)), allocate)

    assert new.app_port(80) == old.app_port(80)
    assert new.inbound_port(80) == old.inbound_port(80)
    assert new.app_port(90) not in all_ports(old)
    assert new.inbound_port(90) not in all_ports(old)
    assert new.admin_port == old.admin_port


def test_removed_workloads_and_replicas_are_dropped() -> None:
    allocate = sequential_ports(20000)
    first = place(CONFIG, None, allocate)
    shrunk = MeshConfig(workloads=(wl("web", HTTP80, GRPC90, replicas=1),))

    second = place(shrunk, MeshState(CONFIG, first), allocate)

    assert [i.name for i in second] == ["web-0"]
    # web-0 no longer needs a port for db, which is gone; everything else is kept.
    assert second[0].outbound_tcp_ports == ()
    web0 = next(i for i in first if i.name == "web-0")
    assert second[0].app_ports == web0.app_ports
    assert second[0].admin_port == web0.admin_port
