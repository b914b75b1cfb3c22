"""The original AI service's endpoints, served by the backend over the one job system.

``POST /api/depth``, ``POST /remove-bg``, ``POST /api/video/frames`` and ``POST /api/video/depth`` store
the upload as a media item (deduplicated by content, like any upload), queue one job with the request's
parameters on the RQ queue and wait for it a bounded time (form field ``wait``): the result comes back
in the response, or 202 with the job when it takes longer. ``POST /remove-bg-video`` answers 202 at once.
``GET /jobs`` and ``GET /jobs/{job_id}`` show those jobs (the same rows as /api/jobs) with a
``result_url`` once they have completed. Only the worker loads models; this process never does.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from flask import jsonify, make_response, send_file
from flask_openapi3 import APIBlueprint, FileStorage, Tag
from flask_openapi3.types import ResponseDict
from pydantic import BaseModel, Field, field_validator, model_validator

from backend import jobs
from backend.api.common import api_error, services
from backend.api.jobs import find_job_or_404, list_job_rows
from backend.api.media import uploaded_file
from backend.media_service import ingest_file
from backend.schemas import (
    INFERENCE_WAIT_MAX_S,
    Background,
    CutoutParams,
    DepthParams,
    Error,
    FrameHeight,
    FrameParams,
    Job,
    JobListQuery,
    JobPath,
    ModelName,
    Page,
    Strict,
    TaskParameters,
    VideoDepthParams,
    binary,
    json_response,
)
from backend.serializers import job_json

bp = APIBlueprint(
    "inference", __name__, abp_tags=[Tag(name="inference", description="the original AI service's calls, queued")]
)
DEFAULT_WAIT_S = 60.0
POLL_S = 0.2
PHOTO_FIELDS = ("image", "file")
VIDEO_FIELDS = ("video", "file")


# --- request and response models -------------------------------------------------------------------
class Waiting(BaseModel):
    wait: float = Field(
        DEFAULT_WAIT_S,
        ge=0,
        le=INFERENCE_WAIT_MAX_S,
        description="seconds to wait for the result before answering 202 with the job",
    )


class PhotoUpload(Waiting):
    image: FileStorage | None = Field(None, description="the photo")
    file: FileStorage | None = Field(None, description="the photo (another field name)")


class VideoFile(BaseModel):
    video: FileStorage | None = Field(None, description="the video")
    file: FileStorage | None = Field(None, description="the video (another field name)")


class VideoUpload(VideoFile, Waiting):
    pass


class DepthForm(PhotoUpload, DepthParams):
    pass


class FramesForm(VideoUpload, FrameParams):
    pass


class VideoDepthForm(VideoUpload, VideoDepthParams):
    pass


def _known_segmentation_model(name: str | None) -> str | None:
    from ai.segmentation import UnknownSegmentationModelError, segmentation_model_info

    if name is not None:
        try:
            segmentation_model_info(name)
        except UnknownSegmentationModelError as exc:
            raise ValueError(str(exc)) from None
    return name


class RemoveBgForm(PhotoUpload, Strict):
    model: ModelName | None = Field(None, description="a rembg model name (docs/background-removal.md lists them)")
    output: str | None = Field(None, pattern="^(transparent|mask)$", description="transparent (default) or mask")
    background: Background | None = None

    _model_known = field_validator("model")(_known_segmentation_model)

    @model_validator(mode="after")
    def _mask_has_no_background(self):
        if self.output == "mask" and self.background not in (None, "transparent"):
            raise ValueError("output=mask is a grayscale matte: it takes no background colour")
        return self

    def parameters(self) -> CutoutParams:
        background = "mask" if self.output == "mask" else self.background
        return CutoutParams(model=self.model, background=background)


class RemoveBgVideoForm(VideoFile, Strict):
    model: ModelName | None = Field(None, description="a rembg model name (docs/background-removal.md lists them)")
    background_type: Background | None = Field(None, description="transparent, green, blue, white, black, #rrggbb")
    prores: bool | None = Field(None, description="ProRes 4444 MOV instead of WebM (transparent only)")
    height: FrameHeight | None = Field(None, description="scale the output down to this height")

    _model_known = field_validator("model")(_known_segmentation_model)

    @model_validator(mode="after")
    def _prores_is_transparent(self):
        if self.prores and self.background_type not in (None, "transparent"):
            raise ValueError("ProRes 4444 output is only for a transparent background")
        if self.background_type == "mask":
            raise ValueError("background_type=mask is for photos only")
        return self

    def parameters(self) -> TaskParameters:
        return TaskParameters(model=self.model, background=self.background_type, prores=self.prores, height=self.height)


class InferenceJob(Job):
    job_id: str = Field(description="the same as id")
    status_url: str
    result_url: str | None = Field(description="where to download the result, once the job has completed")


class InferenceJobList(Page):
    jobs: list[InferenceJob]


class FrameInfo(Strict):
    index: int
    time: float
    width: int
    height: int


class FramesSummary(Strict):
    method: str
    requested_fps: float | None
    max_frames: int
    frame_count: int
    frames: list[FrameInfo]


# --- the flow shared by every endpoint -----------------------------------------------------------
def inference_job_json(job: dict) -> dict:
    body = job_json(job)
    status_url = f"/jobs/{body['id']}"
    return {
        **body,
        "job_id": body["id"],
        "status_url": status_url,
        "result_url": f"{status_url}/result" if job["status"] == "completed" else None,
    }


def _start_job(item: dict, task: str, parameters: dict) -> dict:
    """The item's running job for ``task`` when it was asked with the same parameters, else a new one."""
    svc = services()
    for _ in range(2):  # a second try when another request created the same job meanwhile
        active = svc.db.fetchone(
            "SELECT * FROM processing_jobs WHERE media_id = %s AND task = %s AND status = ANY(%s)",
            (item["id"], task, list(jobs.ACTIVE)),
        )
        if active is not None:
            if (active["parameters"] or {}) == parameters:
                return active
            raise jobs.JobError(
                f"this file's {task} job is running with other parameters; ask again when it has finished"
                f" (GET /jobs/{active['id']})"
            )
        try:
            with svc.db.connection() as conn:
                job = jobs.create_job(conn, svc.settings, task, item, parameters)
        except psycopg.errors.UniqueViolation:
            continue
        jobs.enqueue(svc, [job["id"]])
        return jobs.get_job(svc, job["id"]) or job
    raise jobs.JobError(f"could not start the {task} job; try again")


