"""Write-back: each Immich item's stereo 3D version uploaded into Immich (IMMICH_WRITE_BACK).

With write-back on, an item imported from Immich goes depth -> stereo export -> upload without
anyone asking: when its depth job completes the worker queues the stereo export in the chosen
layout (IMMICH_WRITE_BACK_FORMAT, Full SBS by default), and when that completes an
``immich_writeback`` job uploads it (``POST /api/assets``, dated like the original so it sorts
beside it), adds it to the album IMMICH_WRITE_BACK_ALBUM (found by name or created) and stacks it
under its original (``POST /api/stacks``, the original on top).

* Idempotent: every upload is a row of ``immich_writebacks``, its checksum recorded *before* the
  upload starts and its Immich id as soon as Immich answers; album and stack are steps recorded
  one by one, so a retry after a partial success only does what is left. Immich keeps one asset
  per checksum and answers ``duplicate`` for the same bytes, so even a lost row never makes a
  second copy. The same result is never uploaded twice; a changed one is uploaded, stacked and
  put in the album, then the old asset is moved to Immich's trash.
* Never imported back: the importer skips every asset recorded here (by id or checksum), and on
  v2 servers any asset whose ``deviceId`` is ours.
* Undo (``parallax immich-writeback-undo``): every recorded asset is moved to the trash (or
  deleted for good), the album is deleted when Parallax created it and it is empty, and the
  records are cleared.
* Failures: Immich unreachable or 5xx -> the job is retried with backoff; a rejected key, a
  missing permission or another refusal fails it with Immich's reason (never the key).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import psycopg

from ai.errors import PipelineError
from backend import jobs
from backend.db import one
from backend.immich.client import (
    ImmichAsset,
    ImmichAuthError,
    ImmichClient,
    ImmichConnectionError,
    ImmichError,
    ImmichNotFound,
    ImmichPermissionError,
    ImmichServerError,
)
from backend.immich.importer import is_configured, make_client, server_label
from backend.services import Services
from backend.settings import Settings
from backend.tasks.stereo import EXPORT_KIND, EXPORT_TASK, stereo_parameters

log = logging.getLogger(__name__)

TASK = "immich_writeback"
#: What v2 servers (which require a device id on upload) record as our uploads' ``deviceId``.
DEVICE_ID = "parallax"
ALBUM_DESCRIPTION = "3D versions of your photos and videos, made by Parallax"
# Serialises "find the album, else create it" across workers, so two uploads never make two albums.
ALBUM_LOCK_ID = 7_231_007
# A result replaced while it was being uploaded is uploaded again, at most this many times per job.
MAX_ROUNDS = 3
DELETE_BATCH = 100
# The records of one original's 3D versions in one layout (a new version supersedes the last).
_VERSIONS = "server_url = %s AND original_asset_id = %s AND kind = %s AND layout = %s"


class WritebackError(PipelineError):
    """A write-back that cannot be done now; ``retryable`` when Immich may answer later."""

    error_kind = "immich"

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


# ------------------------------------------------------------------------------ what applies
def item_reason(item: dict, settings: Settings) -> str | None:
    """Why this item gets no write-back (None: it does): only items imported from the configured
    Immich server, whose asset is still on its timeline, are written back."""
    if item.get("source") != "immich" or not item.get("immich_asset_id"):
        return "the item was not imported from Immich"
    server = ((item.get("metadata") or {}).get("immich") or {}).get("server_url")
    if server and server != server_label(settings.immich_url):
        return f"the item was imported from another Immich server ({server})"
    if item.get("immich_removed"):
        return f"its Immich asset is {item['immich_removed'].replace('_', ' ')}"
    return None


def depth_task_for_stereo(kind: str, settings: Settings) -> str:
    """The depth job whose completion starts the 3D version: the depth the stereo export reuses
    (a photo's depth map, a video's RGB-D video; without RGB-D videos, the depth frames)."""
    if kind == "photo":
        return "depth"
    return "video_depth" if jobs.disabled_flags(settings, "depth_video") else "depth_video"


def _queue(services: Services, task: str, item: dict, parameters: dict) -> dict | None:
    """Create and queue a job unless its feature is off or one is already active for the item."""
    if jobs.disabled_flags(services.settings, task):
        return None
    try:
        with services.db.connection() as conn:
            job = jobs.create_job(conn, services.settings, task, item, parameters)
    except psycopg.errors.UniqueViolation:
        return None  # already pending, queued or running: it will do
    jobs.enqueue(services, [job["id"]])
    return job


def _export(services: Services, item: dict, layout: str) -> dict | None:
    return services.db.fetchone(
        "SELECT * FROM derived_assets WHERE media_id = %s AND kind = %s AND variant = %s",
        (item["id"], EXPORT_KIND[item["kind"]], layout),
    )


def _stereo_parameters(settings: Settings, layout: str) -> dict:
    return stereo_parameters(settings, {"format": layout})


def after_job(services: Services, job: dict) -> dict | None:
    """Called by the worker when a job completed: queue the next step of an Immich item's write-back
    (its depth -> the stereo export; the stereo export -> the upload). Returns the job queued."""
    settings = services.settings
    if not settings.immich_write_back or not job.get("media_id"):
        return None
    task = job["task"]
    if task not in ("depth", "depth_video", "video_depth", "stereo", "video_stereo"):
        return None
    item = services.db.fetchone("SELECT * FROM media_items WHERE id = %s", (job["media_id"],))
    if item is None or item_reason(item, settings) is not None:
        return None
    layout = settings.immich_write_back_format
    if task == EXPORT_TASK[item["kind"]]:
        made = str((job.get("parameters") or {}).get("format") or "full_sbs")
        if made == layout:
            return _queue(services, TASK, item, {"format": layout})
        # Another layout was asked for; the one written back is made if it is missing.
        if _export(services, item, layout) is None:
            return _queue(services, task, item, _stereo_parameters(settings, layout))
        return None
    if task == depth_task_for_stereo(item["kind"], settings):
        # New depth (a new item, or its original changed): the 3D version is made again from it.
        return _queue(services, EXPORT_TASK[item["kind"]], item, _stereo_parameters(settings, layout))
    return None


def queue_missing(services: Services) -> dict[str, int]:
    """Queue what write-back still lacks for every Immich item (``parallax immich-writeback``):
    the upload where the export exists and was not uploaded since it was made, else the export
    (whose completion queues the upload). For items imported before write-back was turned on."""
    settings = services.settings
    layout = settings.immich_write_back_format
    counts = {"uploads": 0, "exports": 0, "up_to_date": 0, "busy": 0, "not_applicable": 0, "stereo_off": 0}
    items = services.db.fetchall(
        "SELECT * FROM media_items WHERE source = 'immich' AND immich_asset_id IS NOT NULL ORDER BY created_at"
    )
    server = server_label(settings.immich_url)
    for item in items:
        if item_reason(item, settings) is not None:
            counts["not_applicable"] += 1
            continue
        export = _export(services, item, layout)
        if export is None:
            if jobs.disabled_flags(settings, EXPORT_TASK[item["kind"]]):
                counts["stereo_off"] += 1
                continue
            job = _queue(services, EXPORT_TASK[item["kind"]], item, _stereo_parameters(settings, layout))
            counts["exports" if job else "busy"] += 1
            continue
        done = services.db.fetchone(
            f"SELECT 1 FROM immich_writebacks WHERE {_VERSIONS} AND state = 'done' AND updated_at >= %s",
            (server, item["immich_asset_id"], export["kind"], layout, export["created_at"]),
        )
        if done is not None:
            counts["up_to_date"] += 1
            continue
        job = _queue(services, TASK, item, {"format": layout})
        counts["uploads" if job else "busy"] += 1
    return counts


# ------------------------------------------------------------------- recognising our uploads
def recognise(services: Services, server: str | None, asset: ImmichAsset) -> str | None:
    """Why an Immich asset is one of Parallax's own uploads (None: it is not): recorded by id or
    by checksum (recorded before the upload starts), or, on v2 servers, our ``deviceId``."""
    row = services.db.fetchone(
        "SELECT media_id, layout FROM immich_writebacks WHERE server_url = %s AND (asset_id = %s OR checksum = %s)"
        " LIMIT 1",
        (server, asset.id, asset.checksum or "-"),
    )
    if row is not None:
        of = f" of item {row['media_id']}" if row["media_id"] else ""
        return f"uploaded by Parallax (IMMICH_WRITE_BACK): the {row['layout']} 3D version{of}"
    if asset.raw.get("deviceId") == DEVICE_ID:
        return "uploaded by Parallax (IMMICH_WRITE_BACK): its device id is 'parallax'"
    return None


# ---------------------------------------------------------------------------- the upload job
def _hashes(file: IO[bytes]) -> tuple[str, str]:
    """(sha256 hex, base64 SHA-1 as Immich reports checksums) of an open file."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    file.seek(0)
    while chunk := file.read(1 << 20):
        sha256.update(chunk)
        sha1.update(chunk)
    file.seek(0)
    return sha256.hexdigest(), base64.b64encode(sha1.digest()).decode()


