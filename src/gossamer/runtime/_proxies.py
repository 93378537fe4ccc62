"""What ``proxy-status`` and ``proxy-config`` read: every proxy's xDS sync state, and the
sections of one proxy's own Envoy config dump.

GET /api/v1/proxies                                   {"proxies": [...]}, see proxy_statuses
GET /api/v1/proxies/{node}/config?section=listeners|routes|clusters|endpoints|all
    {"node", "kind", "admin_port", "section", "config": {section: Envoy's dump section}};
    404 with the known ``proxies`` for an unknown node, 400 for an unknown section,
    502 when the proxy's Envoy admin does not answer.

The sync state comes from the control plane's book (what each stream sent, and what
Envoy ACKed or NACKed). The config comes from Envoy itself, over its admin port: it is
what the proxy actually runs, not what we meant to send. The admin interface is fetched
with aiohttp because Envoy's admin server refuses HTTP/1.0 clients.

Selecting sections of a dump (``select_sections``) is pure, so it is tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from gossamer.runtime._controlplane import ControlPlane
from gossamer.runtime._local import LocalMesh
from gossamer.translate import PUSH_ORDER, SHORT_NAMES

SECTIONS = ("listeners", "routes", "clusters", "endpoints")
"""The config dump sections ``proxy-config`` shows; ``all`` is every one of them."""

DUMP_TYPES = {
    "listeners": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
    "routes": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
    "clusters": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
    "endpoints": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
}
"""Each section's ``@type`` in the ``configs`` list of Envoy's ``/config_dump``."""

CONFIG_DUMP_TIMEOUT_S = 5.0

NOT_SENT = "NOT_SENT"
"""A type the proxy has no resources of, and was never sent: nothing to sync. The other
states are the book's: SYNCED, STALE, NACKED and DISCONNECTED."""


class UnknownSection(ValueError):
    """A section other than ``SECTIONS`` or ``all``."""


class ProxyUnreachable(RuntimeError):
    """The proxy's Envoy admin did not answer, or not with a config dump."""


def wanted_sections(section: str) -> tuple[str, ...]:
    """The sections a ``section`` argument stands for: one of ``SECTIONS``, or ``all``."""
    if section == "all":
        return SECTIONS
    if section in SECTIONS:
        return (section,)
    raise UnknownSection(f"unknown section `{section}`: expected one of {', '.join(SECTIONS)}, all")


def select_sections(dump: Mapping[str, Any], sections: Sequence[str]) -> dict[str, Any]:
    """Envoy's config dump sections by short name, as Envoy wrote them. A section Envoy
    left out of the dump (endpoints without ``include_eds``, say) is an empty object."""
    configs = dump.get("configs")
    listed = configs if isinstance(configs, list) else []
    by_type = {c.get("@type"): c for c in listed if isinstance(c, dict)}
    return {s: by_type.get(DUMP_TYPES[s], {}) for s in sections}


def config_dump_path(sections: Sequence[str]) -> str:
    """The admin path to fetch: endpoints are in the dump only with ``include_eds``."""
    return "/config_dump?include_eds" if "endpoints" in sections else "/config_dump"


