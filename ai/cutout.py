"""Background removal pipelines: photo -> PNG cut-out, video -> WebM/MOV with alpha or MP4 on a colour.

Pure functions: a source file in, the destination file written, a progress callback. The caller owns
the destination path (it renames it into place); on failure we remove what we wrote.

Video: ffmpeg decodes frames straight at the model's input size (:func:`ai.frames.iter_video_frames`),
the model segments them in batches, the mattes are smoothed in time (:class:`AlphaSmoother`) and piped
into one ffmpeg encoder process, which takes colour and audio straight from the source file and
applies the matte as alpha. Nothing is written to disk but the result.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
from PIL import Image

from ai.errors import InvalidMediaError, PipelineError
from ai.probe import MediaInfo, open_photo
from ai.progress import ProgressCallback, no_progress
from ai.video_writer import StderrTail

BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "green": (0, 255, 0),  # pure chroma green/blue: easy to key out again in an editor
    "blue": (0, 0, 255),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
BACKGROUND_CHOICES = "transparent, green, blue, white, black or a #rrggbb colour"
PHOTO_OUTPUTS = ("transparent", "mask")
_HEX_COLOUR = re.compile(r"^#?([0-9a-fA-F]{6})$")


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
    _, image = open_photo(src)  # decoded once: checks (pixel limit, corruption) and pixels together

    progress(0, 3, "loading model")
    segmenter = _resolve_model(model)
    if hasattr(segmenter, "load"):
        segmenter.load()
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
        # In place, two temporaries: state += (1 - w) * (alpha - state), the same as
        # w * state + (1 - w) * alpha.
        change = alpha - self._state
        keep = np.abs(change)
        keep *= 1.0 / self.motion_threshold
        np.square(keep, out=keep)
        np.negative(keep, out=keep)
        np.exp(keep, out=keep)
        keep *= -self.strength
        keep += 1.0  # now 1 - w
        keep *= change
        self._state += keep
        return self._state.copy()


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


def _encoder_graph(
    info: MediaInfo,
    rate: str,
    size: tuple[int, int],
    background: tuple[int, int, int] | None,
    matte_size: tuple[int, int] | None = None,
) -> str:
    """ffmpeg filter graph of the encoder: input 0 is our matte stream (gray, ``matte_size``, one
    frame per output frame), input 1 the source file. The colour comes straight from the source,
    resampled to ``rate`` by timestamp exactly as our decoder resampled it, so frame k of both streams
    is the same source frame; the matte is scaled to the output size (when it is not already) and
    becomes its alpha. The colour never passes through Python."""
    from ai.frames import constant_rate_filters

    width, height = size
    even_w, even_h = width + width % 2, height + height % 2
    stream = info.extra.get("stream_index")
    colour = [f"{name}={args[0]}" for name, args in constant_rate_filters(rate)]
    if (width, height) != (info.width, info.height):
        colour.append(f"scale={width}:{height}:flags=bicubic")
    graph = f"[1:{stream if stream is not None else 'v:0'}]{','.join(colour)}[colour];"
    if matte_size is not None and tuple(matte_size) == (width, height):
        graph += "[0:v]null[alpha];"
    else:
        graph += f"[0:v]scale={width}:{height}:flags=bilinear[alpha];"
    graph += "[colour][alpha]alphamerge"
    if (even_w, even_h) != (width, height):  # 4:2:0 chroma needs even sizes: transparent padding
        graph += f",format=rgba,pad={even_w}:{even_h}:0:0:color=black@0"
    if background is not None:
        red, green, blue = background
        graph += f"[subject];color=c=0x{red:02x}{green:02x}{blue:02x}:s={even_w}x{even_h}:r={rate}[background];"
        graph += "[background][subject]overlay=shortest=1"
    start = float(info.extra.get("video_start") or 0.0)
    if start > 0:  # the video began after the audio in the source: keep that gap
        graph += f",setpts=PTS+{start:.6f}/TB"
    return graph + "[video]"


class _Stop(Exception):
    """The pipeline is being torn down: a worker thread leaves quietly."""


_END = object()  # end of a queue's stream


@dataclass
class _WriterResult:
    """What the writer thread of a video cut-out hands back."""

    coverage: float = 0.0  # sum over frames of the fraction that is subject
    error: BaseException | None = None


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    """Put without ever blocking past a stop (the consumer may be gone)."""
    while True:
        if stop.is_set():
            raise _Stop()
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def video_cutout(
    src: str | Path,
    dst: str | Path,
    *,
    model: ModelArg,
    background: str | None = "transparent",
    prores: bool = False,
    height: int | None = None,
    smoothing: float = 0.6,
    batch_size: int = 4,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Remove the background of every frame of a video.

    Transparent background: WebM (VP9 with alpha, Opus audio), or with ``prores=True`` a MOV (ProRes
    4444 with alpha, PCM audio) for video editors. A colour: H.264 MP4 (AAC audio: copied when the
    source already has AAC). The output has the source's average frame rate and duration; a variable
    frame rate source is resampled to it by timestamp, so every frame stays in sync with the audio.
    ``height`` scales the output down (aspect kept). ``smoothing`` (0 = off, <1) steadies the matte
    over time; a uniform frame (a flash, a fade to black) keeps the previous frame's matte.

    Three stages overlap: a decoder thread (ffmpeg scales frames to the model's input size; numpy
    normalises whole batches), the model on this thread (``batch_size`` frames per run), and a writer
    thread (matte stretching, smoothing, piping mattes to the ffmpeg encoder, which composites).
    Raises InvalidMediaError for a bad source, ai.errors.Cancelled when ``progress`` raises it (the
    partial output is removed), VideoEncodeError when ffmpeg fails.
    """
    from ai.frames import estimate_frame_total, frame_rate, iter_video_frames, output_size, probe_source_video

    progress = progress or no_progress
    bg_name, bg_rgb = parse_background(background)
    if prores and bg_rgb is not None:
        raise InvalidOptionError("ProRes 4444 output is only for a transparent background")
    smoother = AlphaSmoother(strength=smoothing)
    batch_size = max(1, int(batch_size))
    src, dst = Path(src), Path(dst)
    info = probe_source_video(src)
    kind = "mp4" if bg_rgb is not None else ("prores" if prores else "webm")
    total = estimate_frame_total(info, "all")
    rate = frame_rate(info)
    out_w, out_h = output_size(info, height)

    progress(0, total, "loading model")
    segmenter = _resolve_model(model)
    if not hasattr(segmenter, "predict_batch"):
        raise TypeError("video cut-outs need a segmentation model with predict_batch (ai.segmentation)")
    segmenter.load()
    model_size = int(segmenter.input_size)
    # Mattes are stretched, smoothed and piped at the smaller of the model's size and the output's:
    # for a 640x360 video and a 1024x1024 model that is 4.5 times fewer pixels per frame.
    matte_w, matte_h = (out_w, out_h) if out_w * out_h < model_size * model_size else (model_size, model_size)

    stop = threading.Event()
    # Model inputs are written into a few reused buffers (one being filled, one waiting, one in the
    # model): `free` hands them back once the model has run, and bounds how far decoding runs ahead.
    free: queue.Queue = queue.Queue()
    for _ in range(3):
        free.put(np.empty((batch_size, 3, model_size, model_size), np.float32))
    inputs: queue.Queue = queue.Queue()  # preprocessed batches waiting for the model
    outputs: queue.Queue = queue.Queue(maxsize=2)  # raw predictions waiting for the writer
    frames = iter_video_frames(src, size=(model_size, model_size), rate=rate, planar=True)

    def take_buffer() -> np.ndarray:
        while True:
            if stop.is_set():
                raise _Stop()
            try:
                return free.get(timeout=0.1)
            except queue.Empty:
                continue

    def decode() -> None:
        try:
            pixels = np.empty((batch_size, 3, model_size, model_size), np.uint8)
            filled = 0
            for frame in frames:
                pixels[filled] = frame.image
                filled += 1
                if filled == batch_size:
                    buffer = take_buffer()
                    _put(inputs, (pixels, buffer, segmenter.preprocess(pixels, out=buffer)), stop)
                    pixels = np.empty_like(pixels)  # the writer still reads this batch (uniform frames)
                    filled = 0
            if filled:
                buffer = take_buffer()
                _put(inputs, (pixels[:filled], buffer, segmenter.preprocess(pixels[:filled], out=buffer)), stop)
            _put(inputs, _END, stop)
        except _Stop:
            pass
        except BaseException as exc:
            try:
                _put(inputs, exc, stop)
            except _Stop:
                pass
        finally:
            frames.close()  # stops the ffmpeg decoder when we leave early

    video_args, audio_args, muxer_args, container = _encoder_args(kind, info)
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{matte_w}x{matte_h}", "-framerate", rate]
    cmd += ["-i", "pipe:0", "-i", str(src)]
    graph = _encoder_graph(info, rate, (out_w, out_h), bg_rgb, (matte_w, matte_h))
    cmd += ["-filter_complex", graph, "-map", "[video]"]
    cmd += video_args
    if info.has_audio:
        # No -shortest: the audio keeps its own length, exactly as in the source file.
        cmd += ["-map", "1:a:0"] + audio_args
    cmd += muxer_args + ["-f", container, str(dst)]
    try:
        encoder = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except FileNotFoundError as exc:
        raise RuntimeError("ffmpeg is not installed (apt-get install ffmpeg)") from exc
    encoder_in = cast(IO[bytes], encoder.stdin)  # a pipe: stdin=PIPE
    stderr = StderrTail(encoder.stderr)
    stderr.start()

    written = _WriterResult()

    def write() -> None:
        previous: np.ndarray | None = None
        try:
            while True:
                item = outputs.get()
                if item is _END:
                    return
                raw, pixels = item
                mattes = segmenter.postprocess(raw, pixels, size=(matte_w, matte_h))
                for alpha, flat in zip(mattes.alpha, mattes.flat):
                    if flat and previous is not None:
                        alpha = previous  # a flash or a fade: nothing to separate, keep the subject
                    previous = alpha
                    alpha = smoother(alpha)
                    written.coverage += float((alpha >= 0.5).mean())
                    encoder_in.write(_alpha_u8(alpha).data)  # the buffer itself, no bytes copy
        except BaseException as exc:
            written.error = exc

    decoder_thread = threading.Thread(target=decode, name="cutout-decode", daemon=True)
    writer_thread = threading.Thread(target=write, name="cutout-write", daemon=True)
    decoder_thread.start()
    writer_thread.start()

    def encoder_failed() -> VideoEncodeError | BaseException:
        # A bad source makes both ffmpeg processes fail: the decoder's reason is the useful one.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                item = inputs.get(timeout=0.2)
            except queue.Empty:
                if not decoder_thread.is_alive():
                    break
                continue
            if isinstance(item, BaseException):
                return item
            if item is _END:
                break
        encoder.wait()
        stderr.join(timeout=5)
        return VideoEncodeError(f"ffmpeg stopped while encoding the cut-out video:\n{stderr.text()}")

    count = 0
    finished = False
    try:
        while True:
            item = inputs.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            pixels, buffer, batch = item
            raw = segmenter.run(batch)
            free.put(buffer)  # the model is done with it
            try:
                while writer_thread.is_alive():
                    try:
                        outputs.put((raw, pixels), timeout=0.1)
                        break
                    except queue.Full:
                        continue
            finally:
                if written.error is not None or not writer_thread.is_alive():
                    raise encoder_failed()
            for _ in range(len(pixels)):
                count += 1
                progress(count, total, f"removing background {count}/{total if total else '?'}")

        outputs.put(_END)
        writer_thread.join()
        if written.error is not None:
            raise encoder_failed()
        progress(count, total, "finishing video")
        encoder_in.close()
        returncode = encoder.wait()
        stderr.join(timeout=5)
        if returncode != 0:
            raise VideoEncodeError(f"ffmpeg could not encode the cut-out video (exit {returncode}):\n{stderr.text()}")
        finished = True
    finally:
        stop.set()
        if not finished:
            if encoder.poll() is None:
                encoder.kill()
            encoder.wait()
            try:
                outputs.put_nowait(_END)  # a writer waiting for work leaves
            except queue.Full:
                pass  # a writer blocked on the killed encoder leaves with a broken pipe
        writer_thread.join(timeout=10)
        decoder_thread.join(timeout=10)
        stderr.join(timeout=5)
        if not finished:
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
        "width": out_w + out_w % 2,
        "height": out_h + out_h % 2,
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
        "coverage": round(written.coverage / max(count, 1), 4),
        "filename": cutout_video_filename(background, prores),
    }