def _wait(job: dict, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while job["status"] in jobs.ACTIVE and time.monotonic() < deadline:
        time.sleep(POLL_S)
        job = jobs.get_job(services(), job["id"]) or job
    return job


FAILURE_STATUS = {"invalid_input": (422, "invalid_media"), "model_unavailable": (503, "model_unavailable")}


def _not_done(job: dict):
    """The answer for a job that has no result (yet): 202 while it runs, else why it has none."""
    body = inference_job_json(job)
    if job["status"] in jobs.ACTIVE:
        return make_response(jsonify(body), 202, {"Location": body["status_url"]})
    if job["status"] == "failed":
        status, code = FAILURE_STATUS.get(job["error_kind"], (500, "job_failed"))
        return make_response(*api_error(status, code, job["last_error"] or "the job failed", job=body))
    if job["status"] == "skipped":
        return make_response(*api_error(409, "feature_disabled", job["skip_reason"], job=body))
    return make_response(*api_error(409, "cancelled", "the job was cancelled", job=body))


def _run(task: str, fields: tuple[str, ...], parameters: BaseModel, wait: float):
    """Store the upload, queue ``task`` on it and wait up to ``wait`` s: the finished job, or a response."""
    svc = services()
    tmp, filename = uploaded_file(*fields)
    if tmp is None:
        return None, api_error(
            400, "bad_request", f"missing file: send it as multipart/form-data field {' or '.join(map(repr, fields))}"
        )
    reason = jobs.skip_reason(svc.settings, task)
    if reason:
        tmp.unlink(missing_ok=True)
        return None, api_error(409, "feature_disabled", reason)
    item = ingest_file(svc, tmp, filename, create_jobs=False).item
    wanted = jobs.TASKS[task].media_kind
    if item["kind"] != wanted:
        return None, api_error(
            422, "invalid_media", f"this endpoint takes a {wanted}; the file is a {item['kind']} ({item['mime_type']})"
        )
    job = _wait(_start_job(item, task, parameters.model_dump(exclude_none=True)), wait)
    if job["status"] != "completed":
        return None, _not_done(job)
    return job, None


def _asset_of(job: dict) -> dict | None:
    asset_id = (job["result"] or {}).get("asset_id")
    return services().db.fetchone("SELECT * FROM derived_assets WHERE id = %s", (asset_id,)) if asset_id else None


def _send(job: dict, download_name: str | None = None, **headers):
    asset = _asset_of(job)
    if asset is None:
        return api_error(404, "not_found", "the result was removed (its media item was deleted)")
    response = send_file(
        services().storage.path(asset["path"]),
        mimetype=asset["mime_type"],
        download_name=download_name or Path(asset["path"]).name,
        conditional=True,
    )
    meta = asset["metadata"] or {}
    response.headers["X-Job-Id"] = str(job["id"])
    response.headers["X-Media-Id"] = str(job["media_id"])
    for name, key in headers.items():
        if meta.get(key) is not None:
            response.headers[name.replace("_", "-")] = str(meta[key])
    return response


QUEUED: ResponseDict = {202: InferenceJob}
FAILED: ResponseDict = {
    400: Error,
    409: json_response(Error, "feature off (feature_disabled), cancelled, or running with other parameters"),
    413: Error,
    422: json_response(Error, "not a photo/video, or the job found the file unusable (invalid_media)"),
    500: json_response(Error, "the job failed (job_failed; error.job has the details)"),
    503: json_response(Error, "the model is not available (model_unavailable)"),
}


def synchronous(result: type[BaseModel] | dict) -> ResponseDict:
    """The answers of a call that waits for its job: the result, the job (202), or why there is none."""
    return {200: result, **QUEUED, **FAILED}


def parameters_of(form: BaseModel, model: type[BaseModel]) -> BaseModel:
    """The task parameters among a form's fields (the file and ``wait`` are not parameters)."""
    return model(**form.model_dump(include=set(model.model_fields)))


# --- endpoints -----------------------------------------------------------------------------------
@bp.post(
    "/api/depth",
    summary="Depth map of a photo (grayscale PNG)",
    responses=synchronous(binary("headers X-Depth-Polarity, X-Depth-Bit-Depth, X-Depth-Model", "image/png")),
)
def photo_depth(form: DepthForm):
    job, answer = _run("depth", PHOTO_FIELDS, parameters_of(form, DepthParams), form.wait)
    return answer or _send(
        job, "depth.png", X_Depth_Polarity="polarity", X_Depth_Bit_Depth="bit_depth", X_Depth_Model="model"
    )


@bp.post(
    "/remove-bg",
    summary="Cut-out of a photo: transparent PNG, a grayscale mask, or on a colour",
    responses=synchronous(binary("headers X-Cutout-Model, X-Cutout-Coverage, X-Cutout-Size", "image/png")),
)
def remove_background(form: RemoveBgForm):
    job, answer = _run("cutout", PHOTO_FIELDS, form.parameters(), form.wait)
    if answer:
        return answer
    response = _send(
        job,
        f"cutout_{job['result'].get('background', 'transparent')}.png",
        X_Cutout_Model="model",
        X_Cutout_Coverage="coverage",
    )
    meta = (_asset_of(job) or {}).get("metadata") or {}
    if meta.get("width"):
        response.headers["X-Cutout-Size"] = f"{meta['width']}x{meta['height']}"
    return response


@bp.post(
    "/remove-bg-video",
    summary="Cut-out of a video (WebM with alpha, ProRes MOV, or MP4 on a colour): 202 with the job",
    responses={**QUEUED, **FAILED},
)
def remove_background_video(form: RemoveBgVideoForm):
    job, answer = _run("video_cutout", VIDEO_FIELDS, form.parameters(), 0)
    return answer or make_response(jsonify(inference_job_json(job)), 202, {"Location": f"/jobs/{job['id']}"})


@bp.post(
    "/api/video/frames",
    summary="The frames of a video that depth would use: times and sizes",
    responses=synchronous(FramesSummary),
)
def video_frames(form: FramesForm):
    job, answer = _run("video_frames", VIDEO_FIELDS, parameters_of(form, FrameParams), form.wait)
    return answer or jsonify(job["result"])


@bp.post(
    "/api/video/depth",
    summary="Depth frames of a video: ZIP of PNGs (and colour frames) with manifest.json",
    responses=synchronous(binary("headers X-Depth-Polarity, X-Frame-Count", "application/zip")),
)
def video_depth(form: VideoDepthForm):
    params = parameters_of(form, VideoDepthParams)
    job, answer = _run("video_depth", VIDEO_FIELDS, params, form.wait)
    return answer or _send(job, "depth.zip", X_Depth_Polarity="polarity", X_Frame_Count="frame_count")


@bp.get(
    "/jobs",
    summary="Jobs, newest first, with a result URL once completed",
    responses={200: InferenceJobList, 400: Error},
)
def list_inference_jobs(query: JobListQuery):
    rows, total = list_job_rows(query)
    return jsonify(jobs=[inference_job_json(r) for r in rows], page=query.page, per_page=query.per_page, total=total)


@bp.get(
    "/jobs/<job_id>", summary="One job: status, progress, error, result URL", responses={200: InferenceJob, 404: Error}
)
def get_inference_job(path: JobPath):
    return jsonify(inference_job_json(find_job_or_404(path.job_id)))


@bp.get(
    "/jobs/<job_id>/result",
    summary="A completed job's result: its file, or JSON for a frame list",
    responses={
        200: binary(
            "the result",
            "image/png",
            "application/zip",
            "video/webm",
            "video/mp4",
            "video/quicktime",
            "application/json",
        ),
        404: Error,
        409: json_response(Error, "the job has not completed (not_finished)"),
    },
)
def inference_job_result(path: JobPath):
    job = find_job_or_404(path.job_id)
    if job["status"] != "completed":
        detail = f": {job['last_error']}" if job["status"] == "failed" and job["last_error"] else ""
        return api_error(
            409, "not_finished", f"the job is {job['status']}{detail}; the result is there once it has completed"
        )
    if _asset_of(job) is None and "asset_id" not in (job["result"] or {}):
        return jsonify(job["result"])
    return _send(job)