async def fetch_config_dump(
    admin_port: int, sections: Sequence[str], timeout_s: float = CONFIG_DUMP_TIMEOUT_S
) -> dict[str, Any]:
    """One proxy's config dump (loopback only); ProxyUnreachable says why not."""
    url = f"http://127.0.0.1:{admin_port}{config_dump_path(sections)}"
    try:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as reply:
            if reply.status != 200:
                raise ProxyUnreachable(f"its Envoy admin at {url} answered {reply.status}")
            data = await reply.json(content_type=None)
    except (OSError, TimeoutError, aiohttp.ClientError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ProxyUnreachable(f"its Envoy admin at {url} did not answer ({reason})") from None
    except ValueError:
        raise ProxyUnreachable(f"its Envoy admin at {url} did not answer JSON") from None
    if not isinstance(data, dict):
        raise ProxyUnreachable(f"its Envoy admin at {url} did not answer a config dump")
    return data


def proxy_entry(
    control: ControlPlane,
    node: str,
    kind: str,
    admin_port: int,
    *,
    workload: str = "",
    gateway: str = "",
) -> dict[str, Any]:
    """One proxy's row of ``proxy_statuses``."""
    summary = control.proxy_summary(node)
    snapshot = control.cache.get(node)
    counts = {SHORT_NAMES[t]: len(snapshot.of(t)) if snapshot else 0 for t in PUSH_ORDER}
    types: dict[str, dict[str, Any]] = summary["types"]  # type: ignore[assignment]
    for short, t in types.items():
        t["resources"] = counts.get(short, 0)
        if t["state"] == "STALE" and not t["resources"] and not t["sends"]:
            # Envoy asks for a type only when something refers to it (EDS, say, once a
            # cluster uses it): with none of that type there is nothing to sync.
            t["state"] = NOT_SENT
    return {
        "node": node,
        "kind": kind,
        "workload": workload or None,
        "gateway": gateway or None,
        "admin_port": admin_port,
        **{k: v for k, v in summary.items() if k != "node"},
    }


def proxy_statuses(mesh: LocalMesh) -> list[dict[str, Any]]:
    """Every proxy (sidecars by instance name, then gateways by node id): kind, owner,
    admin port, xDS connection and per type its state, versions, ACK time, how many
    resources it should hold and, when NACKed, Envoy's error with the user's resources
    behind it (``user_resources``)."""
    out = [
        proxy_entry(
            mesh.control, name, "sidecar", r.instance.admin_port, workload=r.instance.workload
        )
        for name, r in sorted(mesh.runners.items())
    ]
    out += [
        proxy_entry(mesh.control, name, "sidecar", i.admin_port, workload=i.workload)
        for name, i in sorted(mesh.joined().items())
    ]
    out += [
        proxy_entry(mesh.control, g.node_id, "gateway", g.admin_port, gateway=g.name)
        for g in sorted(mesh.gateways.values(), key=lambda g: g.node_id)
    ]
    return out


def proxy_kinds(mesh: LocalMesh) -> dict[str, str]:
    """Every running proxy's node id and kind (``sidecar`` or ``gateway``)."""
    kinds = dict.fromkeys([*mesh.runners, *mesh.joined()], "sidecar")
    kinds.update(dict.fromkeys((g.node_id for g in mesh.gateways.values()), "gateway"))
    return kinds


def proxy_routes(mesh: LocalMesh) -> list[web.RouteDef]:
    async def proxies(_request: web.Request) -> web.Response:
        return web.json_response({"proxies": proxy_statuses(mesh)})

    async def config(request: web.Request) -> web.Response:
        node = request.match_info["node"]
        kinds = proxy_kinds(mesh)
        if node not in kinds:
            return web.json_response(
                {"error": f"no proxy `{node}`", "proxies": sorted(kinds)}, status=404
            )
        section = request.query.get("section", "all")
        try:
            sections = wanted_sections(section)
        except UnknownSection as exc:
            return web.json_response({"error": str(exc)}, status=400)
        admin_port = mesh.proxies()[node]
        try:
            dump = await fetch_config_dump(admin_port, sections)
        except ProxyUnreachable as exc:
            return web.json_response(
                {
                    "error": f"proxy `{node}` is unreachable: {exc}; "
                    "is it running? see `gossamer status`",
                    "admin_port": admin_port,
                },
                status=502,
            )
        return web.json_response(
            {
                "node": node,
                "kind": kinds[node],
                "admin_port": admin_port,
                "section": section,
                "config": select_sections(dump, sections),
            }
        )

    return [
        web.get("/api/v1/proxies", proxies),
        web.get("/api/v1/proxies/{node}/config", config),
    ]
