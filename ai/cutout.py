"""Background removal pipelines: photo -> PNG cut-out, video -> WebM/MOV with alpha or MP4 on a colour.

Pure functions: a source file in, the destination file written, a progress callback. The caller owns
the destination path (it renames it into place); on failure we remove what we wrote.

Video: frames are decoded by :func:`ai.frames.iter_video_frames`, segmented one at a time, smoothed in
time (:class:`AlphaSmoother`) and piped as raw frames into one ffmpeg encoder process, which also
takes the audio straight from the source file. Nothing is written to disk but the result.
"""

from __future__ import annotations

import collections
import re
import subprocess
import threading
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
from PIL import Image

from ai.errors import InvalidMediaError, PipelineError
from ai.probe import MediaInfo, oriented_image, probe_image
from ai.progress import ProgressCallback, no_progress

BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "green": (0, 255, 0),  # pure chroma green/blue: easy to key out again in an editor
    "blue": (0, 0, 255),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
BACKGROUND_CHOICES = "transparent, green, blue, white, black or a #rrggbb colour"
PHOTO_OUTPUTS = ("transparent", "mask")
_HEX_COLOUR = re.compile(r"^#?([0-9a-fA-F]{6})$")
_STDERR_TAIL_LINES = 30


class InvalidOptionError(InvalidMediaError, ValueError):
    """A bad option value (background, output, smoothing). Never retried; HTTP maps it to 400."""


class VideoEncodeError(PipelineError):
    """ffmpeg failed to write the output video; the message carries the end of its log."""


ModelArg = str | Any  # a model name, or a loaded model with predict(image) -> alpha HxW float


