"""What a running ``up`` leaves behind if it is killed: its instances keep running (each in
a session of its own) and keep serving with their sidecars' last config. ``up`` writes
where they run every second (``processes.json`` in the state directory); a restarted
``up`` reads it to take them over instead of starting them again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from gossamer.model import Instance, MeshConfig, MeshState
from gossamer.sidecar import process_argv, process_environ

FILE = "processes.json"


@dataclass(slots=True)
class Leftovers:
    pid: int
    """The ``up`` process that wrote this."""
    revision: int
    instances: dict[str, Instance]
    pids: dict[str, tuple[int, int]]
    """Instance name -> (Envoy pid, app pid)."""
    not_serving: list[str]
    gateways: dict[str, tuple[str, int, int]]
    """Gateway name -> (node id, admin port, Envoy pid)."""
    replica_pid: int = 0
    """The standby control plane (``up --replica-xds-port``), if one runs."""
    joined: dict[str, Instance] = field(default_factory=dict)
    """Instances run by ``gossamer run`` (their own processes keep them going)."""
    taken: set[int] = field(default_factory=set)

    def placed(self, config: MeshConfig) -> MeshState:
        """Where the recorded instances run (joined ones too) and which get traffic, as
        the previous state for placement: nothing moves, nobody gains or loses traffic."""
        return MeshState(
            config,
            (*self.instances.values(), *self.joined.values()),
            frozenset(self.not_serving),
            tuple((name, port) for name, (_node, port, _pid) in self.gateways.items()),
        )

    def attached(self) -> dict[str, str]:
        """The joined instances, as ``ControlPlane.attached`` holds them."""
        return {name: i.workload for name, i in self.joined.items()}

    def take_instance(self, instance: Instance) -> tuple[int, int] | None:
        """The (Envoy, app) pids to take over for ``instance``, if it runs where it is
        placed now."""
        if self.instances.get(instance.name) != instance or instance.name not in self.pids:
            return None
        envoy, app = self.pids[instance.name]
        self.taken |= {envoy, app}
        return envoy, app

    def take_gateway(self, name: str, node_id: str) -> int | None:
        found = self.gateways.get(name)
        if found is None or found[0] != node_id or not found[2]:
            return None
        self.taken.add(found[2])
        return found[2]

    def release(self, name: str, state_dir: Path) -> list[int]:
        """Kill what instance ``name`` left running, when it cannot be taken over, so its
        replacement finds its ports free; the pids killed."""
        killed = []
        for pid in self.pids.get(name, ()):
            if pid not in self.taken and _ours(pid, name, state_dir):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                    killed.append(pid)
                self.taken.add(pid)
        return killed

    def unadopted(self, state_dir: Path) -> list[int]:
        """Pids not taken over that still run one of our instances' processes (a pid
        the system has given to something else since is left alone)."""
        every = [(p, name) for name, pair in self.pids.items() for p in pair]
        every += [(pid, node) for node, _port, pid in self.gateways.values() if pid]
        return [p for p, name in every if p not in self.taken and _ours(p, name, state_dir)]


def _ours(pid: int, name: str, state_dir: Path) -> bool:
    """Whether ``pid`` is an Envoy reading its bootstrap from ``state_dir`` or an app
    started for instance ``name``."""
    argv = process_argv(pid)
    if argv is None:
        return False
    return any(str(state_dir) in a for a in argv) or (
        f"GOSSAMER_INSTANCE={name}" in process_environ(pid)
    )


def write_leftovers(state_dir: Path, leftovers: Leftovers) -> None:
    data = dataclasses.asdict(leftovers)
    data.pop("taken")
    tmp = state_dir / f"{FILE}.tmp"
    tmp.write_text(json.dumps(data))
    tmp.replace(state_dir / FILE)  # atomic: a reader sees the old file or the new one


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_leftovers(state_dir: Path) -> Leftovers | None:
    """What the last ``up`` here left running, if it died without stopping it."""
    found = read_processes(state_dir)
    if found is None or (_alive(found.pid) and found.pid != os.getpid()):
        return None  # none, or it is still running (the ports check refuses a second `up`)
    return found


def read_processes(state_dir: Path) -> Leftovers | None:
    """The last record ``up`` wrote here, whether or not it still runs."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads((state_dir / FILE).read_text())
        return Leftovers(
            pid=int(data["pid"]),
            revision=int(data["revision"]),
            instances={n: Instance.from_dict(i) for n, i in data["instances"].items()},
            pids={n: (int(e), int(a)) for n, (e, a) in data["pids"].items()},
            not_serving=[str(n) for n in data["not_serving"]],
            gateways={
                n: (str(node), int(port), int(pid))
                for n, (node, port, pid) in data["gateways"].items()
            },
            replica_pid=int(data.get("replica_pid", 0)),
            joined={n: Instance.from_dict(i) for n, i in data.get("joined", {}).items()},
        )
    return None
