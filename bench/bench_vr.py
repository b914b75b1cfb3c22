"""Frames per second of the RGB-D video and the stereo video, and the share of the time that is not
the depth model (decode, stabilisation, interpolation, stereo rendering, encoding).

    python bench/bench_vr.py                        # tiny random model unless --model loads
    python bench/bench_vr.py --model depth-anything/Depth-Anything-V2-Small-hf --write

For each size a generated clip (testsrc2, H.264, 30 fps) goes through ``rgbd_video`` and
``video_stereo`` (Full SBS) end to end with the model loaded; then the model alone
(``model.predict`` on the same decoded frames: pre-processing, forward, resize back) is timed on
the same frames. Overhead share = (pipeline - model) / pipeline.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.perfdoc import write_section  # noqa: E402

SECTION = "## Depth video and stereo"
SIZES = {"480p": (854, 480), "1080p": (1920, 1080)}


def make_clip(path: Path, width: int, height: int, seconds: float, fps: int) -> Path:
    if not path.exists():
        subprocess.run(
            [
                "ffmpeg",
                "-y",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=s={width}x{height}:r={fps}:d={seconds}",
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency=440:duration={seconds}",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-shortest",
                str(path),
            ],
            check=True,
        )
    return path


def load_model(args):
    from ai.depth import get_depth_model
    from ai.errors import ModelUnavailableError

    options = {"device": args.device, "precision": args.precision, "input_size": args.input_size, "batch_size": 4}
    if args.model:
        try:
            return get_depth_model(args.model, **options).load(), args.model
        except ModelUnavailableError as exc:
            print(f"--model {args.model} not available ({exc}); using the tiny random model", file=sys.stderr)
    from tests.tiny_models import build_tiny_depth_model

    folder = build_tiny_depth_model(args.work_dir / "tiny-depth-anything")
    return get_depth_model(str(folder), **options).load(), "tiny random Depth Anything (not representative)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model id or folder (default: the tiny random model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--input-size", type=int, default=518)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "parallax-bench-vr")
    parser.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)

    import torch

    from ai.depth_video import rgbd_video
    from ai.frames import iter_video_frames
    from ai.stereo import video_stereo

    model, model_note = load_model(args)
    rows = []
    for label, (width, height) in SIZES.items():
        clip = make_clip(args.work_dir / f"clip-{label}.mp4", width, height, args.seconds, 30)
        frames = [f.image for f in iter_video_frames(clip, height=None)]
        start = time.perf_counter()
        for i in range(0, len(frames), 4):
            model.predict(frames[i : i + 4])
        model_s = time.perf_counter() - start
        for name, run in (
            ("RGB-D video", lambda c: rgbd_video(c, args.work_dir / "out-rgbd.mp4", model=model, height=None)),
            ("stereo Full SBS", lambda c: video_stereo(c, args.work_dir / "out-sbs.mp4", model=model, height=height)),
        ):
            start = time.perf_counter()
            meta = run(clip)
            pipeline_s = time.perf_counter() - start
            count = meta["frame_count"]
            rows.append((label, width, height, name, count, pipeline_s, model_s, count / pipeline_s))
            print(f"{label} {name}: {count} frames in {pipeline_s:.1f} s (model {model_s:.1f} s)", file=sys.stderr)

    load = os.getloadavg()[0]
    lines = [
        SECTION,
        "",
        f"`bench/bench_vr.py` on {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
        f"load average {load:.1f} at the end (a shared machine: expect noise); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads. Model: {model_note}; device {model.device}, precision "
        f"{model.precision}, input size {args.input_size}, batch 4. Generated testsrc2 clips, 30 fps, "
        f"{args.seconds:g} s, with AAC audio; depth for every frame (30 fps), look-ahead 8; stereo "
        "divergence 2%, convergence 0.5.",
        "",
        "| size | output | frames | pipeline s | frames/s | model s | non-model share |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, width, height, name, count, pipeline_s, model_s, fps in rows:
        share = max(0.0, pipeline_s - model_s) / pipeline_s
        lines.append(
            f"| {label} ({width}x{height}) | {name} | {count} | {pipeline_s:.2f} | {fps:.2f} | {model_s:.2f} | "
            f"{share:.0%} |"
        )
    lines += [
        "",
        "Model s: `model.predict` alone on the same decoded frames (pre-processing, forward, bicubic resize "
        "back to the frame size). Non-model share: everything else in the pipeline (ffmpeg decode and "
        "encode, scene cuts, stabilisation, stereo warping, format composition) as a share of the pipeline.",
        "",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if args.write:
        write_section(SECTION, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
