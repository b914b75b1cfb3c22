"""Immich: connection status and test, starting imports, following their progress.

The API key never appears in any answer: only whether Immich is configured and its URL (without
any ``user:password@`` part).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from flask import Blueprint, jsonify, request

from backend import jobs
from backend.api.common import api_error, services
from backend.immich import importer
from backend.immich.client import (
    ImmichAuthError,
    ImmichConnectionError,
    ImmichError,
    ImmichPermissionError,
    ImmichServerError,
)
from backend.immich.connection import check_connection
from backend.serializers import job_json

bp = Blueprint("immich", __name__)

RECENT_RUNS_DEFAULT = 20
RECENT_RUNS_MAX = 200


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def run_json(run: dict, job: dict | None = None) -> dict[str, Any]:
    """An import run with its counters, failures and (when given) its job's status and progress."""
    out = {
        "id": str(run["id"]),
        "mode": run["mode"],
        "status": run["status"],
        "trigger": run.get("trigger"),
        "album_ids": list(run.get("album_ids") or []),
        "updated_after": _iso(run["updated_after"]),
        "created_at": _iso(run["created_at"]),
        "started_at": _iso(run["started_at"]),
        "finished_at": _iso(run["finished_at"]),
        "total": run.get("total"),
        "seen": run["seen"],
        "imported": run["imported"],
        "unchanged": run["unchanged"],
        "skipped": run["skipped"],
        "failed": run["failed"],
        "removed": run["removed"],
        "restored": run["restored"],
        "summary": importer.run_summary(run),
        "failures": run["failures"] or [],
        "skips": run["skips"] or [],
        "removals": run["removals"] or [],
        "error": run["error"],
        "job": None,
        "url": f"/api/immich/imports/{run['id']}",
    }
    if job is not None:
        j = job_json(job)
        out["job"] = {
            k: j[k] for k in ("id", "status", "progress", "attempts", "max_attempts", "error", "error_kind", "url")
        }
    elif run.get("job_id"):
        out["job"] = {"id": str(run["job_id"]), "url": f"/api/jobs/{run['job_id']}"}
    return out


def _run_with_job(run: dict | None) -> dict | None:
    if run is None:
        return None
    job = jobs.get_job(services(), run["job_id"]) if run.get("job_id") else None
    return run_json(run, job)


def _not_configured():
    return api_error(400, "immich_not_configured", importer.not_configured_message(services().settings))


