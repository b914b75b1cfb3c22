"""Generate test media with ffmpeg and Pillow, so tests never depend on files in the repo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def shared_media(*parts: str) -> Path | None:
    """A file from ../shared/media, or None when the folder is absent (tests then skip)."""
    path = SHARED_MEDIA.joinpath(*parts)
    return path if path.exists() else None


def make_photo(
    path: Path, width: int = 160, height: int = 120, orientation: int | None = None, fmt: str = "JPEG", seed: int = 0
) -> Path:
    """A photo with structure (gradient + a bright square) and optional EXIF orientation."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack(
        [(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), np.full_like(x, 96)], axis=-1
    ).astype(np.uint8)
    img[height // 4 : height // 2, width // 4 : width // 2] = (250, 240, 30)
    img = np.clip(img.astype(int) + rng.integers(-8, 8, img.shape), 0, 255).astype(np.uint8)
    im = Image.fromarray(img, "RGB")
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt, **kwargs)
    return path


def make_video(
    path: Path,
    seconds: float = 2.0,
    fps: float = 10,
    width: int = 160,
    height: int = 120,
    audio: bool = False,
    rotate: int | None = None,
    codec: str = "libx264",
    gop: int | None = None,
    still: bool = False,
    extra: list[str] | None = None,
) -> Path:
    """A synthetic video: ``testsrc2`` (moving) or a static scene with ``still``; optional sine audio,
    display-matrix rotation (degrees, as phones write it) and a fixed GOP for keyframe tests."""
    path.parent.mkdir(parents=True, exist_ok=True)
    src = (
        (
            f"color=c=0x336699:s={width}x{height}:r={fps}:d={seconds},drawbox=x={width // 4}:y={height // 4}:"
            f"w={width // 2}:h={height // 2}:color=0xffcc00:t=fill"
        )
        if still
        else f"testsrc2=s={width}x{height}:r={fps}:d={seconds}"
    )
    cmd = ["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", src]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    cmd += ["-c:v", codec, "-pix_fmt", "yuv420p"]
    if codec == "libx264":
        cmd += ["-preset", "ultrafast"]
    if gop:
        cmd += ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]
    if audio:
        cmd += ["-c:a", "aac", "-shortest"]
    cmd += list(extra or [])
    tmp = path if rotate is None else path.with_suffix(".norot" + path.suffix)
    cmd.append(str(tmp))
    subprocess.run(cmd, check=True)
    if rotate is not None:
        # ffmpeg 5.1 (Debian 12) writes a display matrix from the legacy rotate tag.
        subprocess.run(
            [
                "ffmpeg",
                "-y",
                "-v",
                "error",
                "-i",
                str(tmp),
                "-c",
                "copy",
                "-metadata:s:v:0",
                f"rotate={rotate}",
                str(path),
            ],
            check=True,
        )
        tmp.unlink()
    return path


def make_cut_video(path: Path, first: float = 1.0, second: float = 1.0, fps: float = 10, audio: bool = False) -> Path:
    """Two shots joined by a hard cut at ``first`` seconds: moving ``testsrc2``, then a moving
    ``mandelbrot`` zoom (other colours, other layout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shots = (
        f"testsrc2=s=160x120:r={fps}:d={first}[a];mandelbrot=s=160x120:r={fps},trim=duration={second},"
        f"setpts=PTS-STARTPTS[b];[a][b]concat=n=2:v=1:a=0"
    )
    cmd = ["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", shots]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=44100:duration={first + second}"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio:
        cmd += ["-c:a", "aac", "-shortest"]
    cmd.append(str(path))
    subprocess.run(cmd, check=True)
    return path


def probe_streams(path: Path) -> dict[str, dict]:
    """ffprobe's view of a file's first video and audio streams, by codec type, with the frames
    counted by decoding (``nb_read_frames``)."""
    entries = "stream=codec_type,codec_name,nb_read_frames,duration,width,height,avg_frame_rate"
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries", entries, "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    streams: dict[str, dict] = {}
    for stream in json.loads(out.stdout)["streams"]:
        streams.setdefault(stream["codec_type"], stream)
    return streams