class _NothingToDo(Exception):
    """The item gets no 3D version in Immich after all (its original left Immich): the reason."""


def _immich_failure(exc: ImmichError) -> WritebackError:
    """An Immich error as the job's reason: retried when Immich may answer later."""
    retryable = isinstance(exc, (ImmichConnectionError, ImmichServerError))
    return WritebackError(f"Immich write-back {'stopped' if retryable else 'failed'}: {exc}", retryable=retryable)


class Writer:
    """Brings Immich in line with one item's current export (one ``immich_writeback`` job)."""

    def __init__(self, ctx, client: ImmichClient) -> None:
        self.ctx = ctx
        self.services: Services = ctx.services
        self.settings: Settings = ctx.settings
        self.client = client
        self.item: dict = ctx.media
        self.server = server_label(self.settings.immich_url) or ""
        self.layout = str(ctx.param("format", self.settings.immich_write_back_format))
        self.kind = EXPORT_KIND[self.item["kind"]]
        self.original_id: str = self.item["immich_asset_id"]
        self.versions = (self.server, self.original_id, self.kind, self.layout)  # the _VERSIONS key

    # ----------------------------------------------------------------------------- the job
    def run(self) -> dict:
        result: dict = {}
        for _ in range(MAX_ROUNDS):
            export = _export(self.services, self.item, self.layout)
            if export is None:
                raise WritebackError(
                    f"there is no {self.layout} stereo export of this item to upload (deleted meanwhile?);"
                    " `parallax immich-writeback` makes it again"
                )
            # Hashed and uploaded through one open file: a new export renamed over it meanwhile
            # does not mix two versions.
            try:
                with open(self.services.storage.path(export["path"]), "rb") as file:
                    result = self.sync(export, file)
            except _NothingToDo as reason:
                return {"uploaded": False, "reason": f"not written back: {reason}"}
            again = _export(self.services, self.item, self.layout)
            if again is None or (again["id"], again["created_at"]) == (export["id"], export["created_at"]):
                return result
            log.info(
                "item %s: its %s export changed during the upload; writing the new one", self.item["id"], self.layout
            )
        return result

    def sync(self, export: dict, file: IO[bytes]) -> dict:
        sha256, checksum = _hashes(file)
        self.ctx.progress(0, 4, "checking Immich", force=True)
        row = self._current()
        if row is not None and row["sha256"] == sha256 and row["state"] == "done":
            # Up to date (the export was made again with the same bytes): said so by the record's
            # time, which `immich-writeback` compares with the export's.
            row = self._update(row, state="done")
            removed = self._remove_superseded()
            return self._result(row, uploaded=False, replaced=removed)
        original = self._original()
        if row is None or row["sha256"] != sha256:
            row = self._start(export, sha256, checksum)
        uploaded = False
        if row["state"] == "uploading":
            self.ctx.progress(1, 4, "uploading", force=True)
            row = self._upload(row, file, original, export)
            uploaded = True
        if row["album_id"] is None:
            self.ctx.progress(2, 4, "adding to the album", force=True)
            row = self._add_to_album(row)
        if row["stack_id"] is None:
            self.ctx.progress(3, 4, "stacking with the original", force=True)
            stack_id = self.client.create_stack([self.original_id, row["asset_id"]])
            row = self._update(row, stack_id=stack_id)
        row = self._update(row, state="done")
        removed = self._remove_superseded()
        self.ctx.progress(4, 4, "done", force=True)
        return self._result(row, uploaded=uploaded, replaced=removed)

    def _result(self, row: dict, *, uploaded: bool, replaced: int) -> dict:
        return {
            "immich_asset_id": row["asset_id"],
            "layout": row["layout"],
            "filename": row["filename"],
            "uploaded": uploaded,
            "replaced": replaced,
            "album_id": row["album_id"],
            "stack_id": row["stack_id"],
        }

    # ----------------------------------------------------------------------------- records
    def _current(self) -> dict | None:
        return self.services.db.fetchone(
            f"SELECT * FROM immich_writebacks WHERE {_VERSIONS} AND state <> 'superseded'", self.versions
        )

    def _start(self, export: dict, sha256: str, checksum: str) -> dict:
        """Record the new version (its checksum, before the upload: an import running meanwhile
        already recognises it) and mark the one it replaces superseded, in one transaction."""
        filename = (export["metadata"] or {}).get("filename") or export["path"].rsplit("/", 1)[-1]
        with self.services.db.connection() as conn:
            conn.execute(
                "UPDATE immich_writebacks SET state = 'superseded', updated_at = now()"
                f" WHERE {_VERSIONS} AND state <> 'superseded'",
                self.versions,
            )
            return one(
                conn.execute(
                    "INSERT INTO immich_writebacks (id, media_id, server_url, original_asset_id, kind, layout, state,"
                    " sha256, checksum, filename) VALUES (%s, %s, %s, %s, %s, %s, 'uploading', %s, %s, %s) RETURNING *",
                    (
                        uuid.uuid4(),
                        self.item["id"],
                        self.server,
                        self.original_id,
                        self.kind,
                        self.layout,
                        sha256,
                        checksum,
                        filename,
                    ),
                ).fetchone()
            )

    def _update(self, row: dict, **changes: Any) -> dict:
        sets = ", ".join(f"{name} = %s" for name in changes)
        return one(
            self.services.db.fetchone(
                f"UPDATE immich_writebacks SET {sets}, updated_at = now() WHERE id = %s RETURNING *",
                (*changes.values(), row["id"]),
            )
        )

    # ------------------------------------------------------------------------------- steps
    def _original(self) -> ImmichAsset:
        """The original asset (its dates go on the upload); nothing is added once it left the timeline."""
        try:
            original = self.client.asset(self.original_id)
        except ImmichNotFound:
            raise _NothingToDo(f"the original Immich asset {self.original_id} was deleted in Immich") from None
        if not original.on_timeline:
            where = "in the trash" if original.is_trashed else "archived" if original.is_archived else "hidden"
            raise _NothingToDo(f"the original Immich asset {self.original_id} is {where} in Immich")
        return original

    def _upload(self, row: dict, file: IO[bytes], original: ImmichAsset, export: dict) -> dict:
        raw = original.raw
        created = original.file_created_at or datetime.now(UTC)
        modified = _parse(raw.get("fileModifiedAt")) or created
        upload = self.client.upload_asset(
            file,
            filename=row["filename"],
            mime_type=export["mime_type"],
            file_created_at=created,
            file_modified_at=modified,
            checksum=row["checksum"],
            device_asset_id=f"parallax-{self.item['id']}-{self.kind}-{self.layout}-{row['sha256'][:16]}",
            device_id=DEVICE_ID,
        )
        if upload.duplicate:
            # Immich already holds these bytes: ours from an earlier run (a lost record, or the
            # result went back to an earlier version), perhaps in the trash after an undo.
            existing = self.client.asset(upload.id)
            if existing.is_trashed:
                self.client.restore_from_trash([upload.id])
        with self.services.db.connection() as conn:
            # An earlier version with these bytes is the current one again: never delete it.
            conn.execute(
                "DELETE FROM immich_writebacks WHERE server_url = %s AND asset_id = %s AND state = 'superseded'",
                (self.server, upload.id),
            )
            row = one(
                conn.execute(
                    "UPDATE immich_writebacks SET asset_id = %s, state = 'uploaded', uploaded_at = now(),"
                    " updated_at = now() WHERE id = %s RETURNING *",
                    (upload.id, row["id"]),
                ).fetchone()
            )
        log.info(
            "item %s: %s %s to Immich as asset %s",
            self.item["id"],
            row["filename"],
            "was already" if upload.duplicate else "uploaded",
            upload.id,
        )
        return row

    def _add_to_album(self, row: dict) -> dict:
        for attempt in range(2):
            album_id = album_for_writeback(self.services, self.client)
            try:
                outcome = self.client.add_to_album(album_id, [row["asset_id"]])
            except ImmichNotFound:
                if attempt:
                    raise
                # Deleted in Immich since: forget it, find or create it again.
                self.services.db.execute(
                    "DELETE FROM immich_writeback_albums WHERE server_url = %s AND album_id = %s",
                    (self.server, album_id),
                )
                continue
            error = outcome.get(row["asset_id"])
            if error is not None:
                raise WritebackError(f"Immich did not add the 3D version to the album {album_id}: {error}")
            return self._update(row, album_id=album_id)
        raise AssertionError("unreachable")

    def _remove_superseded(self) -> int:
        """Move the versions this one replaced to Immich's trash and forget them."""
        rows = self.services.db.fetchall(
            f"SELECT * FROM immich_writebacks WHERE {_VERSIONS} AND state = 'superseded'", self.versions
        )
        if not rows:
            return 0
        report = remove_assets(self.client, self.services, rows, force=False)
        return report.removed