@bp.get("/api/immich/status")
def status():
    svc = services()
    settings = svc.settings
    with svc.db.connection() as conn:
        running = importer.active_run(conn)
        last = conn.execute(
            "SELECT * FROM immich_import_runs WHERE status NOT IN ('queued', 'running')"
            " ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    last_success = importer.last_success(svc)
    return jsonify(
        configured=importer.is_configured(settings),
        url=importer.server_label(settings.immich_url),
        public_url=importer.server_label(settings.immich_public_url),
        server=None,  # POST /api/immich/test asks the server
        album_ids=list(settings.immich_album_ids),
        sync_interval_minutes=settings.immich_sync_interval_minutes,
        import_concurrency=settings.immich_import_concurrency,
        removed_assets=settings.immich_removed_assets,
        last_success_at=_iso(last_success),
        last_run=_run_with_job(last),
        running=_run_with_job(running),
    )


def _immich_error(exc: ImmichError):
    if isinstance(exc, ImmichAuthError):
        return api_error(400, "immich_auth", str(exc))
    if isinstance(exc, ImmichPermissionError):
        return api_error(400, "immich_permission", str(exc), permission=exc.permission)
    if isinstance(exc, ImmichConnectionError):
        return api_error(502, "immich_unreachable", str(exc))
    if isinstance(exc, ImmichServerError):
        return api_error(502, "immich_server_error", str(exc))
    return api_error(502, "immich_error", str(exc))


@bp.post("/api/immich/test")
def test_connection():
    """Check the URL, the key and its permissions against what the enabled features need; show
    the key's user, asset counts and albums when the key may read them."""
    settings = services().settings
    if not importer.is_configured(settings):
        return _not_configured()
    try:
        # A person is waiting: one quick retry instead of the import's patient backoff.
        client = importer.make_client(settings, timeout=(5, 15), retries=1, backoff=0.2)
    except importer.ImmichImportError as exc:
        return api_error(400, "immich_not_configured", str(exc))
    try:
        with client:
            report = check_connection(client, settings)
    except ImmichError as exc:
        return _immich_error(exc)
    missing = [{"permission": name, "needed_for": why} for name, why in report.missing.items()]
    if not report.ok:
        return api_error(400, "immich_permission", report.missing_message(), missing=missing)
    major, minor, patch = report.version
    user, stats = report.user, report.statistics
    return jsonify(
        ok=True,
        url=importer.server_label(settings.immich_url),
        server={"version": f"{major}.{minor}.{patch}", "major": major, "minor": minor, "patch": patch},
        permissions={
            "checked": report.permissions is not None,
            "missing": missing,
            "missing_optional": [{"permission": n, "needed_for": w} for n, w in report.missing_optional.items()],
        },
        user={"id": user.id, "name": user.name, "email": user.email} if user else None,
        statistics={"images": stats.images, "videos": stats.videos, "total": stats.total} if stats else None,
        albums=[{"id": a.id, "name": a.name, "asset_count": a.asset_count} for a in report.albums]
        if report.albums is not None
        else None,
        warnings=report.warnings,
    )


def _bad_request(message: str):
    return api_error(400, "bad_request", message)


@bp.post("/api/immich/import")
def start_import():
    body = request.get_json(silent=True)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        return _bad_request('the body must be a JSON object like {"mode": "incremental"}')
    mode = body.get("mode") or "incremental"
    if mode not in importer.MODES:
        return _bad_request(f"mode must be one of: {', '.join(importer.MODES)}")
    album_ids = body.get("album_ids")
    if album_ids is not None:
        if not isinstance(album_ids, list) or not all(isinstance(a, str) for a in album_ids):
            return _bad_request("album_ids must be a list of Immich album ids")
        try:
            album_ids = [str(uuid.UUID(a)) for a in album_ids]
        except ValueError:
            return _bad_request("album_ids must be Immich album ids (UUIDs, as GET /api/immich/test lists them)")
    page_size = body.get("page_size")
    if page_size is not None and (
        not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= 1000
    ):
        return _bad_request("page_size must be a whole number between 1 and 1000")
    if not importer.is_configured(services().settings):
        return _not_configured()
    try:
        run, job = importer.start_import(services(), mode=mode, album_ids=album_ids, page_size=page_size)
    except importer.ImportAlreadyRunning as exc:
        return api_error(
            409, "import_running", str(exc) + "; wait for it or cancel its job", run=_run_with_job(exc.run)
        )
    return jsonify(run=run_json(run, job), job=job_json(job)), 202


@bp.get("/api/immich/imports")
def list_imports():
    try:
        limit = int(request.args.get("limit", RECENT_RUNS_DEFAULT))
    except ValueError:
        return _bad_request("limit must be a whole number")
    if not 1 <= limit <= RECENT_RUNS_MAX:
        return _bad_request(f"limit must be between 1 and {RECENT_RUNS_MAX}")
    svc = services()
    with svc.db.connection() as conn:
        importer.settle_orphaned_runs(conn)
        rows = conn.execute("SELECT * FROM immich_import_runs ORDER BY created_at DESC LIMIT %s", (limit,)).fetchall()
        job_rows = conn.execute(
            "SELECT * FROM processing_jobs WHERE id = ANY(%s)", ([r["job_id"] for r in rows if r["job_id"]],)
        ).fetchall()
    by_id = {j["id"]: j for j in job_rows}
    return jsonify(runs=[run_json(r, by_id.get(r["job_id"])) for r in rows])


@bp.get("/api/immich/imports/<run_id>")
def get_import(run_id: str):
    svc = services()
    with svc.db.connection() as conn:
        importer.settle_orphaned_runs(conn)
    run = importer.get_run(svc, run_id)
    if run is None:
        return api_error(404, "not_found", f"no Immich import run with id {run_id}")
    return jsonify(_run_with_job(run))


_ERROR = {"$ref": "#/components/responses/Error"}
_ASSET_LIST = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "asset_id": {"type": "string"},
            "file_name": {"type": "string"},
            "reason": {"type": "string"},
        },
    },
}
_PERMISSION_LIST = {
    "type": "array",
    "items": {"type": "object", "properties": {"permission": {"type": "string"}, "needed_for": {"type": "string"}}},
}
_RUN_SCHEMA = {
    "type": "object",
    "description": "an import run",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "mode": {"enum": list(importer.MODES)},
        "status": {"enum": ["queued", "running", "completed", "failed", "cancelled"]},
        "trigger": {"enum": list(importer.TRIGGERS)},
        "album_ids": {"type": "array", "items": {"type": "string"}},
        "updated_after": {"type": ["string", "null"], "description": "only assets updated since then were listed"},
        "created_at": {"type": "string"},
        "started_at": {"type": ["string", "null"]},
        "finished_at": {"type": ["string", "null"]},
        "total": {"type": ["integer", "null"]},
        "seen": {"type": "integer"},
        "imported": {"type": "integer"},
        "unchanged": {"type": "integer"},
        "skipped": {"type": "integer"},
        "failed": {"type": "integer"},
        "removed": {"type": "integer", "description": "items hidden or deleted: their asset left Immich's timeline"},
        "restored": {"type": "integer", "description": "hidden items shown again: their asset came back"},
        "summary": {"type": "string", "description": 'e.g. "completed", "completed with 3 failures"'},
        "failures": _ASSET_LIST,
        "skips": {**_ASSET_LIST, "description": "assets not taken, with the reason"},
        "removals": {**_ASSET_LIST, "description": "what this run removed, with the reason"},
        "error": {"type": ["string", "null"]},
        "job": {"type": ["object", "null"], "description": "the job carrying the run: status, progress, error"},
        "url": {"type": "string"},
    },
}


