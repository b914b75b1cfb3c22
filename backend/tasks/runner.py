"""The function RQ runs for every job: claim it in PostgreSQL, run its handler, record the outcome.

Failures are classified: bad input and unavailable models fail at once with the reason; anything
else (a full disk included) is retried with exponential backoff until the job's attempts are used up.
A database outage does not lose a run: its claim and its outcome wait for the server to come back.
"""

from __future__ import annotations

import logging
import threading
import traceback

from rq.timeouts import JobTimeoutException

from ai.errors import Cancelled, InvalidMediaError, ModelUnavailableError, PipelineError
from backend.db import jsonb, retry_while_unavailable
from backend.jobs import disabled_flags, skip_reason
from backend.services import Services
from backend.settings import get_settings
from backend.storage import OUT_OF_SPACE_MESSAGE, is_out_of_space
from backend.tasks.context import TaskContext, worker_name
from backend.tasks.registry import TASKS, JobStatus

log = logging.getLogger(__name__)

_services: Services | None = None
_services_lock = threading.Lock()
current_context: TaskContext | None = None  # the running job, for the worker's heartbeat thread


def set_services(services: Services) -> None:
    global _services
    _services = services


def get_services() -> Services:
    global _services
    with _services_lock:
        if _services is None:
            _services = Services.create(get_settings(), pool_size=4)
        return _services


def backoff_seconds(attempt: int) -> int:
    return min(15 * 2 ** max(attempt - 1, 0), 900)


def _finish(services: Services, job_id: str, status: JobStatus, **fields) -> None:
    """Record the end of a job that was claimed but never ran (item deleted, feature turned off)."""
    sets = "".join(f"{k} = %s, " for k in fields)
    services.db.execute(
        f"UPDATE processing_jobs SET status = %s, {sets}finished_at = now(), updated_at = now(),"
        " heartbeat_at = NULL WHERE id = %s AND status = 'processing'",
        [status, *fields.values(), job_id],
    )


def _record_outcome(ctx: TaskContext, status: JobStatus, extra_sql: str = "", **fields) -> None:
    """Record how a run ended. Kept through a database outage and written once the server answers,
    as long as this attempt still owns the job (not cancelled, not claimed again meanwhile)."""
    where, owner = ctx.owned
    sets = "".join(f"{k} = %s, " for k in fields)
    values = [jsonb(v) if k == "result" else v for k, v in fields.items()]
    ended = "finished_at = now(), " if status != JobStatus.PENDING else ""
    retry_while_unavailable(
        lambda: ctx.services.db.execute(
            f"UPDATE processing_jobs SET status = %s, {sets}{extra_sql}{ended}updated_at = now(), heartbeat_at = NULL"
            f" WHERE {where}",
            [status, *values, *owner],
        ),
        f"recording the outcome of job {ctx.job_id}",
    )


def _claim(services: Services, job_id: str) -> tuple[dict | None, dict | None]:
    with services.db.connection() as conn:
        job = conn.execute(
            "UPDATE processing_jobs SET status = 'processing', attempts = attempts + 1, started_at = now(),"
            " heartbeat_at = now(), worker_name = %s, stage = 'starting', last_error = CASE WHEN error_kind ="
            " 'worker_lost' THEN last_error END, updated_at = now()"
            " WHERE id = %s AND status IN ('pending', 'queued') RETURNING *",
            (worker_name(), job_id),
        ).fetchone()
        if job is None or not job["media_id"]:
            return job, None
        return job, conn.execute("SELECT * FROM media_items WHERE id = %s", (job["media_id"],)).fetchone()


def run_job(job_id: str) -> dict | None:
    global current_context
    services = get_services()
    settings = services.settings
    job, item = retry_while_unavailable(lambda: _claim(services, job_id), f"claiming job {job_id}")
    if job is None:  # cancelled, or already taken by another worker
        log.info("job %s is no longer queued; nothing to do", job_id)
        return None
    if job["media_id"] and item is None:
        _finish(services, job_id, JobStatus.FAILED, last_error="the media item was deleted", error_kind="invalid_input")
        return None
    # Flags are read again here: one may have been turned off since the job was queued.
    if disabled_flags(settings, job["task"]):
        _finish(
            services,
            job_id,
            JobStatus.SKIPPED,
            skip_reason=skip_reason(settings, job["task"]),
            enable_with=",".join(disabled_flags(settings, job["task"])),
        )
        return None

    ctx = TaskContext(services, job, item)
    ctx.sweep_previous_attempts()
    current_context = ctx
    try:
        result = TASKS[job["task"]].resolve()(ctx) or {}
        _record_outcome(
            ctx,
            JobStatus.COMPLETED,
            "progress_done = COALESCE(progress_total, GREATEST(progress_done, 1)),"
            " progress_total = COALESCE(progress_total, GREATEST(progress_done, 1)), ",
            result=result,
            stage="done",
            error_kind=None,
            last_error=None,
        )
        _after_completion(services, job)
        return result
    except Cancelled:
        log.info("job %s cancelled", job_id)
        _record_outcome(ctx, JobStatus.CANCELLED, stage=JobStatus.CANCELLED)
    except JobTimeoutException:
        _record_outcome(
            ctx,
            JobStatus.FAILED,
            error_kind="timeout",
            last_error=f"the job took longer than its time limit of {job['timeout_s']} s and was stopped",
        )
    except Exception as exc:
        _record_failure(ctx, exc)
    finally:
        current_context = None
        ctx.cleanup()
    return None


def _after_completion(services: Services, job: dict) -> None:
    """Queue the work a completed job leads to: with IMMICH_WRITE_BACK, an Immich item's depth ->
    its stereo export -> the upload into Immich. Never changes the finished job's outcome; a step
    missed here is queued by ``parallax immich-writeback``."""
    if not services.settings.immich_write_back:
        return
    try:
        from backend.immich.writeback import after_job

        after_job(services, job)
    except Exception:
        log.exception("job %s (%s): could not queue the Immich write-back that follows it", job["id"], job["task"])


def _record_failure(ctx: TaskContext, exc: Exception) -> None:
    """Bad input and missing models fail at once with their reason; a full disk and anything
    transient or unexpected are retried with backoff while attempts remain."""
    job = ctx.job
    if is_out_of_space(exc):
        message = f"{OUT_OF_SPACE_MESSAGE} to write the result ({str(exc).splitlines()[0]})"
        kind = retry_kind = "disk_full"
        retryable = True
    elif isinstance(exc, (InvalidMediaError, ModelUnavailableError)):
        message = str(exc)
        kind = "invalid_input" if isinstance(exc, InvalidMediaError) else "model_unavailable"
        retryable = False
    else:
        message = str(exc) or exc.__class__.__name__
        retryable = not isinstance(exc, PipelineError) or exc.retryable
        kind = getattr(exc, "error_kind", None) or ("internal" if retryable else "invalid_input")
        retry_kind = "transient"
        log.error("job %s (%s) failed: %s\n%s", ctx.job_id, job["task"], message, traceback.format_exc())
    if retryable and job["attempts"] < job["max_attempts"]:
        delay = backoff_seconds(job["attempts"])
        _record_outcome(
            ctx,
            JobStatus.PENDING,
            f"run_after = now() + make_interval(secs => {int(delay)}), ",
            last_error=message,
            error_kind=retry_kind,
            stage=f"retrying in {delay} s (attempt {job['attempts']} of {job['max_attempts']})",
        )
    else:
        _record_outcome(ctx, JobStatus.FAILED, error_kind=kind, last_error=message)
