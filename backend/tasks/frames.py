"""The ``video_frames`` task: which frames of a video depth would use (times and sizes), without a model."""

from __future__ import annotations

from backend.tasks.context import TaskContext
from backend.tasks.depth import frame_options


def video_frames(ctx: TaskContext) -> dict:
    from ai.frames import extract_frames

    options = frame_options(ctx.options(), ctx.settings)
    frames = [
        {"index": f.index, "time": f.time, "width": f.width, "height": f.height}
        for f in extract_frames(ctx.source_path, progress=ctx.progress, **options)
    ]
    return {
        "method": options["method"],
        "requested_fps": options["fps"] if options["method"] == "interval" else None,
        "max_frames": options["max_frames"],
        "frame_count": len(frames),
        "frames": frames,
    }
