"""HTTP API for background removal.

``POST /remove-bg``: a photo in, a PNG out (synchronous: one inference).
``POST /remove-bg-video``: a video in, 202 with a job id; the work runs on a one-worker thread pool in
this process (a video takes minutes on CPU, longer than an HTTP request should stay open).
``GET /remove-bg-video/<id>`` reports status and progress, ``GET /remove-bg-video/<id>/result`` returns
the file, ``DELETE /remove-bg-video/<id>`` cancels a job or discards a finished one. Finished jobs and
their files expire after ``JOB_TTL_SECONDS``.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, jsonify, request, send_file, url_for
from werkzeug.datastructures import FileStorage

from ai.config import parse_bool
from ai.errors import Cancelled, InvalidMediaError, ModelUnavailableError, PipelineError

bp = Blueprint("api_segmentation", __name__)

JOB_TTL_SECONDS = 3600
_EXTENSION_KEY = "parallax_cutout_jobs"
_MIME = {"webm": "video/webm", "mp4": "video/mp4", "mov": "video/quicktime"}


class _BadRequest(Exception):
    pass


@bp.errorhandler(_BadRequest)
def _bad_request(exc):
    return jsonify(error={"code": "bad_request", "message": str(exc)}), 400


def _error(code: str, message: str, status: int):
    return jsonify(error={"code": code, "message": message}), status


def _upload(*names: str) -> FileStorage:
    for name in names:
        upload = request.files.get(name)
        if upload is not None and upload.filename is not None:
            return upload
    raise _BadRequest(f"no file uploaded: send it as multipart form field {' or '.join(repr(n) for n in names)}")


def _save_upload(upload: FileStorage, folder: Path) -> Path:
    suffix = Path(upload.filename or "").suffix.lower()[:10]  # kept only to help a human reading temp files
    path = folder / f"source{suffix if suffix.isascii() else ''}"
    upload.save(path)
    return path


def _model_name() -> str:
    from ai.segmentation import UnknownSegmentationModelError, segmentation_model_info

    name = (request.form.get("model") or current_app.config["AI_SETTINGS"].segmentation_model).strip()
    try:
        segmentation_model_info(name)
    except UnknownSegmentationModelError as exc:
        raise _BadRequest(str(exc)) from None
    return name


def _model(name: str, device: str):
    """The process-wide model instance, on the configured device (AI_DEVICE=cpu keeps it off the GPU)."""
    from ai.segmentation import get_segmentation_model

    return get_segmentation_model(name, device="cpu" if device == "cpu" else "auto")


def _flag(name: str) -> bool:
    value = (request.form.get(name) or "").strip()
    try:
        return parse_bool(value or "false")
    except ValueError:
        raise _BadRequest(f"{name} must be true or false, got {value!r}") from None


def _background(field_name: str) -> str | None:
    from ai.cutout import InvalidOptionError, parse_background

    value = request.form.get(field_name)
    try:
        parse_background(value)
    except InvalidOptionError as exc:
        raise _BadRequest(str(exc)) from None
    return value


@bp.post("/remove-bg")
def remove_background():
    """Multipart ``image`` (or ``file``); form ``model``, ``output`` (transparent|mask), ``background``."""
    from ai.cutout import PHOTO_OUTPUTS, InvalidOptionError, photo_cutout

    upload = _upload("image", "file")
    model = _model_name()
    output = (request.form.get("output") or "transparent").strip().lower()
    if output not in PHOTO_OUTPUTS:
        raise _BadRequest(f"output must be {' or '.join(PHOTO_OUTPUTS)}, got {output!r}")
    background = _background("background")
    with tempfile.TemporaryDirectory(prefix="parallax-remove-bg-") as tmp:
        src = _save_upload(upload, Path(tmp))
        dst = Path(tmp) / "cutout.png"
        try:
            meta = photo_cutout(
                src,
                dst,
                model=_model(model, current_app.config["AI_SETTINGS"].device),
                output=output,
                background=background,
            )
        except InvalidOptionError as exc:
            raise _BadRequest(str(exc)) from None
        data = dst.read_bytes()  # read before the folder goes away
    response = send_file(io.BytesIO(data), mimetype="image/png", download_name=f"cutout_{output}.png")
    response.headers["X-Cutout-Model"] = meta["model"]
    response.headers["X-Cutout-Coverage"] = str(meta["coverage"])
    response.headers["X-Cutout-Size"] = f"{meta['width']}x{meta['height']}"
    return response


@dataclass
class VideoJob:
    id: str
    folder: Path
    source: Path
    filename: str
    options: dict[str, Any]
    status: str = "queued"  # queued | running | finished | failed | cancelled
    done: int = 0
    total: int | None = None
    stage: str = "queued"
    error: dict[str, str] | None = None
    result: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    cancel_requested: bool = False

    @property
    def result_path(self) -> Path:
        return self.folder / self.filename

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.id,
            "status": self.status,
            "progress": {"done": self.done, "total": self.total, "stage": self.stage},
            "error": self.error,
            "result": self.result,
            "filename": self.filename,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


class VideoJobStore:
    """In-memory jobs of one app, one worker thread, each job in its own temp folder."""

    def __init__(self, ttl_seconds: float = JOB_TTL_SECONDS) -> None:
        self.ttl_seconds = ttl_seconds
        self.root = Path(tempfile.mkdtemp(prefix="parallax-cutout-jobs-"))
        self.jobs: dict[str, VideoJob] = {}
        self.lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cutout-video")
        # Remove the job folders when the store goes away or the process exits.
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.root, True)

    def new_folder(self) -> tuple[str, Path]:
        job_id = uuid.uuid4().hex
        folder = self.root / job_id
        folder.mkdir()
        return job_id, folder

    def submit(self, job: VideoJob) -> None:
        with self.lock:
            self.jobs[job.id] = job
        self.executor.submit(self._run, job)

    def get(self, job_id: str) -> VideoJob | None:
        self.expire()
        with self.lock:
            return self.jobs.get(job_id)

    def discard(self, job: VideoJob) -> None:
        with self.lock:
            self.jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def expire(self) -> None:
        now = time.time()
        with self.lock:
            old = [j for j in self.jobs.values() if j.finished_at and now - j.finished_at > self.ttl_seconds]
            for job in old:
                del self.jobs[job.id]
        for job in old:
            shutil.rmtree(job.folder, ignore_errors=True)

    def _run(self, job: VideoJob) -> None:
        from ai.cutout import video_cutout

        if job.cancel_requested:
            self._finish(job, "cancelled")
            return
        job.status, job.stage = "running", "starting"

        def progress(done: int, total: int | None, stage: str) -> None:
            if job.cancel_requested:
                raise Cancelled()
            job.done, job.total, job.stage = done, total, stage

        partial = job.folder / f"partial-{job.filename}"
        try:
            options = dict(job.options)
            options["model"] = _model(options["model"], options.pop("device"))
            job.result = video_cutout(job.source, partial, progress=progress, **options)
            partial.rename(job.result_path)
            self._finish(job, "finished")
        except Cancelled:
            self._finish(job, "cancelled")
        except InvalidMediaError as exc:
            self._finish(job, "failed", {"code": "invalid_media", "message": str(exc)})
        except ModelUnavailableError as exc:
            self._finish(job, "failed", {"code": "model_unavailable", "message": str(exc)})
        except PipelineError as exc:
            self._finish(job, "failed", {"code": "processing_failed", "message": str(exc)})
        except Exception as exc:  # a worker thread must never die silently
            current = f"{type(exc).__name__}: {exc}"
            self._finish(job, "failed", {"code": "internal_error", "message": current})
        finally:
            if partial.exists():
                partial.unlink()
            job.source.unlink(missing_ok=True)  # the upload is not needed any more

    def _finish(self, job: VideoJob, status: str, error: dict[str, str] | None = None) -> None:
        job.status, job.error, job.finished_at = status, error, time.time()
        job.stage = status

    def shutdown(self) -> None:
        with self.lock:
            for job in self.jobs.values():
                job.cancel_requested = True
        self.executor.shutdown(wait=True, cancel_futures=True)
        self._cleanup()


def job_store() -> VideoJobStore:
    store = current_app.extensions.get(_EXTENSION_KEY)
    if store is None:
        store = current_app.extensions[_EXTENSION_KEY] = VideoJobStore()
    return store


def _job_or_404(job_id: str) -> VideoJob:
    job = job_store().get(job_id)
    if job is None:
        raise _NotFound(f"no video job {job_id!r} (unknown, or expired after {JOB_TTL_SECONDS // 60} minutes)")
    return job


class _NotFound(Exception):
    pass


@bp.errorhandler(_NotFound)
def _not_found(exc):
    return _error("not_found", str(exc), 404)


@bp.post("/remove-bg-video")
def remove_background_video():
    """Multipart ``video`` (or ``file``); form ``model``, ``background_type``, ``prores``, ``height``."""
    from ai.cutout import InvalidOptionError, cutout_video_filename
    from ai.frames import probe_source_video

    upload = _upload("video", "file")
    model = _model_name()
    background = _background("background_type") or "transparent"
    prores = _flag("prores")
    try:
        filename = cutout_video_filename(background, prores)
    except InvalidOptionError as exc:
        raise _BadRequest(str(exc)) from None
    height = None
    if request.form.get("height", "").strip():
        try:
            height = int(request.form["height"])
            if height < 2:
                raise ValueError
        except ValueError:
            raise _BadRequest(f"height must be a whole number of pixels >= 2, got {request.form['height']!r}") from None

    store = job_store()
    store.expire()
    job_id, folder = store.new_folder()
    try:
        source = _save_upload(upload, folder)
        probe_source_video(source)  # reject a non-video now (422), not minutes later in the job
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    job = VideoJob(
        id=job_id,
        folder=folder,
        source=source,
        filename=filename,
        options={
            "model": model,
            "background": background,
            "prores": prores,
            "height": height,
            "device": current_app.config["AI_SETTINGS"].device,
        },
    )
    store.submit(job)
    body = {
        "job_id": job_id,
        "status": job.status,
        "status_url": url_for("api_segmentation.video_job_status", job_id=job_id),
        "result_url": url_for("api_segmentation.video_job_result", job_id=job_id),
    }
    return jsonify(body), 202, {"Location": body["status_url"]}


@bp.get("/remove-bg-video/<job_id>")
def video_job_status(job_id: str):
    return jsonify(_job_or_404(job_id).to_dict())


@bp.get("/remove-bg-video/<job_id>/result")
def video_job_result(job_id: str):
    job = _job_or_404(job_id)
    if job.status != "finished":
        message = f"the job is {job.status}; the result is available once it is finished" + (
            f" ({job.error['message']})" if job.error else ""
        )
        return _error("not_finished", message, 409)
    return send_file(
        job.result_path, mimetype=_MIME[job.filename.rsplit(".", 1)[-1]], as_attachment=True, download_name=job.filename
    )


@bp.delete("/remove-bg-video/<job_id>")
def video_job_delete(job_id: str):
    """Cancel a queued or running job; discard a finished one and its file."""
    job = _job_or_404(job_id)
    if job.finished_at is None:
        job.cancel_requested = True
        return jsonify(job_id=job.id, status="cancelling"), 202
    job_store().discard(job)
    return "", 204
