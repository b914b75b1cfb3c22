"""Taking media in: identify it by content, store it once (deduplicated by SHA-256), record its
metadata and create its jobs. Shared by uploads and the Immich import."""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg

from ai.errors import InvalidMediaError
from ai.probe import MediaInfo, probe_media
from backend import jobs, thumbnails
from backend.db import jsonb, one
from backend.services import Services

log = logging.getLogger(__name__)

EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/tiff": ".tif",
    "image/bmp": ".bmp",
    "image/heic": ".heic",
    "image/avif": ".avif",
    "image/jxl": ".jxl",
    "image/jp2": ".jp2",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
    "video/x-msvideo": ".avi",
}


@dataclass
class IngestResult:
    item: dict
    created: bool
    jobs: list[dict] = field(default_factory=list)


def original_rel(services: Services, item_id, info: MediaInfo) -> str:
    extension = EXTENSIONS.get(info.mime_type) or (
        f".{info.format}" if info.kind == "photo" and info.format.isalnum() and len(info.format) <= 8 else ".bin"
    )
    return f"{services.storage.item_rel(item_id)}/original{extension}"


def probe_expecting(services: Services, path: Path, expected_kind: str | None) -> MediaInfo:
    """Probe a file; with ``expected_kind`` (what the source, e.g. Immich, says the asset is), refuse
    bytes that read as the other kind, so the caller can fall back to a rendition it trusts."""
    info = probe_media(path, max_pixels=services.settings.max_image_pixels)
    if expected_kind and info.kind != expected_kind:
        raise InvalidMediaError(
            f"the file reads as a {info.kind} ({info.format}) but its source says it is a {expected_kind}"
        )
    return info


def display_name(name: str | None) -> str:
    """The client's file name, reduced to something safe to show and to put in a header: no path
    parts, no control characters, bounded length. It is never used to build a path."""
    name = (name or "").replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    name = re.sub(r"\s+", " ", name).strip(" .")
    return name[:200] or "upload"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _captured(info: MediaInfo) -> datetime | None:
    if not info.captured_at:
        return None
    try:
        return datetime.fromisoformat(info.captured_at.replace("Z", "+00:00"))
    except ValueError:
        return None


def _item_columns(info: MediaInfo) -> dict:
    return {
        "kind": info.kind,
        "mime_type": info.mime_type,
        "format": info.format,
        "width": info.width,
        "height": info.height,
        "duration_s": info.duration,
        "fps": info.fps,
        "frame_count": info.frame_count,
        "rotation": info.rotation,
        "has_audio": info.has_audio,
        "captured_at": _captured(info),
    }


def find_item(services: Services, item_id) -> dict | None:
    try:
        uuid.UUID(str(item_id))
    except ValueError:
        return None
    return services.db.fetchone("SELECT * FROM media_items WHERE id = %s", (item_id,))


def ingest_file(
    services: Services,
    tmp_path: Path,
    original_filename: str | None,
    *,
    source: str = "upload",
    immich_asset_id: str | None = None,
    immich_checksum: str | None = None,
    metadata: dict | None = None,
    expected_kind: str | None = None,
    create_jobs: bool = True,
) -> IngestResult:
    """Store a file that was written to ``tmp_path`` (under MEDIA_ROOT/tmp). The temp file is always
    consumed: moved into place, or removed if the bytes are already stored or are not valid media.
    ``create_jobs=False`` stores it without its automatic jobs (the caller asks for one itself).
    Raises ai.errors.InvalidMediaError with the reason for bad input (see :func:`probe_expecting`)."""
    tmp_path = Path(tmp_path)
    try:
        digest = sha256_file(tmp_path)
        existing = services.db.fetchone("SELECT * FROM media_items WHERE sha256 = %s", (digest,))
        if existing:
            return IngestResult(_link_immich(services, existing, immich_asset_id, immich_checksum), created=False)
        info = probe_expecting(services, tmp_path, expected_kind)
        item_id = uuid.uuid4()
        rel = original_rel(services, item_id, info)
        cols = _item_columns(info)
        try:
            with services.db.connection() as conn:
                item = conn.execute(
                    "INSERT INTO media_items (id, sha256, original_filename, size_bytes, storage_path, source,"
                    " immich_asset_id, immich_checksum, metadata, kind, mime_type, format, width, height, duration_s,"
                    " fps, frame_count, rotation, has_audio, captured_at) VALUES (%(id)s, %(sha)s, %(name)s, %(size)s,"
                    " %(rel)s, %(source)s, %(immich)s, %(checksum)s, %(meta)s, %(kind)s, %(mime_type)s, %(format)s,"
                    " %(width)s, %(height)s, %(duration_s)s, %(fps)s, %(frame_count)s, %(rotation)s, %(has_audio)s,"
                    " %(captured_at)s) RETURNING *",
                    {
                        **cols,
                        "id": item_id,
                        "sha": digest,
                        "name": display_name(original_filename),
                        "size": tmp_path.stat().st_size,
                        "rel": rel,
                        "source": source,
                        "immich": immich_asset_id,
                        "checksum": immich_checksum,
                        "meta": jsonb({"probe": info.extra, **(metadata or {})}),
                    },
                ).fetchone()
                created_jobs = jobs.create_jobs_for_item(conn, services.settings, one(item)) if create_jobs else []
                services.storage.place(tmp_path, rel)
        except psycopg.errors.UniqueViolation:
            # The same bytes arrived twice at once; the other request stored them.
            existing = services.db.fetchone("SELECT * FROM media_items WHERE sha256 = %s", (digest,))
            if existing is None:
                raise
            return IngestResult(existing, created=False)
        thumbnails.make_quietly(services.storage, rel, info.mime_type, info.duration)
        jobs.enqueue(services, [j["id"] for j in created_jobs if j["status"] == "pending"])
        return IngestResult(one(item), created=True, jobs=[jobs.load_job(services, j["id"]) for j in created_jobs])
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _link_immich(services: Services, item: dict, asset_id: str | None, checksum: str | None) -> dict:
    if not asset_id or item.get("immich_asset_id"):
        return item
    try:
        return (
            services.db.fetchone(
                "UPDATE media_items SET immich_asset_id = %s, immich_checksum = %s, updated_at = now() WHERE id = %s"
                " RETURNING *",
                (asset_id, checksum, item["id"]),
            )
            or item
        )
    except psycopg.errors.UniqueViolation:
        return item