def parse_background(value: str | None) -> tuple[str, tuple[int, int, int] | None]:
    """``"transparent"``/None -> ("transparent", None); a colour name or ``#rrggbb`` -> (name, (r, g, b)).

    Hex colours are named by their lower-case digits without ``#`` (e.g. "ff00aa"), which is what
    output file names use.
    """
    text = "transparent" if value is None else str(value).strip().lower()
    if text in ("", "transparent", "none", "alpha"):
        return "transparent", None
    if text in BACKGROUND_COLOURS:
        return text, BACKGROUND_COLOURS[text]
    match = _HEX_COLOUR.match(text)
    if match:
        digits = match.group(1).lower()
        return digits, (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
    raise InvalidOptionError(f"background {value!r} is not valid: expected {BACKGROUND_CHOICES}")


def cutout_video_filename(background: str | None = "transparent", prores: bool = False) -> str:
    """File name for a video cut-out: cutout_transparent.webm, cutout_green.mp4, cutout_transparent.mov."""
    name, rgb = parse_background(background)
    if rgb is None:
        return "cutout_transparent.mov" if prores else "cutout_transparent.webm"
    if prores:
        raise InvalidOptionError("ProRes 4444 output is only for a transparent background")
    return f"cutout_{name}.mp4"


def _resolve_model(model: ModelArg):
    if isinstance(model, str):
        from ai.segmentation import get_segmentation_model

        return get_segmentation_model(model)
    if not hasattr(model, "predict"):
        raise TypeError("model must be a segmentation model name or an object with predict(image)")
    return model


def _model_name(model) -> str:
    return getattr(model, "model_name", type(model).__name__)


def composite(rgb: np.ndarray, alpha: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """``rgb`` over a solid colour with ``alpha`` (HxW float 0..1) -> HxWx3 uint8."""
    a = alpha[:, :, None].astype(np.float32)
    bg = np.asarray(background, dtype=np.float32)
    out = rgb.astype(np.float32) * a + bg * (1.0 - a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _alpha_u8(alpha: np.ndarray) -> np.ndarray:
    return np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def photo_cutout(
    src: str | Path,
    dst_png: str | Path,
    *,
    model: ModelArg,
    output: str = "transparent",
    background: str | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Remove the background of a photo and write a PNG.

    ``output="transparent"`` with no background: RGBA PNG. With ``background`` a colour: RGB PNG of the
    subject on that colour. ``output="mask"``: the matte as a grayscale (L) PNG (255 = subject).
    The PNG has the photo's displayed size (EXIF orientation applied).
    Returns width, height, model, output, background, coverage (fraction of pixels that are subject).
    """
    progress = progress or no_progress
    if output not in PHOTO_OUTPUTS:
        raise InvalidOptionError(f"output {output!r} is not valid: expected {' or '.join(PHOTO_OUTPUTS)}")
    bg_name, bg_rgb = parse_background(background)
    if output == "mask" and bg_rgb is not None:
        raise InvalidOptionError("a background colour cannot be combined with output=mask")
    src, dst_png = Path(src), Path(dst_png)
    try:
        if src.stat().st_size == 0:
            raise InvalidMediaError("the file is empty (0 bytes)")
    except OSError as exc:
        raise InvalidMediaError(f"the file could not be read ({exc.strerror})") from exc
    if probe_image(src) is None:  # also enforces the pixel limit and decodes once
        raise InvalidMediaError("the file is not a recognised image")

    progress(0, 3, "loading model")
    segmenter = _resolve_model(model)
    if hasattr(segmenter, "load"):
        segmenter.load()  # a missing model fails here, before any decoding work
    image = oriented_image(src)
    rgb = np.asarray(image)
    progress(1, 3, "removing background")
    alpha = np.asarray(segmenter.predict(rgb), dtype=np.float32)
    if alpha.shape != rgb.shape[:2]:
        raise PipelineError(f"the model returned a {alpha.shape} matte for a {rgb.shape[:2]} image")

    progress(2, 3, "writing PNG")
    if output == "mask":
        result = Image.fromarray(_alpha_u8(alpha), "L")
    elif bg_rgb is None:
        result = Image.fromarray(np.dstack([rgb, _alpha_u8(alpha)]), "RGBA")
    else:
        result = Image.fromarray(composite(rgb, alpha, bg_rgb), "RGB")
    try:
        result.save(dst_png, "PNG", compress_level=6)
    except BaseException:
        _remove_quietly(dst_png)
        raise
    progress(3, 3, "done")
    return {
        "width": result.width,
        "height": result.height,
        "model": _model_name(segmenter),
        "output": output,
        "background": bg_name if output == "transparent" else None,
        "coverage": round(float((alpha >= 0.5).mean()), 4),
    }


class AlphaSmoother:
    """Temporal smoothing of a video's alpha matte: steady on still subjects, no smear on motion.

    Per pixel, an exponential moving average whose weight on the past drops as the new value moves
    away from it: ``w = strength * exp(-(|alpha - smoothed| / motion_threshold)^2)``, then
    ``smoothed = w * smoothed + (1 - w) * alpha``. Small frame-to-frame wobble (model noise, compression
    noise) is averaged out; a change of ``2 * motion_threshold`` or more (a real edge moving across
    the pixel) keeps under 2% of the old value, so the matte follows motion at once.
    ``strength=0`` turns smoothing off.
    """

    def __init__(self, strength: float = 0.6, motion_threshold: float = 0.2) -> None:
        if not 0.0 <= float(strength) < 1.0:
            raise InvalidOptionError(f"smoothing must be at least 0 and below 1, got {strength!r}")
        if not float(motion_threshold) > 0:
            raise InvalidOptionError(f"motion_threshold must be greater than 0, got {motion_threshold!r}")
        self.strength = float(strength)
        self.motion_threshold = float(motion_threshold)
        self._state: np.ndarray | None = None

    def reset(self) -> None:
        self._state = None

    def __call__(self, alpha: np.ndarray) -> np.ndarray:
        alpha = np.asarray(alpha, dtype=np.float32)
        if self.strength == 0.0 or self._state is None or self._state.shape != alpha.shape:
            self._state = alpha.copy()
            return alpha
        change = np.abs(alpha - self._state)
        weight = self.strength * np.exp(-np.square(change / self.motion_threshold))
        self._state = weight * self._state + (1.0 - weight) * alpha
        return self._state.copy()


class _StderrTail(threading.Thread):
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


def _frame_rate(info: MediaInfo) -> str:
    """The source's average frame rate as an exact ffmpeg rational (29.97 -> 30000/1001)."""
    if not info.fps:
        return "25"
    rate = Fraction(info.fps).limit_denominator(1001 * 4)
    return f"{rate.numerator}/{rate.denominator}"


def _encoder_args(kind: str, info: MediaInfo) -> tuple[list[str], list[str], list[str], str]:
    """(video args, audio args, muxer args, container) for kind webm | prores | mp4."""
    if kind == "webm":
        # yuva420p: libvpx-vp9 stores alpha as a second plane (BlockAdditional in Matroska).
        video = [
            "-c:v",
            "libvpx-vp9",
            "-pix_fmt",
            "yuva420p",
            "-b:v",
            "0",
            "-crf",
            "32",
            "-deadline",
            "good",
            "-cpu-used",
            "4",
            "-row-mt",
            "1",
            "-auto-alt-ref",
            "0",
        ]
        audio = ["-c:a", "libopus", "-b:a", "128k"]  # WebM carries Opus/Vorbis only
        return video, audio, [], "webm"
    if kind == "prores":
        video = [
            "-c:v",
            "prores_ks",
            "-profile:v",
            "4444",
            "-pix_fmt",
            "yuva444p10le",
            "-vendor",
            "apl0",
            "-alpha_bits",
            "16",
        ]
        return video, ["-c:a", "pcm_s16le"], [], "mov"
    video = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", "20"]
    audio = ["-c:a", "copy"] if info.audio_codec == "aac" else ["-c:a", "aac", "-b:a", "192k"]
    return video, audio, ["-movflags", "+faststart"], "mp4"


def _even_pad(frame: np.ndarray, fill: tuple[int, ...]) -> np.ndarray:
    """Pad to even width/height (4:2:0 chroma needs it) with ``fill`` (the background, or transparent)."""
    height, width = frame.shape[:2]
    pad_h, pad_w = height % 2, width % 2
    if not pad_h and not pad_w:
        return frame
    out = np.empty((height + pad_h, width + pad_w, frame.shape[2]), dtype=frame.dtype)
    out[:] = np.asarray(fill, dtype=frame.dtype)
    out[:height, :width] = frame
    return out


def video_cutout(
    src: str | Path,
    dst: str | Path,
    *,
    model: ModelArg,
    background: str | None = "transparent",
    prores: bool = False,
    height: int | None = None,
    smoothing: float = 0.6,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Remove the background of every frame of a video.

    Transparent background: WebM (VP9 with alpha, Opus audio), or with ``prores=True`` a MOV (ProRes
    4444 with alpha, PCM audio) for video editors. A colour: H.264 MP4 (AAC audio: copied when the
    source already has AAC). Same frame rate, frame count and duration as the source; ``height``
    scales the output down (aspect kept). ``smoothing`` (0 = off, <1) steadies the matte over time.
    Raises InvalidMediaError for a bad source, ai.errors.Cancelled when ``progress`` raises it (the partial
    output is removed), VideoEncodeError when ffmpeg fails.
    """
    from ai.frames import estimate_frame_total, iter_video_frames, probe_source_video

    progress = progress or no_progress
    bg_name, bg_rgb = parse_background(background)
    if prores and bg_rgb is not None:
        raise InvalidOptionError("ProRes 4444 output is only for a transparent background")
    smoother = AlphaSmoother(strength=smoothing)
    src, dst = Path(src), Path(dst)
    info = probe_source_video(src)
    kind = "mp4" if bg_rgb is not None else ("prores" if prores else "webm")
    total = estimate_frame_total(info, "all")

    progress(0, total, "loading model")
    segmenter = _resolve_model(model)
    if hasattr(segmenter, "load"):
        segmenter.load()

    frames = iter_video_frames(src, height=height)
    try:
        first = next(frames)
    except StopIteration:  # iter_video_frames raises for no frames; belt and braces
        raise InvalidMediaError("no frames could be decoded from the video") from None
    frame_h, frame_w = first.image.shape[:2]
    out_w, out_h = frame_w + frame_w % 2, frame_h + frame_h % 2
    pix_in = "rgb24" if bg_rgb is not None else "rgba"
    fill = bg_rgb if bg_rgb is not None else (0, 0, 0, 0)
    rate = _frame_rate(info)
    video_args, audio_args, muxer_args, container = _encoder_args(kind, info)

    cmd = [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        pix_in,
        "-s",
        f"{out_w}x{out_h}",
        "-framerate",
        rate,
        "-i",
        "pipe:0",
    ]
    if info.has_audio:
        cmd += ["-i", str(src), "-map", "0:v:0", "-map", "1:a:0"] + video_args + audio_args
    else:
        cmd += ["-map", "0:v:0"] + video_args
    # No -shortest: the audio keeps its own length, exactly as in the source file.
    cmd += muxer_args + ["-f", container, str(dst)]

    try:
        encoder = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except BaseException as exc:
        frames.close()  # stop the decoder process
        if isinstance(exc, FileNotFoundError):
            raise RuntimeError("ffmpeg is not installed (apt-get install ffmpeg)") from exc
        raise
    encoder_in = cast(IO[bytes], encoder.stdin)  # a pipe: stdin=PIPE
    stderr = _StderrTail(encoder.stderr)
    stderr.start()

    count = 0
    coverage_sum = 0.0
    finished = False
    try:

        def process(frame) -> None:
            nonlocal count, coverage_sum
            alpha = smoother(np.asarray(segmenter.predict(frame.image), dtype=np.float32))
            coverage_sum += float((alpha >= 0.5).mean())
            if bg_rgb is not None:
                pixels = composite(frame.image, alpha, bg_rgb)
            else:
                pixels = np.dstack([frame.image, _alpha_u8(alpha)])
            pixels = _even_pad(pixels, fill)
            try:
                encoder_in.write(pixels.tobytes())
            except (BrokenPipeError, ValueError):
                encoder.wait()
                stderr.join(timeout=5)
                # ffmpeg's log says why it stopped; the broken pipe adds nothing.
                raise VideoEncodeError(f"ffmpeg stopped while encoding the cut-out video:\n{stderr.text()}") from None
            count += 1
            progress(count, total, f"removing background {count}/{total if total else '?'}")

        process(first)
        for frame in frames:
            process(frame)

        progress(count, total, "finishing video")
        encoder_in.close()
        returncode = encoder.wait()
        stderr.join(timeout=5)
        if returncode != 0:
            raise VideoEncodeError(f"ffmpeg could not encode the cut-out video (exit {returncode}):\n{stderr.text()}")
        finished = True
    finally:
        frames.close()  # stops the decoder process when we leave early
        if not finished:
            if encoder.poll() is None:
                encoder.kill()
            encoder.wait()
            stderr.join(timeout=5)
            _remove_quietly(dst)
        for pipe in (encoder.stdin, encoder.stderr):
            try:
                if pipe is not None:
                    pipe.close()
            except (OSError, ValueError):
                pass

    fps = float(Fraction(rate))
    progress(count, count, "done")
    return {
        "width": out_w,
        "height": out_h,
        "frames": count,
        "fps": round(fps, 6),
        "duration": round(count / fps, 6),
        "model": _model_name(segmenter),
        "background": bg_name,
        "prores": bool(prores),
        "container": container,
        "video_codec": {"webm": "vp9", "prores": "prores", "mp4": "h264"}[kind],
        "has_alpha": bg_rgb is None,
        "audio_codec": (None if not info.has_audio else {"webm": "opus", "prores": "pcm_s16le"}.get(kind, "aac")),
        "smoothing": smoother.strength,
        "coverage": round(coverage_sum / max(count, 1), 4),
        "filename": cutout_video_filename(background, prores),
    }
