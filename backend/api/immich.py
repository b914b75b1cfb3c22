"""Immich: connection status and test, starting imports, following their progress, write-back's state.

The API key never appears in any answer: only whether Immich is configured and its URL (without
any ``user:password@`` part).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag

from backend import jobs
from backend.api.common import api_error, services
from backend.immich import importer, writeback
from backend.immich.client import (
    ImmichAuthError,
    ImmichConnectionError,
    ImmichError,
    ImmichPermissionError,
    ImmichServerError,
)
from backend.immich.connection import check_connection
from backend.schemas import (
    Error,
    ImmichStatus,
    ImmichTestResult,
    ImportBody,
    ImportListQuery,
    ImportRun,
    ImportRunList,
    ImportRunPath,
    ImportStarted,
    json_response,
)
from backend.serializers import job_json

bp = APIBlueprint("immich", __name__, abp_tags=[Tag(name="immich", description="connection and imports")])


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


def write_back_json(svc) -> dict[str, Any]:
    """Write-back's state as ``parallax immich-status`` shows it (:func:`writeback.status`); off:
    only what turns it on."""
    if not svc.settings.immich_write_back:
        return {"enabled": False, "enable_with": "IMMICH_WRITE_BACK=true"}
    state = writeback.status(svc)
    base = svc.settings.immich_web_url  # never with the credentials IMMICH_URL may carry
    failure = state["last_failure"]
    return {
        "enabled": True,
        "album": state["album"],
        "album_id": state["album_id"],
        "album_url": f"{base}/albums/{state['album_id']}" if base and state["album_id"] else None,
        "layout": state["layout"],
        "uploaded": state["done"],
        "in_progress": state["in_progress"],
        "replaced": state["superseded"],
        "jobs_waiting": state["jobs_waiting"],
        "jobs_failed": state["jobs_failed"],
        "last_failure": None
        if failure is None
        else {
            **failure,
            "finished_at": _iso(failure["finished_at"]),
            "url": f"/api/jobs/{failure['job_id']}",
        },
    }


def _not_configured():
    return api_error(400, "immich_not_configured", importer.not_configured_message(services().settings))


@bp.get(
    "/api/immich/status",
    summary="Whether Immich is configured (never the key), the last and the running import, write-back's state",
    responses={200: ImmichStatus},
)
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
        write_back=write_back_json(svc),
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


@bp.post(
    "/api/immich/test",
    summary="Test the connection: server version, the key's permissions, user, asset counts, albums",
    responses={
        200: ImmichTestResult,
        400: json_response(
            Error,
            "not configured (immich_not_configured), key rejected (immich_auth) or lacking permissions the"
            " enabled features need (immich_permission; error.missing lists them, error.permission names one)",
        ),
        502: json_response(
            Error,
            "Immich unreachable (immich_unreachable), failing (immich_server_error) or answering in a way"
            " this client does not understand (immich_error)",
        ),
    },
)
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


@bp.post(
    "/api/immich/import",
    summary="Start an import (incremental by default; the first one is always full)",
    responses={
        202: ImportStarted,
        400: json_response(Error, "a bad parameter (bad_request) or Immich not configured (immich_not_configured)"),
        409: json_response(Error, "an import is already queued or running (import_running; error.run is that run)"),
    },
)
def start_import(body: ImportBody):
    if not importer.is_configured(services().settings):
        return _not_configured()
    album_ids = [str(a) for a in body.album_ids] if body.album_ids is not None else None
    try:
        run, job = importer.start_import(
            services(), mode=body.mode or "incremental", album_ids=album_ids, page_size=body.page_size
        )
    except importer.ImportAlreadyRunning as exc:
        return api_error(
            409, "import_running", str(exc) + "; wait for it or cancel its job", run=_run_with_job(exc.run)
        )
    return jsonify(run=run_json(run, job), job=job_json(job)), 202


@bp.get("/api/immich/imports", summary="Recent import runs, newest first", responses={200: ImportRunList, 400: Error})
def list_imports(query: ImportListQuery):
    svc = services()
    with svc.db.connection() as conn:
        importer.settle_orphaned_runs(conn)
        rows = conn.execute(
            "SELECT * FROM immich_import_runs ORDER BY created_at DESC LIMIT %s", (query.limit,)
        ).fetchall()
        job_rows = conn.execute(
            "SELECT * FROM processing_jobs WHERE id = ANY(%s)", ([r["job_id"] for r in rows if r["job_id"]],)
        ).fetchall()
    by_id = {j["id"]: j for j in job_rows}
    return jsonify(runs=[run_json(r, by_id.get(r["job_id"])) for r in rows])


@bp.get(
    "/api/immich/imports/<run_id>",
    summary="One import run: counters, failures and its job's progress",
    responses={200: ImportRun, 404: Error},
)
def get_import(path: ImportRunPath):
    svc = services()
    with svc.db.connection() as conn:
        importer.settle_orphaned_runs(conn)
    run = importer.get_run(svc, path.run_id)
    if run is None:
        return api_error(404, "not_found", f"no Immich import run with id {path.run_id}")
    return jsonify(_run_with_job(run))