def album_for_writeback(services: Services, client: ImmichClient) -> str:
    """The id of the album IMMICH_WRITE_BACK_ALBUM: recorded, else found by name among the key's
    user's albums, else created (under a lock, so concurrent uploads make one album)."""
    settings = services.settings
    server = server_label(settings.immich_url)
    name = settings.immich_write_back_album
    with services.db.connection() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ALBUM_LOCK_ID,))
        row = conn.execute(
            "SELECT album_id FROM immich_writeback_albums WHERE server_url = %s AND name = %s"
            " ORDER BY created_at LIMIT 1",
            (server, name),
        ).fetchone()
        if row is not None:
            return str(row["album_id"])
        found = next((a for a in client.owned_albums() if a.name == name), None)
        album = found or client.create_album(name, ALBUM_DESCRIPTION)
        conn.execute(
            "INSERT INTO immich_writeback_albums (server_url, album_id, name, created) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (server, album.id, name, found is None),
        )
        log.info("write-back album %r: %s (%s)", name, album.id, "found" if found else "created")
        return album.id


def run_writeback(ctx) -> dict:
    """The ``immich_writeback`` job's work (``backend.tasks.immich_writeback`` calls this)."""
    item = ctx.media
    reason = item_reason(item, ctx.settings)
    if reason is not None:
        return {"uploaded": False, "reason": f"not written back: {reason}"}
    if item["kind"] not in EXPORT_KIND:
        return {"uploaded": False, "reason": f"not written back: no 3D version of a {item['kind']}"}
    try:
        with make_client(ctx.settings) as client:
            return Writer(ctx, client).run()
    except ImmichError as exc:
        raise _immich_failure(exc) from None


