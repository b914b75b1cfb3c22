"""VR outputs of an item: the RGB-D video of a video, and stereo exports made on request."""

from __future__ import annotations

from pathlib import Path

from flask import jsonify, request
from flask_openapi3 import APIBlueprint, Tag
from werkzeug.exceptions import BadRequest, NotFound

from backend import jobs
from backend.api.common import api_error, services
from backend.api.media import get_item_or_404
from backend.api.results import _asset, _send_asset, missing_result
from backend.schemas import Asset, Error, ItemPath, ResultQueued, StereoQuery, binary
from backend.serializers import asset_json, job_json
from backend.tasks.stereo import EXPORT_KIND, EXPORT_TASK, stereo_parameters

bp = APIBlueprint("vr", __name__, abp_tags=[Tag(name="vr", description="RGB-D video and stereo exports")])


@bp.get(
    "/api/media/<item_id>/depth/video",
    summary="RGB-D video of a video (colour left, depth right, H.264 MP4); byte ranges",
    responses={
        200: binary("H.264 MP4 with the source's audio", "video/mp4"),
        206: binary("a byte range", "video/mp4"),
        304: {"description": "not modified (ETag)"},
        404: Error,
    },
)
def depth_video(path: ItemPath):
    """The RGB-D video (H.264 MP4, colour left, depth right); byte ranges for seeking."""
    item = get_item_or_404(path.item_id)
    if item["kind"] != "video":
        raise NotFound("RGB-D videos are made for videos; a photo's depth is at /depth")
    asset = _asset(item["id"], "depth_video")
    if asset is None:
        return missing_result(item, "depth_video", "RGB-D video")
    stem = Path(item["original_filename"]).stem or "media"
    response = _send_asset(asset, f"{stem}_rgbd.mp4")
    response.headers["X-Depth-Polarity"] = (asset["metadata"] or {}).get("polarity", "near_dark")
    return response


def _stereo_request() -> dict:
    from ai.stereo import STEREO_FORMATS

    fmt = (request.args.get("format") or "full_sbs").strip().lower()
    if fmt not in STEREO_FORMATS:
        raise BadRequest(f"format must be one of {', '.join(STEREO_FORMATS)}")
    return stereo_parameters(services().settings, {"format": fmt})


def _stereo_task(item: dict) -> tuple[str, str]:
    """(task, stored asset kind) of a stereo export of this item."""
    return EXPORT_TASK[item["kind"]], EXPORT_KIND[item["kind"]]


@bp.get(
    "/api/media/<item_id>/stereo",
    summary="Stereo 3D export (named with the VR player tags); not made yet: queues it",
    responses={
        200: binary("JPEG or PNG for a photo, MP4 for a video", "image/jpeg", "image/png", "video/mp4"),
        202: ResultQueued,
        206: binary("a byte range", "video/mp4"),
        304: {"description": "not modified (ETag)"},
        400: Error,
        404: Error,
    },
)
def stereo(path: ItemPath, query: StereoQuery):
    """The stereo export in ``format`` (full_sbs, half_sbs, tb, anaglyph): the stored file, named with
    the tag VR players detect, made with the current STEREO_DIVERGENCE/CONVERGENCE; else 202 with the
    job that makes it."""
    svc = services()
    item = get_item_or_404(path.item_id)
    wanted = _stereo_request()
    task, kind = _stereo_task(item)
    asset = _asset(item["id"], kind, wanted["format"])
    if asset is not None and asset["parameters"] == wanted:
        return _send_asset(asset, (asset["metadata"] or {}).get("filename") or Path(asset["path"]).name)
    reason = jobs.skip_reason(svc.settings, task)
    if reason:
        return api_error(404, "feature_disabled", reason)
    active = svc.db.fetchone(
        "SELECT * FROM processing_jobs WHERE media_id = %s AND task = %s AND status IN ('pending','queued','processing')",
        (item["id"], task),
    )
    if active is not None:
        same = (active["parameters"] or {}).get("format") == wanted["format"]
        message = (
            "this stereo export is being made; ask again when the job has completed"
            if same
            else "another stereo export of this item is being made; ask again when it has finished to queue this one"
        )
        return jsonify(status="processing", message=message, job=job_json(active)), 202
    created = jobs.reprocess(svc, item, [task], wanted)
    return jsonify(
        status="queued", message=f"making the {wanted['format']} stereo export", job=job_json(created[0])
    ), 202


@bp.get(
    "/api/media/<item_id>/stereo/info",
    summary="The stored stereo export's record (parameters, size, depth source)",
    responses={200: Asset, 400: Error, 404: Error},
)
def stereo_info(path: ItemPath, query: StereoQuery):
    item = get_item_or_404(path.item_id)
    wanted = _stereo_request()
    task, kind = _stereo_task(item)
    asset = _asset(item["id"], kind, wanted["format"])
    if asset is None:
        return missing_result(item, task, "stereo")
    return jsonify(asset_json(asset))
