"""Decode video frames into memory with ffmpeg, with the source presentation time of each frame.

ffmpeg writes raw RGB frames of a fixed size to a pipe; we read exactly ``width*height*3`` bytes per
frame, so memory does not grow with the length of the video. The presentation time of every frame
that reaches the pipe comes from ffmpeg's ``showinfo`` filter (``pts_time``), which a reader thread
parses from stderr. ``-copyts`` keeps the source timestamps, so the times are the ones
``ffprobe -show_frames`` reports for the same frames.

ffmpeg applies rotation metadata itself (autorotate), so frames come out upright and the frame
size is the displayed orientation that :func:`ai.probe.probe_video` reports.
"""

from __future__ import annotations

import collections
import math
import queue
import re
import subprocess
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg
import numpy as np

from ai.errors import InvalidMediaError
from ai.probe import MediaInfo, check_readable, probe_video
from ai.progress import ProgressCallback, no_progress

METHODS = ("interval", "keyframes")

# ``n:   3 pts:  12288 pts_time:1.2 ...`` from the showinfo filter (ffmpeg 4.x to 7.x).
_SHOWINFO = re.compile(rb"\bn:\s*(\d+)\s+pts:\s*(-?\d+|NOPTS)\s+pts_time:(\S+)")
# ``config in time_base: 1/10240``: pts x time base is exact; pts_time is printed to 6 digits only.
_TIME_BASE = re.compile(rb"config in time_base:\s*(\d+)/(\d+)")
# Containers we refuse even though ffprobe "recognises" them: text shown as ANSI art, still images.
_NOT_VIDEO_FORMATS = {"tty", "image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe"}
# What ffmpeg's demuxers say when a file stops before its declared end (it still exits 0).
_TRUNCATED = re.compile(
    rb"File ended prematurely|partial file|Truncating packet|Packet corrupt|"
    rb"moov atom not found|End of file while parsing",
    re.I,
)
_STDERR_TAIL_LINES = 40
_TIME_WAIT_SECONDS = 60.0


@dataclass
class Frame:
    index: int  # 1-based position in the output sequence
    time: float  # presentation time in seconds of the source frame (ffmpeg pts, as ffprobe shows it)
    image: np.ndarray  # HxWx3 uint8 RGB, upright (rotation metadata applied)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def probe_source_video(path: Path | str) -> MediaInfo:
    """Probe ``path`` as a video or raise InvalidMediaError saying why it is not one."""
    path = Path(path)
    check_readable(path)
    info = probe_video(path)
    if info is None:
        detail = _ffprobe_error(path)
        raise InvalidMediaError(
            "the file is not a video, or it is damaged" + (f" (ffprobe: {detail})" if detail else "")
        )
    if info.format in _NOT_VIDEO_FORMATS or info.video_codec in ("ansi",):
        raise InvalidMediaError(f"the file is not a video (it was read as {info.format})")
    return info


