"""Identify a media file from its content (never its name) and read its metadata.

Images are opened with Pillow (HEIC/AVIF through pillow-heif when installed); anything else is
asked of ffprobe. No torch here: the web process calls this on every upload.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from ai.errors import InvalidMediaError

try:  # HEIC/HEIF/AVIF are common in phone libraries; Pillow needs a plugin for HEIC.
    import pillow_heif

    pillow_heif.register_heif_opener()
    if hasattr(pillow_heif, "register_avif_opener"):
        try:
            pillow_heif.register_avif_opener()
        except Exception:  # newer Pillow reads AVIF itself
            pass
except ImportError:  # pragma: no cover - optional
    pillow_heif = None  # type: ignore[assignment]

try:  # JPEG XL (Immich libraries hold them; ffprobe would otherwise call them one-frame videos).
    import pillow_jxl  # noqa: F401  (registers the JXL opener on import)
except ImportError:  # pragma: no cover - optional: ffmpeg decodes JPEG XL too (see _decode_with_ffmpeg)
    pass

# Pillow's own bomb guard warns at 89 MP; we decide ourselves with a clear message.
Image.MAX_IMAGE_PIXELS = None
DEFAULT_MAX_PIXELS = 150_000_000

EXIF_ORIENTATION = 0x0112
EXIF_IFD = 0x8769
EXIF_DATETIME_ORIGINAL = 0x9003
EXIF_OFFSET_TIME_ORIGINAL = 0x9011
TIFF_DATETIME = 0x0132


@dataclass
class MediaInfo:
    kind: str  # "photo" | "video"
    mime_type: str
    format: str
    width: int  # as displayed: after EXIF orientation / rotation metadata
    height: int
    rotation: int = 0  # degrees clockwise the stored pixels must turn to display upright
    orientation: int | None = None  # EXIF orientation tag (photos)
    duration: float | None = None
    fps: float | None = None
    frame_count: int | None = None
    has_audio: bool = False
    video_codec: str | None = None
    audio_codec: str | None = None
    captured_at: str | None = None  # ISO 8601
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_IMAGE_MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "HEIF": "image/heic",
    "AVIF": "image/avif",
    "MPO": "image/jpeg",
    "JXL": "image/jxl",
    "JPEG2000": "image/jp2",
}
# ffprobe codec names of still images, for the formats Pillow cannot open here.
_STILL_CODEC_MIME = {"jpegxl": "image/jxl", "jpeg2000": "image/jp2", "exr": "image/x-exr", "dpx": "image/x-dpx"}
# ffprobe reads single images with its image2 demuxer or a per-codec "<codec>_pipe" demuxer.
_STILL_DEMUXERS = ("image2", "image2pipe")
_ORIENT_ROTATION = {3: 180, 6: 90, 8: 270, 5: 90, 7: 270}


def _exif_datetime(raw: str | None, offset: str | None = None) -> str | None:
    if not raw:
        return None
    try:
        when = dt.datetime.strptime(str(raw).strip().rstrip("\x00"), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    text = when.isoformat()
    if offset and len(offset) == 6 and offset[0] in "+-":
        text += offset
    return text


def _read_image(path: Path, max_pixels: int, keep: bool) -> tuple[MediaInfo, Image.Image | None] | None:
    """Open, check and decode an image once: its MediaInfo, and with ``keep`` its pixels upright
    (EXIF orientation applied) as RGB. None if neither Pillow nor ffmpeg recognises the bytes as a
    still image."""
    pixels: Image.Image | None = None
    try:
        with Image.open(path) as im:
            fmt = (im.format or "").upper()
            width, height = im.size
            if width <= 0 or height <= 0:
                raise InvalidMediaError("the image has no pixels")
            if width * height > max_pixels:
                raise InvalidMediaError(
                    f"the image claims {width}x{height} pixels ({width * height / 1e6:.0f} MP); "
                    f"the limit is {max_pixels / 1e6:.0f} MP"
                )
            exif = im.getexif()
            orientation = exif.get(EXIF_ORIENTATION)
            ifd = exif.get_ifd(EXIF_IFD) if exif else {}
            captured = _exif_datetime(
                ifd.get(EXIF_DATETIME_ORIGINAL) or exif.get(TIFF_DATETIME), ifd.get(EXIF_OFFSET_TIME_ORIGINAL)
            )
            # Decode the pixels: a truncated or corrupt file fails here, not in a worker later.
            im.load()
            if keep:
                pixels = ImageOps.exif_transpose(im).convert("RGB")
    except InvalidMediaError:
        raise
    except UnidentifiedImageError:
        return _probe_still_with_ffmpeg(path, max_pixels, keep)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidMediaError(f"the image could not be decoded ({exc})") from exc
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    info = MediaInfo(
        kind="photo",
        mime_type=_IMAGE_MIME.get(fmt, f"image/{fmt.lower()}"),
        format=fmt.lower(),
        width=width,
        height=height,
        rotation=_ORIENT_ROTATION.get(orientation or 1, 0),
        orientation=orientation,
        captured_at=captured,
    )
    return info, pixels


def probe_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> MediaInfo | None:
    """MediaInfo for an image, None if neither Pillow nor ffmpeg recognises the bytes as a still image."""
    read = _read_image(Path(path), max_pixels, keep=False)
    return read[0] if read else None


def open_photo(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[MediaInfo, Image.Image]:
    """A photo decoded once for processing: its MediaInfo and its pixels upright, as RGB.

    Raises InvalidMediaError with a user-facing reason (empty, unreadable, not an image, a video,
    too many pixels, corrupt)."""
    path = Path(path)
    check_readable(path)
    read = _read_image(path, max_pixels, keep=True)
    if read is None:
        if probe_video(path) is not None:
            raise InvalidMediaError("the file is a video, not a photo")
        raise InvalidMediaError("the file is not a recognised image")
    info, pixels = read
    assert pixels is not None
    return info, pixels


def run_media_tool(cmd: list[str], timeout: float, doing: str) -> subprocess.CompletedProcess:
    """Run ffprobe / ffmpeg; a missing tool or a file that keeps it busy too long is said in words."""
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise RuntimeError(f"{cmd[0]} is not installed (apt-get install ffmpeg)") from exc
    except subprocess.TimeoutExpired as exc:
        raise InvalidMediaError(f"{cmd[0]} took too long to {doing}") from exc


def _ffprobe(path: Path, timeout: float = 60) -> dict[str, Any]:
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)]
    proc = run_media_tool(cmd, timeout, "read the file")
    if proc.returncode != 0:
        return {}
    try:
        return json.loads(proc.stdout or b"{}")
    except json.JSONDecodeError:
        return {}


def _is_still(data: dict[str, Any]) -> bool:
    """Whether ffprobe read the file as one still image (JPEG XL, JPEG 2000, EXR...), not a clip."""
    names = ((data.get("format") or {}).get("format_name") or "").split(",")
    return any(name in _STILL_DEMUXERS or name.endswith("_pipe") for name in names)


def _decode_with_ffmpeg(path: Path, timeout: float = 120) -> Image.Image:
    """Decode a still image Pillow cannot open through ffmpeg (as PNG, which keeps alpha and 16 bits)."""
    cmd = ["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-"]
    proc = run_media_tool(cmd, timeout, "decode the image")
    if proc.returncode != 0 or not proc.stdout:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise InvalidMediaError(f"the image could not be decoded ({detail[-1] if detail else 'no picture'})")
    image = Image.open(io.BytesIO(proc.stdout))
    image.load()
    return image


def _probe_still_with_ffmpeg(
    path: Path, max_pixels: int, keep: bool = False
) -> tuple[MediaInfo, Image.Image | None] | None:
    data = _ffprobe(path)
    if not _is_still(data):
        return None
    stream = next((s for s in data.get("streams") or [] if s.get("codec_type") == "video"), None)
    if stream is None or int(stream.get("width") or 0) <= 0 or int(stream.get("height") or 0) <= 0:
        return None  # e.g. text named .jpg, which the image2 demuxer guesses from the name
    width, height = int(stream["width"]), int(stream["height"])
    if width * height > max_pixels:
        raise InvalidMediaError(
            f"the image claims {width}x{height} pixels ({width * height / 1e6:.0f} MP); "
            f"the limit is {max_pixels / 1e6:.0f} MP"
        )
    image = _decode_with_ffmpeg(path)  # a corrupt file fails here, not in a worker later
    codec = stream.get("codec_name") or "unknown"
    info = MediaInfo(
        kind="photo",
        mime_type=_STILL_CODEC_MIME.get(codec, f"image/{codec}"),
        format=codec,
        width=width,
        height=height,
        extra={"decoder": "ffmpeg"},
    )
    return info, (image.convert("RGB") if keep else None)


def _rate(text: str | None) -> float | None:
    if not text or text in ("0/0", "0"):
        return None
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def stream_rotation(stream: dict[str, Any]) -> int:
    """Clockwise display rotation in degrees from a video stream's display matrix or rotate tag."""
    rot = None
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            rot = float(side["rotation"])
            break
    if rot is None and "rotate" in (stream.get("tags") or {}):
        # The legacy tag is already clockwise.
        return int(float(stream["tags"]["rotate"])) % 360
    if rot is None:
        return 0
    # Display-matrix rotation is counter-clockwise; turn it into the clockwise angle.
    return round(-rot) % 360


