"""Importing photos and videos from Immich into Parallax (see docs/immich.md).

One import is an *import run* (a row of ``immich_import_runs``) carried by one ``immich_import``
job. The run lists the library (or some albums) through :class:`ImmichClient`, downloads with a
few threads what is new or changed, and hands each file to ``media_service.ingest_file`` (or
``replace_original`` when an asset's checksum changed), exactly as an upload would be.

* Idempotent: an asset already imported with the same checksum is not downloaded again.
* Incremental: after a successful run, the next incremental run lists only assets updated since
  that run *started* (``immich_sync_state.last_success_at``), so changes made during a run are
  seen next time. Assets that failed for a reason that may pass (network, server error) hold that
  watermark back, so the next incremental run tries them again.
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
from backend.db import jsonb
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
from backend.media_service import ingest_file, replace_original
from backend.services import Services
from backend.settings import Settings

log = logging.getLogger(__name__)

MODES = ("full", "incremental")
TRIGGERS = ("manual", "schedule", "cli")
ACTIVE_RUN_STATUSES = ("queued", "running")
# Serialises "is an import running? if not, start one" across API requests and workers.
RUN_LOCK_ID = 7_231_006
# A whole-library import can take hours; it is idempotent, so a stopped one simply resumes.
DEFAULT_PAGE_SIZE = 250
MAX_FAILURES_KEPT = 500  # the failed counter stays exact; the list of reasons is bounded
SAVE_INTERVAL_S = 1.0

RENDITION_ORIGINAL = "original"
RENDITION_FULLSIZE = "fullsize"

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
    parts = urlsplit(url.strip())
    shown = parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1], query="", fragment="").geturl().rstrip("/")
    return shown[: -len("/api")] if shown.endswith("/api") else shown


def make_client(settings: Settings, **kwargs) -> ImmichClient:
    """An ImmichClient for the configured server; ImmichImportError when it is not configured."""
    if not is_configured(settings):
        raise ImmichImportError(not_configured_message(settings))
    try:
        return ImmichClient(
            settings.immich_url, settings.immich_api_key, public_url=settings.immich_public_url, **kwargs
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
        " error = COALESCE(r.error, j.last_error, j.skip_reason, 'the import job ended before the run finished'),"
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
    return get_run(services, run["id"]), jobs.get_job(services, job["id"])


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
        if not conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS ok", (RUN_LOCK_ID,)).fetchone()["ok"]:
            return None  # another process is deciding right now
        due = conn.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM immich_import_runs r JOIN processing_jobs j ON j.id = r.job_id"
            "                   WHERE r.status IN ('queued', 'running')"
            "                   AND j.status IN ('pending', 'queued', 'processing'))"
            " AND COALESCE((SELECT max(COALESCE(started_at, created_at)) FROM immich_import_runs)"
            "              < now() - make_interval(mins => %s), true) AS due",
            (interval,),
        ).fetchone()["due"]
        if not due:
            return None
        settle_orphaned_runs(conn)
        run, job = _create_run(conn, settings, "incremental", list(settings.immich_album_ids), "schedule", None)
    log.info("scheduled an incremental Immich import (run %s, every %d min)", run["id"], interval)
    jobs.enqueue(services, [job["id"]])
    return run


def sync_state(services: Services) -> dict | None:
    return services.db.fetchone("SELECT * FROM immich_sync_state WHERE id = 1")


# -------------------------------------------------------------------------------- execution
@dataclass
class AssetOutcome:
    status: str  # imported | unchanged | skipped | failed
    asset: ImmichAsset
    reason: str | None = None
    rendition: str | None = None
    retry_later: bool = False  # a failure another run may get past (network, server error)
    fatal: BaseException | None = None  # stops the whole run (key revoked, permission removed)


@dataclass
class RunCounters:
    seen: int = 0
    imported: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list = field(default_factory=list)
    # The oldest updatedAt among assets that failed in a way another run may get past.
    retry_from: datetime | None = None

    def add(self, outcome: AssetOutcome) -> None:
        self.seen += 1
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        if outcome.status == "failed":
            if len(self.failures) < MAX_FAILURES_KEPT:
                self.failures.append(
                    {
                        "asset_id": outcome.asset.id,
                        "file_name": outcome.asset.original_filename,
                        "reason": outcome.reason or "unknown error",
                    }
                )
            if outcome.retry_later:
                when = outcome.asset.updated_at
                self.retry_from = when if self.retry_from is None else min(self.retry_from, when)

    def stage(self) -> str:
        text = f"asset {self.seen} (imported {self.imported}, unchanged {self.unchanged}, failed {self.failed}"
        return text + (f", skipped {self.skipped})" if self.skipped else ")")

    def as_dict(self) -> dict:
        return {
            "seen": self.seen,
            "imported": self.imported,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "failed": self.failed,
        }


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
        log.info("Immich import run %s completed: %s", run_id, self.counters.as_dict())
        return result

    def _import(self) -> dict:
        client = self.client
        mode = self.run["mode"]
        albums = list(self.run["album_ids"] or [])
        page_size = int(self.ctx.param("page_size", DEFAULT_PAGE_SIZE))
        self.ctx.progress(0, None, "connecting to Immich", force=True)
        try:
            version = client.server_version()
        except ImmichError as exc:
            # Nothing can be done without the server; the message says what to fix.
            raise ImmichImportError(f"Immich import failed: {exc}") from None

        state = sync_state(self.services)
        updated_after = None
        if mode == "incremental" and state and state["last_success_at"] and state["server_url"] == self.server:
            updated_after = state["last_success_at"]
        total = self._expected_total() if updated_after is None and not albums else None
        self.services.db.execute(
            "UPDATE immich_import_runs SET updated_after = %s, total = %s, updated_at = now() WHERE id = %s",
            (updated_after, total, self.run["id"]),
        )
        log.info(
            "Immich import run %s: %s import from %s (Immich %s)%s%s",
            self.run["id"],
            "incremental" if updated_after else "full",
            self.server,
            ".".join(map(str, version)),
            f", assets updated since {updated_after.isoformat()}" if updated_after else "",
            f", albums {', '.join(albums)}" if albums else "",
        )
        self.ctx.progress(0, total, "listing assets", force=True)

        try:
            self._process_all(
                client.iter_assets(updated_after=updated_after, album_ids=albums or None, page_size=page_size), total
            )
        except (ImmichAuthError, ImmichPermissionError) as exc:
            raise ImmichImportError(f"Immich import failed: {exc}") from None
        except (ImmichConnectionError, ImmichServerError) as exc:
            raise ImmichImportError(f"Immich import stopped: {exc}", retryable=True) from None
        except ImmichError as exc:
            raise ImmichImportError(f"Immich import failed: {exc}") from None

        c = self.counters
        self.ctx.progress(c.seen, c.seen, c.stage(), force=True)
        self._finish("completed")
        return {
            "run_id": str(self.run["id"]),
            **c.as_dict(),
            "updated_after": updated_after.isoformat() if updated_after else None,
        }

    def _expected_total(self) -> int | None:
        try:
            stats = self.client.statistics()
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
            existing = self.services.db.fetchone("SELECT * FROM media_items WHERE immich_asset_id = %s", (asset.id,))
            if existing is not None and existing["immich_checksum"] == asset.checksum:
                return AssetOutcome("unchanged", asset)
            return self._download_and_store(asset, existing)
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

    def _download_and_store(self, asset: ImmichAsset, existing: dict | None) -> AssetOutcome:
        tmp = self.services.storage.temp_path(".immich", prefix=f"job-{self.ctx.job_id}-")
        try:
            if not needs_fullsize(asset) or asset.is_video:
                self.client.download_original(asset.id, tmp)
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
            self.client.download_fullsize(asset.id, tmp)
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
        if existing is not None:
            replace_original(self.services, existing, tmp, immich_checksum=asset.checksum, metadata=metadata)
            return AssetOutcome("imported", asset, rendition=rendition)
        result = ingest_file(
            self.services,
            tmp,
            asset.original_filename,
            source="immich",
            immich_asset_id=asset.id,
            immich_checksum=asset.checksum,
            metadata=metadata,
        )
        if result.created or result.item.get("immich_asset_id") == asset.id:
            return AssetOutcome("imported", asset, rendition=rendition)
        return AssetOutcome(
            "skipped",
            asset,
            reason=(
                f"the same file as Immich asset {result.item['immich_asset_id']}, already imported"
                if result.item.get("immich_asset_id")
                else "the same file is already stored"
            ),
        )

    # ------------------------------------------------------------------------ bookkeeping
    def _claim_run(self) -> dict:
        """Mark the job's run as running (again, on a retry: counters start over)."""
        params = self.ctx.parameters
        run_id = params.get("run_id")
        reset = (
            "status = 'running', started_at = now(), finished_at = NULL, seen = 0, imported = 0,"
            " unchanged = 0, skipped = 0, failed = 0, failures = '[]'::jsonb, error = NULL, total = NULL,"
            " job_id = %s, updated_at = now()"
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
        return run

    def _save(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_save < SAVE_INTERVAL_S:
            return
        self._last_save = now
        c = self.counters
        self.services.db.execute(
            "UPDATE immich_import_runs SET seen = %s, imported = %s, unchanged = %s, skipped = %s, failed = %s,"
            " failures = %s, updated_at = now() WHERE id = %s",
            (c.seen, c.imported, c.unchanged, c.skipped, c.failed, jsonb(c.failures), self.run["id"]),
        )

    def _finish(self, status: str, error: str | None = None) -> None:
        c = self.counters
        with self.services.db.connection() as conn:
            run = conn.execute(
                "UPDATE immich_import_runs SET status = %s, error = %s, seen = %s, imported = %s, unchanged = %s,"
                " skipped = %s, failed = %s, failures = %s,"
                " finished_at = CASE WHEN %s IN ('queued', 'running') THEN NULL ELSE now() END, updated_at = now()"
                " WHERE id = %s RETURNING *",
                (
                    status,
                    error,
                    c.seen,
                    c.imported,
                    c.unchanged,
                    c.skipped,
                    c.failed,
                    jsonb(c.failures),
                    status,
                    self.run["id"],
                ),
            ).fetchone()
            if status != "completed":
                return
            # The next incremental run starts from this run's start, or from the oldest asset
            # that failed in a way another run may get past, so it is tried again.
            watermark = run["started_at"] if c.retry_from is None else min(run["started_at"], c.retry_from)
            conn.execute(
                "INSERT INTO immich_sync_state (id, server_url, last_success_at, last_run_id, updated_at)"
                " VALUES (1, %s, %s, %s, now()) ON CONFLICT (id) DO UPDATE SET server_url = EXCLUDED.server_url,"
                " last_success_at = EXCLUDED.last_success_at, last_run_id = EXCLUDED.last_run_id, updated_at = now()",
                (self.server, watermark, run["id"]),
            )

    def _finish_after_error(self, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        retryable = not isinstance(exc, PipelineError) or exc.retryable
        job = self.ctx.job
        if retryable and job["attempts"] < job["max_attempts"]:
            # The runner queues the job again after a backoff: the run is waiting, not over.
            self._finish("queued", error=f"{message} (will retry)")
        else:
            self._finish("failed", error=message)


def run_import(ctx) -> dict:
    """The ``immich_import`` job's work (``backend.tasks.immich_import.run_import`` calls this)."""
    return ImportRun(ctx).execute()
