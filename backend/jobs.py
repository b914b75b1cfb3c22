"""Processing jobs: which tasks apply, feature flags, queueing, cancel/retry and recovery.

PostgreSQL is the record of every job's state; Redis only carries work. Anything lost from Redis
(a flush, a restart without persistence) is found again by :func:`reconcile` and queued again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob

from backend.db import jsonb, one
from backend.services import Services
from backend.settings import Settings
from backend.tasks.registry import (
    QUEUE_PRIORITY,
    TASKS,
    JobStatus,
    TaskSpec,
    job_queue,
    queue_name,
    tasks_for_kind,
)

__all__ = ["ACTIVE", "FINISHED", "TASKS", "JobError", "JobStatus", "TaskSpec", "tasks_for_kind"]

log = logging.getLogger(__name__)

ACTIVE: tuple[str, ...] = tuple(JobStatus.active())
FINISHED: tuple[str, ...] = tuple(JobStatus.finished())
RUN_JOB = "backend.tasks.runner.run_job"
IMMICH_IMPORT_TIMEOUT_S = 24 * 3600


class JobError(Exception):
    """A request about a job that cannot be honoured (wrong state); ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int = 409, code: str = "conflict") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def disabled_flags(settings: Settings, task: str) -> list[str]:
    return TASKS[task].disabled_flags(settings)


def skip_reason(settings: Settings, task: str) -> str | None:
    off = disabled_flags(settings, task)
    if not off:
        return None
    what = TASKS[task].title.lower()
    return f"{what} is turned off; set {' and '.join(f + '=true' for f in off)} to enable it"


def job_timeout(settings: Settings, task: str, item: dict | None, parameters: dict) -> int:
    """A time limit that scales with the work: a base plus a per-frame allowance for videos."""
    if task == "immich_import":
        return IMMICH_IMPORT_TIMEOUT_S  # a whole library; progress is recorded as it goes
    frames = 1
    if item and item.get("kind") == "video":
        if task == "video_depth":
            frames = int(parameters.get("max_frames") or settings.video_max_frames)
        else:
            # Every frame, but never more than a cut-out may process: a file declaring hours of video
            # does not buy a day-long limit (the run itself also stops at the cap).
            duration = item.get("duration_s") or 0
            fps = item.get("fps") or 30
            declared = int(duration * fps) if duration else settings.video_cutout_max_frames
            frames = min(declared, settings.video_cutout_max_frames, int(settings.video_cutout_max_seconds * fps))
    return int(settings.job_timeout_base_s + settings.job_timeout_per_frame_s * frames)


def create_job(
    conn, settings: Settings, task: str, item: dict | None, parameters: dict | None = None, respect_flags: bool = True
) -> dict:
    parameters = dict(parameters or {})
    reason = skip_reason(settings, task) if respect_flags else None
    off = disabled_flags(settings, task) if reason else []
    status = "skipped" if reason else "pending"
    row = conn.execute(
        "INSERT INTO processing_jobs (id, media_id, task, parameters, status, max_attempts, skip_reason,"
        " enable_with, timeout_s, finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " CASE WHEN %s = 'skipped' THEN now() END) RETURNING *",
        (
            uuid.uuid4(),
            item["id"] if item else None,
            task,
            jsonb(parameters),
            status,
            settings.job_max_attempts,
            reason,
            ",".join(off) or None,
            job_timeout(settings, task, item, parameters),
            status,
        ),
    ).fetchone()
    return row


def create_jobs_for_item(conn, settings: Settings, item: dict, parameters: dict | None = None) -> list[dict]:
    return [
        create_job(conn, settings, spec.name, item, parameters)
        for spec in tasks_for_kind(item["kind"], automatic_only=True)
    ]


