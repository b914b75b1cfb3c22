"""Media items: upload, list, get, delete, download the original, re-process."""

from __future__ import annotations

from flask import jsonify, request, send_file
from flask_openapi3 import APIBlueprint, Tag
from werkzeug.exceptions import NotFound, RequestEntityTooLarge

from backend import jobs
from backend.api.common import api_error, services
from backend.media_service import delete_item, find_item, ingest_file
from backend.schemas import (
    Error,
    ItemDetail,
    ItemList,
    ItemPath,
    JobsCreated,
    MediaListQuery,
    OriginalQuery,
    ReprocessBody,
    UploadResult,
    binary,
    json_response,
)
from backend.serializers import asset_json, item_json, job_json

bp = APIBlueprint("media", __name__, abp_tags=[Tag(name="media", description="photos and videos")])

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


def upload_body(result, filename: str | None) -> dict:
    """The item with its jobs, plus the original design's upload fields (success, mediaItemId, queueId...)."""
    detail = item_detail(result.item)
    item = detail["item"]
    first_job = (result.jobs or detail["jobs"] or [None])[0]
    return {
        **detail,
        "duplicate": not result.created,
        "success": True,
        "message": "stored; processing queued" if result.created else "already stored: this is the existing item",
        "mediaItemId": item["id"],
        "queueId": str(first_job["id"]) if first_job else None,
        "filename": filename or item["original_filename"],
        "size": item["size_bytes"],
        "type": item["mime_type"],
    }


def uploaded_file(*fields: str):
    """The multipart file (first of ``fields`` present) as a temp file under MEDIA_ROOT/tmp, and its name."""
    svc = services()
    upload_file = next((request.files[f] for f in fields if f in request.files), None)
    if upload_file is None:
        return None, None
    paths = request.environ.get("parallax.upload_paths", [])
    stream_path = getattr(upload_file.stream, "name", None)
    upload_file.stream.close()
    tmp = next((p for p in paths if str(p) == str(stream_path)), None)
    if tmp is None:  # tiny bodies can arrive in memory; store them the same way
        tmp = svc.storage.temp_path(".upload")
        upload_file.save(tmp)
    if tmp.stat().st_size > svc.settings.max_upload_bytes:
        raise RequestEntityTooLarge()
    return tmp, upload_file.filename


UPLOAD_REQUEST = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "media": {"type": "string", "format": "binary", "description": "the file"},
                        "file": {"type": "string", "format": "binary", "description": "the same, another name"},
                    },
                }
            }
        },
    }
}


@bp.post(
    "/api/media/upload",
    summary="Upload a photo or video; its type is read from the content",
    openapi_extensions=UPLOAD_REQUEST,
    responses={
        202: UploadResult,
        200: json_response(UploadResult, "the same bytes were already stored: the existing item"),
        400: Error,
        413: Error,
        422: Error,
    },
)
def upload():
    svc = services()
    tmp, filename = uploaded_file("media", "file")
    if tmp is None:
        return api_error(400, "bad_request", "send the file as multipart/form-data in a field named 'media'")
    result = ingest_file(svc, tmp, filename)
    body = upload_body(result, filename)
    if not result.created:
        return jsonify(body), 200
    return jsonify(body), 202, {"Location": f"/api/media/{result.item['id']}"}


@bp.get("/api/media", summary="List media items", responses={200: ItemList, 400: Error})
def list_media(query: MediaListQuery):
    svc = services()
    page, per_page = query.page, query.per_page
    kind, status, source = query.kind, query.status, query.source
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


@bp.get("/api/media/<item_id>", summary="One item with its jobs and results", responses={200: ItemDetail, 404: Error})
def get_media(path: ItemPath):
    return jsonify(item_detail(get_item_or_404(path.item_id)))


@bp.delete("/api/media/<item_id>", summary="Delete an item with all its files", responses={204: None, 404: Error})
def remove_media(path: ItemPath):
    delete_item(services(), get_item_or_404(path.item_id))
    return "", 204


@bp.get(
    "/api/media/<item_id>/original",
    summary="Download the original (byte ranges, ETag)",
    responses={
        200: binary("the file as stored", "*/*"),
        206: binary("a byte range", "*/*"),
        304: {"description": "not modified"},
        400: Error,
        404: Error,
        416: {"description": "range not satisfiable"},
    },
)
def original(path: ItemPath, query: OriginalQuery):
    svc = services()
    item = get_item_or_404(path.item_id)
    response = send_file(
        svc.storage.path(item["storage_path"]),
        mimetype=item["mime_type"],
        conditional=True,
        etag=item["sha256"],
        download_name=item["original_filename"],
        as_attachment=query.download == "1",
        max_age=86400,
    )
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return response


@bp.post(
    "/api/media/<item_id>/reprocess",
    summary="Run an item's tasks again, optionally with new parameters",
    responses={202: JobsCreated, 400: Error, 404: Error, 409: Error},
)
def reprocess(path: ItemPath, body: ReprocessBody):
    item = get_item_or_404(path.item_id)
    parameters = body.parameters.model_dump(exclude_none=True)
    tasks = [str(t) for t in body.tasks] if body.tasks else None
    created = jobs.reprocess(services(), item, tasks, parameters)
    return jsonify(jobs=[job_json(j) for j in created]), 202
