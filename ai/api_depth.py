"""HTTP endpoints of the AI service for depth maps and video frames (synchronous).

POST /api/depth          multipart ``image`` (or ``file``) -> grayscale PNG
POST /api/video/frames   multipart ``video`` (or ``file``) -> JSON list of the frames that would be used
POST /api/video/depth    multipart ``video`` (or ``file``) -> ZIP of depth (and colour) frames + manifest

Parameters come from the query string or form fields; a bad one is a 400 naming it. Bad media is a
422 (InvalidMediaError, handled in ai.server). Uploads live in a temp folder removed afterwards.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request, send_file
from werkzeug.utils import secure_filename

from ai.config import huggingface_cache, parse_bool

bp = Blueprint("api_depth", __name__)

POLARITIES = ("near_dark", "near_bright")
METHODS = ("interval", "keyframes")
MAX_FPS = 120.0
MAX_FRAMES_LIMIT = 10_000
MAX_HEIGHT = 4320


def _param(name: str, default: Any, parse: Callable[[str], Any], rule: str) -> Any:
    raw = request.values.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except (ValueError, TypeError):
        abort(400, description=f"invalid {name}={raw!r}: expected {rule}")


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(raw)
        return raw

    return parse


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(raw)
        return value

    return parse


def _fps(raw: str) -> float:
    value = float(raw)
    if not (math.isfinite(value) and 0 < value <= MAX_FPS):
        raise ValueError(raw)
    return value


def _height(raw: str) -> int | None:
    if raw.lower() in ("source", "original", "none"):
        return None
    return _int_between(16, MAX_HEIGHT)(raw)


def _upload(fields: tuple[str, ...], tmp: Path) -> Path:
    for field in fields:
        upload = request.files.get(field)
        if upload is not None:
            name = secure_filename(upload.filename or "") or "upload"
            path = tmp / f"input-{name}"
            upload.save(path)
            return path
    abort(400, description=f"missing file: send it as multipart/form-data field {' or '.join(repr(f) for f in fields)}")


def _settings():
    return current_app.config["AI_SETTINGS"]


def _model():
    from ai.depth import get_depth_model

    settings = _settings()
    return get_depth_model(
        settings.depth_model,
        device=settings.device,
        precision=settings.precision,
        input_size=settings.depth_input_size,
        batch_size=settings.depth_batch_size,
        cache_dir=str(huggingface_cache(settings.model_cache_dir)),
    )


def _frame_params() -> dict[str, Any]:
    return {
        "method": _param("method", "interval", _choice(METHODS), "interval or keyframes"),
        "fps": _param("fps", 1.0, _fps, f"a number of frames per second above 0 and at most {MAX_FPS:g}"),
        "max_frames": _param(
            "max_frames", 30, _int_between(1, MAX_FRAMES_LIMIT), f"a whole number from 1 to {MAX_FRAMES_LIMIT}"
        ),
        "height": _param("height", 480, _height, f"a whole number of pixels from 16 to {MAX_HEIGHT}, or 'source'"),
    }


def _depth_params() -> dict[str, Any]:
    return {
        "bit_depth": _param("bit_depth", 8, lambda raw: _choice(("8", "16"))(raw) and int(raw), "8 or 16"),
        "polarity": _param("polarity", "near_dark", _choice(POLARITIES), "near_dark or near_bright"),
    }


@bp.post("/api/depth")
def depth_of_photo():
    from ai.depth import photo_depth

    options = _depth_params()
    tmp = Path(tempfile.mkdtemp(prefix="parallax-depth-"))
    try:
        src = _upload(("image", "file"), tmp)
        dst = tmp / "depth.png"
        meta = photo_depth(src, dst, model=_model(), **options)
        data = dst.read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    response = send_file(BytesIO(data), mimetype="image/png", download_name="depth.png")
    response.headers["X-Depth-Polarity"] = meta["polarity"]
    response.headers["X-Depth-Bit-Depth"] = str(meta["bit_depth"])
    response.headers["X-Depth-Model"] = meta["model"]
    return response


@bp.post("/api/video/frames")
def video_frames():
    from ai.frames import extract_frames

    options = _frame_params()
    tmp = Path(tempfile.mkdtemp(prefix="parallax-frames-"))
    try:
        src = _upload(("video", "file"), tmp)
        frames = [
            {"index": f.index, "time": f.time, "width": f.width, "height": f.height}
            for f in extract_frames(src, **options)
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return jsonify(
        method=options["method"],
        requested_fps=options["fps"] if options["method"] == "interval" else None,
        max_frames=options["max_frames"],
        frame_count=len(frames),
        frames=frames,
    )


@bp.post("/api/video/depth")
def depth_of_video():
    from ai.depth import video_depth

    options = {
        **_frame_params(),
        **_depth_params(),
        "include_color": _param("include_color", True, parse_bool, "true or false"),
    }
    tmp = Path(tempfile.mkdtemp(prefix="parallax-video-depth-"))
    try:
        src = _upload(("video", "file"), tmp)
        dst = tmp / "depth.zip"
        original = request.files.get("video") or request.files.get("file")
        manifest = video_depth(
            src,
            dst,
            model=_model(),
            source={"filename": secure_filename((original.filename if original else None) or "") or "upload"},
            **options,
        )
        # Stream the ZIP from an open handle and delete the folder now: the data stays readable
        # until the handle closes, and nothing is left behind even if the client goes away.
        # (Response.call_on_close does not run for send_file's pass-through file responses.)
        handle = open(dst, "rb")  # noqa: SIM115 (send_file closes it after the response)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    response = send_file(handle, mimetype="application/zip", download_name="depth.zip")
    response.headers["X-Depth-Polarity"] = manifest["polarity"]
    response.headers["X-Frame-Count"] = str(manifest["frame_count"])
    return response
