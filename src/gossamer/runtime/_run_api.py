"""The admin API's routes for ``gossamer run``: an instance run by its own process joins
the mesh, reports when its app serves, calls in while it runs, and leaves.

POST   /api/v1/instances                 {"service": S, "workload": W?, "rejoin": placement?}
POST   /api/v1/instances/{name}/serving  {"serving": bool} -> callers waited for
POST   /api/v1/instances/{name}/heartbeat
DELETE /api/v1/instances/{name}
GET    /api/v1/proxies/{node}/synced?timeout=S -> {"synced": bool}
"""

from __future__ import annotations

import json

from aiohttp import web

from gossamer.model import Instance
from gossamer.runtime._local import LocalMesh


async def _json(request: web.Request) -> dict[str, object]:
    try:
        body = await request.json()
    except json.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "the body is a JSON object"}), content_type="application/json"
        )
    return body


def run_routes(mesh: LocalMesh) -> list[web.RouteDef]:
    async def join(request: web.Request) -> web.Response:
        body = await _json(request)
        rejoin = body.get("rejoin")
        try:
            instance = Instance.from_dict(rejoin) if isinstance(rejoin, dict) else None
        except (KeyError, TypeError, ValueError):
            return web.json_response({"error": "rejoin is an instance's placement"}, status=400)
        data = await mesh.attach(
            str(body.get("service", "")), str(body.get("workload") or ""), instance
        )
        return web.json_response(data, status=404 if "error" in data else 200)

    def _known(name: str) -> web.Response | None:
        if name in mesh.control.attached:
            return None
        return web.json_response({"error": f"no joined instance `{name}`"}, status=404)

    async def serving(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if (missing := _known(name)) is not None:
            return missing
        body = await _json(request)
        if body.get("serving"):
            mesh.set_serving(name, True)
            return web.json_response({"serving": True})
        timeout = body.get("timeout", 5.0)
        callers, lagging = await mesh.leave(
            name, float(timeout) if isinstance(timeout, (int, float)) else 5.0
        )
        return web.json_response({"serving": False, "callers": callers, "lagging": lagging})

    async def heartbeat(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.json_response(
            {"known": mesh.heartbeat(name)}, status=200 if name in mesh.control.attached else 404
        )

    async def leave(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not await mesh.detach(name):
            return web.json_response({"error": f"no joined instance `{name}`"}, status=404)
        return web.json_response({"left": name})

    async def synced(request: web.Request) -> web.Response:
        try:
            timeout = min(float(request.query.get("timeout", "0")), 120.0)
        except ValueError:
            return web.json_response({"error": "timeout is a number of seconds"}, status=400)
        node = request.match_info["node"]
        return web.json_response({"synced": await mesh.control.wait_synced(node, timeout)})

    return [
        web.post("/api/v1/instances", join),
        web.post("/api/v1/instances/{name}/serving", serving),
        web.post("/api/v1/instances/{name}/heartbeat", heartbeat),
        web.delete("/api/v1/instances/{name}", leave),
        web.get("/api/v1/proxies/{node}/synced", synced),
    ]
