"""Background-removal tasks: a PNG for a photo; a WebM with alpha, a ProRes MOV or an MP4 on a colour
for a video (with its sound)."""

from __future__ import annotations

from pathlib import Path

from ai.errors import InvalidMediaError
from backend.schemas import background_variant
from backend.settings import Settings
from backend.tasks.context import TaskContext

VIDEO_MIME = {".webm": "video/webm", ".mp4": "video/mp4", ".mov": "video/quicktime"}


def segmentation_model(settings: Settings, name: str | None = None):
    """The process-wide segmentation model ``name`` (default SEGMENTATION_MODEL) on the configured device."""
    from ai.config import rembg_home
    from ai.segmentation import get_segmentation_model

    return get_segmentation_model(
        name or settings.segmentation_model,
        device=settings.ai_device,
        model_dir=rembg_home(settings.model_cache_dir),
    )


def _background(variant: str) -> str:
    """A stored variant name (``ff8800``) as the pipelines take it (``#ff8800``)."""
    return variant if variant in ("transparent", "mask", "green", "blue", "white", "black") else f"#{variant}"


def photo_cutout(ctx: TaskContext) -> dict:
    from ai.cutout import photo_cutout as run

    options = ctx.options()
    variant = background_variant(options.background)
    model_name = options.model or ctx.settings.segmentation_model
    ctx.progress(0, 1, "loading model", force=True)
    model = segmentation_model(ctx.settings, model_name)
    model.load()
    ctx.progress(0, 1, "removing background", force=True)
    tmp = ctx.temp_path(".png")
    if variant in ("transparent", "mask"):
        meta = run(ctx.source_path, tmp, model=model, output=variant)
    else:
        meta = run(ctx.source_path, tmp, model=model, output="transparent", background=_background(variant))
    ctx.progress(1, 1, "saving", force=True)
    asset = ctx.store_asset(
        tmp,
        kind="cutout",
        variant=variant,
        filename=f"cutout_{variant}.png",
        mime_type="image/png",
        model=model_name,
        parameters={"background": variant},
        width=meta.get("width"),
        height=meta.get("height"),
        metadata=meta,
    )
    return {"asset_id": str(asset["id"]), "background": variant}


def _check_declared_length(ctx: TaskContext) -> None:
    """Refuse at once a video longer than a cut-out may be (a small file can declare hours)."""
    s, item = ctx.settings, ctx.media
    duration = item.get("duration_s")
    if duration and duration > s.video_cutout_max_seconds:
        raise InvalidMediaError(
            f"the video is {_clock(duration)} long; cut-out videos are limited to"
            f" {_clock(s.video_cutout_max_seconds)} (VIDEO_CUTOUT_MAX_SECONDS)"
        )
    frames = item.get("frame_count")
    if frames and frames > s.video_cutout_max_frames:
        raise InvalidMediaError(
            f"the video has {frames} frames; cut-out videos are limited to {s.video_cutout_max_frames}"
            " (VIDEO_CUTOUT_MAX_FRAMES)"
        )


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def video_cutout(ctx: TaskContext) -> dict:
    from ai.cutout import cutout_video_filename
    from ai.cutout import video_cutout as run

    _check_declared_length(ctx)
    options = ctx.options()
    variant = background_variant(options.background or ctx.settings.cutout_video_background)
    prores = bool(options.prores)
    height = options.height if isinstance(options.height, int) else None  # None: the source's size
    model_name = options.model or ctx.settings.segmentation_model
    ctx.progress(0, ctx.media.get("frame_count"), "loading model", force=True)
    model = segmentation_model(ctx.settings, model_name)
    model.load()
    background = _background(variant)
    filename = cutout_video_filename(background, prores=prores)
    tmp = ctx.temp_path(Path(filename).suffix)
    progress = ctx.frame_progress(ctx.settings.video_cutout_max_frames, "VIDEO_CUTOUT_MAX_FRAMES")
    meta = run(
        ctx.source_path, tmp, model=model, background=background, prores=prores, height=height, progress=progress
    )
    store_variant = variant + ("_prores" if prores else "")
    asset = ctx.store_asset(
        tmp,
        kind="cutout_video",
        variant=store_variant,
        filename=filename,
        mime_type=VIDEO_MIME.get(Path(filename).suffix, "application/octet-stream"),
        model=model_name,
        parameters={"background": variant, "prores": prores, "height": height},
        width=meta.get("width"),
        height=meta.get("height"),
        metadata=meta,
    )
    return {"asset_id": str(asset["id"]), "background": variant, "prores": prores}
