"""Stereo 3D exports (Full/Half SBS, Top-Bottom, anaglyph) of a photo or a video, made on request.

The depth already stored for the item is reused (a photo's depth PNG, a video's RGB-D video), so
asking for a second format costs no model run; without it the depth model runs here.
"""

from __future__ import annotations

from pathlib import Path

from backend.tasks.context import TaskContext
from backend.tasks.depth import depth_model

PHOTO_MIME = {".png": "image/png", ".jpg": "image/jpeg"}


def stereo_parameters(settings, parameters: dict) -> dict:
    """The format and rendering parameters of a stereo export (the request's, else the settings')."""
    return {
        "format": str(parameters.get("format") or "full_sbs"),
        "divergence": float(parameters.get("divergence") or settings.stereo_divergence),
        "convergence": float(
            settings.stereo_convergence if parameters.get("convergence") is None else parameters["convergence"]
        ),
    }


def _stored(ctx: TaskContext, kind: str) -> dict | None:
    return ctx.services.db.fetchone(
        "SELECT * FROM derived_assets WHERE media_id = %s AND kind = %s AND variant = ''", (ctx.item["id"], kind)
    )


def stereo(ctx: TaskContext) -> dict:
    from ai.depth_metadata import read_nearness
    from ai.stereo import photo_stereo, stereo_filename, video_stereo

    s = ctx.settings
    params = stereo_parameters(s, ctx.parameters)
    fmt = params["format"]
    name = ctx.item["original_filename"] or "media"
    model_name = ctx.param("model", s.depth_model)
    if ctx.item["kind"] == "photo":
        extension = ".png" if Path(name).suffix.lower() == ".png" else ".jpg"
        tmp = ctx.temp_path(extension)
        depth = _stored(ctx, "depth")
        nearness = read_nearness(ctx.services.storage.path(depth["path"])) if depth else None
        model = None if nearness is not None else depth_model(s, model_name)
        meta = photo_stereo(
            ctx.source_path, tmp, model=model, nearness=nearness, fmt=fmt, progress=ctx.progress, **_render(params)
        )
        mime = PHOTO_MIME[extension]
    else:
        extension = ".mp4"
        tmp = ctx.temp_path(extension)
        ctx.progress(0, ctx.item.get("frame_count"), "loading depth", force=True)
        rgbd = _stored(ctx, "depth_video")
        if rgbd is not None:
            meta = video_stereo(
                ctx.source_path,
                tmp,
                rgbd=ctx.services.storage.path(rgbd["path"]),
                rgbd_polarity=(rgbd["metadata"] or {}).get("polarity", "near_dark"),
                fmt=fmt,
                progress=ctx.progress,
                **_render(params),
            )
        else:
            model = depth_model(s, model_name)
            model.load()
            meta = video_stereo(
                ctx.source_path,
                tmp,
                model=model,
                fmt=fmt,
                height=s.depth_video_height,
                depth_fps=s.depth_video_fps,
                progress=ctx.progress,
                **_render(params),
            )
        mime = "video/mp4"
    filename = stereo_filename(name, fmt, extension)
    asset = ctx.store_asset(
        tmp,
        kind="stereo",
        variant=fmt,
        filename=filename,
        mime_type=mime,
        model=meta.get("model") or model_name,
        parameters=params,
        width=meta.get("width"),
        height=meta.get("height"),
        metadata=meta,
    )
    return {"asset_id": str(asset["id"]), "format": fmt, "filename": filename}


def _render(params: dict) -> dict:
    return {"divergence": params["divergence"], "convergence": params["convergence"]}
