"""Depth tasks: a PNG for a photo, a ZIP of depth (and colour) frames plus a manifest for a video."""

from __future__ import annotations

from backend.schemas import TaskParameters
from backend.settings import Settings
from backend.tasks.context import TaskContext


def depth_model(settings: Settings, name: str | None = None):
    """The process-wide depth model ``name`` (default DEPTH_MODEL) on the configured device and precision."""
    from ai.config import huggingface_cache
    from ai.depth import get_depth_model

    return get_depth_model(
        name or settings.depth_model,
        device=settings.ai_device,
        precision=settings.ai_precision,
        input_size=settings.depth_input_size,
        batch_size=settings.depth_batch_size,
        cache_dir=str(huggingface_cache(settings.model_cache_dir)),
    )


def frame_options(options: TaskParameters, settings: Settings) -> dict:
    """Which frames of a video to take: the job's choices, else the VIDEO_* settings."""
    height = options.height or settings.video_frame_height
    return {
        "method": options.method or settings.video_frame_method,
        "fps": options.fps or settings.video_frame_extraction_fps,
        "max_frames": options.max_frames or settings.video_max_frames,
        "height": None if height == "source" else height,
    }


def photo_depth(ctx: TaskContext) -> dict:
    from ai.depth import photo_depth as run

    s = ctx.settings
    options = ctx.options()
    model_name = options.model or s.depth_model
    bit_depth = options.bit_depth or s.depth_bit_depth
    polarity = options.polarity or s.depth_polarity
    model = depth_model(s, model_name)
    tmp = ctx.temp_path(".png")
    meta = run(ctx.source_path, tmp, model=model, bit_depth=bit_depth, polarity=polarity, progress=ctx.progress)
    asset = ctx.store_asset(
        tmp,
        kind="depth",
        filename="depth.png",
        mime_type="image/png",
        model=model_name,
        parameters={"bit_depth": bit_depth, "polarity": polarity},
        width=meta.get("width"),
        height=meta.get("height"),
        metadata=meta,
    )
    return {"asset_id": str(asset["id"]), "width": asset["width"], "height": asset["height"], "polarity": polarity}


def video_depth(ctx: TaskContext) -> dict:
    from ai.depth import video_depth as run

    s = ctx.settings
    options = ctx.options()
    model_name = options.model or s.depth_model
    params = {
        **frame_options(options, s),
        "include_color": options.include_color if options.include_color is not None else True,
        "polarity": options.polarity or s.depth_polarity,
        "bit_depth": options.bit_depth or s.depth_bit_depth,
    }
    ctx.progress(0, None, "loading model", force=True)
    model = depth_model(s, model_name)
    model.load()
    tmp = ctx.temp_path(".zip")
    manifest = run(
        ctx.source_path,
        tmp,
        model=model,
        progress=ctx.progress,
        source={"media_id": str(ctx.media["id"]), "filename": ctx.media["original_filename"]},
        **params,
    )
    ctx.progress(manifest.get("frame_count", 0), manifest.get("frame_count", 0), "saving", force=True)
    meta = {k: v for k, v in manifest.items() if k != "frames"}
    asset = ctx.store_asset(
        tmp,
        kind="depth_frames",
        filename="depth_frames.zip",
        mime_type="application/zip",
        model=model_name,
        parameters=params,
        width=manifest.get("frame_width"),
        height=manifest.get("frame_height"),
        metadata=meta,
    )
    return {
        "asset_id": str(asset["id"]),
        "frame_count": manifest.get("frame_count"),
        "effective_fps": manifest.get("effective_fps"),
    }


def depth_video(ctx: TaskContext) -> dict:
    """The RGB-D video of a video: colour left, depth right, every frame, the source's audio."""
    from ai.depth_video import rgbd_video

    s = ctx.settings
    model_name = ctx.param("model", s.depth_model)
    params = {
        "depth_fps": ctx.param("depth_fps", s.depth_video_fps),
        "height": int(ctx.param("height", s.depth_video_height)),
        "polarity": ctx.param("polarity", s.depth_polarity),
    }
    ctx.progress(0, ctx.media.get("frame_count"), "loading model", force=True)
    model = depth_model(s, model_name)
    model.load()
    tmp = ctx.temp_path(".mp4")
    meta = rgbd_video(ctx.source_path, tmp, model=model, progress=ctx.progress, **params)
    asset = ctx.store_asset(
        tmp,
        kind="depth_video",
        filename="depth_rgbd.mp4",
        mime_type="video/mp4",
        model=model_name,
        parameters=params,
        width=meta["width"],
        height=meta["height"],
        metadata=meta,
    )
    return {"asset_id": str(asset["id"]), "frame_count": meta["frame_count"], "fps": meta["fps"]}
