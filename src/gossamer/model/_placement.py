"""Where instances run on this machine: their names and local ports.

Pure: the caller supplies ``allocate`` (which finds a free port) so that tests and golden
files can use a predictable sequence. Placement is stable: an instance that exists in the
previous state keeps every port it had, so a config edit never moves a running process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gossamer.model._mesh import Instance, MeshConfig, MeshState, Workload, instance_name


def place(
    config: MeshConfig,
    previous: MeshState | None,
    allocate: Callable[[], int],
    attached: Mapping[str, str] | None = None,
) -> tuple[Instance, ...]:
    """Instances for every replica of every workload in ``config``, then the ``attached``
    ones (instance name -> workload; processes that joined with ``gossamer run``) whose
    workload is still declared."""
    old = {i.name: i for i in previous.instances} if previous else {}
    tcp_targets = [
        (svc.name, port.port)
        for svc in config.services()
        for port in svc.ports
        if not port.protocol.is_http
    ] + [
        (ext.name, port.port)
        for ext in config.external_services
        for port in ext.ports
        if not port.protocol.is_http
    ]

    def one(workload: Workload, name: str, index: int) -> Instance:
        prev = old.get(name)
        prev_app = dict(prev.app_ports) if prev else {}
        prev_in = dict(prev.inbound_ports) if prev else {}
        prev_tcp = {(s, p): local for s, p, local in prev.outbound_tcp_ports} if prev else {}
        # Allocation order is part of the golden files: app, inbound, TCP, proxy, admin.
        app_ports = tuple((p.port, prev_app.get(p.port) or allocate()) for p in workload.ports)
        inbound = tuple((p.port, prev_in.get(p.port) or allocate()) for p in workload.ports)
        # With ``calls``, only the TCP services the workload calls get a local port.
        tcp = tuple(
            (svc, port, prev_tcp.get((svc, port)) or allocate())
            for svc, port in tcp_targets
            if workload.may_call(svc)
        )
        return Instance(
            name=name,
            workload=workload.name,
            index=index,
            app_ports=app_ports,
            inbound_ports=inbound,
            outbound_http_port=prev.outbound_http_port if prev else allocate(),
            outbound_tcp_ports=tcp,
            admin_port=prev.admin_port if prev else allocate(),
        )

    instances = [
        one(workload, instance_name(workload.name, index), index)
        for workload in config.workloads
        for index in range(workload.replicas)
    ]
    for name, workload_name in sorted((attached or {}).items()):
        workload = config.workload(workload_name)
        if workload is not None:
            instances.append(one(workload, name, -1))
    return tuple(instances)


def sequential_ports(start: int) -> Callable[[], int]:
    """A predictable allocator for tests and golden files."""
    counter = iter(range(start, 65536))
    return lambda: next(counter)


def place_gateways(
    config: MeshConfig, previous: MeshState | None, allocate: Callable[[], int]
) -> tuple[tuple[str, int], ...]:
    """An Envoy admin port per gateway; a gateway that already runs keeps its port."""
    old = dict(previous.gateway_admin_ports) if previous else {}
    return tuple((g.name, old.get(g.name) or allocate()) for g in config.gateways)
