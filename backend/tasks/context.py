"""What a task handler gets: the job, its media item, parameters, progress reporting and a safe way
to store results as derived assets."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ai.errors import Cancelled, InvalidMediaError, PipelineError
from backend import thumbnails
from backend.db import UNAVAILABLE_ERRORS, jsonb, one, retry_while_unavailable
from backend.schemas import TaskParameters, describe_validation_error
from backend.services import Services

log = logging.getLogger(__name__)

# "This attempt still owns its job" (parameters: job id, attempt number): it is processing, or a
# recovery sweep marked it lost while a database outage kept its heartbeats from arriving and no
# other worker has claimed it since (a claim raises ``attempts``). A cancelled job is not owned.
OWNED_BY_ATTEMPT = (
    "id = %s AND attempts = %s AND (status = 'processing'"
    " OR (status IN ('pending', 'queued') AND error_kind = 'worker_lost'))"
)
# Taking the job back after such a sweep: processing again, the sweep's note removed.
RECLAIM = (
    "status = 'processing', error_kind = CASE WHEN status = 'processing' THEN error_kind END,"
    " last_error = CASE WHEN status = 'processing' THEN last_error END, run_after = NULL"
)


class TimeLimitExceeded(PipelineError):
    """The run fell behind the time its frames are allowed (not retried: it would fall behind again)."""

    error_kind = "timeout"


class TaskContext:
    PROGRESS_INTERVAL_S = 0.5
    OUTAGE_PAUSE_S = 10.0

    def __init__(self, services: Services, job: dict, item: dict | None) -> None:
        self.services = services
        self.settings = services.settings
        self.job = job
        self.item = item
        self.parameters: dict = dict(job.get("parameters") or {})
        self._last_report = 0.0
        self._temps: list[Path] = []
        self._lock = threading.Lock()

    @property
    def job_id(self) -> str:
        return str(self.job["id"])

    @property
    def media(self) -> dict:
        """The job's media item; every task but an Immich import has one (checked before it runs)."""
        if self.item is None:
            raise RuntimeError(f"job {self.job_id} ({self.job['task']}) has no media item")
        return self.item

    @property
    def owned(self) -> tuple[str, tuple]:
        """The WHERE condition (and its parameters) that matches this job only while this attempt owns it."""
        return OWNED_BY_ATTEMPT, (self.job_id, self.job["attempts"])

    @property
    def source_path(self) -> Path:
        return self.services.storage.path(self.media["storage_path"])

    def param(self, name: str, default: Any) -> Any:
        value = self.parameters.get(name)
        return default if value is None else value

    def options(self) -> TaskParameters:
        """The job's parameters checked with the API's model (same bounds as the endpoints): a job
        stored with a bad one fails with the reason instead of reaching the pipeline."""
        try:
            return TaskParameters.model_validate(self.parameters)
        except ValidationError as exc:
            raise InvalidMediaError(f"the job's parameters are not valid: {describe_validation_error(exc)}") from None

    def progress(self, done: int, total: int | None, stage: str, force: bool = False) -> None:
        """Record progress (throttled) and stop with Cancelled if the job was cancelled meanwhile.
        While the database is unreachable the work goes on: progress is only a report."""
        now = time.monotonic()
        if not force and now - self._last_report < self.PROGRESS_INTERVAL_S and (total is None or done < total):
            return
        self._last_report = now
        where, params = self.owned
        try:
            row = self.services.db.fetchone(
                f"UPDATE processing_jobs SET progress_done = %s, progress_total = %s, stage = %s, heartbeat_at = now(),"
                f" updated_at = now(), {RECLAIM} WHERE {where} RETURNING id",
                (done, total, stage[:200], *params),
            )
        except UNAVAILABLE_ERRORS as exc:
            # Each try waits for the pool's timeout: pause reports for a while so the work runs on at speed.
            self._last_report = time.monotonic() + self.OUTAGE_PAUSE_S
            log.warning("job %s: progress not recorded, database unavailable (%s)", self.job_id, exc)
            return
        if row is None:
            raise Cancelled(f"job {self.job_id} was cancelled")

    def frame_progress(self, max_frames: int, limit_name: str):
        """A progress callback for a pipeline that reports one step per frame, bounded by what the task
        needs rather than by what the file declares: at most ``max_frames`` frames, and a time limit
        that grows with the frames actually processed (JOB_TIMEOUT_BASE_SECONDS plus
        JOB_TIMEOUT_PER_FRAME_SECONDS per frame done)."""
        started = time.monotonic()
        base, per_frame = self.settings.job_timeout_base_s, self.settings.job_timeout_per_frame_s

        def report(done: int, total: int | None, stage: str, force: bool = False) -> None:
            if done > max_frames:
                raise InvalidMediaError(
                    f"the video has more than {max_frames} frames, the most this task processes ({limit_name})"
                )
            allowed = base + per_frame * done
            if time.monotonic() - started > allowed:
                raise TimeLimitExceeded(
                    f"the job fell behind its time limit: {done} frames in more than {allowed:.0f} s"
                    f" (JOB_TIMEOUT_BASE_SECONDS + JOB_TIMEOUT_PER_FRAME_SECONDS per frame)"
                )
            self.progress(done, total, stage, force)

        return report

    def temp_path(self, suffix: str) -> Path:
        # Named after the job, so a rerun can sweep what a killed attempt left behind.
        path = self.services.storage.temp_path(suffix, prefix=f"job-{self.job_id}-")
        self._temps.append(path)
        return path

    def sweep_previous_attempts(self) -> None:
        for stale in self.services.storage.tmp.glob(f"job-{self.job_id}-*"):
            stale.unlink(missing_ok=True)

    def cleanup(self) -> None:
        for path in self._temps:
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def store_asset(
        self,
        tmp: Path,
        *,
        kind: str,
        filename: str,
        mime_type: str,
        variant: str = "",
        model: str | None = None,
        parameters: dict | None = None,
        width: int | None = None,
        height: int | None = None,
        metadata: dict | None = None,
    ) -> dict:
        """Move a finished result next to its item and record it, replacing an earlier result of the
        same kind and variant: the file is renamed into place and the row upserted, so a rerun never
        leaves a half-written file or a duplicate row."""
        storage = self.services.storage
        item_id = self.media["id"]
        rel = f"{storage.item_rel(item_id)}/{filename}"
        size = tmp.stat().st_size
        where, params = self.owned
        placed = False

        def publish() -> tuple[dict[str, Any], dict[str, Any] | None]:
            nonlocal placed
            with self.services.db.connection() as conn:
                # Only the attempt that owns the job may publish (a cancelled one must not).
                running = conn.execute(
                    f"UPDATE processing_jobs SET {RECLAIM}, heartbeat_at = now() WHERE {where} RETURNING id", params
                ).fetchone()
                if running is None:
                    raise Cancelled(f"job {self.job_id} was cancelled")
                old = conn.execute(
                    "SELECT path FROM derived_assets WHERE media_id = %s AND kind = %s AND variant = %s",
                    (item_id, kind, variant),
                ).fetchone()
                row = conn.execute(
                    "INSERT INTO derived_assets (id, media_id, job_id, kind, variant, model, parameters, path,"
                    " mime_type, size_bytes, width, height, metadata) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                    " ON CONFLICT (media_id, kind, variant) DO UPDATE SET job_id = EXCLUDED.job_id,"
                    " model = EXCLUDED.model, parameters = EXCLUDED.parameters, path = EXCLUDED.path,"
                    " mime_type = EXCLUDED.mime_type, size_bytes = EXCLUDED.size_bytes, width = EXCLUDED.width,"
                    " height = EXCLUDED.height, metadata = EXCLUDED.metadata, created_at = now() RETURNING *",
                    (
                        uuid.uuid4(),
                        item_id,
                        self.job_id,
                        kind,
                        variant,
                        model,
                        jsonb(parameters or {}),
                        rel,
                        mime_type,
                        size,
                        width,
                        height,
                        jsonb(metadata or {}),
                    ),
                ).fetchone()
                if not placed:  # a retry after the commit failed finds the file already in place
                    storage.place(tmp, rel)
                    placed = True
            return one(row), old

        # A finished result is kept through a database outage and recorded once the server is back.
        row, old = retry_while_unavailable(publish, f"storing the result of job {self.job_id}")
        if old and old["path"] != rel:
            storage.remove(old["path"])
            storage.remove(thumbnails.thumbnail_rel(old["path"]))
        thumbnails.make_quietly(storage, rel, mime_type, (metadata or {}).get("duration"))
        return row

    def heartbeat(self) -> None:
        """Tell recovery sweeps this attempt is alive (and take the job back if one marked it lost)."""
        where, params = self.owned
        self.services.db.execute(f"UPDATE processing_jobs SET heartbeat_at = now(), {RECLAIM} WHERE {where}", params)


def worker_name() -> str:
    return f"{os.uname().nodename}.{os.getpid()}"
