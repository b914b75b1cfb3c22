"""Depth for every frame of a video, and the RGB-D video made from it.

:func:`iter_video_depth` is the streaming core shared by the RGB-D video and the stereo video: it
decodes every frame at the source rate, detects scene cuts, runs the model on the frames chosen at
``depth_fps`` (batched), stabilises their depth over time (:class:`ai.stabilize.DepthStabilizer`)
and interpolates the depth of the frames in between linearly in time (never across a cut: a cut's
first frame always gets its own depth). Memory is flat in the video's length: at most one model
batch, the stabiliser's look-ahead and the frames between two depth frames are held.

:func:`rgbd_video` writes colour on the left half and depth on the right half of each frame of an
H.264 MP4 with the source's audio: the same frame count, rate and duration as the source, so colour
and depth stay in sync by construction and one decoder serves both.
"""

from __future__ import annotations

import collections
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ai.depth import DepthModel, check_polarity, quantize_depth
from ai.frames import Frame, estimate_frame_total, iter_video_frames, probe_source_video
from ai.probe import MediaInfo
from ai.progress import ProgressCallback, no_progress
from ai.scenecut import SceneCutDetector
from ai.stabilize import DepthStabilizer
from ai.video_writer import encode_frames

MAX_DEFAULT_DEPTH_FPS = 30.0  # depth is computed at the source rate up to this, interpolated above
DEFAULT_LOOKAHEAD = 8  # frames of depth held back so the range anticipates what comes
DEFAULT_VIDEO_HEIGHT = 1080  # RGB-D width is twice the frame's: 3840x1080 still decodes everywhere
RGBD_LAYOUT = "colour_left_depth_right"


@dataclass
class DepthFrame:
    frame: Frame  # the decoded colour frame, with its source time
    depth: np.ndarray  # HxW float32, 0..1, 1 = nearest (stabilised)
    computed: bool  # False: interpolated between the neighbouring computed frames
    cut: bool  # first frame of a new shot


@dataclass
class _Pending:
    frame: Frame
    key: bool
    cut: bool
    depth: np.ndarray | None = None


def resolve_depth_fps(info: MediaInfo, depth_fps: float | None) -> float:
    """Frames per second that get their own model run: ``depth_fps`` (capped at the source rate),
    by default the source rate capped at 30."""
    source = info.fps or MAX_DEFAULT_DEPTH_FPS
    if depth_fps is None:
        return min(source, MAX_DEFAULT_DEPTH_FPS)
    try:
        value = float(depth_fps)
    except (TypeError, ValueError):
        raise ValueError(f"depth_fps must be a number, got {depth_fps!r}") from None
    if not value > 0:
        raise ValueError(f"depth_fps must be greater than 0, got {depth_fps!r}")
    return min(value, source)


def iter_video_depth(
    src: Path | str,
    *,
    model: DepthModel,
    height: int | None = DEFAULT_VIDEO_HEIGHT,
    depth_fps: float | None = None,
    stabilizer: DepthStabilizer | None = None,
    cut_detector: SceneCutDetector | None = None,
    input_size: int | None = None,
) -> Generator[DepthFrame, None, None]:
    """Every frame of ``src`` in order with its stabilised depth (see the module docstring).

    Raises InvalidMediaError for a file that is not a decodable video, ValueError for bad options.
    """
    src = Path(src)
    info = probe_source_video(src)
    rate = resolve_depth_fps(info, depth_fps)
    stabilizer = stabilizer or DepthStabilizer(lookahead=DEFAULT_LOOKAHEAD)
    cuts = cut_detector or SceneCutDetector()
    batch_size = max(1, int(model.options.get("batch_size", 4)))
    model.load()

    pending: collections.deque[_Pending] = collections.deque()  # decoded, not yet yielded
    to_infer: list[_Pending] = []  # key frames waiting for a model batch
    in_stabilizer: collections.deque[_Pending] = collections.deque()  # waiting for look-ahead
    last_key: _Pending | None = None
    last_bucket: int | None = None

    def infer() -> None:
        raws = model.predict([p.frame.image for p in to_infer], input_size=input_size)
        for item, raw in zip(to_infer, raws):
            in_stabilizer.append(item)
            for depth in stabilizer.push(raw, item.frame.image, cut=item.cut):
                in_stabilizer.popleft().depth = depth
        to_infer.clear()

    def flush_stabilizer() -> None:
        for depth in stabilizer.flush():
            in_stabilizer.popleft().depth = depth

    def ready(final: bool) -> Iterator[DepthFrame]:
        nonlocal last_key
        while pending:
            head = pending[0]
            if head.key:
                if head.depth is None:
                    return
                pending.popleft()
                last_key = head
                yield DepthFrame(head.frame, head.depth, True, head.cut)
                continue
            following = next((p for p in pending if p.key), None)
            if following is None and not final:
                return
            if following is not None and following.depth is None:
                return
            assert last_key is not None and last_key.depth is not None  # the first frame is a key frame
            pending.popleft()
            if following is None or following.cut:
                depth = last_key.depth  # the end of the video, or of a shot: hold
            else:
                span = following.frame.time - last_key.frame.time
                progress_in_span = (head.frame.time - last_key.frame.time) / span if span > 0 else 0.0
                weight = np.float32(min(max(progress_in_span, 0.0), 1.0))
                assert following.depth is not None  # a key frame after this one: its depth is known
                depth = (1 - weight) * last_key.depth + weight * following.depth
            yield DepthFrame(head.frame, depth, False, False)

    for frame in iter_video_frames(src, height=height):
        cut = cuts(frame.image)
        bucket = int(np.floor(frame.time * rate + 1e-6)) if np.isfinite(frame.time) else frame.index
        key = last_bucket is None or cut or bucket > last_bucket
        if key:
            last_bucket = bucket
        item = _Pending(frame, key, cut)
        pending.append(item)
        if key:
            to_infer.append(item)
            if len(to_infer) >= batch_size:
                infer()
        yield from ready(final=False)
    if to_infer:
        infer()
    flush_stabilizer()
    yield from ready(final=True)
    if pending:  # pragma: no cover - every frame is decided once the stabiliser is flushed
        raise RuntimeError(f"{len(pending)} frames were left without depth")


