"""Stereo 3D exports (Full/Half SBS, Top-Bottom, anaglyph) of a photo or a video, made on request.

The depth already stored for the item is reused (a photo's depth PNG, a video's RGB-D video), so
asking for a second format costs no model run; without it the depth model runs here.
"""

from __future__ import annotations

from pathlib import Path

from backend.tasks.context import TaskContext
from backend.tasks.depth import depth_model

PHOTO_MIME = {".png": "image/png", ".jpg": "image/jpeg"}
# A stereo export's task and the kind its result is stored as, per media kind.
EXPORT_TASK = {"photo": "stereo", "video": "video_stereo"}
EXPORT_KIND = {"photo": "stereo", "video": "stereo_video"}


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
        "SELECT * FROM derived_assets WHERE media_id = %s AND kind = %s AND variant = ''", (ctx.media["id"], kind)
    )


def photo_stereo(ctx: TaskContext) -> dict:
    from ai.depth_metadata import read_nearness
    from ai.stereo import photo_stereo as run

    s = ctx.settings
    params = stereo_parameters(s, ctx.parameters)
    extension = ".png" if Path(ctx.media["original_filename"] or "").suffix.lower() == ".png" else ".jpg"
    tmp = ctx.temp_path(extension)
    depth = _stored(ctx, "depth")
    nearness = read_nearness(ctx.services.storage.path(depth["path"])) if depth else None
    model = None if nearness is not None else depth_model(s, ctx.param("model", s.depth_model))
    meta = run(
        ctx.source_path,
        tmp,
        model=model,
        nearness=nearness,
        fmt=params["format"],
        progress=ctx.progress,
        **_render(params),
    )
    if depth is not None:
        meta["model"] = depth["model"]  # the depth map's
    return _store(ctx, tmp, EXPORT_KIND["photo"], PHOTO_MIME[extension], params, meta)


def video_stereo(ctx: TaskContext) -> dict:
    from ai.stereo import video_stereo as run

    s = ctx.settings
    params = stereo_parameters(s, ctx.parameters)
    tmp = ctx.temp_path(".mp4")
    ctx.progress(0, ctx.media.get("frame_count"), "loading depth", force=True)
    rgbd = _stored(ctx, "depth_video")
    if rgbd is not None:
        depth = {
            "rgbd": ctx.services.storage.path(rgbd["path"]),
            "rgbd_polarity": (rgbd["metadata"] or {}).get("polarity", "near_dark"),
        }
    else:
        model = depth_model(s, ctx.param("model", s.depth_model))
        model.load()
        depth = {"model": model, "height": s.depth_video_height, "depth_fps": s.depth_video_fps}
    meta = run(ctx.source_path, tmp, fmt=params["format"], progress=ctx.progress, **depth, **_render(params))
    return _store(ctx, tmp, EXPORT_KIND["video"], "video/mp4", params, meta)


def _store(ctx: TaskContext, tmp: Path, kind: str, mime_type: str, params: dict, meta: dict) -> dict:
    from ai.stereo import stereo_filename

    filename = stereo_filename(ctx.media["original_filename"] or "media", params["format"], tmp.suffix)
    meta = {**meta, "filename": filename}
    asset = ctx.store_asset(
        tmp,
        kind=kind,
        variant=params["format"],
        filename=filename,
        mime_type=mime_type,
        model=meta.get("model"),
        parameters=params,
        width=meta.get("width"),
        height=meta.get("height"),
        metadata=meta,
    )
    return {"asset_id": str(asset["id"]), "format": params["format"], "filename": filename}


def _render(params: dict) -> dict:
    return {"divergence": params["divergence"], "convergence": params["convergence"]}
