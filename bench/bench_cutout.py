"""Benchmark background removal: photos per second and video frames per second, per model.

    .venv/bin/python bench/bench_cutout.py                         # models already in U2NET_HOME
    .venv/bin/python bench/bench_cutout.py --model u2netp --model isnet-general-use
    .venv/bin/python bench/bench_cutout.py --stand-in              # no real model files: stand-ins

Runs the real pipelines (ai.cutout.photo_cutout / video_cutout). Without ``--model`` it tries the
suggested models (isnet-general-use, u2netp, u2net_human_seg) that are already downloaded. With
``--stand-in`` it builds the test suite's tiny ONNX stand-ins (same input size as the real models,
but a 3x3 convolution instead of a deep network) in a temporary U2NET_HOME: those numbers measure
everything except the network itself (decode, pre/post-processing, smoothing, encoding)
and are an upper bound, NOT the speed of the real models. The table says which it measured.

The markdown table replaces the "## Background removal" section of docs/performance.md
(``--no-write`` to only print it).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUGGESTED_MODELS = ["isnet-general-use", "u2netp", "u2net_human_seg"]
SECTION = "## Background removal"


def cpu_description() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name}, {cores} cores usable"


def make_bench_photo(folder: Path) -> tuple[Path, str]:
    from tests.media_factory import make_photo, shared_media

    real = shared_media("photos", "portrait.jpg")
    if real is not None:
        return real, "photos/portrait.jpg (shared media)"
    return make_photo(folder / "photo.jpg", width=1280, height=960), "generated 1280x960 JPEG"


def make_bench_video(folder: Path, seconds: float, size: tuple[int, int] = (640, 360)) -> tuple[Path, str]:
    from tests.media_factory import make_video

    width, height = size
    path = make_video(
        folder / f"video_{width}x{height}.mp4", seconds=seconds, fps=30, width=width, height=height, audio=True
    )
    return path, f"generated {width}x{height} 30 fps {seconds:g} s H.264 + AAC"


def ffmpeg_alone_s(video: Path, kind: str, work: Path) -> float:
    """ffmpeg by itself doing the same decode and encode as the cut-out (same codecs and settings,
    an alpha plane for WebM, the same audio handling), with no matte: a plain transcode, the figure
    the issue started from. An opaque alpha plane costs VP9 almost nothing to encode."""
    import subprocess

    from ai.cutout import _encoder_args
    from ai.probe import probe_video

    info = probe_video(video)
    video_args, audio_args, muxer_args, container = _encoder_args(kind, info)
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(video), "-map", "0:v:0"]
    if kind != "mp4":
        cmd += ["-vf", "format=yuva420p"]
    cmd += video_args + (["-map", "0:a:0", *audio_args] if info.has_audio else [])
    cmd += muxer_args + ["-f", container, str(work / f"alone.{container}")]
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - started


def extract_matte(cutout_webm: Path, work: Path) -> Path:
    """The alpha plane of a finished transparent cut-out as a lossless grey video (FFV1)."""
    import subprocess

    matte = work / "matte.mkv"
    cmd = ["ffmpeg", "-v", "error", "-y", "-c:v", "libvpx-vp9", "-i", str(cutout_webm)]
    cmd += ["-vf", "alphaextract,format=gray", "-an", "-c:v", "ffv1", str(matte)]
    subprocess.run(cmd, check=True)
    return matte


def ffmpeg_same_output_s(video: Path, kind: str, matte: Path, work: Path) -> float:
    """ffmpeg by itself making the same output as the cut-out: the encoder's own command and filter
    graph (colour from the source, the matte applied as alpha or over green), with the finished matte
    read from a file instead of our pipe. The floor of a cut-out: everything a pipeline does beyond
    this is the model and the work around it."""
    import subprocess

    from ai.cutout import BACKGROUND_COLOURS, _encoder_args, _encoder_graph
    from ai.frames import frame_rate, output_size, probe_source_video

    info = probe_source_video(video)
    size = output_size(info, None)
    background = BACKGROUND_COLOURS["green"] if kind == "mp4" else None
    video_args, audio_args, muxer_args, container = _encoder_args(kind, info)
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(matte), "-i", str(video)]
    cmd += ["-filter_complex", _encoder_graph(info, frame_rate(info), size, background, size), "-map", "[video]"]
    cmd += video_args + (["-map", "1:a:0", *audio_args] if info.has_audio else [])
    cmd += muxer_args + ["-f", container, str(work / f"same.{container}")]
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - started


def free_model_run(inputs):
    """A stand-in for the network that costs next to nothing (one pass over one plane) but whose
    prediction still follows the picture, so the matte, and what it costs to encode, stay realistic.
    A cut-out run with it measures everything but the model."""
    return inputs[:, 1] * inputs.dtype.type(0.5)


def median_time(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_model(
    name: str, photo: Path, video: Path, photo_runs: int, work: Path, repeats: int = 3, batch_size: int = 4
) -> dict:
    from ai.cutout import photo_cutout, video_cutout
    from ai.segmentation import get_segmentation_model

    model = get_segmentation_model(name)
    started = time.perf_counter()
    model.load()
    load_s = time.perf_counter() - started
    photo_cutout(photo, work / "warmup.png", model=model)  # first run pays one-off allocations

    started = time.perf_counter()
    for i in range(photo_runs):
        photo_cutout(photo, work / f"photo{i}.png", model=model)
    photo_s = (time.perf_counter() - started) / photo_runs

    results = {"model": name, "load_s": load_s, "photo_s": photo_s, "providers": model.describe()["providers"]}
    # Time inside the network (ONNX Runtime's run), so "everything but the model" can be told apart.
    model_time = {"s": 0.0}
    run_model = model.run

    def timed_run(inputs):
        started = time.perf_counter()
        try:
            return run_model(inputs)
        finally:
            model_time["s"] += time.perf_counter() - started

    model.run = timed_run
    matte: Path | None = None
    for label, options, out in (("webm", {}, "cutout.webm"), ("mp4", {"background": "green"}, "cutout.mp4")):
        meta = {}

        def cutout(options=options, out=out, meta=meta):
            meta.update(video_cutout(video, work / out, model=model, batch_size=batch_size, **options))

        def free_cutout(options=options, out=out):
            model.run = free_model_run
            try:
                video_cutout(video, work / f"free_{out}", model=model, batch_size=batch_size, **options)
            finally:
                model.run = timed_run

        if matte is None:  # the matte of the free model's output, for the same-output reference
            free_cutout({}, "cutout.webm")
            matte = extract_matte(work / "free_cutout.webm", work)
        # Interleaved medians: the shared machine's load drifts, so compare runs taken side by side.
        pipeline_s, overhead_s, alone_s, free_s, same_s = [], [], [], [], []
        for _ in range(repeats):
            model_time["s"] = 0.0
            pipeline_s.append(median_time(cutout, 1))
            overhead_s.append(pipeline_s[-1] - model_time["s"])
            alone_s.append(ffmpeg_alone_s(video, label, work))
            free_s.append(median_time(free_cutout, 1))
            same_s.append(ffmpeg_same_output_s(video, label, matte, work))
        elapsed = statistics.median(pipeline_s)
        results[f"{label}_fps"] = meta["frames"] / elapsed
        results[f"{label}_vs_ffmpeg"] = elapsed / statistics.median(alone_s)
        results[f"{label}_overhead_vs_ffmpeg"] = statistics.median(overhead_s) / statistics.median(alone_s)
        results[f"{label}_free_fps"] = meta["frames"] / statistics.median(free_s)
        results[f"{label}_free_vs_same"] = statistics.median(free_s) / statistics.median(same_s)
        results[f"{label}_same_fps"] = meta["frames"] / statistics.median(same_s)
        results["frames"] = meta["frames"]
    del model.run  # the cached model gets its own run back
    return results


def markdown(
    rows: list[dict],
    *,
    stand_in: bool,
    photo_desc: str,
    photo_runs: int,
    repeats: int = 3,
    note: str | None = None,
) -> str:
    import onnxruntime

    lines = [SECTION, ""]
    if stand_in:
        lines += [
            "**Measured with stand-in models** (tiny ONNX graphs with the real input sizes, no deep "
            "network; real model files could not be downloaded on the benchmark machine). The "
            "stand-in's own run is a 3x3 convolution at the model's input size, not the real network's "
            "cost: the fps columns are an upper bound, not the speed of the real models. Run "
            "`python bench/bench_cutout.py --model NAME` after `python -m backend download-models "
            "--segmentation-model NAME` for real numbers.",
            "",
        ]
    lines += (
        [
            f"- Machine: {cpu_description()}; onnxruntime {onnxruntime.__version__}, "
            f"providers {', '.join(rows[0]['providers']) if rows else '-'}",
            f"- Photo: {photo_desc}, {photo_runs} runs after a warm-up (transparent PNG, EXIF applied)",
            "- Video: generated `testsrc2` H.264 + AAC, 30 fps, full resolution out; transparent WebM "
            "(VP9 + alpha, Opus) and green MP4 (H.264, AAC copied); medians of "
            f"{repeats} interleaved runs of each measurement",
            "- Precision: fp32 (ONNX Runtime); model input: the model's square input size (1024 or 320), "
            "frames scaled to it by ffmpeg; batch 4",
            "- **plain transcode**: ffmpeg alone decoding the source and encoding it with the same codecs "
            "and settings but no matte (an opaque alpha plane, which VP9 encodes for free); the "
            "reference the issue started from",
            "- **same output**: ffmpeg alone making the same file as the cut-out, with the cut-out "
            "encoder's own command and filter graph and the finished matte read from a lossless file "
            "instead of our pipe: the floor of any cut-out pipeline",
            "- **free model**: the whole cut-out with the network replaced by a near-free function whose "
            "prediction follows the picture (one pass over one plane): everything but the model",
            f"- Date: {time.strftime('%Y-%m-%d')}; command: `python bench/bench_cutout.py"
            f"{' --stand-in' if stand_in else ''}`",
        ]
        + ([f"- Note: {note}"] if note else [])
        + [
            "",
            "| model | video | frames | output | cut-out fps (stand-in) | / plain transcode "
            "| free model fps | same output fps | **free model / same output** |",
            "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
    )
    for r in rows:
        name = f"{r['model']} (stand-in)" if stand_in else r["model"]
        for label, output in (("webm", "WebM alpha"), ("mp4", "MP4 green")):
            lines.append(
                f"| {name} | {r['video']} | {r['frames']} | {output} | {r[f'{label}_fps']:.1f} "
                f"| {r[f'{label}_vs_ffmpeg']:.2f}x | {r[f'{label}_free_fps']:.1f} | {r[f'{label}_same_fps']:.1f} "
                f"| **{r[f'{label}_free_vs_same']:.2f}x** |"
            )
    lines += ["", "| model | photo (s each) | photos/s | load (s) |", "| --- | ---: | ---: | ---: |"]
    for r in {r["model"]: r for r in rows}.values():
        name = f"{r['model']} (stand-in)" if stand_in else r["model"]
        lines.append(f"| {name} | {r['photo_s']:.3f} | {1 / r['photo_s']:.2f} | {r['load_s']:.2f} |")
    return "\n".join(lines) + "\n"


def write_section(doc: Path, section: str) -> None:
    """Replace our own section of docs/performance.md (other sections belong to other benchmarks)."""
    text = doc.read_text() if doc.exists() else "# Performance\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == SECTION), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="rembg model name (repeatable)")
    parser.add_argument("--stand-in", action="store_true", help="use tiny stand-in models (no downloads)")
    parser.add_argument("--photo-runs", type=int, default=5)
    parser.add_argument("--video-seconds", type=float, default=10.0)
    parser.add_argument(
        "--video-size",
        action="append",
        help="WxH of a generated source video (repeatable; default 640x360 and 1920x1080 for 5 s)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="video runs per output kind (median)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--note", help="a line about the conditions (e.g. other load on the machine)")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "performance.md")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-cutout-"))
    if args.stand_in:
        from tests.stand_in_onnx import build_stand_in_rembg_model

        os.environ["U2NET_HOME"] = str(work / "u2net_home")
        for name in args.model or SUGGESTED_MODELS:
            build_stand_in_rembg_model(work / "u2net_home", name)
    else:
        from ai.config import model_cache_env
        from backend.settings import get_settings

        for name, value in model_cache_env(get_settings().model_cache_dir).items():
            os.environ.setdefault(name, value)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a benchmark must not start a download

    from ai.segmentation import local_model_path

    names = args.model or [n for n in SUGGESTED_MODELS if local_model_path(n) is not None]
    missing = [n for n in names if local_model_path(n) is None]
    if missing or not names:
        print(
            f"models not downloaded: {', '.join(missing or SUGGESTED_MODELS)}. Run `python -m backend "
            "download-models --segmentation-model NAME`, or pass --stand-in to measure the pipeline with "
            "stand-in models.",
            file=sys.stderr,
        )
        return 2

    photo, photo_desc = make_bench_photo(work)
    sizes = [tuple(int(v) for v in text.lower().split("x")) for text in args.video_size or []]
    videos = [(size, args.video_seconds) for size in sizes] or [((640, 360), args.video_seconds), ((1920, 1080), 5.0)]
    rows = []
    load_before = os.getloadavg()[0]
    for name in names:
        for size, seconds in videos:
            video, video_desc = make_bench_video(work, seconds, size)
            print(f"benchmarking {name} on {video_desc} ...", file=sys.stderr)
            row = bench_model(name, photo, video, args.photo_runs, work, args.repeats)
            rows.append({**row, "video": f"{size[0]}x{size[1]}, {seconds:g} s"})
    load = max(load_before, os.getloadavg()[0])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    busy = (
        f"1-minute load average up to {load:.1f} during the run on {cores} cores (the benchmark's own "
        "ffmpeg processes and threads keep about 2 busy; more than that means other work shared the CPU)"
    )
    args.note = f"{busy}. {args.note}" if args.note else busy
    table = markdown(
        rows,
        stand_in=args.stand_in,
        photo_desc=photo_desc,
        photo_runs=args.photo_runs,
        repeats=args.repeats,
        note=args.note,
    )
    print(table)
    if not args.no_write:
        write_section(args.doc, table)
        print(f"wrote the '{SECTION}' section of {args.doc}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
