"""Serving results: depth maps (PNG / ZIP), the viewer's manifest and single frames read straight
from the stored ZIP, and cut-outs (rendering a background on request)."""

from __future__ import annotations

import json
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path

from flask import Response, abort, jsonify, make_response, request, send_file
from flask_openapi3 import APIBlueprint, Tag
from werkzeug.exceptions import BadRequest, NotFound

from ai.probe import oriented_image
from backend import jobs
from backend.api.common import api_error, services
from backend.api.media import get_item_or_404
from backend.schemas import (
    Asset,
    CutoutQuery,
    DepthQuery,
    Error,
    FramePath,
    ItemPath,
    Manifest,
    ResultQueued,
    background_variant,
    binary,
)
from backend.serializers import asset_json, job_json

bp = APIBlueprint("results", __name__, abp_tags=[Tag(name="results", description="depth maps, frames, cut-outs")])
NOT_MODIFIED = {"description": "not modified (ETag)"}


RESULT_CACHE = "private, max-age=300, must-revalidate"


def _asset(item_id, kind: str, variant: str = "") -> dict | None:
    return services().db.fetchone(
        "SELECT * FROM derived_assets WHERE media_id = %s AND kind = %s AND variant = %s", (item_id, kind, variant)
    )


def _etag(asset: dict, suffix: str = "") -> str:
    return f"{asset['id']}-{int(asset['created_at'].timestamp() * 1000)}{suffix}"


def _send_asset(asset: dict, download_name: str) -> Response:
    path = services().storage.path(asset["path"])
    response = send_file(
        path, mimetype=asset["mime_type"], conditional=True, etag=_etag(asset), download_name=download_name, max_age=300
    )
    response.headers["Cache-Control"] = RESULT_CACHE
    return response


def _depth_asset(item: dict) -> dict | None:
    return _asset(item["id"], "depth" if item["kind"] == "photo" else "depth_frames")


def missing_result(item: dict, task: str, what: str = "depth"):
    """404 with the reason an item has no result of ``task`` yet (skipped, failed, still running)."""
    svc = services()
    job = svc.db.fetchone("SELECT * FROM latest_jobs WHERE media_id = %s AND task = %s", (item["id"], task))
    if job is None:
        return api_error(404, "not_found", f"no {what} result for this item")
    reason = {
        "skipped": job["skip_reason"],
        "failed": f"the {what} job failed: {job['last_error']}",
        "cancelled": f"the {what} job was cancelled; retry it to make one",
    }.get(job["status"], f"the {what} job is {job['status']}; try again when it has completed")
    return api_error(404, "not_ready" if job["status"] in jobs.ACTIVE else "not_found", reason, job=job_json(job))


def _missing_depth(item: dict):
    return missing_result(item, "depth" if item["kind"] == "photo" else "video_depth")


def rgbd_video_json(item: dict, asset: dict | None) -> dict | None:
    """What the manifest says about a video's RGB-D video (colour left, depth right), None without one."""
    if asset is None:
        return None
    meta = asset["metadata"] or {}
    return {
        "url": f"/api/media/{item['id']}/depth/video",
        "layout": meta.get("layout"),
        "polarity": meta.get("polarity"),
        "bit_depth": meta.get("bit_depth", 8),
        "width": asset["width"],
        "height": asset["height"],
        "frame_count": meta.get("frame_count"),
        "fps": meta.get("fps"),
        "duration": meta.get("duration"),
        "depth_fps": meta.get("depth_fps"),
        "scene_cuts": meta.get("scene_cuts", []),
    }


def _require_depth(item_id: str) -> tuple[dict, dict]:
    """The item and its depth result, or stop the request with the reason there is none."""
    item = get_item_or_404(item_id)
    asset = _depth_asset(item)
    if asset is None:
        abort(make_response(_missing_depth(item)))
    return item, asset