def replace_original(
    services: Services,
    item: dict,
    tmp_path: Path,
    *,
    immich_checksum: str | None = None,
    metadata: dict | None = None,
    expected_kind: str | None = None,
) -> IngestResult:
    """Swap an item's original for new bytes (an Immich asset that was edited), drop results made
    from the old bytes and queue fresh jobs."""
    tmp_path = Path(tmp_path)
    try:
        digest = sha256_file(tmp_path)
        info = probe_expecting(services, tmp_path, expected_kind)
        rel = original_rel(services, item["id"], info)
        with services.db.connection() as conn:
            conn.execute(
                "UPDATE processing_jobs SET status = 'cancelled', finished_at = now(), updated_at = now(),"
                " stage = 'superseded by a new original' WHERE media_id = %s AND status IN"
                " ('pending','queued','processing')",
                (item["id"],),
            )
            old_assets = conn.execute(
                "DELETE FROM derived_assets WHERE media_id = %s RETURNING path", (item["id"],)
            ).fetchall()
            cols = _item_columns(info)
            updated = conn.execute(
                "UPDATE media_items SET sha256 = %(sha)s, size_bytes = %(size)s, storage_path = %(rel)s,"
                " immich_checksum = %(checksum)s, metadata = metadata || %(meta)s, kind = %(kind)s,"
                " mime_type = %(mime_type)s, format = %(format)s, width = %(width)s, height = %(height)s,"
                " duration_s = %(duration_s)s, fps = %(fps)s, frame_count = %(frame_count)s, rotation = %(rotation)s,"
                " has_audio = %(has_audio)s, captured_at = %(captured_at)s, updated_at = now() WHERE id = %(id)s"
                " RETURNING *",
                {
                    **cols,
                    "sha": digest,
                    "size": tmp_path.stat().st_size,
                    "rel": rel,
                    "checksum": immich_checksum,
                    "meta": jsonb(metadata or {}),
                    "id": item["id"],
                },
            ).fetchone()
            updated = one(updated)
            created_jobs = jobs.create_jobs_for_item(conn, services.settings, updated)
            services.storage.place(tmp_path, rel)
        if item["storage_path"] != rel:
            services.storage.remove(item["storage_path"])
            services.storage.remove(thumbnails.thumbnail_rel(item["storage_path"]))
        for row in old_assets:
            services.storage.remove(row["path"])
            services.storage.remove(thumbnails.thumbnail_rel(row["path"]))
        thumbnails.make_quietly(services.storage, rel, info.mime_type, info.duration)
        jobs.enqueue(services, [j["id"] for j in created_jobs if j["status"] == "pending"])
        return IngestResult(updated, created=False, jobs=[jobs.load_job(services, j["id"]) for j in created_jobs])
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def delete_item(services: Services, item: dict) -> None:
    with services.db.connection() as conn:
        conn.execute(
            "UPDATE processing_jobs SET status = 'cancelled', finished_at = now() WHERE media_id = %s"
            " AND status IN ('pending','queued','processing')",
            (item["id"],),
        )
        conn.execute("DELETE FROM media_items WHERE id = %s", (item["id"],))
    services.storage.delete_item(item["id"])
