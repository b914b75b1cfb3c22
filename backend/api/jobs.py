"""Processing jobs and the queue: list, get, cancel, retry, requeue skipped work, stats, recovery."""

from __future__ import annotations

import uuid

from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag
from werkzeug.exceptions import NotFound

from backend import jobs
from backend.api.common import services
from backend.schemas import (
    Error,
    Job,
    JobList,
    JobListQuery,
    JobPath,
    QueueStats,
    RecoverCounts,
    RequeueableCounts,
    RequeueBody,
    RequeueResult,
)
from backend.serializers import job_json

bp = APIBlueprint("jobs", __name__, abp_tags=[Tag(name="jobs", description="processing jobs and the queue")])


def find_job_or_404(job_id: str) -> dict:
    try:
        job = jobs.get_job(services(), str(uuid.UUID(job_id)))
    except ValueError:
        job = None
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


def job_with_position(job: dict) -> dict:
    """The job as JSON with, when it is queued, how many queued jobs start before it."""
    return job_json(job, jobs.jobs_ahead(services(), [job["id"]]).get(str(job["id"])))


def list_job_rows(query: JobListQuery) -> tuple[list[dict], int]:
    """One page of jobs, newest first, and how many match in all."""
    rows = services().db.fetchall(
        """SELECT *, count(*) OVER () AS total FROM processing_jobs
           WHERE (%(status)s::text IS NULL OR status = %(status)s) AND (%(task)s::text IS NULL OR task = %(task)s)
             AND (%(media)s::uuid IS NULL OR media_id = %(media)s::uuid)
           ORDER BY created_at DESC, id LIMIT %(limit)s OFFSET %(offset)s""",
        {
            "status": query.status,
            "task": query.task,
            "media": query.media_id,
            "limit": query.per_page,
            "offset": (query.page - 1) * query.per_page,
        },
    )
    return rows, rows[0]["total"] if rows else 0


@bp.get("/api/jobs", summary="List jobs, newest first", responses={200: JobList, 400: Error})
def list_jobs(query: JobListQuery):
    rows, total = list_job_rows(query)
    ahead = jobs.jobs_ahead(services(), [r["id"] for r in rows if r["status"] == "queued"])
    return jsonify(
        jobs=[job_json(r, ahead.get(str(r["id"]))) for r in rows], page=query.page, per_page=query.per_page, total=total
    )


@bp.get("/api/jobs/<job_id>", summary="One job: status, progress, error, result", responses={200: Job, 404: Error})
def get_job(path: JobPath):
    return jsonify(job_with_position(find_job_or_404(path.job_id)))


@bp.get(
    "/api/queue/items/<job_id>",
    summary="One job (the original design's name for GET /api/jobs/{job_id}; queueId of an upload)",
    responses={200: Job, 404: Error},
)
def get_queue_item(path: JobPath):
    return jsonify(job_with_position(find_job_or_404(path.job_id)))


@bp.post(
    "/api/jobs/<job_id>/cancel",
    summary="Cancel a pending, queued or running job",
    responses={200: Job, 404: Error, 409: Error},
)
def cancel(path: JobPath):
    return jsonify(job_json(jobs.cancel(services(), find_job_or_404(path.job_id)["id"])))


@bp.post(
    "/api/jobs/<job_id>/retry",
    summary="Run a failed or cancelled job again",
    responses={202: Job, 404: Error, 409: Error},
)
def retry(path: JobPath):
    return jsonify(job_json(jobs.retry(services(), find_job_or_404(path.job_id)["id"]))), 202


@bp.get(
    "/api/jobs/requeue-skipped",
    summary="How many skipped jobs are waiting: their feature has been turned on since",
    responses={200: RequeueableCounts},
)
def requeueable():
    """How many skipped jobs would be queued now (their features were turned on since)."""
    counts = jobs.requeueable_counts(services())
    return jsonify(count=sum(counts.values()), by_task=counts)


@bp.post(
    "/api/jobs/requeue-skipped",
    summary="Queue the jobs skipped while their feature was off",
    responses={200: RequeueResult, 400: Error},
)
def requeue_skipped(body: RequeueBody):
    svc = services()
    requeued = jobs.requeue_skipped(svc, body.task)
    still_off = {t: jobs.skip_reason(svc.settings, t) for t in jobs.TASKS if jobs.disabled_flags(svc.settings, t)}
    return jsonify(requeued=[job_json(j) for j in requeued], count=len(requeued), still_disabled=still_off)


@bp.get("/api/queue/stats", summary="Jobs by status and task, Redis queue length, workers", responses={200: QueueStats})
def stats():
    return jsonify(jobs.queue_stats(services()))


@bp.post(
    "/api/queue/recover", summary="Re-queue work Redis lost and jobs of dead workers", responses={200: RecoverCounts}
)
def recover():
    """Re-send work PostgreSQL knows about but Redis lost, and take back jobs from dead workers."""
    return jsonify(jobs.reconcile(services()))
