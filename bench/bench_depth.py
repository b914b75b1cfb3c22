"""Benchmark the video depth pipeline: throughput, overhead over the bare model, memory vs length.

    .venv/bin/python bench/bench_depth.py [--model ID_OR_FOLDER] [--device auto] [--quick]

For each video, a fresh subprocess loads the model, runs ``ai.depth.video_depth`` (interval
extraction) into a temporary ZIP, then times the model's own forward pass (``model(pixel_values)``)
on the same number of frames at the same inference size and batch size. Peak RSS (VmHWM) is read
after the pipeline, before the forward-only timing. Without a loadable real model the script uses
a tiny random Depth Anything built like the tests' (and says so): then the model time is tiny and
the table shows the pipeline's own cost per frame rather than a realistic ratio.

Prints a markdown table and writes it under "## Depth" in docs/performance.md (other sections stay).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.perfdoc import PERFORMANCE_DOC, write_section  # noqa: E402

SECTION = "## Depth"


def vm_hwm_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> None:
    """One measured run in this (fresh) process; prints a JSON line."""
    import torch

    from ai.depth import DepthModel, video_depth

    started = time.perf_counter()
    model = DepthModel(
        args.model, device=args.device, precision=args.precision, input_size=args.input_size, batch_size=args.batch_size
    ).load()
    load_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        manifest = video_depth(
            args.video,
            Path(tmp) / "out.zip",
            model=model,
            fps=args.fps,
            max_frames=None,
            height=args.height,
            include_color=True,
        )
        if model.device.startswith("cuda"):
            torch.cuda.synchronize()
        pipeline_s = time.perf_counter() - started
        zip_mib = (Path(tmp) / "out.zip").stat().st_size / 2**20
    peak_rss = vm_hwm_mib()
    frames = manifest["frame_count"]
    height, width = manifest["inference_size"]
    # The bare model on the same work: same frame count, batch size and inference size.
    batch = torch.randn(args.batch_size, 3, height, width, device=model.device).to(model.dtype)
    model.forward_only(batch[:1])  # warm-up (kernels, allocator)
    if model.device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    done = 0
    while done < frames:
        size = min(args.batch_size, frames - done)
        model.forward_only(batch[:size])
        done += size
    if model.device.startswith("cuda"):
        torch.cuda.synchronize()
    forward_s = time.perf_counter() - started
    print(
        json.dumps(
            {
                "video": Path(args.video).name,
                "frames": frames,
                "frame_size": [manifest["frame_width"], manifest["frame_height"]],
                "inference_size": [height, width],
                "load_s": load_s,
                "pipeline_s": pipeline_s,
                "forward_s": forward_s,
                "peak_rss_mib": peak_rss,
                "zip_mib": zip_mib,
                "device": model.device,
                "precision": model.precision,
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


def make_long_video(path: Path, seconds: int) -> Path:
    if not path.exists():
        tmp = path.with_suffix(".partial.mp4")
        subprocess.run(
            [
                "ffmpeg",
                "-y",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=s=640x360:r=30:d={seconds}",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
                str(tmp),
            ],
            check=True,
        )
        tmp.rename(path)
    return path


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores visible (load average {os.getloadavg()[0]:.1f} at start: "
    text += "other work on a shared machine makes timings noisy)"
    try:
        import torch

        text += f", torch {torch.__version__}"
        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text


def resolve_model(requested: str | None, work: Path) -> tuple[str, str]:
    """(model to load, note for the report). Falls back to a tiny random model when none loads."""
    from ai.config import DEFAULT_DEPTH_MODEL
    from ai.depth import DepthModel
    from ai.errors import ModelUnavailableError

    name = requested or os.environ.get("DEPTH_MODEL") or DEFAULT_DEPTH_MODEL
    try:
        DepthModel(name, device="cpu", precision="fp32").load()
        return name, f"real model `{name}`"
    except ModelUnavailableError as exc:
        if requested:
            raise SystemExit(f"--model {requested}: {exc}") from exc
        from tests.tiny_models import build_tiny_depth_model

        tiny = build_tiny_depth_model(work / "tiny-depth-anything")
        return str(tiny), (
            f"**tiny random Depth Anything** (`{name}` is not available here: no model hub "
            f"access); model times are NOT representative, the pipeline overhead per frame is (it does not depend on the model)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model id or folder (default: DEPTH_MODEL if loadable, else a tiny model)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--input-size", type=int, default=518)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "parallax-bench")
    parser.add_argument("--quick", action="store_true", help="only the real video and a 30 s generated one")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    parser.add_argument("--child-video", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_video:
        args.video = args.child_video
        child(args)
        return 0

    from ai.config import model_cache_env
    from backend.settings import get_settings

    # Look for cached models where `python -m backend download-models` puts them.
    for name, value in model_cache_env(get_settings().model_cache_dir).items():
        os.environ.setdefault(name, value)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    model, note = resolve_model(args.model, args.work_dir)
    videos = []
    from tests.media_factory import shared_media

    real = shared_media("videos", "bottle-detection.mp4")
    if real:
        videos.append(("bottle-detection.mp4 (real, 640x360, 40 s, 179/6 fps)", real))
    for seconds in (30,) if args.quick else (30, 300):
        videos.append(
            (f"generated 640x360 30 fps, {seconds} s", make_long_video(args.work_dir / f"long-{seconds}s.mp4", seconds))
        )

    rows = []
    for label, path in videos:
        cmd = [
            sys.executable,
            __file__,
            "--child-video",
            str(path),
            "--model",
            model,
            "--device",
            args.device,
            "--precision",
            args.precision,
            "--input-size",
            str(args.input_size),
            "--batch-size",
            str(args.batch_size),
            "--fps",
            str(args.fps),
            "--height",
            str(args.height),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["label"] = label
        rows.append(result)
        print(f"{label}: {result['frames']} frames in {result['pipeline_s']:.1f} s", file=sys.stderr)

    first = rows[0]
    table = [
        f"{SECTION}",
        "",
        f"`bench/bench_depth.py` on {machine()}; {note}. Device {first['device']}, precision "
        f"{first['precision']}, {first['torch_threads']} torch threads, input size {args.input_size}, "
        f"batch {args.batch_size}, interval extraction at {args.fps:g} fps, frames scaled to height "
        f"{args.height}, colour frames included.",
        "",
        "| video | frames | inference size | pipeline s | frames/s | model forward s | pipeline / model | "
        "overhead ms/frame | peak RSS MiB | ZIP MiB |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        overhead_ms = (r["pipeline_s"] - r["forward_s"]) / max(r["frames"], 1) * 1000
        table.append(
            f"| {r['label']} | {r['frames']} | {r['inference_size'][0]}x{r['inference_size'][1]} | "
            f"{r['pipeline_s']:.2f} | {r['frames'] / r['pipeline_s']:.2f} | {r['forward_s']:.2f} | "
            f"{r['pipeline_s'] / r['forward_s']:.2f} | {overhead_ms:.1f} | {r['peak_rss_mib']:.0f} | {r['zip_mib']:.1f} |"
        )
    table += [
        "",
        "Pipeline = probe + ffmpeg decode/scale + resize/normalise + model + PNG/JPEG encode + ZIP, end to "
        "end, model already loaded. Model forward = `model(pixel_values)` alone on the same number of "
        "frames. Peak RSS is the whole process (torch included) after the pipeline; it should not grow "
        "with the video's length (frames stream through ffmpeg's pipe; normalisation keeps two numbers).",
        "",
    ]
    markdown = "\n".join(table)
    print(markdown)
    if not args.no_write:
        write_section(SECTION, markdown)
        print(f"written to {PERFORMANCE_DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
