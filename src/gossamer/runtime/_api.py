"""The admin API of a running mesh (loopback only): what `status` and `down` call.

Port and routes are documented in docs/ports.md. JSON in, JSON out.
"""

from __future__ import annotations

from aiohttp import web

from gossamer.model import analyze
from gossamer.runtime._access import LogQuery
from gossamer.runtime._config_api import config_routes
from gossamer.runtime._local import LocalMesh
from gossamer.runtime._proxies import proxy_routes
from gossamer.runtime._run_api import run_routes
from gossamer.telemetry import exposition
from gossamer.translate import UnknownService, effective_routes


def make_app(mesh: LocalMesh) -> web.Application:
    async def status(_request: web.Request) -> web.Response:
        return web.json_response(mesh.status())

    async def shutdown(_request: web.Request) -> web.Response:
        mesh.stopping.set()
        return web.json_response({"stopping": True})

    async def reload(_request: web.Request) -> web.Response:
        applied = await mesh.reload()
        return web.json_response(
            {"applied": applied, "revision": mesh.control.revision.number},
            status=200 if applied else 422,
        )

    async def effective(request: web.Request) -> web.Response:
        service = request.match_info["service"]
        state = mesh.control.state
        if state is None:
            return web.json_response({"error": "the mesh has not started"}, status=503)
        try:
            return web.json_response(effective_routes(state.config, service))
        except UnknownService:
            known = [s.name for s in state.config.services()]
            return web.json_response(
                {"error": f"no service `{service}`", "services": known}, status=404
            )

    async def analyze_config(_request: web.Request) -> web.Response:
        state = mesh.control.state
        if state is None:
            return web.json_response({"error": "the mesh has not started"}, status=503)
        return web.json_response(
            {
                "revision": mesh.control.revision.number,
                "problems": [p.to_dict() for p in analyze(state.config)],
            }
        )

    async def logs(request: web.Request) -> web.Response:
        q = request.query
        try:
            query = LogQuery(
                status=q.get("status", ""),
                path_prefix=q.get("path", ""),
                flags=q.get("flags", ""),
                since_s=float(q["since"]) if "since" in q else None,
                limit=int(q.get("limit", "100")),
            )
        except ValueError:
            return web.json_response({"error": "since and limit are numbers"}, status=400)
        data = mesh.logs(request.match_info["service"], query)
        return web.json_response(data, status=404 if "error" in data else 200)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(
            text=exposition(mesh.telemetry),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    async def graph(request: web.Request) -> web.Response:
        try:
            window = float(request.query.get("window", "60"))
        except ValueError:
            window = float("nan")
        if not 0 < window < float("inf"):
            return web.json_response(
                {"error": "window is a positive number of seconds"}, status=400
            )
        return web.json_response(await mesh.graph(window))

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.add_routes(
        [
            web.get("/api/v1/status", status),
            web.post("/api/v1/shutdown", shutdown),
            web.post("/api/v1/reload", reload),
            web.get("/api/v1/effective/{service}", effective),
            web.get("/api/v1/analyze", analyze_config),
            web.get("/api/v1/logs/{service}", logs),
            web.get("/metrics", metrics),
            web.get("/api/v1/graph", graph),
            web.get("/healthz", healthz),
            *config_routes(mesh),
            *run_routes(mesh),
            *proxy_routes(mesh),
        ]
    )
    return app


async def serve(mesh: LocalMesh) -> web.AppRunner:
    runner = web.AppRunner(make_app(mesh), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, mesh.options.host, mesh.options.api_port, reuse_port=False)
    await site.start()
    return runner