@bp.get(
    "/api/media/<item_id>/depth",
    summary="Depth map: PNG for a photo, ZIP of frames for a video",
    responses={
        200: binary("header X-Depth-Polarity tells which way", "image/png", "application/zip"),
        206: binary("a byte range", "image/png", "application/zip"),
        304: NOT_MODIFIED,
        400: Error,
        404: Error,
    },
)
def depth(path: ItemPath, query: DepthQuery):
    item, asset = _require_depth(path.item_id)
    stem = Path(item["original_filename"]).stem or "media"
    response = _send_asset(asset, f"{stem}_depth.{'png' if item['kind'] == 'photo' else 'zip'}")
    response.headers["X-Depth-Polarity"] = asset["metadata"].get("polarity", "near_dark")
    return response


@bp.get("/api/media/<item_id>/depth/info", summary="The depth result's metadata", responses={200: Asset, 404: Error})
def depth_info(path: ItemPath):
    _item, asset = _require_depth(path.item_id)
    return jsonify(asset_json(asset))


# Open ZIPs are kept: reading one frame then costs a seek, not a scan of the central directory.
_zip_cache: OrderedDict[tuple[str, int], zipfile.ZipFile] = OrderedDict()
_zip_lock = threading.Lock()


def _open_zip(path: Path) -> zipfile.ZipFile:
    key = (str(path), path.stat().st_mtime_ns)
    with _zip_lock:
        archive = _zip_cache.get(key)
        if archive is None:
            archive = zipfile.ZipFile(path)
            _zip_cache[key] = archive
            while len(_zip_cache) > 16:
                _zip_cache.popitem(last=False)[1].close()
        _zip_cache.move_to_end(key)
        return archive


def _video_manifest(asset: dict) -> dict:
    archive = _open_zip(services().storage.path(asset["path"]))
    return json.loads(archive.read("manifest.json"))


def _not_modified(etag: str) -> Response | None:
    if request.if_none_match.contains(etag):
        response = Response(status=304)
        response.set_etag(etag)
        response.headers["Cache-Control"] = RESULT_CACHE
        return response
    return None


@bp.get(
    "/api/media/<item_id>/depth/manifest",
    summary="Frames with times and URLs for the viewer",
    responses={200: Manifest, 304: NOT_MODIFIED, 404: Error},
)
def manifest(path: ItemPath):
    item, asset = _require_depth(path.item_id)
    rgbd = _asset(item["id"], "depth_video") if item["kind"] == "video" else None
    etag = _etag(asset, "-manifest" + (f"-{_etag(rgbd)}" if rgbd else ""))
    cached = _not_modified(etag)
    if cached:
        return cached
    base = f"/api/media/{item['id']}/depth/frames"
    meta = asset["metadata"] or {}
    if item["kind"] == "photo":
        body = {
            "version": 1,
            "media_id": str(item["id"]),
            "kind": "photo",
            "model": asset["model"],
            "method": None,
            "requested_fps": None,
            "effective_fps": None,
            "frame_width": asset["width"],
            "frame_height": asset["height"],
            "frame_count": 1,
            "polarity": meta.get("polarity", "near_dark"),
            "bit_depth": meta.get("bit_depth", 8),
            "normalization": meta.get("normalization"),
            "frames": [{"index": 1, "time": 0.0, "depth_url": f"{base}/1", "color_url": f"{base}/1/color"}],
            "source_url": f"/api/media/{item['id']}/original",
        }
    else:
        data = _video_manifest(asset)
        frames = [
            {
                **f,
                "depth_url": f"{base}/{f['index']}",
                "color_url": f"{base}/{f['index']}/color" if f.get("color") else None,
            }
            for f in data.get("frames", [])
        ]
        body = {
            **data,
            "media_id": str(item["id"]),
            "kind": "video",
            "frames": frames,
            "source_url": f"/api/media/{item['id']}/original",
            "rgbd_video": rgbd_video_json(item, rgbd),
        }
    response = jsonify(body)
    response.set_etag(etag)
    response.headers["Cache-Control"] = RESULT_CACHE
    return response


def _photo_color(item: dict) -> Path:
    """An upright JPEG of the photo at its displayed size (HEIC and friends don't show in browsers)."""
    storage = services().storage
    path = storage.path(f"{storage.item_rel(item['id'])}/color.jpg")
    if not path.exists():
        tmp = storage.temp_path(".jpg")
        oriented_image(storage.path(item["storage_path"])).save(tmp, "JPEG", quality=90)
        storage.place(tmp, f"{storage.item_rel(item['id'])}/color.jpg")
    return path


