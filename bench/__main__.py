"""Every benchmark in one command, for a GPU machine (or a CPU one with --quick):

    python -m bench all --device cuda            # fp32 vs fp16, batch sizes 1/4/8, full sizes
    python -m bench all --device cpu --quick     # a few minutes on a small CPU

Depth (photo, video, forward pass at each inference size) runs the Depth Anything V2 Small
architecture with random weights (24.8M parameters, built offline from its config: the real
model's speed, meaningless depth) unless --depth-model names a real one. Cut-outs run the rembg
stand-in models (the pipeline's own cost: no real segmentation weights offline) on the same device
through ONNX Runtime. Stereo (photo and Full SBS video, ai.stereo) uses the same depth model.
Results go to a JSON file and a markdown table (--out, default bench-results-<device>.json/.md);
paste the table into docs/performance.md with the machine it came from.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (height, width) fed to the model: 294x518 is a 16:9 frame at the checkpoint's rule from 640x360;
# 476x854 a 480-high 16:9 frame fed as it is (the rule since issue 16); 518x924 that frame enlarged.
INFERENCE_SIZES = [(294, 518), (476, 854), (518, 924)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(run, repeats: int, device: str) -> float:
    """Median seconds of ``run`` after one warm-up run."""
    run()
    sync(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def precisions(device: str, quick: bool) -> list[str]:
    if device.startswith("cuda"):
        return ["fp32", "fp16"]
    return ["fp32"] if quick else ["fp32", "bf16"]


def parameter_count(folder: str) -> int:
    from transformers import AutoModelForDepthEstimation

    model = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True)
    return sum(p.numel() for p in model.parameters())


def bench_depth(args, work: Path) -> list[dict]:
    import torch

    from ai.depth import DepthModel, photo_depth, video_depth
    from tests.media_factory import make_photo, make_video
    from tests.tiny_models import build_small_sized_depth_model, build_tiny_depth_model

    folder = args.depth_model or str(build_small_sized_depth_model(work / "depth-anything-v2-small-random"))
    tiny = str(build_tiny_depth_model(work / "tiny-depth-anything"))
    photo = make_photo(work / "photo.jpg", width=1600, height=1200)
    # --quick: a few minutes of a small CPU (the 24.8M-parameter model takes seconds per frame there).
    seconds, sample_fps = (1, 4) if args.quick else (10, 10)
    video = make_video(work / "video.mp4", seconds=seconds, fps=30, width=1280, height=720)
    batch_sizes = [1, 2] if args.quick else [1, 4, 8]
    rows = []
    for precision in precisions(args.device, args.quick):
        # The benchmarked model, and the tests' tiny one beside it (forward pass only).
        for name, whole in ((folder, True), (tiny, False)):
            model = DepthModel(name, device=args.device, precision=precision, input_size=518, batch_size=1).load()
            label = "tiny test model" if name == tiny else ("given model" if args.depth_model else "V2 Small-sized")
            base = {
                "model": f"{label}, {parameter_count(name) / 1e6:.1f}M parameters",
                "device": model.device,
                "precision": model.precision,
            }
            for height, width in INFERENCE_SIZES:
                for batch in batch_sizes if whole and not args.quick else [1]:
                    pixels = torch.randn(batch, 3, height, width, device=model.device).to(model.dtype)
                    forward = timed(lambda m=model, p=pixels: m.forward_only(p), args.repeats, args.device)
                    rows.append(
                        {
                            "bench": "depth forward",
                            **base,
                            "input": f"{height}x{width}",
                            "tokens": (height // 14) * (width // 14),
                            "batch": batch,
                            "ms_per_frame": forward / batch * 1000,
                        }
                    )
            if not whole:
                continue
            seconds_each = timed(lambda m=model: photo_depth(photo, work / "d.png", model=m), args.repeats, args.device)
            fed = "x".join(map(str, model.inference_size(1200, 1600)))
            rows.append(
                {"bench": "depth photo", **base, "input": f"1600x1200 JPEG, fed {fed}", "batch": 1, "s": seconds_each}
            )
            for batch in batch_sizes:
                model.options["batch_size"] = batch
                meta = {}

                def run(m=model, meta=meta):
                    meta.update(
                        video_depth(video, work / "v.zip", model=m, fps=sample_fps, max_frames=None, height=480)
                    )

                elapsed = timed(run, 1, args.device)
                rows.append(
                    {
                        "bench": "depth video",
                        **base,
                        "input": f"1280x720 {seconds} s, {sample_fps} fps sampled, frames {meta['frame_width']}x"
                        f"{meta['frame_height']}, fed {meta['inference_size'][0]}x{meta['inference_size'][1]}",
                        "batch": batch,
                        "s": elapsed,
                        "frames_per_s": meta["frame_count"] / elapsed,
                    }
                )
            del model
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    return rows


def bench_stereo(args, work: Path) -> list[dict]:
    if importlib.util.find_spec("ai.stereo") is None:
        return [{"bench": "stereo", "skipped": "ai.stereo is not on this checkout"}]
    from ai.depth import DepthModel
    from ai.stereo import photo_stereo, video_stereo
    from tests.media_factory import make_photo, make_video
    from tests.tiny_models import build_small_sized_depth_model

    folder = args.depth_model or str(build_small_sized_depth_model(work / "depth-anything-v2-small-random"))
    photo = make_photo(work / "stereo-photo.jpg", width=1600, height=1200)
    seconds = 0.5 if args.quick else 2.0
    sizes = {"480p": (854, 480)} if args.quick else {"480p": (854, 480), "1080p": (1920, 1080)}
    rows = []
    for precision in precisions(args.device, args.quick):
        model = DepthModel(folder, device=args.device, precision=precision, input_size=518, batch_size=4).load()
        base = {"bench": "stereo (Full SBS)", "device": model.device, "precision": model.precision, "batch": 4}
        elapsed = timed(lambda m=model: photo_stereo(photo, work / "s.jpg", model=m), args.repeats, args.device)
        rows.append({**base, "input": "1600x1200 JPEG photo", "s": elapsed, "frames_per_s": 1 / elapsed})
        for label, (width, height) in sizes.items():
            clip = make_video(work / f"stereo-{label}.mp4", seconds=seconds, fps=30, width=width, height=height)
            meta = {}

            def run(m=model, clip=clip, meta=meta):
                meta.update(video_stereo(clip, work / "s.mp4", model=m, height=None))

            elapsed = timed(run, 1, args.device)
            rows.append(
                {
                    **base,
                    "input": f"{width}x{height} 30 fps {seconds:g} s, depth every frame",
                    "s": elapsed,
                    "frames_per_s": meta["frame_count"] / elapsed,
                }
            )
    return rows


def bench_cutout_all(args, work: Path) -> list[dict]:
    from ai.models import model_cache
    from bench.bench_cutout import bench_model, make_bench_photo, make_bench_video
    from tests.stand_in_onnx import build_stand_in_rembg_model

    os.environ["U2NET_HOME"] = str(work / "u2net_home")
    os.environ["HF_HUB_OFFLINE"] = "1"
    model_cache.clear()
    names = ["u2netp"] if args.quick else ["isnet-general-use", "u2netp"]
    for name in names:
        build_stand_in_rembg_model(work / "u2net_home", name)
    photo, _ = make_bench_photo(work)
    video, video_desc = make_bench_video(work, 2.0 if args.quick else 5.0)
    rows = []
    for name in names:
        for batch in [1, 4] if args.quick else [1, 4, 8]:
            result = bench_model(name, photo, video, 2, work, repeats=1 if args.quick else 3, batch_size=batch)
            rows.append(
                {
                    "bench": "cut-out (stand-in model)",
                    "model": name,
                    "input": video_desc,
                    "batch": batch,
                    "precision": "fp32",
                    "device": ",".join(result["providers"]),
                    **{
                        k: result[k]
                        for k in (
                            "photo_s",
                            "webm_fps",
                            "webm_vs_ffmpeg",
                            "webm_overhead_vs_ffmpeg",
                            "webm_free_vs_same",
                            "mp4_fps",
                            "mp4_vs_ffmpeg",
                            "mp4_overhead_vs_ffmpeg",
                            "mp4_free_vs_same",
                        )
                    },
                }
            )
    return rows


def markdown(rows: list[dict], machine: str) -> str:
    lines = [f"Machine: {machine}", ""]
    for bench in dict.fromkeys(r["bench"] for r in rows):
        group = [r for r in rows if r["bench"] == bench]
        keys = [k for k in group[0] if k != "bench"]
        lines += [f"### {bench}", "", "| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
        for r in group:
            cells = [f"{r.get(k):.4g}" if isinstance(r.get(k), float) else str(r.get(k)) for k in keys]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def machine_description(device: str) -> str:
    from bench.bench_cutout import cpu_description

    text = cpu_description()
    try:
        import torch

        text += f"; torch {torch.__version__}"
        if device.startswith("cuda") and torch.cuda.is_available():
            text += f"; GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("what", choices=["all", "depth", "cutout", "stereo"])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--quick", action="store_true", help="small inputs, fewer settings: minutes on a CPU")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per setting (median)")
    parser.add_argument("--depth-model", help="a real Depth Anything folder or id instead of random weights")
    parser.add_argument("--out", type=Path, help="results file stem (default bench-results-<device>)")
    args = parser.parse_args(argv)
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.repeats = args.repeats or (1 if args.quick else 5)
    out = args.out or Path(f"bench-results-{args.device.replace(':', '')}")
    work = Path(tempfile.mkdtemp(prefix="parallax-bench-"))
    rows: list[dict] = []
    steps = {"depth": bench_depth, "stereo": bench_stereo, "cutout": bench_cutout_all}
    for name, step in steps.items():
        if args.what in ("all", name):
            print(f"benchmarking {name} on {args.device} ...", file=sys.stderr)
            rows += step(args, work)
    machine = machine_description(args.device)
    table = markdown(rows, machine)
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "quick": args.quick, "rows": rows}, indent=2))
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"written to {out.with_suffix('.json')} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