def _parse(value: Any) -> datetime | None:
    from backend.immich.client import parse_immich_datetime

    return parse_immich_datetime(value) if isinstance(value, str) else None


# ---------------------------------------------------------------------------------- undo
@dataclass
class RemovalReport:
    removed: int = 0  # moved to the trash (or deleted for good)
    already_gone: int = 0  # deleted in Immich before
    failed: list[str] = field(default_factory=list)  # "asset id: reason"


def remove_assets(client: ImmichClient, services: Services, rows: list[dict], *, force: bool) -> RemovalReport:
    """Delete the Immich assets of these ``immich_writebacks`` rows (to the trash unless ``force``)
    and delete the rows whose asset is gone. A row recorded before its upload answered (no id) is
    looked up by its checksum first. Connection, key and permission errors propagate."""
    report = RemovalReport()
    by_asset: dict[str, list[dict]] = {}
    for row in rows:
        asset_id = row["asset_id"]
        if asset_id is None:
            matches = [a for a in client.find_by_checksum(row["checksum"]) if a.checksum == row["checksum"]]
            if not matches:  # the upload never arrived
                _forget(services, [row])
                continue
            asset_id = matches[0].id
        by_asset.setdefault(asset_id, []).append(row)
    ids = list(by_asset)
    for start in range(0, len(ids), DELETE_BATCH):
        batch = ids[start : start + DELETE_BATCH]
        try:
            client.delete_assets(batch, force=force)
            gone = dict.fromkeys(batch, True)
        except ImmichNotFound:
            # Immich refuses the whole batch when one id is gone already: one by one.
            gone = {}
            for asset_id in batch:
                try:
                    client.delete_assets([asset_id], force=force)
                    gone[asset_id] = True
                except ImmichNotFound:
                    gone[asset_id] = False
        for asset_id, removed_now in gone.items():
            if removed_now:
                report.removed += 1
            else:
                report.already_gone += 1
            _forget(services, by_asset[asset_id])
    return report


