"""Importing photos and videos from Immich into Parallax (see docs/immich.md).

One import is an *import run* (a row of ``immich_import_runs``) carried by one ``immich_import``
job. The run lists the library (or some albums) through :class:`ImmichClient`, downloads with a
few threads what is new or changed, and hands each file to ``media_service.ingest_file`` (or
``replace_original`` when an asset's checksum changed), exactly as an upload would be.

* Idempotent: an asset already imported with the same checksum is not downloaded again, nor is
  one whose bytes are already stored for another asset (it is linked to that item instead).
* Incremental, per selection: the whole library and each album are *scopes* with their own
  watermark (``immich_sync_state``); an incremental run lists only assets of a scope updated since
  that scope's last successful run *started*. Immich does not bump an asset's ``updatedAt`` when it
  is added to an album, but it does bump the album's: an album whose ``updatedAt`` or asset count
  changed is listed in full. Assets that failed for a reason that may pass (network, server error)
  hold the watermark back, so the next incremental run tries them again; offline assets do not.
* Mirroring: trashing, archiving and restoring bump ``updatedAt``, so every run sees them; a full
  run of the whole library also finds assets deleted for good. Their items are hidden or deleted
  (IMMICH_REMOVED_ASSETS) and come back when the asset is restored.
* Parallax's own uploads (IMMICH_WRITE_BACK, see backend.immich.writeback) are skipped with that
  reason, never imported back.
* Originals our pipeline cannot decode (RAW, some HEIC...) are replaced by Immich's own full-size
  JPEG rendition; the item's metadata records which one was stored.
* The API key lives only in the settings and the client: it is never put in a job's parameters,
  a run row, a log line or an error message.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import psycopg

from ai.errors import Cancelled, InvalidMediaError, PipelineError
from backend import jobs
from backend.db import jsonb, one
from backend.immich.client import (
    ImmichAlbum,
    ImmichAsset,
    ImmichAuthError,
    ImmichClient,
    ImmichConnectionError,
    ImmichError,
    ImmichNotFound,
    ImmichPermissionError,
    ImmichServerError,
)
from backend.media_service import delete_item, ingest_file, replace_original
from backend.services import Services
from backend.settings import Settings, url_without_credentials

log = logging.getLogger(__name__)

MODES = ("full", "incremental")
TRIGGERS = ("manual", "schedule", "cli")
ACTIVE_RUN_STATUSES = ("queued", "running")
# Serialises "is an import running? if not, start one" across API requests and workers.
RUN_LOCK_ID = 7_231_006
# A whole-library import can take hours; it is idempotent, so a stopped one simply resumes.
DEFAULT_PAGE_SIZE = 250
MAX_FAILURES_KEPT = 500  # counters stay exact; the lists of reasons (failures, skips, removals) are bounded
SAVE_INTERVAL_S = 1.0

RENDITION_ORIGINAL = "original"
RENDITION_FULLSIZE = "fullsize"

LIBRARY_SCOPE = "library"  # the scope of a run without albums; an album's scope is its id

# Camera RAW formats: no decoder here, so Immich's full-size JPEG is taken instead of the original.
RAW_MIME_TYPES = frozenset(
    {
        "image/x-adobe-dng",
        "image/dng",
        "image/x-dcraw",
        "image/x-raw",
        "image/x-canon-cr2",
        "image/x-canon-cr3",
        "image/x-canon-crw",
        "image/x-nikon-nef",
        "image/x-nikon-nrw",
        "image/x-sony-arw",
        "image/x-sony-sr2",
        "image/x-sony-srf",
        "image/x-fuji-raf",
        "image/x-olympus-orf",
        "image/x-panasonic-rw2",
        "image/x-panasonic-raw",
        "image/x-pentax-pef",
        "image/x-samsung-srw",
        "image/x-sigma-x3f",
        "image/x-kodak-dcr",
        "image/x-kodak-kdc",
        "image/x-kodak-k25",
        "image/x-minolta-mrw",
        "image/x-epson-erf",
        "image/x-hasselblad-3fr",
        "image/x-hasselblad-fff",
        "image/x-phaseone-iiq",
        "image/x-leaf-mos",
        "image/x-mamiya-mef",
        "image/x-leica-rwl",
    }
)
RAW_EXTENSIONS = frozenset(
    {
        ".dng",
        ".cr2",
        ".cr3",
        ".crw",
        ".nef",
        ".nrw",
        ".arw",
        ".sr2",
        ".srf",
        ".raf",
        ".orf",
        ".rw2",
        ".raw",
        ".pef",
        ".srw",
        ".x3f",
        ".dcr",
        ".kdc",
        ".k25",
        ".mrw",
        ".erf",
        ".3fr",
        ".fff",
        ".iiq",
        ".mos",
        ".mef",
        ".rwl",
    }
)


class ImmichImportError(PipelineError):
    """An import that cannot go on: Immich is not configured, unreachable, or refuses the key.
    Not retried by default (asking again with the same key will not help); a network failure in
    the middle of a run is raised with ``retryable=True``."""

    error_kind = "immich"

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ImportAlreadyRunning(Exception):
    """Only one import runs at a time; ``run`` is the one queued or running."""

    def __init__(self, run: dict) -> None:
        super().__init__(f"an Immich import is already {run['status']} (run {run['id']})")
        self.run = run


# ------------------------------------------------------------------------------ configuration
def is_configured(settings: Settings) -> bool:
    return bool(settings.immich_url and settings.immich_api_key)


def not_configured_message(settings: Settings) -> str:
    missing = [
        name
        for name, value in (("IMMICH_URL", settings.immich_url), ("IMMICH_API_KEY", settings.immich_api_key))
        if not value
    ]
    return f"Immich is not configured: set {' and '.join(missing)} (see docs/immich.md) and restart Parallax."


def server_label(url: str | None) -> str | None:
    """The Immich URL as it may be shown and stored: without ``user:password@`` or ``/api``."""
    if not url:
        return None
    parts = urlsplit(url_without_credentials(url.strip()) or "")
    shown = parts._replace(query="", fragment="").geturl().rstrip("/")
    return shown[: -len("/api")] if shown.endswith("/api") else shown


def make_client(settings: Settings, **kwargs) -> ImmichClient:
    """An ImmichClient for the configured server; ImmichImportError when it is not configured."""
    if not is_configured(settings):
        raise ImmichImportError(not_configured_message(settings))
    try:
        return ImmichClient(
            settings.immich_url or "",
            settings.secret("immich_api_key") or "",
            public_url=settings.immich_public_url,
            **kwargs,
        )
    except ImmichError as exc:  # a malformed URL
        raise ImmichImportError(str(exc)) from None


def needs_fullsize(asset: ImmichAsset) -> bool:
    """Whether the original is a RAW format that only Immich's full-size rendition makes usable."""
    mime = (asset.original_mime_type or "").lower()
    extension = PurePosixPath(asset.original_filename or "").suffix.lower()
    return asset.type == "IMAGE" and (mime in RAW_MIME_TYPES or extension in RAW_EXTENSIONS)


