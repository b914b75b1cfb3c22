"""Browsing the library: previews of originals and results, every result's file under a meaningful
name, and an item's neighbours for previous / next."""

from __future__ import annotations

import uuid

from flask import Response, jsonify, request, send_file
from flask_openapi3 import APIBlueprint, Tag
from flask_openapi3.types import ResponseDict
from werkzeug.exceptions import BadRequest, NotFound

from backend import thumbnails
from backend.api.common import api_error, services
from backend.api.media import get_item_or_404
from backend.schemas import (
    AssetPath,
    Error,
    ItemPath,
    KindQuery,
    Neighbours,
    OriginalQuery,
    VersionQuery,
    binary,
)
from backend.serializers import asset_download_name, item_thumbnail_url

bp = APIBlueprint("library", __name__, abp_tags=[Tag(name="library", description="previews, result files, neighbours")])
PREVIEW: ResponseDict = {
    200: binary("WebP, at most 512 px on its longest side", "image/webp"),
    304: {"description": "not modified (ETag)"},
    404: Error,
}

# A preview URL carries the version of its file (?v=...), so a browser may keep it for good; a
# request without the current version revalidates with the ETag instead.
VERSIONED_CACHE = "private, max-age=31536000, immutable"
UNVERSIONED_CACHE = "private, max-age=0, must-revalidate"
RESULT_CACHE = "private, max-age=300, must-revalidate"


def _asset_or_404(item: dict, asset_id: str) -> dict:
    try:
        uuid.UUID(asset_id)
    except ValueError:
        raise NotFound(f"no result with id {asset_id}") from None
    asset = services().db.fetchone(
        "SELECT * FROM derived_assets WHERE id = %s AND media_id = %s", (asset_id, item["id"])
    )
    if asset is None:
        raise NotFound(f"this item has no result with id {asset_id}")
    return asset


def _send_thumbnail(rel: str, mime_type: str, duration: float | None, version: str) -> Response:
    try:
        path = thumbnails.ensure(services().storage, rel, mime_type, duration)
    except Exception as exc:  # unreadable by Pillow and ffmpeg: say why instead of a broken image
        return api_error(404, "no_preview", f"no preview can be made of this file ({exc})")
    response = send_file(path, mimetype=thumbnails.MIME_TYPE, conditional=True, etag=f"thumb-{version}")
    response.headers["Cache-Control"] = VERSIONED_CACHE if request.args.get("v") == version else UNVERSIONED_CACHE
    return response


@bp.get(
    "/api/media/<item_id>/thumbnail",
    summary="A small upright preview of the original (a video's poster frame)",
    responses=PREVIEW,
)
def item_thumbnail(path: ItemPath, query: VersionQuery):
    item = get_item_or_404(path.item_id)
    return _send_thumbnail(item["storage_path"], item["mime_type"], item["duration_s"], item["sha256"][:12])


@bp.get(
    "/api/media/<item_id>/assets/<asset_id>/thumbnail",
    summary="A small preview of a result (transparency kept)",
    responses=PREVIEW,
)
def asset_thumbnail(path: AssetPath, query: VersionQuery):
    asset = _asset_or_404(get_item_or_404(path.item_id), path.asset_id)
    version = str(int(asset["created_at"].timestamp() * 1000))
    return _send_thumbnail(asset["path"], asset["mime_type"], (asset["metadata"] or {}).get("duration"), version)


@bp.get(
    "/api/media/<item_id>/assets/<asset_id>",
    summary="Any result's file (depth map, depth ZIP, cut-out image or video)",
    responses={
        200: binary("the file", "*/*"),
        206: binary("a byte range", "*/*"),
        304: {"description": "not modified (ETag)"},
        400: Error,
        404: Error,
    },
)
def asset_file(path: AssetPath, query: OriginalQuery):
    item = get_item_or_404(path.item_id)
    asset = _asset_or_404(item, path.asset_id)
    response = send_file(
        services().storage.path(asset["path"]),
        mimetype=asset["mime_type"],
        conditional=True,
        etag=f"{asset['id']}-{int(asset['created_at'].timestamp() * 1000)}",
        download_name=asset_download_name(asset, item["original_filename"]),
        as_attachment=query.download == "1",
    )
    response.headers["Cache-Control"] = RESULT_CACHE
    return response


def _brief(row: dict | None) -> dict | None:
    if row is None:
        return None
    return {
        "id": str(row["id"]),
        "kind": row["kind"],
        "original_filename": row["original_filename"],
        "thumbnail_url": item_thumbnail_url(row),
    }


@bp.get(
    "/api/media/<item_id>/neighbours",
    summary="The newer and older item next to this one, in the library's order",
    responses={200: Neighbours, 400: Error, 404: Error},
)
def neighbours(path: ItemPath, query: KindQuery):
    """The items before and after this one in the library's order (newest first, as GET /api/media
    lists them), optionally among one kind: what previous / next on the item page and in the viewer open."""
    item = get_item_or_404(path.item_id)
    kind = query.kind
    if kind and item["kind"] != kind:
        raise BadRequest(f"this item is a {item['kind']}, not a {kind}")
    db = services().db
    params = {"created": item["created_at"], "id": item["id"], "kind": kind}
    # The same items as the library lists: not those removed in Immich and hidden here.
    same_kind = "(%(kind)s::text IS NULL OR kind = %(kind)s) AND immich_removed IS NULL"
    newer = db.fetchone(
        f"SELECT id, kind, original_filename, sha256 FROM media_items WHERE {same_kind}"
        " AND (created_at > %(created)s OR (created_at = %(created)s AND id < %(id)s))"
        " ORDER BY created_at ASC, id DESC LIMIT 1",
        params,
    )
    older = db.fetchone(
        f"SELECT id, kind, original_filename, sha256 FROM media_items WHERE {same_kind}"
        " AND (created_at < %(created)s OR (created_at = %(created)s AND id > %(id)s))"
        " ORDER BY created_at DESC, id ASC LIMIT 1",
        params,
    )
    return jsonify(newer=_brief(newer), older=_brief(older))
