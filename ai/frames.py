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

import bisect
import collections
import logging
import math
import queue
import re
import subprocess
import threading
from collections.abc import Generator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg
import numpy as np

from ai.errors import InvalidMediaError
from ai.probe import MediaInfo, check_readable, probe_video
from ai.progress import ProgressCallback, no_progress

log = logging.getLogger(__name__)

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
# Interval sampling names the chosen frames' times in ffmpeg's select expression; beyond this many
# (a very long video sampled densely) the expression would outgrow a command line, and the selection
# falls back to buckets shifted by half the average frame interval.
_MAX_LISTED_FRAMES = 2000


@dataclass
class Frame:
    index: int  # 1-based position in the output sequence
    time: float  # presentation time in seconds of the source frame (ffmpeg pts, as ffprobe shows it)
    image: np.ndarray  # HxWx3 uint8 RGB, upright (rotation metadata applied); 3xHxW when planar
    planar: bool = False

    @property
    def height(self) -> int:
        return int(self.image.shape[1 if self.planar else 0])

    @property
    def width(self) -> int:
        return int(self.image.shape[2 if self.planar else 1])


def probe_source_video(path: Path | str) -> MediaInfo:
    """Probe ``path`` as a video or raise InvalidMediaError saying why it is not one."""
    path = Path(path)
    check_readable(path)
    info = probe_video(path)
    if info is None:
        # ffprobe's own words help whoever reads the log, not the person who uploaded the file.
        log.warning("ffprobe could not read %s as a video: %s", path, _ffprobe_error(path) or "no detail")
        raise InvalidMediaError("the file is not a video, or it is damaged")
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
    width = max(2, round(src_w * height / src_h / 2.0) * 2)
    return width, int(height)


def frame_rate(info: MediaInfo) -> str:
    """The source's average frame rate as an exact ffmpeg rational (29.97 -> 30000/1001); 25 if unknown."""
    if not info.fps:
        return "25"
    rate = Fraction(info.fps).limit_denominator(1001 * 4)
    return f"{rate.numerator}/{rate.denominator}"


def constant_rate_filters(rate: str) -> list[tuple[str, tuple]]:
    """Resample a (possibly variable-rate) video to ``rate`` frames per second by timestamp: output
    frame k shows the source frame on screen at k/rate after the first frame (duplicated or
    dropped as needed). Two ffmpeg processes given the same source and filters pick the same frames."""
    return [("setpts", ("PTS-STARTPTS",)), ("fps", (rate,))]


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
        total = math.floor((last_frame + frame_time / 2) * fps + 1e-6) + 1
        return min(total, max_frames) if max_frames else total
    if method == "all":
        if info.frame_count:
            return info.frame_count
        if info.duration and info.fps:
            return max(1, round(info.duration * info.fps))
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
    planar: bool = False,
) -> Generator[Frame, None, None]:
    width, height = size
    stream = ffmpeg.input(str(path), copyts=None, **input_options).video
    for name, args in video_filters:
        stream = stream.filter(name, *args) if isinstance(args, tuple) else stream.filter(name, **args)
    # showinfo before scaling: it reports the source frame's pts. Explicit size: a resolution change
    # mid-stream still yields frames of the size we read.
    stream = stream.filter("showinfo").filter("scale", width, height, flags="bicubic")
    # gbrp: ffmpeg's planar RGB (planes in G, B, R order), for consumers that work per channel.
    # shuffleplanes puts them in R, G, B order inside ffmpeg (it swaps plane pointers, no copy), so
    # the frame we read is already the model's channel order.
    if planar:
        stream = stream.filter("shuffleplanes", 2, 0, 1)
    output_options: dict[str, Any] = {
        "format": "rawvideo",
        "pix_fmt": "gbrp" if planar else "rgb24",
        "fps_mode": "passthrough",
    }
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
    _widen_pipe(proc.stdout, frame_bytes)
    count = 0
    finished = False
    try:
        while True:
            buf = _read_exact(proc.stdout, frame_bytes)
            if not len(buf):
                break
            if len(buf) != frame_bytes:
                proc.wait()
                reader.join(timeout=5)
                _log_ffmpeg(path, reader)
                raise InvalidMediaError("the video could not be decoded completely")
            try:
                pts_time = reader.times.get(timeout=_TIME_WAIT_SECONDS)
            except queue.Empty:
                pts_time = float("nan")
            if pts_time is None:  # stderr closed before the showinfo line: should not happen
                pts_time = float("nan")
            count += 1
            if planar:
                image = buf.reshape(3, height, width)  # R, G, B planes (shuffleplanes)
            else:
                image = buf.reshape(height, width, 3)
            progress(count, total, f"{stage} {count}/{total if total else '?'}")
            yield Frame(index=count, time=_fallback_time(pts_time, count, info), image=image, planar=planar)
        returncode = proc.wait()
        reader.join(timeout=5)
        finished = True
        if returncode != 0:
            _log_ffmpeg(path, reader)
            raise InvalidMediaError("the video could not be decoded")
        if count == 0:
            _log_ffmpeg(path, reader)
            raise InvalidMediaError("no frames could be decoded from the video")
        if reader.truncation:
            _log_ffmpeg(path, reader)
            raise InvalidMediaError("the video file is truncated: it ends before its declared length")
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