# ------------------------------------------------------------------------------------- runs
def get_run(services: Services, run_id) -> dict | None:
    try:
        uuid.UUID(str(run_id))
    except ValueError:
        return None
    return services.db.fetchone("SELECT * FROM immich_import_runs WHERE id = %s", (str(run_id),))


def settle_orphaned_runs(conn) -> int:
    """Close runs whose job ended without the handler recording it (cancelled while still
    queued, or failed for good after its worker was killed), so they no longer count as running."""
    return conn.execute(
        "UPDATE immich_import_runs r SET status = CASE WHEN j.status = 'cancelled' THEN 'cancelled' ELSE 'failed' END,"
        " error = COALESCE(r.error, CASE WHEN j.status = 'cancelled' THEN 'cancelled' END, j.last_error,"
        " j.skip_reason, 'the import job ended before the run finished'),"
        " finished_at = COALESCE(j.finished_at, now()), updated_at = now()"
        " FROM processing_jobs j WHERE j.id = r.job_id AND r.status IN ('queued', 'running')"
        " AND j.status IN ('failed', 'cancelled', 'skipped', 'completed')"
    ).rowcount


def active_run(conn) -> dict | None:
    settle_orphaned_runs(conn)
    return conn.execute(
        "SELECT * FROM immich_import_runs WHERE status IN ('queued', 'running') ORDER BY created_at DESC LIMIT 1"
    ).fetchone()


def _create_run(
    conn, settings: Settings, mode: str, album_ids: list[str], trigger: str, page_size: int | None
) -> tuple[dict, dict]:
    run_id = uuid.uuid4()
    parameters: dict = {"run_id": str(run_id), "mode": mode, "album_ids": album_ids}
    if page_size:
        parameters["page_size"] = int(page_size)
    job = jobs.create_job(conn, settings, "immich_import", None, parameters)
    run = conn.execute(
        "INSERT INTO immich_import_runs (id, mode, status, job_id, trigger, album_ids)"
        " VALUES (%s, %s, 'queued', %s, %s, %s) RETURNING *",
        (run_id, mode, job["id"], trigger, album_ids),
    ).fetchone()
    return run, job


