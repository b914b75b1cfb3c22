"""Media items: upload, list, get, delete, download the original, re-process."""

from __future__ import annotations

from flask import Blueprint, jsonify, request, send_file
from werkzeug.exceptions import BadRequest, NotFound, RequestEntityTooLarge

from backend import jobs
from backend.api.common import api_error, services
from backend.api.pagination import choice_arg, page_args
from backend.media_service import delete_item, find_item, ingest_file
from backend.serializers import asset_json, item_json, job_json

bp = Blueprint("media", __name__)

ITEM_STATUSES = ("processing", "completed", "failed", "cancelled", "skipped", "none")
# An item's state is made of its newest job per task.
STATUS_SQL = """CASE
    WHEN bool_or(l.status IN ('pending','queued','processing')) THEN 'processing'
    WHEN bool_or(l.status = 'failed') THEN 'failed'
    WHEN bool_or(l.status = 'completed') THEN 'completed'
    WHEN bool_or(l.status = 'cancelled') THEN 'cancelled'
    WHEN bool_or(l.status = 'skipped') THEN 'skipped'
    ELSE 'none' END"""


def get_item_or_404(item_id: str) -> dict:
    item = find_item(services(), item_id)
    if item is None:
        raise NotFound(f"no media item with id {item_id}")
    return item


def item_detail(item: dict) -> dict:
    svc = services()
    job_rows = svc.db.fetchall("SELECT * FROM processing_jobs WHERE media_id = %s ORDER BY created_at", (item["id"],))
    assets = svc.db.fetchall("SELECT * FROM derived_assets WHERE media_id = %s ORDER BY kind, variant", (item["id"],))
    status = svc.db.fetchrow(f"SELECT {STATUS_SQL} AS status FROM latest_jobs l WHERE l.media_id = %s", (item["id"],))
    ahead = jobs.jobs_ahead(svc, [j["id"] for j in job_rows if j["status"] == "queued"])
    return {
        "item": item_json({**item, "status": status["status"]}, svc.settings),
        "jobs": [job_json(j, ahead.get(str(j["id"]))) for j in job_rows],
        "assets": [asset_json(a, item["original_filename"]) for a in assets],
    }


@bp.post("/api/media/upload")
def upload():
    svc = services()
    upload_file = request.files.get("media") or request.files.get("file")
    if upload_file is None:
        return api_error(400, "bad_request", "send the file as multipart/form-data in a field named 'media'")
    paths = request.environ.get("parallax.upload_paths", [])
    stream_path = getattr(upload_file.stream, "name", None)
    upload_file.stream.close()
    tmp = next((p for p in paths if str(p) == str(stream_path)), None)
    if tmp is None:  # tiny bodies can arrive in memory; store them the same way
        tmp = svc.storage.temp_path(".upload")
        upload_file.save(tmp)
    if tmp.stat().st_size > svc.settings.max_upload_bytes:
        raise RequestEntityTooLarge()
    result = ingest_file(svc, tmp, upload_file.filename)
    body = {**item_detail(result.item), "duplicate": not result.created}
    if not result.created:
        return jsonify(body), 200
    return jsonify(body), 202, {"Location": f"/api/media/{result.item['id']}"}


@bp.get("/api/media")
def list_media():
    svc = services()
    page, per_page = page_args()
    kind = choice_arg("kind", ("photo", "video"))
    status = choice_arg("status", ITEM_STATUSES)
    source = choice_arg("source", ("upload", "immich"))
    rows = svc.db.fetchall(
        f"""SELECT m.*, s.status, count(*) OVER () AS total FROM media_items m
            CROSS JOIN LATERAL (SELECT {STATUS_SQL} AS status FROM latest_jobs l WHERE l.media_id = m.id) s
            WHERE (%(kind)s::text IS NULL OR m.kind = %(kind)s) AND (%(status)s::text IS NULL OR s.status = %(status)s)
              AND (%(source)s::text IS NULL OR m.source = %(source)s)
              AND m.immich_removed IS NULL
            ORDER BY m.created_at DESC, m.id LIMIT %(limit)s OFFSET %(offset)s""",
        {"kind": kind, "status": status, "source": source, "limit": per_page, "offset": (page - 1) * per_page},
    )
    total = (
        rows[0]["total"]
        if rows
        else svc.db.fetchrow(
            f"""SELECT count(*) AS n FROM media_items m
            CROSS JOIN LATERAL (SELECT {STATUS_SQL} AS status FROM latest_jobs l WHERE l.media_id = m.id) s
            WHERE (%(kind)s::text IS NULL OR m.kind = %(kind)s) AND (%(status)s::text IS NULL OR s.status = %(status)s)
              AND (%(source)s::text IS NULL OR m.source = %(source)s)
              AND m.immich_removed IS NULL""",
            {"kind": kind, "status": status, "source": source},
        )["n"]
    )
    return jsonify(items=[item_json(r, svc.settings) for r in rows], page=page, per_page=per_page, total=total)


@bp.get("/api/media/<item_id>")
def get_media(item_id: str):
    return jsonify(item_detail(get_item_or_404(item_id)))


@bp.delete("/api/media/<item_id>")
def remove_media(item_id: str):
    delete_item(services(), get_item_or_404(item_id))
    return "", 204


@bp.get("/api/media/<item_id>/original")
def original(item_id: str):
    svc = services()
    item = get_item_or_404(item_id)
    response = send_file(
        svc.storage.path(item["storage_path"]),
        mimetype=item["mime_type"],
        conditional=True,
        etag=item["sha256"],
        download_name=item["original_filename"],
        as_attachment=request.args.get("download") == "1",
        max_age=86400,
    )
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return response


@bp.post("/api/media/<item_id>/reprocess")
def reprocess(item_id: str):
    item = get_item_or_404(item_id)
    body = request.get_json(silent=True) or {}
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    tasks = body.get("tasks")
    if tasks is not None and (not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks)):
        raise BadRequest("tasks must be a list of task names")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest("parameters must be an object")
    bad = validate_parameters(parameters)
    if bad:
        raise BadRequest(bad)
    created = jobs.reprocess(services(), item, tasks, parameters)
    return jsonify(jobs=[job_json(j) for j in created]), 202


PARAMETERS = {
    "fps": (float, lambda v: 0 < v <= 120, "a number above 0 and at most 120"),
    "max_frames": (int, lambda v: 1 <= v <= 100_000, "a whole number from 1 to 100000"),
    "method": (str, lambda v: v in ("interval", "keyframes"), "interval or keyframes"),
    "height": (int, lambda v: 16 <= v <= 8192, "a whole number from 16 to 8192"),
    "bit_depth": (int, lambda v: v in (8, 16), "8 or 16"),
    "polarity": (str, lambda v: v in ("near_dark", "near_bright"), "near_dark or near_bright"),
    "include_color": (bool, lambda v: True, "true or false"),
    "model": (str, lambda v: 0 < len(v) < 300, "a model name"),
    "background": (str, lambda v: 0 < len(v) < 20, "transparent, green, blue, white, black or #rrggbb"),
    "output": (str, lambda v: v in ("transparent", "mask"), "transparent or mask"),
    "prores": (bool, lambda v: True, "true or false"),
}


def validate_parameters(parameters: dict) -> str | None:
    for name, value in parameters.items():
        spec = PARAMETERS.get(name)
        if spec is None:
            return f"unknown parameter {name!r}; known: {', '.join(PARAMETERS)}"
        kind, check, accepts = spec
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok or not check(value):
            return f"parameter {name}={value!r} is not valid: expected {accepts}"
    return None
