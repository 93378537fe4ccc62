"""``gossamer run --service NAME -- CMD...``: run a process as one more instance of a
service in the running mesh, with a sidecar of its own, in the order ``up`` uses for its
instances (the same ``InstanceRunner``):

1. join: the control plane places the instance and prepares its sidecar config;
2. start Envoy, and wait until it has applied its whole config (not merely /ready); if it
   has not within ``--config-timeout``, fail without ever starting CMD;
3. start CMD; once it listens on its ports, callers get its endpoint;
4. on SIGTERM/SIGINT (or when CMD exits): leave every caller's endpoints and wait until
   they applied that, let in-flight requests finish, stop CMD, then Envoy, then leave.

Exit status: CMD's, or 1 if it could not start, 3 if no mesh answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from gossamer.cli._client import NotRunning, api_base, call
from gossamer.model import Instance, Port, Protocol, Workload
from gossamer.sidecar import InstanceRunner, ManagedProcess, StartError

HEARTBEAT_S = 2.0


def _workload(data: dict[str, Any], command: list[str]) -> Workload:
    return Workload(
        name=data["name"],
        services=tuple(data["services"]),
        ports=tuple(Port(n, int(p), Protocol(proto)) for n, p, proto in data["ports"]),
        command=tuple(command),
        version=data["version"],
        zone=data["zone"],
        env=tuple((str(k), str(v)) for k, v in data["env"]),
        working_dir=str(Path.cwd()),
        drain_timeout_ms=int(data["drain_timeout_ms"]),
        grace_period_ms=int(data["grace_period_ms"]),
    )


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print(
            "error: give the command to run after --, "
            "e.g. gossamer run --service api -- python3 app.py",
            file=sys.stderr,
        )
        return 2
    try:
        return asyncio.run(_run(args, command))
    except NotRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3


async def _run(args: argparse.Namespace, command: list[str]) -> int:
    base = api_base(args.state_dir, args.api)

    async def api(path: str, method: str = "GET", body: Any = None, wait_s: float = 10.0) -> Any:
        return await asyncio.to_thread(call, base, path, method, wait_s, body)

    join = {"service": args.service, "workload": args.workload or ""}
    joined = await api("/api/v1/instances", "POST", join)
    if "error" in joined:
        print(f"error: {joined['error']}", file=sys.stderr)
        return 1
    placement = joined["instance"]
    instance = Instance.from_dict(placement)
    name = instance.name

    async def wait_synced(node: str, timeout_s: float) -> bool:
        reply = await api(
            f"/api/v1/proxies/{node}/synced?timeout={timeout_s}", wait_s=timeout_s + 10
        )
        return bool(reply.get("synced"))

    def set_serving(node: str, serving: bool) -> None:
        call(base, f"/api/v1/instances/{node}/serving", "POST", body={"serving": serving})

    async def leave(node: str, timeout_s: float) -> tuple[list[str], list[str]]:
        reply = await api(
            f"/api/v1/instances/{node}/serving",
            "POST",
            {"serving": False, "timeout": timeout_s},
            wait_s=timeout_s + 10,
        )
        return list(reply.get("callers", [])), list(reply.get("lagging", []))

    runner = InstanceRunner(
        instance,
        _workload(joined["workload"], command),
        state_dir=Path(joined["state_dir"]),
        xds_host="127.0.0.1",
        xds_port=int(joined["xds"]["port"]),
        xds_api=joined["xds"]["api"],
        xds_replica_port=int(joined["xds"].get("replica_port") or 0),
        wait_synced=wait_synced,
        set_serving=set_serving,
        leave=leave,
        config_timeout_s=args.config_timeout,
        base_env=dict(os.environ),
        dies_with_parent=True,  # a killed `run` takes its sidecar and CMD with it
    )
    done = asyncio.Event()
    # CMD is not restarted: when it exits, so does `run` (with its status).
    runner.app.restart = False
    on_exit = runner.app.on_exit

    def app_exited(proc: ManagedProcess, code: int) -> None:
        if on_exit is not None:
            on_exit(proc, code)
        done.set()

    runner.app.on_exit = app_exited
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with contextlib.suppress(NotRunning):
                reply = await api(f"/api/v1/instances/{name}/heartbeat", "POST", {})
                if reply.get("known") is False and runner.state == "running":
                    # A restarted `up` does not know us yet: join again, same name, ports.
                    again = await api("/api/v1/instances", "POST", {**join, "rejoin": placement})
                    print(
                        f"gossamer run: {name} "
                        + (
                            f"could not rejoin: {again['error']}"
                            if "error" in again
                            else "rejoined"
                        ),
                        file=sys.stderr,
                        flush=True,
                    )

    beating = asyncio.create_task(heartbeat())
    try:
        print(f"gossamer run: {name} joined; starting its sidecar", file=sys.stderr, flush=True)
        try:
            await runner.start()
        except (StartError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            f"gossamer run: {name} serves (app pid {runner.app.pid}, sidecar admin "
            f"127.0.0.1:{instance.admin_port}, outbound proxy 127.0.0.1:"
            f"{instance.outbound_http_port})",
            file=sys.stderr,
            flush=True,
        )
        await done.wait()
        exited_first = not runner.app.running
        print(f"gossamer run: {name} leaving", file=sys.stderr, flush=True)
        await runner.stop(drain=True)
        code = runner.app.last_exit or 0
        if not exited_first and code == -signal.SIGTERM:
            return 0  # it stopped because we asked it to
        return 128 - code if code < 0 else code
    finally:
        beating.cancel()
        with contextlib.suppress(NotRunning):
            await api(f"/api/v1/instances/{name}", "DELETE")
