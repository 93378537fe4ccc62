"""The admin API's config routes: apply (and its dry run, ``diff``), history, rollback.

POST /api/v1/apply     {"files": {path: text}, "root": path, "prune": bool, "dry_run": bool,
                        "author": str, "message": str, "expect_revision": int | null,
                        "force": bool}
GET  /api/v1/revisions          newest first, summaries
GET  /api/v1/revisions/{n}      one revision: files and what it changed
POST /api/v1/rollback  {"revision": n, "dry_run": bool, "author": str}

A change answers 200 (applied, or a dry run / no-op), 422 (refused: problems) or 409
(conflict: the mesh moved on since the change was prepared, or no such revision).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gossamer.runtime._local import ChangeResult, LocalMesh, whoami


def _reply(result: ChangeResult) -> web.Response:
    status = 422 if result.problems else 409 if result.conflict else 200
    return web.json_response(result.to_dict(), status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"the body is not JSON: {exc}"}),
            content_type="application/json",
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "the body is a JSON object"}),
            content_type="application/json",
        )
    return body


def config_routes(mesh: LocalMesh) -> list[web.RouteDef]:
    async def apply(request: web.Request) -> web.Response:
        body = await _body(request)
        files = body.get("files")
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            return web.json_response(
                {"error": "files is an object of absolute path -> file text"}, status=400
            )
        expect = body.get("expect_revision")
        result = await mesh.apply_files(
            files,
            root=str(body.get("root", "")),
            prune=bool(body.get("prune", False)),
            author=str(body.get("author") or whoami()),
            message=str(body.get("message") or "gossamer apply"),
            dry_run=bool(body.get("dry_run", False)),
            expect_revision=expect if isinstance(expect, int) else None,
            force=bool(body.get("force", False)),
        )
        return _reply(result)

    async def revisions(request: web.Request) -> web.Response:
        limit = (
            int(request.query.get("limit", "50"))
            if request.query.get("limit", "").isdigit()
            else 50
        )
        return web.json_response(
            {
                "current": mesh.control.revision.number,
                "revisions": [r.summary() for r in mesh.config_store.history(limit)],
            }
        )

    async def revision(request: web.Request) -> web.Response:
        text = request.match_info["number"]
        found = mesh.config_store.get(int(text)) if text.isdigit() else None
        if found is None:
            return web.json_response({"error": f"there is no revision {text}"}, status=404)
        return web.json_response(
            {
                **found.summary(),
                "files": [{"name": s.name, "text": s.text} for s in found.sources],
                "changes": found.changes,
            }
        )

    async def rollback(request: web.Request) -> web.Response:
        body = await _body(request)
        number = body.get("revision")
        if not isinstance(number, int):
            return web.json_response({"error": "revision is a number"}, status=400)
        result = await mesh.rollback(
            number,
            author=str(body.get("author") or whoami()),
            dry_run=bool(body.get("dry_run", False)),
        )
        return _reply(result)

    return [
        web.post("/api/v1/apply", apply),
        web.get("/api/v1/revisions", revisions),
        web.get("/api/v1/revisions/{number}", revision),
        web.post("/api/v1/rollback", rollback),
    ]
