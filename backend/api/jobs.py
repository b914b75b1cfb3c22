"""Processing jobs and the queue: list, get, cancel, retry, requeue skipped work, stats, recovery."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import BadRequest, NotFound

from backend import jobs
from backend.api.common import services
from backend.api.pagination import choice_arg, page_args
from backend.serializers import job_json
from backend.tasks.registry import JobStatus

bp = Blueprint("jobs", __name__)

STATUSES = tuple(s.value for s in JobStatus)


def _job_id(job_id: str) -> str:
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        raise NotFound(f"no job with id {job_id}") from None


@bp.get("/api/jobs")
def list_jobs():
    page, per_page = page_args()
    status = choice_arg("status", STATUSES)
    task = choice_arg("task", tuple(jobs.TASKS))
    media_id = request.args.get("media_id") or None
    if media_id:
        try:
            uuid.UUID(media_id)
        except ValueError:
            raise BadRequest("media_id must be a UUID") from None
    rows = services().db.fetchall(
        """SELECT *, count(*) OVER () AS total FROM processing_jobs
           WHERE (%(status)s::text IS NULL OR status = %(status)s) AND (%(task)s::text IS NULL OR task = %(task)s)
             AND (%(media)s::uuid IS NULL OR media_id = %(media)s::uuid)
           ORDER BY created_at DESC, id LIMIT %(limit)s OFFSET %(offset)s""",
        {"status": status, "task": task, "media": media_id, "limit": per_page, "offset": (page - 1) * per_page},
    )
    total = rows[0]["total"] if rows else 0
    ahead = jobs.jobs_ahead(services(), [r["id"] for r in rows if r["status"] == "queued"])
    return jsonify(jobs=[job_json(r, ahead.get(str(r["id"]))) for r in rows], page=page, per_page=per_page, total=total)


@bp.get("/api/jobs/<job_id>")
def get_job(job_id: str):
    job = jobs.get_job(services(), _job_id(job_id))
    if job is None:
        raise NotFound(f"no job with id {job_id}") from None
    return jsonify(job_json(job, jobs.jobs_ahead(services(), [job["id"]]).get(str(job["id"]))))


@bp.post("/api/jobs/<job_id>/cancel")
def cancel(job_id: str):
    return jsonify(job_json(jobs.cancel(services(), _job_id(job_id))))


@bp.post("/api/jobs/<job_id>/retry")
def retry(job_id: str):
    return jsonify(job_json(jobs.retry(services(), _job_id(job_id)))), 202


@bp.get("/api/jobs/requeue-skipped")
def requeueable():
    """How many skipped jobs would be queued now (their features were turned on since)."""
    counts = jobs.requeueable_counts(services())
    return jsonify(count=sum(counts.values()), by_task=counts)


@bp.post("/api/jobs/requeue-skipped")
def requeue_skipped():
    body = request.get_json(silent=True) or {}
    task = body.get("task") if isinstance(body, dict) else None
    if task is not None and task not in jobs.TASKS:
        raise BadRequest(f"task must be one of: {', '.join(jobs.TASKS)}")
    requeued = jobs.requeue_skipped(services(), task)
    still_off = {
        t: jobs.skip_reason(services().settings, t) for t in jobs.TASKS if jobs.disabled_flags(services().settings, t)
    }
    return jsonify(requeued=[job_json(j) for j in requeued], count=len(requeued), still_disabled=still_off)


@bp.get("/api/queue/stats")
def stats():
    return jsonify(jobs.queue_stats(services()))


@bp.post("/api/queue/recover")
def recover():
    """Re-send work PostgreSQL knows about but Redis lost, and take back jobs from dead workers."""
    return jsonify(jobs.reconcile(services()))