def iter_rgbd_video(path: Path | str, polarity: str = "near_dark") -> Generator[DepthFrame, None, None]:
    """The frames of a stored RGB-D video (colour left, depth right) as colour + nearness, so
    stereo and other exports reuse its depth instead of running the model again."""
    check_polarity(polarity)
    for packed in iter_video_frames(path, height=None):
        half = packed.width // 2
        grey = packed.image[:, half : 2 * half, 1].astype(np.float32) / np.float32(255.0)
        nearness = grey if polarity == "near_bright" else 1.0 - grey
        colour = Frame(index=packed.index, time=packed.time, image=np.ascontiguousarray(packed.image[:, :half]))
        yield DepthFrame(colour, nearness, True, False)


def rgbd_video(
    src: Path | str,
    dst: Path | str,
    *,
    model: DepthModel,
    height: int | None = DEFAULT_VIDEO_HEIGHT,
    depth_fps: float | None = None,
    polarity: str = "near_dark",
    lookahead: int = DEFAULT_LOOKAHEAD,
    input_size: int | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Write the RGB-D video of ``src`` to ``dst`` (H.264 MP4): colour left, 8-bit depth right.

    ``height``: frames are scaled down to it (aspect kept), never up; None keeps the source size.
    ``depth_fps``: frames per second that get their own model run (default: source rate, at most
    30); the others are interpolated. ``polarity``: ``near_dark`` or ``near_bright``.
    ``progress`` gets "frame N/M"; raising ai.errors.Cancelled from it stops the run and removes
    the partial output. Returns what the manifest says about the video.
    """
    check_polarity(polarity)
    progress = progress or no_progress
    src, dst = Path(src), Path(dst)
    info = probe_source_video(src)
    total = estimate_frame_total(info, "all")
    rate = resolve_depth_fps(info, depth_fps)
    progress(0, total, "loading model")
    stabilizer = DepthStabilizer(lookahead=lookahead)
    cut_detector = SceneCutDetector()
    frames = iter_video_depth(
        src,
        model=model,
        height=height,
        depth_fps=depth_fps,
        stabilizer=stabilizer,
        cut_detector=cut_detector,
        input_size=input_size,
    )
    counts = {"computed": 0}
    cut_times: list[float] = []

    def pictures() -> Iterator[np.ndarray]:
        for item in frames:
            counts["computed"] += int(item.computed)
            if item.cut:
                cut_times.append(item.frame.time)
            depth = quantize_depth(item.depth, 8, polarity)
            yield np.concatenate([item.frame.image, np.repeat(depth[:, :, None], 3, axis=2)], axis=1)

    try:
        writer = encode_frames(
            dst, pictures(), source=src, info=info, label="RGB-D video", progress=progress, total=total
        )
    finally:
        frames.close()
    return {
        "layout": RGBD_LAYOUT,
        "width": writer.width,
        "height": writer.height,
        "frame_width": writer.width // 2,
        "frame_count": writer.frames,
        "fps": round(writer.fps, 6),
        "duration": round(writer.frames / writer.fps, 6),
        "depth_fps": round(rate, 6),
        "depth_frames_computed": counts["computed"],
        "scene_cuts": cut_times,
        "polarity": polarity,
        "bit_depth": 8,
        "model": model.model_name,
        "normalization": stabilizer.describe(),
        "video_codec": "h264",
        "audio_codec": writer.audio_codec,
    }
