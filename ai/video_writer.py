"""Write frames computed in Python into an H.264 MP4 that keeps the source's audio and timing.

One ffmpeg process (built with ffmpeg-python) reads raw RGB frames from a pipe at the source's
average frame rate and takes the audio straight from the source file (copied when it is AAC, else
encoded to AAC). Same frame count at the same rate gives the same duration; a variable-frame-rate
source comes out at its average rate (frame count and duration kept, individual frame times evened
out). Nothing but the result is written; on any failure or cancel the partial file is removed.
"""

from __future__ import annotations

import collections
import itertools
import subprocess
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import ffmpeg
import numpy as np

from ai.errors import PipelineError
from ai.probe import MediaInfo
from ai.progress import ProgressCallback

_STDERR_TAIL_LINES = 30


class VideoEncodeError(PipelineError):
    """ffmpeg failed to write the output video; the message carries the end of its log."""


def exact_frame_rate(info: MediaInfo) -> str:
    """The source's average frame rate as an exact ffmpeg rational (29.97 -> 30000/1001)."""
    if not info.fps:
        return "25"
    rate = Fraction(info.fps).limit_denominator(1001 * 4)
    return f"{rate.numerator}/{rate.denominator}"


class StderrTail(threading.Thread):
    """Drains ffmpeg's stderr (so it can never block on a full pipe) and keeps the last lines."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True, name="ffmpeg-encoder-stderr")
        self.stream = stream
        self.lines: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)

    def run(self) -> None:
        for raw in self.stream:
            text = raw.decode("utf-8", "replace").strip()
            if text:
                self.lines.append(text)

    def text(self) -> str:
        return "\n".join(self.lines)[-1500:] or "ffmpeg gave no reason"


def report_frame(progress: ProgressCallback, done: int, total: int | None) -> None:
    """ "frame N/M" to a progress callback (M grows past an estimate that was too low)."""
    shown = max(total, done) if total else None
    progress(done, shown, f"frame {done}/{shown or '?'}")


def remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


class H264Writer:
    """``with H264Writer(dst, width, height, source=path, info=info) as out: out.write(rgb)``.

    ``width``/``height``: the size of the frames written (odd sizes are padded by one black
    row/column: 4:2:0 chroma needs even sizes). Leaving the block with an exception (a cancel
    included) kills ffmpeg and removes ``dst``; leaving it normally finishes the file.
    """

    def __init__(
        self,
        dst: Path | str,
        width: int,
        height: int,
        *,
        source: Path | str,
        info: MediaInfo,
        crf: int = 18,
        preset: str = "veryfast",
        label: str = "video",
    ) -> None:
        self.dst = Path(dst)
        self.width, self.height = int(width), int(height)
        self.out_width, self.out_height = self.width + self.width % 2, self.height + self.height % 2
        self.rate = exact_frame_rate(info)
        self.label = label
        self.frames = 0
        self.audio_codec = None if not info.has_audio else "aac"
        video = ffmpeg.input(
            "pipe:0", format="rawvideo", pix_fmt="rgb24", s=f"{self.out_width}x{self.out_height}", framerate=self.rate
        ).video.filter("scale", out_color_matrix="bt709", out_range="tv")
        streams = [video]
        audio_args: dict = {}
        if info.has_audio:
            streams.append(ffmpeg.input(str(source))["a:0"])
            audio_args = {"acodec": "copy"} if info.audio_codec == "aac" else {"acodec": "aac", "audio_bitrate": "192k"}
        # No -shortest: the audio keeps its own length, exactly as in the source file.
        self.cmd = (
            ffmpeg.output(
                *streams,
                str(self.dst),
                format="mp4",
                vcodec="libx264",
                pix_fmt="yuv420p",
                preset=preset,
                crf=crf,
                colorspace="bt709",
                color_primaries="bt709",
                color_trc="bt709",
                movflags="+faststart",
                **audio_args,
            )
            .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
            .overwrite_output()
            .compile()
        )
        self._process: subprocess.Popen | None = None
        self._stderr: StderrTail | None = None

    def __enter__(self) -> H264Writer:
        self.dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._process = subprocess.Popen(
                self.cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        except FileNotFoundError as exc:
            raise RuntimeError("ffmpeg is not installed (apt-get install ffmpeg)") from exc
        self._stderr = StderrTail(self._process.stderr)
        self._stderr.start()
        return self

    def write(self, rgb: np.ndarray) -> None:
        """One frame, HxWx3 uint8 of the size given at construction."""
        assert self._process is not None and self._process.stdin is not None
        if rgb.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame is {rgb.shape[1]}x{rgb.shape[0]}, the video {self.width}x{self.height}")
        if (self.out_height, self.out_width) != rgb.shape[:2]:
            padded = np.zeros((self.out_height, self.out_width, 3), dtype=np.uint8)
            padded[: self.height, : self.width] = rgb
            rgb = padded
        try:
            self._process.stdin.write(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
        except (BrokenPipeError, ValueError):
            self._process.wait()
            assert self._stderr is not None  # started with the process
            self._stderr.join(timeout=5)
            raise VideoEncodeError(f"ffmpeg stopped while encoding the {self.label}:\n{self._stderr.text()}") from None
        self.frames += 1

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        process, stderr = self._process, self._stderr
        assert process is not None and stderr is not None and process.stdin is not None
        finished = False
        try:
            if kind is None:
                process.stdin.close()
                returncode = process.wait()
                stderr.join(timeout=5)
                if returncode != 0:
                    raise VideoEncodeError(
                        f"ffmpeg could not encode the {self.label} (exit {returncode}):\n{stderr.text()}"
                    )
                if self.frames == 0:
                    raise VideoEncodeError(f"no frames were written to the {self.label}")
                finished = True
        finally:
            if not finished:
                if process.poll() is None:
                    process.kill()
                process.wait()
                stderr.join(timeout=5)
                remove_quietly(self.dst)
            for pipe in (process.stdin, process.stderr):
                try:
                    if pipe is not None:
                        pipe.close()
                except (OSError, ValueError):
                    pass

    @property
    def fps(self) -> float:
        return float(Fraction(self.rate))


def encode_frames(
    dst: Path | str,
    pictures: Iterator[np.ndarray],
    *,
    source: Path | str,
    info: MediaInfo,
    label: str,
    progress: ProgressCallback,
    total: int | None,
) -> H264Writer:
    """Encode every picture of ``pictures`` (HxWx3 uint8, the first one sets the size) into
    ``dst`` with the source's audio, reporting "frame N/M". Returns the finished writer."""
    first = next(pictures)
    writer = H264Writer(dst, first.shape[1], first.shape[0], source=source, info=info, label=label)
    with writer:
        for picture in itertools.chain([first], pictures):
            writer.write(picture)
            report_frame(progress, writer.frames, total)
        progress(writer.frames, writer.frames, "finishing video")
    progress(writer.frames, writer.frames, "done")
    return writer