def _json_response(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


OPENAPI_PATHS: dict = {
    "/api/immich/status": {
        "get": {
            "tags": ["immich"],
            "summary": "Whether Immich is configured (never the key), the last and the running import",
            "responses": {
                "200": _json_response(
                    {
                        "type": "object",
                        "properties": {
                            "configured": {"type": "boolean"},
                            "url": {"type": ["string", "null"]},
                            "public_url": {"type": ["string", "null"]},
                            "server": {"type": "null"},
                            "album_ids": {"type": "array", "items": {"type": "string"}},
                            "sync_interval_minutes": {"type": "integer"},
                            "import_concurrency": {"type": "integer"},
                            "removed_assets": {"enum": ["hide", "delete"], "description": "IMMICH_REMOVED_ASSETS"},
                            "last_success_at": {
                                "type": ["string", "null"],
                                "description": "start of the last successful import of the configured selection",
                            },
                            "last_run": {"oneOf": [_RUN_SCHEMA, {"type": "null"}]},
                            "running": {"oneOf": [_RUN_SCHEMA, {"type": "null"}]},
                        },
                    }
                )
            },
        }
    },
    "/api/immich/test": {
        "post": {
            "tags": ["immich"],
            "summary": "Test the connection: server version, the key's permissions, user, asset counts, albums",
            "responses": {
                "200": _json_response(
                    {
                        "type": "object",
                        "properties": {
                            "ok": {"type": "boolean"},
                            "url": {"type": "string"},
                            "server": {"type": "object", "properties": {"version": {"type": "string"}}},
                            "permissions": {
                                "type": "object",
                                "description": "the key's permissions (GET /api/api-keys/me) against what is needed",
                                "properties": {
                                    "checked": {"type": "boolean"},
                                    "missing": _PERMISSION_LIST,
                                    "missing_optional": _PERMISSION_LIST,
                                },
                            },
                            "warnings": {
                                "type": "array",
                                "items": {"type": "string"},
                                "description": "optional details that could not be had (the test still passes)",
                            },
                            "user": {
                                "type": ["object", "null"],
                                "description": "null without the user.read permission",
                            },
                            "statistics": {"type": ["object", "null"], "description": "null without asset.statistics"},
                            "albums": {"type": ["array", "null"], "description": "null without album.read"},
                        },
                    }
                ),
                "400": {
                    "description": "not configured (immich_not_configured), key rejected (immich_auth) or lacking"
                    " permissions the enabled features need (immich_permission; error.missing lists them)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
                "502": {
                    "description": "Immich unreachable (immich_unreachable) or failing (immich_server_error)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        }
    },
    "/api/immich/import": {
        "post": {
            "tags": ["immich"],
            "summary": "Start an import (incremental by default; the first one is always full)",
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "mode": {"enum": list(importer.MODES), "default": "incremental"},
                                "album_ids": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "uuid"},
                                    "description": "only assets in any of these albums (default: IMMICH_ALBUM_IDS)",
                                },
                                "page_size": {
                                    "type": "integer",
                                    "minimum": 1,
                                    "maximum": 1000,
                                    "default": 250,
                                    "description": "assets per listing request",
                                },
                            },
                        }
                    }
                }
            },
            "responses": {
                "202": _json_response(
                    {"type": "object", "properties": {"run": _RUN_SCHEMA, "job": {"$ref": "#/components/schemas/Job"}}},
                    "queued",
                ),
                "400": _ERROR,
                "409": {
                    "description": "an import is already queued or running (error.run is that run)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        }
    },
    "/api/immich/imports": {
        "get": {
            "tags": ["immich"],
            "summary": "Recent import runs, newest first",
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": RECENT_RUNS_MAX,
                        "default": RECENT_RUNS_DEFAULT,
                    },
                }
            ],
            "responses": {
                "200": _json_response(
                    {"type": "object", "properties": {"runs": {"type": "array", "items": _RUN_SCHEMA}}}
                ),
                "400": _ERROR,
            },
        }
    },
    "/api/immich/imports/{run_id}": {
        "get": {
            "tags": ["immich"],
            "summary": "One import run: counters, failures and its job's progress",
            "parameters": [
                {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
            ],
            "responses": {"200": _json_response(_RUN_SCHEMA), "404": _ERROR},
        }
    },
}