def _log_ffmpeg(path: Path, reader: _StderrReader) -> None:
    """ffmpeg's raw words go to the log; the error the user sees stays one clear sentence."""
    log.warning("ffmpeg on %s: %s", path, reader.truncation or reader.reason())


_PIPE_MAX_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size for unprivileged processes


def _fallback_time(pts_time: float, index: int, info: MediaInfo) -> float:
    if math.isfinite(pts_time):
        return round(pts_time, 6)
    # A frame without a timestamp (rare, raw streams): its position at the nominal rate.
    return round((index - 1) / info.fps, 6) if info.fps else 0.0


def _read_exact(pipe, size: int) -> np.ndarray:
    """Exactly ``size`` bytes from the pipe (fewer only at its end), as a fresh writable uint8 array
    that belongs to the caller, who may modify it in place. Not zero-filled first: the pipe fills it."""
    buffer = np.empty(size, np.uint8)
    view = buffer.data
    filled = 0
    while filled < size:
        read = pipe.readinto(view[filled:])
        if not read:
            break
        filled += read
    return buffer if filled == size else buffer[:filled]


def _widen_pipe(pipe, frame_bytes: int) -> None:
    """Let a frame pass through the pipe in a few large reads instead of 64 KiB ones (Linux's
    default): fewer wake-ups of both processes per frame. Best effort: up to the system's limit."""
    try:
        import fcntl

        set_size = getattr(fcntl, "F_SETPIPE_SZ", 1031)
        fcntl.fcntl(pipe.fileno(), set_size, min(frame_bytes, _PIPE_MAX_BYTES))
    except (OSError, ValueError, ImportError):
        pass  # not Linux, or above /proc/sys/fs/pipe-max-size: the default works, a little slower