def enqueue(services: Services, job_ids: Iterable[Any]) -> int:
    """Send pending jobs to Redis and mark them queued. A job whose push fails stays pending in
    PostgreSQL and is picked up by the next :func:`reconcile`."""
    sent = 0
    for job_id in job_ids:
        rq_id = f"{job_id}_{uuid.uuid4().hex[:8]}"
        with services.db.connection() as conn:
            row = conn.execute(
                "UPDATE processing_jobs SET status = 'queued', queued_at = now(), rq_job_id = %s,"
                " updated_at = now() WHERE id = %s AND status IN ('pending', 'queued') RETURNING timeout_s, task,"
                " (SELECT source FROM media_items m WHERE m.id = media_id) AS source",
                (rq_id, job_id),
            ).fetchone()
            if row is None:
                continue
            queue = queue_name(services.settings, job_queue(row["task"], row["source"]))
            try:
                services.queue_for(queue).enqueue(
                    RUN_JOB,
                    str(job_id),
                    job_id=rq_id,
                    job_timeout=row["timeout_s"] or 600,
                    result_ttl=3600,
                    failure_ttl=7 * 86400,
                    description=f"parallax job {job_id}",
                )
            except Exception as exc:  # Redis down: stay pending, reconcile will retry
                conn.rollback()
                log.warning("could not queue job %s (%s); it stays pending", job_id, exc)
                continue
        sent += 1
    return sent


def _rq_job_waiting(services: Services, rq_id: str | None) -> bool:
    if not rq_id:
        return False
    try:
        job = RQJob.fetch(rq_id, connection=services.redis)
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in ("queued", "started", "deferred", "scheduled")


def reconcile(services: Services) -> dict[str, int]:
    """Bring Redis in line with PostgreSQL:
    - pending jobs whose time has come (new, or waiting out a retry backoff) are queued;
    - queued jobs whose Redis entry vanished (flush, restart) are queued again;
    - processing jobs whose worker stopped sending heartbeats (killed, machine rebooted) go back
      to the queue, or fail once their attempts are used up.
    Several processes may call this; an advisory lock lets one do it at a time."""
    settings = services.settings
    counts = {"queued": 0, "requeued": 0, "recovered": 0, "failed": 0}
    with services.db.connection() as conn:
        got = one(conn.execute("SELECT pg_try_advisory_xact_lock(7231005) AS ok").fetchone())["ok"]
        if not got:
            return counts
        lost = conn.execute(
            "SELECT id, attempts, max_attempts, worker_name FROM processing_jobs WHERE status = 'processing'"
            " AND (heartbeat_at IS NULL OR heartbeat_at < now() - make_interval(secs => %s)) FOR UPDATE SKIP LOCKED",
            (settings.job_stale_after_s,),
        ).fetchall()
        for job in lost:
            message = (
                f"the worker {job['worker_name'] or ''} stopped responding while running this job (killed or restarted)"
            ).replace("  ", " ")
            if job["attempts"] < job["max_attempts"]:
                conn.execute(
                    "UPDATE processing_jobs SET status = 'pending', last_error = %s, error_kind = 'worker_lost',"
                    " worker_name = NULL, run_after = NULL, updated_at = now() WHERE id = %s",
                    (message, job["id"]),
                )
                counts["recovered"] += 1
            else:
                conn.execute(
                    "UPDATE processing_jobs SET status = 'failed', last_error = %s, error_kind = 'worker_lost',"
                    " finished_at = now(), updated_at = now() WHERE id = %s",
                    (message, job["id"]),
                )
                counts["failed"] += 1
        queued = conn.execute("SELECT id, rq_job_id FROM processing_jobs WHERE status = 'queued'").fetchall()
        pending = conn.execute(
            "SELECT id FROM processing_jobs WHERE status = 'pending'"
            " AND (run_after IS NULL OR run_after <= now()) ORDER BY created_at"
        ).fetchall()
    missing = [j["id"] for j in queued if not _rq_job_waiting(services, j["rq_job_id"])]
    counts["requeued"] = enqueue(services, missing)
    counts["queued"] = enqueue(services, [j["id"] for j in pending])
    if any(counts.values()):
        log.info("reconciled jobs: %s", counts)
    return counts


