"""Benchmark previews (backend/thumbnails.py): the time an upload spends making one, and how much
smaller the grid's download gets.

    .venv/bin/python bench/bench_thumbnails.py            # prints, and replaces the "## Previews" section
    .venv/bin/python bench/bench_thumbnails.py --no-write # only prints

Inputs: a generated 24-megapixel JPEG (6000x4000, quality 92, what a phone or camera writes), a
generated 12-megapixel HEIC when pillow-heif can encode one, the shared media's photos and videos
when ../shared/media is present, and a generated 1080p H.264 clip. Each is made into a preview 5 times
after a warm-up; the median is reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend import thumbnails  # noqa: E402
from bench.bench_cutout import cpu_description  # noqa: E402
from bench.perfdoc import publish  # noqa: E402

SECTION = "## Previews"
RUNS = 5
SHARED = ROOT.parent / "shared" / "media"


def _photo(path: Path, width: int, height: int, fmt: str, **options) -> Path:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=-1).astype(np.uint8)
    pixels = np.clip(pixels.astype(int) + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(path, fmt, **options)
    return path


def _video(path: Path) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=1920x1080:r=30:d=10"]
        + ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
    return path


def inputs(folder: Path) -> list[tuple[str, Path, str, float | None]]:
    found = [
        (
            "generated 6000x4000 JPEG (24 MP)",
            _photo(folder / "big.jpg", 6000, 4000, "JPEG", quality=92),
            "image/jpeg",
            None,
        ),
        ("generated 1920x1080 H.264, 10 s", _video(folder / "clip.mp4"), "video/mp4", 10.0),
    ]
    try:
        import pillow_heif  # noqa: F401

        heic = _photo(folder / "phone.heic", 4032, 3024, "HEIF", quality=80)
        found.insert(1, ("generated 4032x3024 HEIC (12 MP)", heic, "image/heic", None))
    except (ImportError, KeyError, OSError):
        pass
    if SHARED.exists():
        for name, mime in (("photos/IMG_2682.heic", "image/heic"), ("videos/car-detection.mp4", "video/mp4")):
            if (SHARED / name).exists():
                found.append((f"shared media {name}", SHARED / name, mime, None))
    return found


def measure(path: Path, mime: str, duration: float | None) -> tuple[float, int, tuple[int, int]]:
    thumbnails.render(path, mime, duration)  # warm-up (imports, codec start-up, page cache)
    times, encoded = [], b""
    for _ in range(RUNS):
        started = time.perf_counter()
        image = thumbnails.render(path, mime, duration)
        out = Path(tempfile.mktemp(suffix=".webp"))
        image.save(out, "WEBP", quality=thumbnails.WEBP_QUALITY, method=4)
        times.append(time.perf_counter() - started)
        encoded = out.read_bytes()
        out.unlink()
    return statistics.median(times), len(encoded), image.size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-write", action="store_true", help="print the section, leave docs/performance.md alone")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for label, path, mime, duration in inputs(Path(tmp)):
            seconds, size, shape = measure(path, mime, duration)
            original = path.stat().st_size
            rows.append(
                f"| {label} | {original / 1e6:.1f} MB | {seconds * 1000:.0f} | {shape[0]}x{shape[1]}"
                f" | {size / 1e3:.0f} KB | {original / size:.0f}x |"
            )
    load = max(load_before, os.getloadavg()[0])
    lines = [
        SECTION,
        "",
        f"Preview of one stored file (`backend/thumbnails.py`: decode, EXIF orientation, {thumbnails.MAX_EDGE} px"
        f" longest side, WebP quality {thumbnails.WEBP_QUALITY}). An upload pays this once; the library grid then"
        " downloads the preview instead of the original.",
        "",
        f"- Machine: {cpu_description()}; 1-minute load average up to {load:.1f} during the run (other work shared"
        f" the CPU: expect noise); {RUNS} runs after a warm-up, median",
        f"- Date: {date.today().isoformat()}; command: `python bench/bench_thumbnails.py`",
        "",
        "| input | original | preview time (ms) | preview size (px) | preview bytes | smaller by |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
        *rows,
    ]
    publish(SECTION, lines, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