def _packet_times(path: Path, info: MediaInfo) -> list[float] | None:
    """Presentation times of every frame of the video stream, from its packets (no decoding), sorted;
    None when some packet has no timestamp or ffprobe fails."""
    stream = info.extra.get("stream_index")
    cmd = ["ffprobe", "-v", "error", "-select_streams", str(stream) if stream is not None else "v:0"]
    cmd += ["-show_entries", "packet=pts_time", "-of", "csv=p=0", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        times = sorted({float(line.strip().rstrip(b",")) for line in proc.stdout.splitlines() if line.strip()})
    except ValueError:  # "N/A": a packet without a timestamp
        return None
    return times or None


def nearest_frame_times(times: list[float], fps: float, max_frames: int | None = None) -> list[float]:
    """The frame times interval sampling picks from sorted source ``times``: the first frame, then for
    each k/fps the frame nearest to it (ties: the earlier one), each at most once. A time past the
    last frame counts while it is within half the last frame interval of it."""
    if not times:
        return []
    chosen = [0]
    last_half = (times[-1] - times[-2]) / 2 if len(times) > 1 else 0.0
    k = math.floor(times[0] * fps + 1e-9) + 1
    while (max_frames is None or len(chosen) < max_frames) and k / fps <= times[-1] + last_half + 1e-9:
        target = k / fps
        i = bisect.bisect_left(times, target)
        if i == len(times) or (i > 0 and target - times[i - 1] <= times[i] - target):
            i -= 1
        if i > chosen[-1]:
            chosen.append(i)
        k += 1
    return [times[i] for i in chosen]


def _balanced_sum(terms: list[str]) -> str:
    """``a+b+c+...`` as a balanced tree of brackets: ffmpeg's expression parser gives up on a chain of
    about 100 terms (its nesting limit), not on a tree of thousands."""
    if len(terms) == 1:
        return terms[0]
    middle = len(terms) // 2
    return f"({_balanced_sum(terms[:middle])}+{_balanced_sum(terms[middle:])})"


def _nearest_frames_select(path: Path, info: MediaInfo, fps: float, max_frames: int | None) -> str:
    """ffmpeg ``select`` expression for interval sampling by each frame's own time (exact on variable
    frame rate); the average-interval approximation when times are unknown or too many."""
    times = _packet_times(path, info) or []
    wanted = nearest_frame_times(times, fps, max_frames)
    if wanted and len(wanted) <= _MAX_LISTED_FRAMES:
        gaps = [b - a for a, b in zip(times, times[1:]) if b > a]
        tolerance = min([1e-4, *(g / 3 for g in gaps)])
        return _balanced_sum([f"lt(abs(t-{t:.6f}),{tolerance:.9f})" for t in wanted])
    # Buckets of 1/fps shifted half an average frame earlier: the first frame of each bucket is
    # about the one nearest to k/fps.
    half_frame = 0.5 / info.fps if info.fps else 0.0
    bucket = f"floor((t+{half_frame:.9f})*{fps:.9f}+1e-6)"
    prev_bucket = f"floor((prev_selected_t+{half_frame:.9f})*{fps:.9f}+1e-6)"
    return f"isnan(prev_selected_t)+gte({bucket},{prev_bucket}+1)"


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
    size: tuple[int, int] | None = None,
) -> Generator[Frame, None, None]:
    """Frames sampled from a video, streamed one at a time.

    ``method="interval"``: for each of the times 0, 1/fps, 2/fps, ... the source frame nearest to it
    by its own timestamp (variable frame rate included), each frame at most once.
    ``method="keyframes"``: only key frames are decoded (fast: no inter frames). Both stop after
    ``max_frames`` (None: no cap). ``height`` scales frames down keeping the aspect (even width);
    None keeps the source size; ``size`` (width, height) sets the exact size instead (e.g. the size
    a model is fed). A video shorter than one interval still yields its first frame.
    Raises InvalidMediaError for files that are not decodable videos, ValueError for bad options.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    fps = _check_positive("fps", fps)
    max_frames = _check_positive("max_frames", max_frames, int)
    height = _check_positive("height", height, int)
    path = Path(path)
    info = probe_source_video(path)
    size = size or output_size(info, height)
    progress = progress or no_progress
    if method == "interval":
        select = _nearest_frames_select(path, info, fps, max_frames)
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
    path: Path | str,
    height: int | None = None,
    progress: ProgressCallback | None = None,
    *,
    size: tuple[int, int] | None = None,
    rate: str | None = None,
    planar: bool = False,
) -> Generator[Frame, None, None]:
    """Every frame of a video at its source rate, upright, with its presentation time.

    ``size`` (width, height) scales to exactly that size (e.g. a model's square input) instead of
    ``height``. ``rate`` resamples to that constant rate by timestamp (:func:`constant_rate_filters`;
    times then count from the first frame). ``planar`` gives 3xHxW images (one plane per channel,
    what a model's input is made of). ``progress`` gets the container's frame count as total
    (or an estimate from duration x fps, or None when the container reports neither).
    """
    height = _check_positive("height", height, int)
    path = Path(path)
    info = probe_source_video(path)
    size = size or output_size(info, height)
    yield from _run_ffmpeg(
        path,
        info,
        video_filters=constant_rate_filters(rate) if rate else [],
        size=size,
        input_options={},
        max_frames=None,
        total=estimate_frame_total(info, "all"),
        stage="decoding frame",
        progress=progress or no_progress,
        planar=planar,
    )
