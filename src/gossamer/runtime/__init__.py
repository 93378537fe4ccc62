"""Wiring: builds a control plane and supervises a local mesh. The only place that
constructs long-lived objects; nothing here runs at import."""

from gossamer.runtime._controlplane import ControlPlane, Proposal, Rejection
from gossamer.runtime._local import LocalMesh, LocalOptions, StartupFailed, preflight
from gossamer.runtime._ports import PortAllocator, port_free
from gossamer.runtime._replica import ReplicaOptions, run_replica
from gossamer.runtime._up import instance_table, run_up

__all__ = [
    "ControlPlane",
    "LocalMesh",
    "LocalOptions",
    "PortAllocator",
    "Proposal",
    "Rejection",
    "ReplicaOptions",
    "StartupFailed",
    "instance_table",
    "port_free",
    "preflight",
    "run_replica",
    "run_up",
]
