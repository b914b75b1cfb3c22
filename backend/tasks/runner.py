"""The function RQ runs for every job: claim it in PostgreSQL, run its handler, record the outcome.

Failures are classified: bad input and unavailable models fail at once with the reason; anything
else is retried with exponential backoff until the job's attempts are used up.
"""

from __future__ import annotations

import logging
import threading
import traceback

from rq.timeouts import JobTimeoutException

from ai.errors import Cancelled, InvalidMediaError, ModelUnavailableError, PipelineError
from backend.db import jsonb
from backend.jobs import disabled_flags, skip_reason
from backend.services import Services
from backend.settings import get_settings
from backend.tasks.context import TaskContext, worker_name
from backend.tasks.registry import TASKS, JobStatus

log = logging.getLogger(__name__)

_services: Services | None = None
_services_lock = threading.Lock()
current_job_id: str | None = None  # read by the worker's heartbeat thread


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
    sets = ", ".join(f"{k} = %s" for k in fields)
    values = [jsonb(v) if k == "result" else v for k, v in fields.items()]
    services.db.execute(
        f"UPDATE processing_jobs SET status = %s, {sets + ', ' if sets else ''}finished_at = now(), updated_at = now(),"
        " heartbeat_at = NULL WHERE id = %s AND status = 'processing'",
        [status, *values, job_id],
    )


def run_job(job_id: str) -> dict | None:
    global current_job_id
    services = get_services()
    settings = services.settings
    with services.db.connection() as conn:
        job = conn.execute(
            "UPDATE processing_jobs SET status = 'processing', attempts = attempts + 1, started_at = now(),"
            " heartbeat_at = now(), worker_name = %s, stage = 'starting', last_error = CASE WHEN error_kind ="
            " 'worker_lost' THEN last_error END, updated_at = now()"
            " WHERE id = %s AND status IN ('pending', 'queued') RETURNING *",
            (worker_name(), job_id),
        ).fetchone()
        if job is None:  # cancelled, or already taken by another worker
            log.info("job %s is no longer queued; nothing to do", job_id)
            return None
        item = (
            conn.execute("SELECT * FROM media_items WHERE id = %s", (job["media_id"],)).fetchone()
            if job["media_id"]
            else None
        )
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
    current_job_id = job_id
    try:
        result = TASKS[job["task"]].resolve()(ctx) or {}
        services.db.execute(
            "UPDATE processing_jobs SET status = 'completed', result = %s, stage = 'done', finished_at = now(),"
            " progress_done = COALESCE(progress_total, GREATEST(progress_done, 1)),"
            " progress_total = COALESCE(progress_total, GREATEST(progress_done, 1)), error_kind = NULL,"
            " last_error = NULL, heartbeat_at = NULL, updated_at = now() WHERE id = %s AND status = 'processing'",
            (jsonb(result), job_id),
        )
        return result
    except Cancelled:
        log.info("job %s cancelled", job_id)
        _finish(services, job_id, JobStatus.CANCELLED, stage="cancelled")
    except JobTimeoutException:
        _finish(
            services,
            job_id,
            JobStatus.FAILED,
            error_kind="timeout",
            last_error=f"the job took longer than its time limit of {job['timeout_s']} s and was stopped",
        )
    except (InvalidMediaError, ModelUnavailableError) as exc:
        kind = "invalid_input" if isinstance(exc, InvalidMediaError) else "model_unavailable"
        _finish(services, job_id, JobStatus.FAILED, error_kind=kind, last_error=str(exc))
    except Exception as exc:  # transient or unexpected: retry with backoff while attempts remain
        retryable = not isinstance(exc, PipelineError) or exc.retryable
        message = str(exc) or exc.__class__.__name__
        log.error("job %s (%s) failed: %s\n%s", job_id, job["task"], message, traceback.format_exc())
        if retryable and job["attempts"] < job["max_attempts"]:
            delay = backoff_seconds(job["attempts"])
            services.db.execute(
                "UPDATE processing_jobs SET status = 'pending', run_after = now() + make_interval(secs => %s),"
                " last_error = %s, error_kind = 'transient', stage = %s, heartbeat_at = NULL, updated_at = now()"
                " WHERE id = %s AND status = 'processing'",
                (delay, message, f"retrying in {delay} s (attempt {job['attempts']} of {job['max_attempts']})", job_id),
            )
        else:
            kind = getattr(exc, "error_kind", None) or ("internal" if retryable else "invalid_input")
            _finish(services, job_id, JobStatus.FAILED, error_kind=kind, last_error=message)
    finally:
        current_job_id = None
        ctx.cleanup()
    return None