def _lock_job(conn, job_id: str) -> dict:
    job = conn.execute("SELECT * FROM processing_jobs WHERE id = %s FOR UPDATE", (job_id,)).fetchone()
    if job is None:
        raise JobError("no such job", 404, "not_found")
    return job


def cancel(services: Services, job_id: str) -> dict:
    with services.db.connection() as conn:
        job = _lock_job(conn, job_id)
        if job["status"] not in ACTIVE:
            raise JobError(
                f"the job is already {job['status']}; only pending, queued or processing jobs can be cancelled"
            )
        # A running job sees the new status on its next progress report and stops.
        job = one(
            conn.execute(
                "UPDATE processing_jobs SET status = 'cancelled', stage = 'cancelled', finished_at = now(),"
                " updated_at = now() WHERE id = %s RETURNING *",
                (job_id,),
            ).fetchone()
        )
    if job["rq_job_id"]:
        try:
            RQJob.fetch(job["rq_job_id"], connection=services.redis).cancel()
        except Exception:  # already gone or running: the status in PostgreSQL is what counts
            pass
    return job


def retry(services: Services, job_id: str) -> dict:
    with services.db.connection() as conn:
        job = _lock_job(conn, job_id)
        if job["status"] not in ("failed", "cancelled"):
            raise JobError(f"the job is {job['status']}; only failed or cancelled jobs can be retried")
        if (
            job["media_id"]
            and conn.execute(
                "SELECT 1 FROM processing_jobs WHERE media_id = %s AND task = %s AND status IN ('pending','queued','processing')",
                (job["media_id"], job["task"]),
            ).fetchone()
        ):
            raise JobError("another run of this task is already active for this item")
        reason = skip_reason(services.settings, job["task"])
        if reason:
            raise JobError(reason, 409, "feature_disabled")
        conn.execute(
            "UPDATE processing_jobs SET status = 'pending', attempts = 0, last_error = NULL, error_kind = NULL,"
            " progress_done = 0, progress_total = NULL, stage = NULL, started_at = NULL, finished_at = NULL,"
            " run_after = NULL, updated_at = now() WHERE id = %s",
            (job_id,),
        )
    enqueue(services, [job_id])
    return load_job(services, job_id)


def requeue_skipped(services: Services, task: str | None = None) -> list[dict]:
    """Queue the skipped jobs whose feature flags are now on (after a flag was turned on)."""
    enabled = [t for t in TASKS if not disabled_flags(services.settings, t) and (task is None or t == task)]
    if not enabled:
        return []
    with services.db.connection() as conn:
        rows = conn.execute(
            "UPDATE processing_jobs j SET status = 'pending', skip_reason = NULL, enable_with = NULL, finished_at = NULL,"
            " updated_at = now() WHERE j.status = 'skipped' AND j.task = ANY(%s)"
            # only an item's newest run of a task: an older skipped run was superseded by a newer one
            " AND j.id IN (SELECT id FROM latest_jobs) AND NOT EXISTS ("
            "  SELECT 1 FROM processing_jobs o WHERE o.media_id = j.media_id AND o.task = j.task"
            "  AND o.status IN ('pending','queued','processing')) RETURNING j.id",
            (enabled,),
        ).fetchall()
    enqueue(services, [r["id"] for r in rows])
    return [load_job(services, r["id"]) for r in rows]


def reprocess(
    services: Services, item: dict, tasks: list[str] | None = None, parameters: dict | None = None
) -> list[dict]:
    """New jobs for an item (the tasks run for every item, or the ones named, on-demand ones included),
    optionally with new parameters."""
    applicable = [t.name for t in tasks_for_kind(item["kind"])]
    tasks = tasks or [t.name for t in tasks_for_kind(item["kind"], automatic_only=True)]
    wrong = [t for t in tasks if t not in applicable]
    if wrong:
        raise JobError(
            f"task(s) {', '.join(wrong)} do not apply to a {item['kind']}; choose from {', '.join(applicable)}",
            400,
            "bad_request",
        )
    created = []
    with services.db.connection() as conn:
        busy = conn.execute(
            "SELECT task FROM processing_jobs WHERE media_id = %s AND task = ANY(%s)"
            " AND status IN ('pending','queued','processing')",
            (item["id"], tasks),
        ).fetchall()
        if busy:
            raise JobError(f"already running for this item: {', '.join(r['task'] for r in busy)}; cancel it first")
        for task in tasks:
            created.append(create_job(conn, services.settings, task, item, parameters))
    enqueue(services, [j["id"] for j in created if j["status"] == "pending"])
    return [load_job(services, j["id"]) for j in created]