@bp.get(
    "/api/media/<item_id>/depth/frames/<int:index>",
    summary="One depth frame (PNG), read from the stored ZIP",
    responses={200: binary("depth frame", "image/png"), 304: NOT_MODIFIED, 400: Error, 404: Error},
)
def depth_frame(path: FramePath):
    return _frame(path.item_id, path.index, "depth")


@bp.get(
    "/api/media/<item_id>/depth/frames/<int:index>/color",
    summary="The matching colour frame",
    responses={200: binary("colour frame", "image/jpeg", "image/png"), 304: NOT_MODIFIED, 400: Error, 404: Error},
)
def color_frame(path: FramePath):
    return _frame(path.item_id, path.index, "color")


def _frame(item_id: str, index: int, which: str):
    item, asset = _require_depth(item_id)
    etag = _etag(asset, f"-{which}-{index}")
    cached = _not_modified(etag)
    if cached:
        return cached
    if item["kind"] == "photo":
        if index != 1:
            raise NotFound("a photo has one frame (index 1)")
        path = services().storage.path(asset["path"]) if which == "depth" else _photo_color(item)
        response = send_file(
            path, mimetype="image/png" if which == "depth" else "image/jpeg", conditional=True, etag=etag, max_age=300
        )
    else:
        data = _video_manifest(asset)
        entry = next((f for f in data.get("frames", []) if f.get("index") == index), None)
        if entry is None:
            raise NotFound(f"no frame {index}; the clip has frames 1 to {len(data.get('frames', []))}")
        name = entry.get(which)
        if not name:
            raise NotFound("colour frames were not stored for this clip (include_color was off)")
        payload = _open_zip(services().storage.path(asset["path"])).read(name)
        response = Response(payload, mimetype="image/png" if name.endswith(".png") else "image/jpeg")
        response.set_etag(etag)
    response.headers["Cache-Control"] = RESULT_CACHE
    response.headers["X-Depth-Polarity"] = (asset["metadata"] or {}).get("polarity", "near_dark")
    return response


@bp.get(
    "/api/media/<item_id>/cutout",
    summary="Background-removed result; asking for a background not rendered yet queues it",
    responses={
        200: binary(
            "PNG for a photo; WebM, MOV or MP4 for a video", "image/png", "video/webm", "video/mp4", "video/quicktime"
        ),
        202: ResultQueued,
        206: binary("a byte range", "image/png", "video/webm", "video/mp4", "video/quicktime"),
        304: NOT_MODIFIED,
        400: Error,
        404: Error,
    },
)
def cutout(path: ItemPath, query: CutoutQuery):
    svc = services()
    item = get_item_or_404(path.item_id)
    background = background_variant(
        query.background or (svc.settings.cutout_video_background if item["kind"] == "video" else None)
    )
    if item["kind"] == "video" and background == "mask":
        raise BadRequest("mask is available for photos only")
    task = "cutout" if item["kind"] == "photo" else "video_cutout"
    kind = "cutout" if item["kind"] == "photo" else "cutout_video"
    asset = _asset(item["id"], kind, background)
    if asset is not None:
        ext = Path(asset["path"]).suffix
        stem = Path(item["original_filename"]).stem or "media"
        return _send_asset(asset, f"{stem}_cutout_{background}{ext}")
    reason = jobs.skip_reason(svc.settings, task)
    if reason:
        return api_error(404, "feature_disabled", reason)
    active = svc.db.fetchone(
        "SELECT * FROM processing_jobs WHERE media_id = %s AND task = %s"
        " AND status IN ('pending','queued','processing')",
        (item["id"], task),
    )
    if active is not None:
        wanted = (active["parameters"] or {}).get("background")
        message = (
            "this cut-out is being made; ask again when the job has completed"
            if wanted in (None, background)
            else "another cut-out of this item is being made; ask again when it has finished to queue this one"
        )
        return jsonify(status="processing", message=message, job=job_json(active)), 202
    created = jobs.reprocess(svc, item, [task], {"background": background})
    return jsonify(status="queued", message=f"rendering the {background} cut-out", job=job_json(created[0])), 202
