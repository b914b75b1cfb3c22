"""Frames per second of the RGB-D video and the stereo video, and the share of the time that is not
the depth model (decode, stabilisation, interpolation, stereo rendering, encoding).

    python bench/bench_vr.py                        # tiny random model unless --model loads
    python bench/bench_vr.py --model depth-anything/Depth-Anything-V2-Small-hf --write

For each size a generated clip (testsrc2, H.264, 30 fps) goes through ``rgbd_video`` and
``video_stereo`` (Full SBS) end to end with the model loaded, and the model alone
(``model.predict`` on the same decoded frames: pre-processing, forward, resize back). CPU time of
the process and its ffmpeg children is measured besides wall time (the benchmark machine is
shared). Non-model share = (pipeline CPU - model CPU) / pipeline CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.perfdoc import publish  # noqa: E402
from tests.media_factory import make_video  # noqa: E402

SECTION = "## Depth video and stereo"
SIZES = {"480p": (854, 480), "1080p": (1920, 1080)}


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (ffmpeg): unlike wall time, hardly
    inflated when other work shares the machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measured(run) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = run()
    return time.perf_counter() - wall, cpu_seconds() - cpu, result


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
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU times per frame compare)")
    parser.add_argument("--input-size", type=int, default=518)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "parallax-bench-vr")
    parser.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(args.threads)
    from ai.depth_video import rgbd_video
    from ai.frames import iter_video_frames
    from ai.stereo import video_stereo

    model, model_note = load_model(args)
    rows = []
    for label, (width, height) in SIZES.items():
        clip = args.work_dir / f"clip-{label}-{args.seconds:g}s.mp4"
        if not clip.exists():
            make_video(clip, seconds=args.seconds, fps=30, width=width, height=height, audio=True)
        frames = [f.image for f in iter_video_frames(clip, height=None)]
        model.predict(frames[:4])  # warm-up: the first run at a new size sets up the kernels
        model_wall, model_cpu, _ = measured(
            lambda frames=frames: [model.predict(frames[i : i + 4]) for i in range(0, len(frames), 4)]
        )
        outputs = {
            "RGB-D video": lambda c=clip: rgbd_video(c, args.work_dir / "out-rgbd.mp4", model=model, height=None),
            "stereo Full SBS": lambda c=clip, h=height: video_stereo(
                c, args.work_dir / "out-sbs.mp4", model=model, height=h
            ),
        }
        for name, run in outputs.items():
            wall, cpu, meta = measured(run)
            rows.append((label, width, height, name, meta["frame_count"], wall, cpu, model_wall, model_cpu))
            print(f"{label} {name}: {meta['frame_count']} frames, {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr)

    load = os.getloadavg()[0]
    lines = [
        SECTION,
        "",
        f"`bench/bench_vr.py` on {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
        f"load average {load:.1f} at the end (a shared machine: wall times are inflated by other work, CPU "
        f"times much less); torch {torch.__version__}, {torch.get_num_threads()} thread(s). Model: {model_note}; "
        f"device {model.device}, precision {model.precision}, input size {args.input_size}, batch 4. Generated "
        f"testsrc2 clips, 30 fps, {args.seconds:g} s, with AAC audio, at their full size; depth for every frame "
        "(30 fps), look-ahead 8; stereo divergence 2%, convergence 0.5.",
        "",
        "| size | output | frames | wall s | frames/s (wall) | CPU s/frame | model CPU s/frame | non-model share (CPU) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, width, height, name, count, wall, cpu, _model_wall, model_cpu in rows:
        share = max(0.0, cpu - model_cpu) / cpu
        lines.append(
            f"| {label} ({width}x{height}) | {name} | {count} | {wall:.2f} | {count / wall:.2f} | "
            f"{cpu / count:.3f} | {model_cpu / count:.3f} | {share:.0%} |"
        )
    lines += [
        "",
        "CPU s: user + system time of the process and its ffmpeg children. Model: `model.predict` alone on "
        "the same decoded frames (pre-processing, forward, bicubic resize back to the frame size). Non-model "
        "share: everything else (ffmpeg decode and encode, scene cuts, stabilisation, stereo warping, format "
        "composition) as a share of the pipeline's CPU time. frames/s on an idle machine with N cores is "
        "roughly N / (CPU s/frame) at best.",
        "",
    ]
    publish(SECTION, lines, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