def jobs_ahead(services: Services, job_ids: Iterable[Any]) -> dict[str, int]:
    """For each queued job among ``job_ids``: how many queued jobs a worker takes before it (those
    in higher-priority queues, and those sent to its own queue earlier), i.e. its place in the line."""
    ranks = [
        (task, immich, QUEUE_PRIORITY.index(job_queue(task, "immich" if immich else None)))
        for task in TASKS
        for immich in (False, True)
    ]
    rows = services.db.fetchall(
        "WITH rank(task, immich, rank) AS (SELECT * FROM unnest(%s::text[], %s::bool[], %s::int[])),"
        " line AS (SELECT j.id, j.queued_at, r.rank FROM processing_jobs j"
        "   LEFT JOIN media_items m ON m.id = j.media_id"
        "   JOIN rank r ON r.task = j.task AND r.immich = (m.source IS NOT DISTINCT FROM 'immich')"
        "   WHERE j.status = 'queued')"
        " SELECT j.id, (SELECT count(*) FROM line o WHERE o.rank < j.rank"
        "   OR (o.rank = j.rank AND (o.queued_at, o.id) < (j.queued_at, j.id))) AS ahead"
        " FROM line j WHERE j.id = ANY(%s::uuid[])",
        ([r[0] for r in ranks], [r[1] for r in ranks], [r[2] for r in ranks], [str(i) for i in job_ids]),
    )
    return {str(r["id"]): r["ahead"] for r in rows}


def requeueable_counts(services: Services) -> dict[str, int]:
    """Skipped jobs per task whose features are on now: what :func:`requeue_skipped` would queue."""
    enabled = [t for t in TASKS if not disabled_flags(services.settings, t)]
    rows = services.db.fetchall(
        "SELECT task, count(*) AS n FROM latest_jobs WHERE status = 'skipped' AND task = ANY(%s) GROUP BY task",
        (enabled,),
    )
    return {r["task"]: r["n"] for r in rows}


def get_job(services: Services, job_id: Any) -> dict | None:
    return services.db.fetchone("SELECT * FROM processing_jobs WHERE id = %s", (job_id,))


def load_job(services: Services, job_id: Any) -> dict:
    """A job that must exist (just created or changed); JobError 404 if it was deleted meanwhile."""
    job = get_job(services, job_id)
    if job is None:
        raise JobError("no such job", 404, "not_found")
    return job


def queue_stats(services: Services) -> dict:
    rows = services.db.fetchall("SELECT task, status, count(*) AS n FROM processing_jobs GROUP BY task, status")
    by_status: dict[str, int] = {}
    by_task: dict[str, dict[str, int]] = {}
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + r["n"]
        by_task.setdefault(r["task"], {})[r["status"]] = r["n"]
    try:
        redis_depth = sum(queue.count for queue in services.all_queues())
        workers = live_workers(services)
    except Exception:
        redis_depth, workers = None, []
    return {"by_status": by_status, "by_task": by_task, "redis_queue_length": redis_depth, "workers": workers}


def live_workers(services: Services) -> list[dict]:
    from rq import Worker

    out = []
    workers = {w.name: w for queue in services.all_queues() for w in Worker.all(queue=queue)}
    for w in workers.values():
        out.append(
            {
                "name": w.name,
                "state": w.get_state(),
                "current_job": w.get_current_job_id(),
                "last_heartbeat": w.last_heartbeat.isoformat() if w.last_heartbeat else None,
            }
        )
    return out


def utcnow() -> datetime:
    return datetime.now(UTC)