def _forget(services: Services, rows: list[dict]) -> None:
    services.db.execute("DELETE FROM immich_writebacks WHERE id = ANY(%s)", ([row["id"] for row in rows],))


@dataclass
class UndoReport:
    removed: int = 0
    already_gone: int = 0
    cancelled_jobs: int = 0
    albums_deleted: list[str] = field(default_factory=list)
    albums_kept: list[str] = field(default_factory=list)  # "name (why)"
    failed: list[str] = field(default_factory=list)


def undo(services: Services, *, force: bool = False, say: Callable[[str], None] = log.info) -> UndoReport:
    """Remove from Immich everything write-back uploaded to the configured server: cancel pending
    uploads, delete (trash, or for good with ``force``) every recorded asset, delete the album when
    Parallax created it and it is now empty, and clear the records. Idempotent."""
    settings = services.settings
    if not is_configured(settings):
        raise WritebackError("Immich is not configured (IMMICH_URL, IMMICH_API_KEY): nothing can be removed")
    server = server_label(settings.immich_url)
    report = UndoReport()
    active = services.db.fetchall(
        "SELECT id FROM processing_jobs WHERE task = %s AND status IN ('pending', 'queued', 'processing')", (TASK,)
    )
    for job in active:
        try:
            jobs.cancel(services, str(job["id"]))
            report.cancelled_jobs += 1
        except jobs.JobError:
            pass  # it ended meanwhile
    rows = services.db.fetchall("SELECT * FROM immich_writebacks WHERE server_url = %s ORDER BY created_at", (server,))
    with make_client(settings) as client:
        try:
            if rows:
                say(f"removing {len(rows)} uploads from Immich ({'for good' if force else 'to the trash'})")
            removal = remove_assets(client, services, rows, force=force)
            report.removed, report.already_gone = removal.removed, removal.already_gone
            albums = services.db.fetchall(
                "SELECT * FROM immich_writeback_albums WHERE server_url = %s ORDER BY created_at", (server,)
            )
            for album_row in albums:
                label = f"{album_row['name']!r} ({album_row['album_id']})"
                if album_row["created"]:
                    try:
                        album = client.album(album_row["album_id"])
                    except ImmichNotFound:
                        report.albums_deleted.append(f"{label}, deleted in Immich already")
                    else:
                        if album.asset_count == 0:
                            try:
                                client.delete_album(album.id)
                                report.albums_deleted.append(label)
                            except ImmichPermissionError as exc:
                                report.albums_kept.append(f"{label}: {exc}")
                        else:
                            report.albums_kept.append(f"{label}: it holds {album.asset_count} other assets")
                else:
                    report.albums_kept.append(f"{label}: it existed before Parallax used it")
                services.db.execute(
                    "DELETE FROM immich_writeback_albums WHERE server_url = %s AND album_id = %s",
                    (server, album_row["album_id"]),
                )
        except (ImmichAuthError, ImmichPermissionError, ImmichConnectionError, ImmichServerError) as exc:
            raise WritebackError(f"undo stopped: {exc}") from None
    return report


