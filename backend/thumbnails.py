"""Small previews for the library grid, the item page and the viewer's gallery.

Every stored file (an original or a derived result) gets one WebP next to it, named after it:
``original.jpg`` -> ``original.jpg.thumb.webp``. Originals get theirs at ingest, results when the
worker stores them; a missing one (older items, a failure at ingest) is made on first request.
Photos are turned upright (EXIF orientation), videos show a frame near their start, depth frame
ZIPs their first depth frame; transparency is kept, so cut-outs show on a checkerboard.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ai.probe import oriented_image, run_media_tool
from backend.storage import Storage

log = logging.getLogger(__name__)

MAX_EDGE = 512  # px, longest side: sharp on a 220 px grid card at 2x pixel density
WEBP_QUALITY = 80
SUFFIX = ".thumb.webp"
MIME_TYPE = "image/webp"


def thumbnail_rel(rel: str) -> str:
    """Where the preview of the stored file ``rel`` lives (relative to MEDIA_ROOT)."""
    return rel + SUFFIX


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale (depth maps) scaled to 8 bits; Pillow's own conversion would clip at 255."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.uint32)
        top = 65535 if image.mode.startswith("I;16") or values.max() > 255 else 255
        return Image.fromarray((values * 255 // max(top, 1)).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    return image.convert("RGB")


def _open_still(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.draft("RGB", (MAX_EDGE, MAX_EDGE))  # JPEG decodes at 1/2..1/8 scale: fast for big photos
            upright = ImageOps.exif_transpose(im)
            upright.load()
            return _to_8bit(upright)
    except Image.UnidentifiedImageError:
        return oriented_image(path)  # formats only ffmpeg decodes


def _video_frame(path: Path, duration: float | None) -> Image.Image:
    """A frame a little way in (the very first is often black), upright (ffmpeg autorotates)."""
    at = min(1.0, duration / 10) if duration else 0.0
    attempts = [["-c:v", "libvpx-vp9"], []] if path.suffix == ".webm" else [[]]  # libvpx keeps VP9 alpha
    error = "no frame"
    for decoder in attempts:
        cmd = ["ffmpeg", "-v", "error", "-ss", f"{at:.3f}", *decoder, "-i", str(path), "-frames:v", "1"]
        cmd += ["-f", "image2pipe", "-c:v", "png", "-"]
        proc = run_media_tool(cmd, 120, "read a frame for the preview")
        if proc.returncode == 0 and proc.stdout:
            return _to_8bit(Image.open(io.BytesIO(proc.stdout)))
        error = proc.stderr.decode(errors="replace").strip()[-300:] or error
    raise RuntimeError(f"ffmpeg could not read a frame: {error}")


def _zip_first_depth(path: Path) -> Image.Image:
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        frames = manifest.get("frames") or []
        if not frames:
            raise RuntimeError("the depth ZIP holds no frames")
        with Image.open(io.BytesIO(archive.read(frames[0]["depth"]))) as im:
            im.load()
            return _to_8bit(im)


def render(path: Path, mime_type: str, duration: float | None = None) -> Image.Image:
    """The preview picture of a stored file, at most MAX_EDGE pixels on its longest side."""
    if mime_type.startswith("video/"):
        image = _video_frame(path, duration)
    elif mime_type == "application/zip":
        image = _zip_first_depth(path)
    else:
        image = _open_still(path)
    image.thumbnail((MAX_EDGE, MAX_EDGE), Image.Resampling.LANCZOS)
    return image


def ensure(storage: Storage, rel: str, mime_type: str, duration: float | None = None) -> Path:
    """The preview of the stored file ``rel``, made now if it does not exist yet. Raises on files
    that cannot be read (the caller decides whether that matters)."""
    dest = storage.path(thumbnail_rel(rel))
    if dest.exists():
        return dest
    image = render(storage.path(rel), mime_type, duration)
    tmp = storage.temp_path(".webp")
    try:
        image.save(tmp, "WEBP", quality=WEBP_QUALITY, method=4)
        storage.place(tmp, thumbnail_rel(rel))
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def make_quietly(storage: Storage, rel: str, mime_type: str, duration: float | None = None) -> None:
    """Make a preview where failing must not fail the caller (ingest, a finished job): the preview
    is tried again on first request, and that request reports the reason."""
    try:
        storage.remove(thumbnail_rel(rel))  # a new file under the same name (reprocess, new original)
        ensure(storage, rel, mime_type, duration)
    except Exception as exc:  # the preview is optional here
        log.warning("no preview for %s yet: %s", rel, exc)