def start_import(
    services: Services,
    *,
    mode: str = "incremental",
    album_ids: Iterable[str] | None = None,
    trigger: str = "manual",
    page_size: int | None = None,
) -> tuple[dict, dict]:
    """Create and queue an import run; returns ``(run, job)``. ``album_ids`` None means the
    configured IMMICH_ALBUM_IDS (empty: the whole library). Raises ImmichImportError when Immich
    is not configured and ImportAlreadyRunning when a run is queued or running."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {', '.join(TRIGGERS)}")
    settings = services.settings
    if not is_configured(settings):
        raise ImmichImportError(not_configured_message(settings))
    albums = list(dict.fromkeys(album_ids if album_ids is not None else settings.immich_album_ids))
    with services.db.connection() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (RUN_LOCK_ID,))
        running = active_run(conn)
        if running:
            raise ImportAlreadyRunning(running)
        run, job = _create_run(conn, settings, mode, albums, trigger, page_size)
    jobs.enqueue(services, [job["id"]])
    return one(get_run(services, run["id"])), jobs.load_job(services, job["id"])


def maybe_schedule_sync(services: Services) -> dict | None:
    """Queue an incremental import when IMMICH_SYNC_INTERVAL_MINUTES is set, Immich is
    configured, no import is queued or running, and the last run started more than that many
    minutes ago (or there was none). Called by every worker's supervisor on each tick: one query
    when nothing is due, and a try-lock so concurrent callers cannot create two runs.
    Returns the new run, or None."""
    settings = services.settings
    interval = settings.immich_sync_interval_minutes
    if interval <= 0 or not is_configured(settings):
        return None
    with services.db.connection() as conn:
        if not one(conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS ok", (RUN_LOCK_ID,)).fetchone())["ok"]:
            return None  # another process is deciding right now
        due = one(
            conn.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM immich_import_runs r JOIN processing_jobs j ON j.id = r.job_id"
                "                   WHERE r.status IN ('queued', 'running')"
                "                   AND j.status IN ('pending', 'queued', 'processing'))"
                " AND COALESCE((SELECT max(COALESCE(started_at, created_at)) FROM immich_import_runs)"
                "              < now() - make_interval(mins => %s), true) AS due",
                (interval,),
            ).fetchone()
        )["due"]
        if not due:
            return None
        settle_orphaned_runs(conn)
        run, job = _create_run(conn, settings, "incremental", list(settings.immich_album_ids), "schedule", None)
    log.info("scheduled an incremental Immich import (run %s, every %d min)", run["id"], interval)
    jobs.enqueue(services, [job["id"]])
    return run


def selection_scopes(album_ids: Iterable[str]) -> list[str]:
    """The watermark scopes of a selection: its albums, or the whole library."""
    return list(dict.fromkeys(album_ids)) or [LIBRARY_SCOPE]


def last_success(services: Services, album_ids: Iterable[str] | None = None) -> datetime | None:
    """When the last successful import of this selection (default: IMMICH_ALBUM_IDS) started:
    the oldest watermark of its scopes, None while any scope was never imported."""
    settings = services.settings
    scopes = selection_scopes(settings.immich_album_ids if album_ids is None else album_ids)
    row = services.db.fetchone(
        "SELECT count(last_success_at) AS n, min(last_success_at) AS oldest FROM immich_sync_state"
        " WHERE server_url = %s AND scope = ANY(%s)",
        (server_label(settings.immich_url), scopes),
    )
    return row["oldest"] if row and row["n"] == len(scopes) else None


def run_summary(run: dict) -> str:
    """One honest line: "completed", "completed with 3 failures", "failed: <why>"..."""
    status = run["status"]
    if status == "completed" and run["failed"]:
        return f"completed with {run['failed']} failure{'s' if run['failed'] != 1 else ''}"
    if status in ("failed", "cancelled") and run.get("error") and run["error"] != status:
        return f"{status}: {run['error']}"
    return status


# -------------------------------------------------------------------------------- execution
@dataclass
class AssetOutcome:
    status: str  # imported | unchanged | skipped | failed | removed | ignored
    asset: ImmichAsset
    reason: str | None = None
    rendition: str | None = None
    retry_later: bool = False  # a failure another run may get past (network, server error)
    fatal: BaseException | None = None  # stops the whole run (key revoked, permission removed)
    restored: bool = False  # its item had been hidden because the asset had left Immich's timeline


def _entry(asset_id: str, file_name: str, reason: str | None, **extra) -> dict:
    return {"asset_id": asset_id, "file_name": file_name, "reason": reason or "unknown error", **extra}


@dataclass
class RunCounters:
    seen: int = 0
    imported: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    removed: int = 0
    restored: int = 0
    failures: list = field(default_factory=list)
    skips: list = field(default_factory=list)
    removals: list = field(default_factory=list)
    # The oldest updatedAt among assets that failed in a way another run may get past.
    retry_from: datetime | None = None

    def add(self, outcome: AssetOutcome) -> None:
        if outcome.status == "ignored":  # off the timeline and never imported: not ours to count
            return
        asset = outcome.asset
        entry = _entry(asset.id, asset.original_filename, outcome.reason)
        self.restored += outcome.restored
        if outcome.status == "removed":
            self.removed += 1
            self._keep(self.removals, entry)
            return
        self.seen += 1
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        if outcome.status == "skipped":
            self._keep(self.skips, entry)
        if outcome.status == "failed":
            self._keep(self.failures, entry)
            if outcome.retry_later:
                when = asset.updated_at
                self.retry_from = when if self.retry_from is None else min(self.retry_from, when)

    def add_removal(self, entry: dict) -> None:
        self.removed += 1
        self._keep(self.removals, entry)

    @staticmethod
    def _keep(entries: list, entry: dict) -> None:
        if len(entries) < MAX_FAILURES_KEPT:
            entries.append(entry)

    def stage(self) -> str:
        text = f"asset {self.seen} (imported {self.imported}, unchanged {self.unchanged}, failed {self.failed}"
        for name in ("skipped", "removed", "restored"):
            if getattr(self, name):
                text += f", {name} {getattr(self, name)}"
        return text + ")"

    def as_dict(self) -> dict:
        return {
            "seen": self.seen,
            "imported": self.imported,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "failed": self.failed,
            "removed": self.removed,
            "restored": self.restored,
        }


@dataclass
class Scope:
    """One part of a run's selection: the whole library or one album, listed since
    ``updated_after`` (None: in full). ``album`` is the album as it was when the run started."""

    name: str
    album_id: str | None
    updated_after: datetime | None
    album: ImmichAlbum | None = None


class ImportRun:
    """Executes one import run inside its job (``TaskContext``)."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.services: Services = ctx.services
        self.settings: Settings = ctx.settings
        self.counters = RunCounters()
        self.client: ImmichClient | None = None
        self.server = server_label(self.settings.immich_url)
        self.run: dict = {}
        self.scopes: list[Scope] = []
        self._listed: set[str] = set()  # asset ids listed by this run (one album may repeat another)
        self._last_save = 0.0

    # ---------------------------------------------------------------------------- the run
    def execute(self) -> dict:
        self.run = self._claim_run()
        run_id = self.run["id"]
        try:
            self.client = make_client(self.settings)
            result = self._import()
        except Cancelled:
            self._finish("cancelled", error="cancelled")
            raise
        except BaseException as exc:  # the runner retries what is retryable while attempts remain
            self._finish_after_error(exc)
            raise
        finally:
            if self.client is not None:
                self.client.close()
        log.info("Immich import run %s %s: %s", run_id, result["summary"], self.counters.as_dict())
        return result

    @property
    def api(self) -> ImmichClient:
        """The client of this run (made when it starts)."""
        if self.client is None:
            raise RuntimeError("the Immich client is made when the run starts")
        return self.client

    def _import(self) -> dict:
        client = self.api
        albums = list(self.run["album_ids"] or [])
        page_size = int(self.ctx.param("page_size", DEFAULT_PAGE_SIZE))
        self.ctx.progress(0, None, "connecting to Immich", force=True)
        try:
            version = client.server_version()
        except ImmichError as exc:
            # Nothing can be done without the server; the message says what to fix.
            raise ImmichImportError(f"Immich import failed: {exc}") from None

        try:
            self.scopes = self._plan_scopes(albums)
            full_library = self.scopes[0].name == LIBRARY_SCOPE and self.scopes[0].updated_after is None
            total = self._expected_total() if full_library else None
            incremental = [s.updated_after for s in self.scopes if s.updated_after is not None]
            # What the run's record shows: since when assets were listed, unless something was listed in full.
            updated_after = min(incremental) if len(incremental) == len(self.scopes) else None
            self.services.db.execute(
                "UPDATE immich_import_runs SET updated_after = %s, total = %s, updated_at = now() WHERE id = %s",
                (updated_after, total, self.run["id"]),
            )
            log.info(
                "Immich import run %s from %s (Immich %s): %s",
                self.run["id"],
                self.server,
                ".".join(map(str, version)),
                "; ".join(
                    f"{s.name} {'since ' + s.updated_after.isoformat() if s.updated_after else 'in full'}"
                    for s in self.scopes
                ),
            )
            self.ctx.progress(0, total, "listing assets", force=True)
            for scope in self.scopes:
                self._process_all(
                    client.iter_assets(
                        updated_after=scope.updated_after,
                        album_ids=[scope.album_id] if scope.album_id else None,
                        page_size=page_size,
                        include_removed=True,
                    ),
                    total,
                )
            if full_library:
                self._remove_unlisted()
        except (ImmichAuthError, ImmichPermissionError) as exc:
            raise ImmichImportError(f"Immich import failed: {exc}") from None
        except (ImmichConnectionError, ImmichServerError) as exc:
            raise ImmichImportError(f"Immich import stopped: {exc}", retryable=True) from None
        except ImmichError as exc:
            raise ImmichImportError(f"Immich import failed: {exc}") from None

        c = self.counters
        self.ctx.progress(c.seen, c.seen, c.stage(), force=True)
        run = self._finish("completed")
        return {
            "run_id": str(self.run["id"]),
            **c.as_dict(),
            "summary": run_summary(run),
            "updated_after": updated_after.isoformat() if updated_after else None,
        }

    def _plan_scopes(self, albums: list[str]) -> list[Scope]:
        """What to list: each scope incrementally from its own watermark, or in full (a full run,
        a scope never imported, an album whose members may have changed)."""
        incremental = self.run["mode"] == "incremental"
        state = {
            row["scope"]: row
            for row in self.services.db.fetchall(
                "SELECT * FROM immich_sync_state WHERE server_url = %s", (self.server,)
            )
        }
        if not albums:
            row = state.get(LIBRARY_SCOPE)
            since = row["last_success_at"] if incremental and row else None
            return [Scope(LIBRARY_SCOPE, None, since)]
        try:
            current = {album.id: album for album in self.api.albums()}
        except ImmichPermissionError:  # without album.read, membership cannot be compared: list in full
            current = {}
        scopes = []
        for album_id in selection_scopes(albums):
            row, album = state.get(album_id), current.get(album_id)
            unchanged = (
                row is not None
                and album is not None
                and row["album_updated_at"] == album.updated_at
                and row["album_asset_count"] == album.asset_count
            )
            since = row["last_success_at"] if row is not None and incremental and unchanged else None
            scopes.append(Scope(album_id, album_id, since, album))
        return scopes

    def _expected_total(self) -> int | None:
        try:
            stats = self.api.statistics()
        except ImmichError:  # only a progress hint; the listing will tell if something is wrong
            return None
        return stats.total if stats else None

    def _process_all(self, assets: Iterable[ImmichAsset], total: int | None) -> None:
        """List in this thread, download and store in ``IMMICH_IMPORT_CONCURRENCY`` threads, and
        record outcomes (and progress, which may raise Cancelled) here as they finish."""
        concurrency = max(1, int(self.settings.immich_import_concurrency))
        pending: set[Future] = set()
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="immich-import") as pool:
            try:
                for asset in assets:
                    if asset.id in self._listed:
                        continue
                    self._listed.add(asset.id)
                    pending.add(pool.submit(self._process_asset, asset))
                    if len(pending) >= 2 * concurrency:  # bounded look-ahead: memory stays flat
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        self._collect(done, total)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    self._collect(done, total)
            except BaseException:
                # Stop taking new work, let downloads in flight finish (they clean up after
                # themselves), and keep their outcomes in the run's counters.
                for future in pending:
                    future.cancel()
                finished, _ = wait(pending)
                for future in finished:
                    if not future.cancelled() and future.exception() is None:
                        self.counters.add(future.result())
                self._save(force=True)
                raise

    def _collect(self, done: Iterable[Future], total: int | None) -> None:
        fatal = None
        for future in done:
            outcome = future.result()  # _process_asset returns every error as an outcome
            self.counters.add(outcome)
            if outcome.status == "failed":
                log.warning(
                    "Immich asset %s (%s) not imported: %s",
                    outcome.asset.id,
                    outcome.asset.original_filename,
                    outcome.reason,
                )
            fatal = fatal or outcome.fatal
        if fatal is not None:
            raise fatal
        c = self.counters
        self._save()
        self.ctx.progress(c.seen, max(total, c.seen) if total else None, c.stage())

    # --------------------------------------------------------------------------- one asset
    def _process_asset(self, asset: ImmichAsset) -> AssetOutcome:
        try:
            if asset.type not in ("IMAGE", "VIDEO"):
                return AssetOutcome("skipped", asset, reason=f"Immich asset type {asset.type} is not imported")
            ours = self._our_upload(asset)
            if ours is not None:  # a 3D version write-back put there: never imported back
                return AssetOutcome("skipped" if asset.on_timeline else "ignored", asset, reason=ours)
            existing = self.services.db.fetchone("SELECT * FROM media_items WHERE immich_asset_id = %s", (asset.id,))
            if not asset.on_timeline:
                return self._asset_left(existing, asset)
            restored = existing is not None and self._restore(existing)
            outcome = self._import_asset(asset, existing)
            outcome.restored = restored
            return outcome
        except (ImmichAuthError, ImmichPermissionError) as exc:
            return AssetOutcome("failed", asset, reason=str(exc), fatal=exc)
        except ImmichNotFound:
            return AssetOutcome("skipped", asset, reason="deleted in Immich during the import")
        except (ImmichConnectionError, ImmichServerError) as exc:
            return AssetOutcome("failed", asset, reason=str(exc), retry_later=True)
        except (ImmichError, InvalidMediaError) as exc:
            return AssetOutcome("failed", asset, reason=str(exc))
        except psycopg.errors.UniqueViolation:
            return AssetOutcome("skipped", asset, reason="its new file is identical to another item already stored")
        except Exception as exc:  # keep going with the other assets; the reason is recorded
            log.exception("unexpected error importing Immich asset %s", asset.id)
            return AssetOutcome(
                "failed", asset, reason=f"unexpected error: {exc or type(exc).__name__}", retry_later=True
            )

    def _our_upload(self, asset: ImmichAsset) -> str | None:
        """Why the asset is one Parallax uploaded (IMMICH_WRITE_BACK), else None. Asked per asset,
        not from a list read at the start: uploads go on while an import runs."""
        from backend.immich.writeback import recognise  # it imports this module

        return recognise(self.services, self.server, asset)

    def _import_asset(self, asset: ImmichAsset, existing: dict | None) -> AssetOutcome:
        if existing is not None and existing["immich_checksum"] == asset.checksum:
            return AssetOutcome("unchanged", asset)
        if asset.is_offline:
            # Its file is missing from an external library: nothing to download until Immich finds
            # it again (which bumps updatedAt). Not a failure, so it does not hold the watermark back.
            return AssetOutcome(
                "skipped", asset, reason="offline in Immich: its file is missing from an external library"
            )
        if existing is None:
            twin = self._same_bytes(asset)
            if twin is not None:
                return AssetOutcome("skipped", asset, reason=_same_file_reason(twin, asset.id))
        return self._download_and_store(asset, existing)

    def _same_bytes(self, asset: ImmichAsset) -> dict | None:
        """The item already holding this asset's bytes (another Immich asset with the same
        checksum, or one linked before), linked to it so it is never downloaded again."""
        if not asset.checksum:
            return None
        twin = self.services.db.fetchone(
            "SELECT m.* FROM media_items m WHERE m.immich_checksum = %(c)s AND m.immich_asset_id <> %(a)s"
            " UNION ALL SELECT m.* FROM immich_asset_links l JOIN media_items m ON m.id = l.media_id"
            " WHERE l.asset_id = %(a)s AND l.checksum = %(c)s LIMIT 1",
            {"c": asset.checksum, "a": asset.id},
        )
        if twin is not None:
            self._link(asset, twin)
        return twin

    def _link(self, asset: ImmichAsset, item: dict) -> None:
        self.services.db.execute(
            "INSERT INTO immich_asset_links (asset_id, media_id, checksum) VALUES (%s, %s, %s)"
            " ON CONFLICT (asset_id) DO UPDATE SET media_id = EXCLUDED.media_id, checksum = EXCLUDED.checksum",
            (asset.id, item["id"], asset.checksum),
        )

    def _download_and_store(self, asset: ImmichAsset, existing: dict | None) -> AssetOutcome:
        tmp = self.services.storage.temp_path(".immich", prefix=f"job-{self.ctx.job_id}-")
        try:
            if not needs_fullsize(asset) or asset.is_video:
                self.api.download_original(asset.id, tmp)
                try:
                    return self._store(asset, existing, tmp, RENDITION_ORIGINAL)
                except InvalidMediaError as exc:
                    if asset.is_video:  # Immich's full-size rendition of a video is a still image
                        raise
                    log.info(
                        "Immich asset %s (%s): original not usable (%s); taking Immich's full-size rendition",
                        asset.id,
                        asset.original_mime_type,
                        exc,
                    )
            self.api.download_fullsize(asset.id, tmp)
            return self._store(asset, existing, tmp, RENDITION_FULLSIZE)
        finally:
            tmp.unlink(missing_ok=True)  # ingest consumes it; this covers a failed download

    def _store(self, asset: ImmichAsset, existing: dict | None, tmp, rendition: str) -> AssetOutcome:
        metadata = {
            "immich": {
                "asset_id": asset.id,
                "rendition": rendition,
                "original_mime_type": asset.original_mime_type,
                "original_filename": asset.original_filename,
                "checksum": asset.checksum,
                "updated_at": asset.updated_at.isoformat(),
                "server_url": self.server,
            }
        }
        # Immich's asset type is trusted: bytes that read as the other kind (a JPEG XL that ffprobe
        # took for a one-frame video) are refused, and the caller takes the full-size rendition.
        kind = "video" if asset.is_video else "photo"
        if existing is not None:
            replace_original(
                self.services, existing, tmp, immich_checksum=asset.checksum, metadata=metadata, expected_kind=kind
            )
            return AssetOutcome("imported", asset, rendition=rendition)
        result = ingest_file(
            self.services,
            tmp,
            asset.original_filename,
            source="immich",
            immich_asset_id=asset.id,
            immich_checksum=asset.checksum,
            metadata=metadata,
            expected_kind=kind,
        )
        if result.created or result.item.get("immich_asset_id") == asset.id:
            return AssetOutcome("imported", asset, rendition=rendition)
        self._link(asset, result.item)
        return AssetOutcome("skipped", asset, reason=_same_file_reason(result.item, asset.id))

    # ------------------------------------------------------------- leaving and coming back
    def _asset_left(self, item: dict | None, asset: ImmichAsset) -> AssetOutcome:
        """A listed asset that is no longer on the timeline (trashed, archived...)."""
        if asset.is_trashed:
            reason = "trashed"
        elif asset.is_archived:
            reason = "archived"
        else:
            reason = "not_on_timeline"
        if item is None or not self._remove(item, reason):
            return AssetOutcome("ignored", asset)
        return AssetOutcome("removed", asset, reason=_removal_reason(reason, self.settings))

    def _remove(self, item: dict, reason: str) -> bool:
        """Hide or delete (IMMICH_REMOVED_ASSETS) an item whose asset left Immich's timeline.
        True when that changed something here. Items uploaded by hand are never touched."""
        if item["source"] != "immich":
            return False
        if self.settings.immich_removed_assets == "delete":
            delete_item(self.services, item)
            log.info("Immich asset %s %s: item %s deleted", item["immich_asset_id"], reason, item["id"])
            return True
        # Hidden once (counted then); a later, different reason (trashed, then deleted) is only recorded.
        changed = self.services.db.execute(
            "UPDATE media_items SET immich_removed = %s, immich_removed_at = COALESCE(immich_removed_at, now()),"
            " updated_at = now() WHERE id = %s AND immich_removed IS DISTINCT FROM %s",
            (reason, item["id"], reason),
        )
        return bool(changed) and item["immich_removed"] is None

    def _restore(self, item: dict) -> bool:
        """Show again an item hidden while its asset was off the timeline; True when it was hidden."""
        if item["immich_removed"] is None:
            return False
        self.services.db.execute(
            "UPDATE media_items SET immich_removed = NULL, immich_removed_at = NULL, updated_at = now() WHERE id = %s",
            (item["id"],),
        )
        return True

    def _remove_unlisted(self) -> None:
        """After listing the whole library in full: items of this server whose asset was not
        listed at all were deleted for good (or moved where the key cannot see them). Each is
        confirmed with ``GET /api/assets/{id}`` before it is removed."""
        rows = self.services.db.fetchall(
            "SELECT * FROM media_items WHERE source = 'immich' AND immich_asset_id IS NOT NULL"
            " AND immich_removed IS DISTINCT FROM 'deleted' AND metadata->'immich'->>'server_url' = %s",
            (self.server,),
        )
        missing = [row for row in rows if row["immich_asset_id"] not in self._listed]
        if missing and not self._listed:
            # An empty library (a reinstalled server, another user's key) is more likely a mistake
            # than every asset deleted: remove nothing.
            log.warning("Immich listed no assets at all: %d items not checked for deletion", len(missing))
            return
        for number, item in enumerate(missing, 1):
            self.ctx.progress(self.counters.seen, None, f"checking {number}/{len(missing)} assets missing in Immich")
            try:
                asset = self.api.asset(item["immich_asset_id"])
            except ImmichNotFound:
                reason = "deleted"
            else:
                if asset.on_timeline:  # added while the listing ran: the next run takes it
                    continue
                reason = "trashed" if asset.is_trashed else "archived" if asset.is_archived else "not_on_timeline"
            if self._remove(item, reason):
                self.counters.add_removal(
                    _entry(item["immich_asset_id"], item["original_filename"], _removal_reason(reason, self.settings))
                )
        self._save(force=True)

    # ------------------------------------------------------------------------ bookkeeping
    def _claim_run(self) -> dict:
        """Mark the job's run as running (again, on a retry: counters start over)."""
        params = self.ctx.parameters
        run_id = params.get("run_id")
        reset = (
            "status = 'running', started_at = now(), finished_at = NULL, seen = 0, imported = 0,"
            " unchanged = 0, skipped = 0, failed = 0, removed = 0, restored = 0, failures = '[]'::jsonb,"
            " skips = '[]'::jsonb, removals = '[]'::jsonb, error = NULL, total = NULL, job_id = %s, updated_at = now()"
        )
        run = None
        if run_id:
            run = self.services.db.fetchone(
                f"UPDATE immich_import_runs SET {reset} WHERE id = %s RETURNING *", (self.ctx.job_id, run_id)
            )
        if run is None:  # a job made without a run row (or its row was deleted): record one
            mode = params.get("mode") if params.get("mode") in MODES else "incremental"
            albums = list(params.get("album_ids") or self.settings.immich_album_ids)
            run = self.services.db.fetchone(
                "INSERT INTO immich_import_runs (id, mode, status, started_at, job_id, album_ids)"
                " VALUES (%s, %s, 'running', now(), %s, %s) RETURNING *",
                (run_id or uuid.uuid4(), mode, self.ctx.job_id, albums),
            )
        return one(run)

    _COUNTER_SQL = (
        "seen = %(seen)s, imported = %(imported)s, unchanged = %(unchanged)s, skipped = %(skipped)s,"
        " failed = %(failed)s, removed = %(removed)s, restored = %(restored)s, failures = %(failures)s,"
        " skips = %(skips)s, removals = %(removals)s, updated_at = now()"
    )

    def _counter_values(self) -> dict:
        c = self.counters
        return {
            **c.as_dict(),
            "failures": jsonb(c.failures),
            "skips": jsonb(c.skips),
            "removals": jsonb(c.removals),
            "id": self.run["id"],
        }

    def _save(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_save < SAVE_INTERVAL_S:
            return
        self._last_save = now
        self.services.db.execute(
            f"UPDATE immich_import_runs SET {self._COUNTER_SQL} WHERE id = %(id)s", self._counter_values()
        )

    def _finish(self, status: str, error: str | None = None) -> dict:
        c = self.counters
        with self.services.db.connection() as conn:
            run = one(
                conn.execute(
                    f"UPDATE immich_import_runs SET status = %(status)s, error = %(error)s, {self._COUNTER_SQL},"
                    " finished_at = CASE WHEN %(status)s IN ('queued', 'running') THEN NULL ELSE now() END"
                    " WHERE id = %(id)s RETURNING *",
                    {**self._counter_values(), "status": status, "error": error},
                ).fetchone()
            )
            if status != "completed":
                return run
            # Each scope's next incremental listing starts from this run's start, or from the oldest
            # asset that failed in a way another run may get past, so it is tried again.
            watermark = run["started_at"] if c.retry_from is None else min(run["started_at"], c.retry_from)
            for scope in self.scopes:
                conn.execute(
                    "INSERT INTO immich_sync_state (server_url, scope, last_success_at, album_updated_at,"
                    " album_asset_count, last_run_id) VALUES (%s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (server_url, scope) DO UPDATE SET last_success_at = EXCLUDED.last_success_at,"
                    " album_updated_at = EXCLUDED.album_updated_at, album_asset_count = EXCLUDED.album_asset_count,"
                    " last_run_id = EXCLUDED.last_run_id, updated_at = now()",
                    (
                        self.server,
                        scope.name,
                        watermark,
                        scope.album.updated_at if scope.album else None,
                        scope.album.asset_count if scope.album else None,
                        run["id"],
                    ),
                )
        return run

    def _finish_after_error(self, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        retryable = not isinstance(exc, PipelineError) or exc.retryable
        job = self.ctx.job
        if retryable and job["attempts"] < job["max_attempts"]:
            # The runner queues the job again after a backoff: the run is waiting, not over.
            self._finish("queued", error=f"{message} (will retry)")
        else:
            self._finish("failed", error=message)


def _same_file_reason(item: dict, asset_id: str) -> str:
    """Why an asset was skipped as a duplicate: which item already holds its bytes."""
    if item.get("immich_asset_id") and item["immich_asset_id"] != asset_id:
        return f"the same file as Immich asset {item['immich_asset_id']}, already imported (item {item['id']})"
    return f"the same file is already stored (item {item['id']})"


def _removal_reason(reason: str, settings: Settings) -> str:
    what = {
        "deleted": "deleted in Immich",
        "trashed": "in Immich's trash",
        "archived": "archived in Immich",
        "not_on_timeline": "no longer on Immich's timeline",
    }[reason]
    return f"{what}: item {'deleted' if settings.immich_removed_assets == 'delete' else 'hidden'}"


def run_import(ctx) -> dict:
    """The ``immich_import`` job's work (``backend.tasks.immich_import.run_import`` calls this)."""
    return ImportRun(ctx).execute()
