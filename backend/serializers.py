"""JSON shapes of the API's resources (kept in one place so every endpoint agrees)."""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePath
from typing import Any

from backend.settings import Settings


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def item_thumbnail_url(item: dict) -> str:
    # The version in the query lets browsers keep the preview until the original changes.
    return f"/api/media/{item['id']}/thumbnail?v={item['sha256'][:12]}"


def item_json(item: dict, settings: Settings) -> dict[str, Any]:
    immich_url = None
    base = settings.immich_web_url  # never with the credentials IMMICH_URL may carry
    # No link to an asset deleted in Immich (a trashed or archived one still opens there).
    if item.get("immich_asset_id") and base and item.get("immich_removed") != "deleted":
        immich_url = f"{base}/photos/{item['immich_asset_id']}"
    return {
        "id": str(item["id"]),
        "kind": item["kind"],
        "original_filename": item["original_filename"],
        "mime_type": item["mime_type"],
        "size_bytes": item["size_bytes"],
        "sha256": item["sha256"],
        "width": item["width"],
        "height": item["height"],
        "duration": item["duration_s"],
        "fps": item["fps"],
        "frame_count": item["frame_count"],
        "rotation": item["rotation"],
        "has_audio": item["has_audio"],
        "captured_at": _iso(item["captured_at"]),
        "source": item["source"],
        "immich_asset_id": item["immich_asset_id"],
        "immich_url": immich_url,
        "immich_removed": item.get("immich_removed"),
        "status": item.get("status"),
        "created_at": _iso(item["created_at"]),
        "original_url": f"/api/media/{item['id']}/original",
        "thumbnail_url": item_thumbnail_url(item),
    }


def job_json(job: dict, jobs_ahead: int | None = None) -> dict[str, Any]:
    """``jobs_ahead``: for a queued job, how many queued jobs will start before it (see jobs.jobs_ahead)."""
    return {
        "id": str(job["id"]),
        "media_id": str(job["media_id"]) if job["media_id"] else None,
        "task": job["task"],
        "status": job["status"],
        "parameters": job["parameters"],
        "progress": {"done": job["progress_done"], "total": job["progress_total"], "stage": job["stage"]},
        "attempts": job["attempts"],
        "max_attempts": job["max_attempts"],
        "error": job["last_error"] if job["status"] in ("failed", "pending", "queued", "processing") else None,
        "error_kind": job["error_kind"],
        "skip_reason": job["skip_reason"],
        "enable_with": job["enable_with"],
        "timeout_s": job["timeout_s"],
        "result": job["result"],
        "created_at": _iso(job["created_at"]),
        "queued_at": _iso(job["queued_at"]),
        "started_at": _iso(job["started_at"]),
        "finished_at": _iso(job["finished_at"]),
        "jobs_ahead": jobs_ahead if job["status"] == "queued" else None,
        "url": f"/api/jobs/{job['id']}",
    }


# Results with an endpoint of their own (the viewer's depth, a cut-out on a chosen background);
# every other kind is served by its file URL.
ASSET_URLS = {
    "depth": "/api/media/{media_id}/depth",
    "depth_frames": "/api/media/{media_id}/depth",
    "cutout": "/api/media/{media_id}/cutout?background={variant}",
}
ASSET_LABELS = {
    "depth": "depth",
    "depth_frames": "depth_frames",
    "cutout": "cutout",
    "cutout_video": "cutout",
}


def asset_file_url(asset: dict) -> str:
    return f"/api/media/{asset['media_id']}/assets/{asset['id']}"


def asset_download_name(asset: dict, original_filename: str | None) -> str:
    """``holiday_cutout_green.webm`` for a cut-out of ``holiday.mov``: which photo, what result, which variant."""
    stem = PurePath(original_filename or "").stem or "media"
    parts = [stem, ASSET_LABELS.get(asset["kind"], asset["kind"]), asset["variant"]]
    return "_".join(p for p in parts if p) + PurePath(asset["path"]).suffix


def asset_json(asset: dict, original_filename: str | None = None) -> dict[str, Any]:
    url = ASSET_URLS.get(asset["kind"], "").format(
        media_id=asset["media_id"], variant=asset["variant"] or "transparent"
    )
    file_url = asset_file_url(asset)
    return {
        "id": str(asset["id"]),
        "media_id": str(asset["media_id"]),
        "job_id": str(asset["job_id"]) if asset["job_id"] else None,
        "kind": asset["kind"],
        "variant": asset["variant"],
        "model": asset["model"],
        "parameters": asset["parameters"],
        "mime_type": asset["mime_type"],
        "size_bytes": asset["size_bytes"],
        "width": asset["width"],
        "height": asset["height"],
        "metadata": asset["metadata"],
        "created_at": _iso(asset["created_at"]),
        "url": url or file_url,
        "download_url": f"{file_url}?download=1",
        "download_name": asset_download_name(asset, original_filename),
        "thumbnail_url": f"{file_url}/thumbnail?v={int(asset['created_at'].timestamp() * 1000)}",
    }