def _ffprobe_error(path: Path) -> str:
    """ffprobe's own complaint about a file (e.g. "moov atom not found" for a cut-off MP4)."""
    try:
        proc = subprocess.run(["ffprobe", "-v", "error", "-i", str(path)], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = [
        re.sub(r"^\[[^\]]+\]\s*", "", line).replace(str(path) + ": ", "").strip()
        for line in proc.stderr.decode("utf-8", "replace").splitlines()
    ]
    return "; ".join(dict.fromkeys(line for line in lines if line))[:300]


def output_size(info: MediaInfo, height: int | None) -> tuple[int, int]:
    """(width, height) of extracted frames: ``height`` keeps the aspect, width even; never upscale."""
    src_w, src_h = info.width, info.height
    if height is None or height >= src_h:
        return src_w, src_h
    if height < 2:
        raise ValueError("height must be at least 2 pixels")
    width = max(2, int(round(src_w * height / src_h / 2.0)) * 2)
    return width, int(height)


def estimate_frame_total(
    info: MediaInfo, method: str = "all", fps: float = 1.0, max_frames: int | None = None
) -> int | None:
    """How many frames a run will yield, when the container says enough to know; else None."""
    if method == "interval":
        if info.duration is None:
            return None
        # Interval k is served when some frame lies within half a frame of k/fps; the last frame
        # starts one frame before the end.
        frame_time = 1.0 / info.fps if info.fps else 0.0
        last_frame = max(0.0, info.duration - frame_time)
        total = int(math.floor((last_frame + frame_time / 2) * fps + 1e-6)) + 1
        return min(total, max_frames) if max_frames else total
    if method == "all":
        if info.frame_count:
            return info.frame_count
        if info.duration and info.fps:
            return max(1, int(round(info.duration * info.fps)))
        return None
    return None  # key frames: unknown without reading the whole file


def effective_fps(info: MediaInfo, method: str, fps: float) -> float | None:
    """Frames per second of source time that an extraction yields (None for key frames)."""
    if method == "interval":
        return min(fps, info.fps) if info.fps else fps
    if method == "all":
        return info.fps
    return None


class _StderrReader(threading.Thread):
    """Reads ffmpeg's stderr: showinfo times go to a queue, other lines to a short tail for errors."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True, name="ffmpeg-stderr")
        self.stream = stream
        # Naturally bounded: showinfo logs a frame just before ffmpeg writes it to the stdout pipe,
        # and ffmpeg blocks once that pipe is full, so it runs at most a few frames ahead.
        self.times: queue.Queue[float | None] = queue.Queue()
        self.tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
        self.time_base: tuple[int, int] | None = None
        self.truncation: str | None = None  # ffmpeg's words when the file ends early

    def run(self) -> None:
        try:
            for raw in self.stream:
                for chunk in raw.split(b"\r"):  # progress lines end in \r, not \n
                    match = _SHOWINFO.search(chunk)
                    if match:
                        self.times.put(self._seconds(match.group(2), match.group(3)))
                        continue
                    base = _TIME_BASE.search(chunk)
                    if base and int(base.group(2)) > 0:
                        self.time_base = (int(base.group(1)), int(base.group(2)))
                    if self.truncation is None and _TRUNCATED.search(chunk):
                        self.truncation = re.sub(r"^\[[^\]]+\]\s*", "", chunk.decode("utf-8", "replace").strip())
                    if b"Parsed_showinfo" not in chunk:
                        text = chunk.decode("utf-8", "replace").strip()
                        if text:
                            self.tail.append(text)
        finally:
            self.times.put(None)

    def _seconds(self, pts: bytes, pts_time: bytes) -> float:
        if pts != b"NOPTS" and self.time_base is not None:
            num, den = self.time_base
            return int(pts) * num / den
        try:
            return float(pts_time.decode("ascii", "replace"))
        except ValueError:  # NOPTS: this frame has no timestamp
            return float("nan")

    def reason(self) -> str:
        """The most telling ffmpeg error line, for a user-facing message."""
        lines = [
            line
            for line in self.tail
            if not line.startswith(
                ("Input #", "Output #", "Stream #", "Stream mapping", "Press [q]", "Metadata:", "Duration:")
            )
        ]
        errors = [
            line
            for line in lines
            if re.search(
                r"error|invalid|corrupt|truncat|not found|no such|moov|"
                r"could not|failed|unsupported|missing",
                line,
                re.I,
            )
        ]
        chosen = errors[-3:] if errors else lines[-2:]
        text = "; ".join(re.sub(r"^\[[^\]]+\]\s*", "", line) for line in chosen)
        return text[:400] or "ffmpeg gave no reason"


def _run_ffmpeg(
    path: Path,
    info: MediaInfo,
    *,
    video_filters: list[tuple[str, tuple]],
    size: tuple[int, int],
    input_options: dict,
    max_frames: int | None,
    total: int | None,
    stage: str,
    progress: ProgressCallback,
) -> Generator[Frame, None, None]:
    width, height = size
    stream = ffmpeg.input(str(path), copyts=None, **input_options).video
    for name, args in video_filters:
        stream = stream.filter(name, *args) if isinstance(args, tuple) else stream.filter(name, **args)
    # showinfo before scaling: it reports the source frame's pts. Explicit size: a resolution change
    # mid-stream still yields frames of the size we read.
    stream = stream.filter("showinfo").filter("scale", width, height, flags="bicubic")
    output_options: dict[str, Any] = {"format": "rawvideo", "pix_fmt": "rgb24", "fps_mode": "passthrough"}
    if max_frames:
        output_options["frames:v"] = int(max_frames)
    cmd = (
        ffmpeg.output(stream, "pipe:1", **output_options)
        .global_args("-hide_banner", "-nostdin", "-nostats", "-loglevel", "info")
        .compile()
    )
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
        )
    except FileNotFoundError as exc:
        raise RuntimeError("ffmpeg is not installed (apt-get install ffmpeg)") from exc
    reader = _StderrReader(proc.stderr)
    reader.start()
    frame_bytes = width * height * 3
    count = 0
    finished = False
    try:
        while True:
            buf = _read_exact(proc.stdout, frame_bytes)
            if not buf:
                break
            if len(buf) != frame_bytes:
                proc.wait()
                reader.join(timeout=5)
                raise InvalidMediaError(f"the video could not be decoded completely ({reader.reason()})")
            try:
                pts_time = reader.times.get(timeout=_TIME_WAIT_SECONDS)
            except queue.Empty:
                pts_time = float("nan")
            if pts_time is None:  # stderr closed before the showinfo line: should not happen
                pts_time = float("nan")
            count += 1
            image = np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)
            progress(count, total, f"{stage} {count}/{total if total else '?'}")
            yield Frame(index=count, time=_fallback_time(pts_time, count, info), image=image)
        returncode = proc.wait()
        reader.join(timeout=5)
        finished = True
        if returncode != 0:
            raise InvalidMediaError(f"the video could not be decoded ({reader.reason()})")
        if count == 0:
            raise InvalidMediaError(f"no frames could be decoded from the video ({reader.reason()})")
        if reader.truncation:
            raise InvalidMediaError(
                f"the video file is truncated: it ends before its declared length (ffmpeg: {reader.truncation})"
            )
    finally:
        if not finished:  # consumer stopped early, or an error: do not leave ffmpeg running
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            reader.join(timeout=5)
        for pipe in (proc.stdout, proc.stderr):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass


def _fallback_time(pts_time: float, index: int, info: MediaInfo) -> float:
    if math.isfinite(pts_time):
        return round(pts_time, 6)
    # A frame without a timestamp (rare, raw streams): its position at the nominal rate.
    return round((index - 1) / info.fps, 6) if info.fps else 0.0


def _read_exact(pipe, size: int) -> bytearray:
    """Exactly ``size`` bytes from the pipe (fewer only at its end). A fresh writable buffer per
    frame: the numpy array built on it belongs to the caller, who may modify it in place."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0
    while filled < size:
        read = pipe.readinto(view[filled:])
        if not read:
            break
        filled += read
    return buffer if filled == size else buffer[:filled]


def _check_positive(name: str, value, kind=float):
    if value is None:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not number > 0 or (kind is float and not math.isfinite(number)):
        raise ValueError(f"{name} must be greater than 0, got {value!r}")
    return number


def extract_frames(
    path: Path | str,
    method: str = "interval",
    fps: float = 1.0,
    max_frames: int | None = 30,
    height: int | None = 480,
    progress: ProgressCallback | None = None,
) -> Generator[Frame, None, None]:
    """Frames sampled from a video, streamed one at a time.

    ``method="interval"``: the source frame shown at (or nearest to) times 0, 1/fps, 2/fps, ...
    ``method="keyframes"``: only key frames are decoded (fast: no inter frames). Both stop after
    ``max_frames`` (None: no cap). ``height`` scales frames down keeping the aspect (even width);
    None keeps the source size. A video shorter than one interval still yields its first frame.
    Raises InvalidMediaError for files that are not decodable videos, ValueError for bad options.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    fps = _check_positive("fps", fps)
    max_frames = _check_positive("max_frames", max_frames, int)
    height = _check_positive("height", height, int)
    path = Path(path)
    info = probe_source_video(path)
    size = output_size(info, height)
    progress = progress or no_progress
    if method == "interval":
        # Select the first frame of each 1/fps bucket, the buckets shifted half a source frame
        # earlier so the chosen frame is the one nearest to k/fps rather than the next one after.
        half_frame = 0.5 / info.fps if info.fps else 0.0
        bucket = f"floor((t+{half_frame:.9f})*{fps:.9f}+1e-6)"
        prev_bucket = f"floor((prev_selected_t+{half_frame:.9f})*{fps:.9f}+1e-6)"
        select = f"isnan(prev_selected_t)+gte({bucket},{prev_bucket}+1)"
        filters = [("select", (select,))]
        input_options: dict = {}
    else:
        filters = []
        input_options = {"skip_frame": "nokey"}
    total = estimate_frame_total(info, method, fps or 1.0, max_frames)
    if method == "keyframes":
        total = None
    yield from _run_ffmpeg(
        path,
        info,
        video_filters=filters,
        size=size,
        input_options=input_options,
        max_frames=max_frames,
        total=total,
        stage="extracting frame",
        progress=progress,
    )


def iter_video_frames(
    path: Path | str, height: int | None = None, progress: ProgressCallback | None = None
) -> Generator[Frame, None, None]:
    """Every frame of a video at its source rate, upright, with its presentation time.

    ``progress`` gets the container's frame count as total (or an estimate from duration x fps,
    or None when the container reports neither).
    """
    height = _check_positive("height", height, int)
    path = Path(path)
    info = probe_source_video(path)
    size = output_size(info, height)
    yield from _run_ffmpeg(
        path,
        info,
        video_filters=[],
        size=size,
        input_options={},
        max_frames=None,
        total=estimate_frame_total(info, "all"),
        stage="decoding frame",
        progress=progress or no_progress,
    )