def _video_start(video: dict[str, Any], fmt: dict[str, Any]) -> float:
    """Seconds from the file's start (its earliest stream) to the first video frame: where the
    video must begin again, against the audio, in anything re-encoded from it."""
    try:
        return max(0.0, float(video["start_time"]) - float(fmt["start_time"]))
    except (KeyError, TypeError, ValueError):
        return 0.0


def probe_video(path: Path) -> MediaInfo | None:
    """MediaInfo for a video, None if ffprobe does not recognise it as media at all."""
    data = _ffprobe(Path(path))
    streams = data.get("streams") or []
    fmt = data.get("format") or {}
    if (not streams and not fmt) or _is_still(data):
        return None
    video = next(
        (s for s in streams if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")),
        None,
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None:
        if audio is not None:
            raise InvalidMediaError("the file has an audio stream but no video stream")
        return None
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        # ffprobe guesses from the name (e.g. text called .jpg read as a JPEG stream): not media.
        return None
    rotation = stream_rotation(video)
    if rotation in (90, 270):
        width, height = height, width
    duration = None
    for candidate in (fmt.get("duration"), video.get("duration")):
        try:
            if candidate is not None and float(candidate) > 0:
                duration = float(candidate)
                break
        except ValueError:
            pass
    frame_count = None
    try:
        frame_count = int(video["nb_frames"]) if int(video.get("nb_frames") or 0) > 0 else None
    except (ValueError, TypeError):
        frame_count = None
    tags = {**(fmt.get("tags") or {}), **(video.get("tags") or {})}
    created = tags.get("creation_time") or tags.get("com.apple.quicktime.creationdate")
    names = (fmt.get("format_name") or "").split(",")
    mime = (
        "video/mp4"
        if "mp4" in names or "mov" in names
        else (
            "video/webm"
            if "webm" in names
            else "video/x-matroska"
            if "matroska" in names
            else "video/x-msvideo"
            if "avi" in names
            else f"video/{names[0] or 'unknown'}"
        )
    )
    return MediaInfo(
        kind="video",
        mime_type=mime,
        format=names[0] if names else "unknown",
        width=width,
        height=height,
        rotation=rotation,
        duration=duration,
        fps=_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")),
        frame_count=frame_count,
        has_audio=audio is not None,
        video_codec=video.get("codec_name"),
        audio_codec=(audio or {}).get("codec_name"),
        captured_at=created,
        extra={
            "stream_index": video.get("index"),
            "pix_fmt": video.get("pix_fmt"),
            "video_start": _video_start(video, fmt),
        },
    )


def check_readable(path: Path) -> None:
    """Raise InvalidMediaError for a file that cannot be read or has no bytes."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidMediaError(f"the file could not be read ({exc.strerror})") from exc
    if size == 0:
        raise InvalidMediaError("the file is empty (0 bytes)")


def probe_media(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> MediaInfo:
    """Classify by content. Raises InvalidMediaError with a user-facing reason."""
    path = Path(path)
    check_readable(path)
    info = probe_image(path, max_pixels=max_pixels)
    if info is not None:
        return info
    info = probe_video(path)
    if info is not None:
        return info
    raise InvalidMediaError("the file is not a recognised image or video")


def oriented_image(path: Path | str) -> Image.Image:
    """Open an image with its EXIF orientation applied, as RGB. Raises InvalidMediaError."""
    try:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except UnidentifiedImageError:
        return _decode_with_ffmpeg(Path(path)).convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidMediaError(f"the image could not be decoded ({exc})") from exc


if __name__ == "__main__":  # python -m ai.probe FILE
    import sys

    print(json.dumps(probe_media(sys.argv[1]).to_dict(), indent=2))