def status(services: Services) -> dict[str, Any]:
    """Where write-back stands, for ``immich-status`` and ``GET /api/immich/status`` (one place):
    the settings (on or off, album, layout), the album's id once found or created, uploads up to
    date in Immich (``done``), in progress, replaced and waiting to be removed, write-back jobs
    waiting or running, items whose latest write-back job failed and that latest failure (reason,
    never the key: job errors never carry it). The counts are of the configured server's records,
    so they say what is in Immich even with write-back turned off (until undone)."""
    settings = services.settings
    server = server_label(settings.immich_url)
    rows = services.db.fetchall(
        "SELECT state, count(*) AS n FROM immich_writebacks WHERE server_url = %s GROUP BY state", (server,)
    )
    counts = {r["state"]: r["n"] for r in rows}
    album = services.db.fetchone(
        "SELECT album_id FROM immich_writeback_albums WHERE server_url = %s AND name = %s ORDER BY created_at LIMIT 1",
        (server, settings.immich_write_back_album),
    )
    waiting = services.db.fetchrow(
        "SELECT count(*) AS n FROM processing_jobs WHERE task = %s AND status IN ('pending', 'queued', 'processing')",
        (TASK,),
    )["n"]
    # An item's latest write-back job: a failure retried since (or made moot by a newer job) is not counted.
    latest = services.db.fetchone(
        "SELECT id, media_id, last_error, error_kind, finished_at, count(*) OVER () AS n FROM latest_jobs"
        " WHERE task = %s AND status = 'failed' ORDER BY finished_at DESC NULLS LAST, created_at DESC LIMIT 1",
        (TASK,),
    )
    return {
        "enabled": settings.immich_write_back,
        "album": settings.immich_write_back_album,
        "album_id": str(album["album_id"]) if album else None,
        "layout": settings.immich_write_back_format,
        "done": counts.get("done", 0),
        "in_progress": counts.get("uploading", 0) + counts.get("uploaded", 0),
        "superseded": counts.get("superseded", 0),
        "jobs_waiting": waiting,
        "jobs_failed": latest["n"] if latest else 0,
        "last_failure": None
        if latest is None
        else {
            "job_id": str(latest["id"]),
            "media_id": str(latest["media_id"]) if latest["media_id"] else None,
            "reason": latest["last_error"] or "failed (no reason recorded)",
            "error_kind": latest["error_kind"],
            "finished_at": latest["finished_at"],
        },
    }
