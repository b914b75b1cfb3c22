"""RGB-D video, depth stabilisation and scene cuts, with the tiny depth model and generated media."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from ai.depth import get_depth_model, normalize_min_max, quantize_depth
from ai.depth_video import iter_video_depth, rgbd_video
from ai.errors import Cancelled, InvalidMediaError
from ai.frames import iter_video_frames
from ai.scenecut import SceneCutDetector
from ai.stabilize import DepthStabilizer
from tests.media_factory import make_cut_video, make_video, probe_streams
from tests.synthetic_depth import RunningPercentileBaseline, measure_stability, synthetic_clip
from tests.tiny_models import TINY_DEPTH_INPUT_SIZE


@pytest.fixture(scope="module")
def model(tiny_depth_model_dir):
    return get_depth_model(
        str(tiny_depth_model_dir), device="cpu", precision="fp32", input_size=TINY_DEPTH_INPUT_SIZE, batch_size=4
    ).load()


def _decode(path: Path, width: int, height: int) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width, 3)


def test_rgbd_video_has_the_sources_frames_duration_and_audio(tmp_path, model, media_dir):
    src = make_video(media_dir / "rgbd-src.mp4", seconds=1.6, fps=10, audio=True)
    dst = tmp_path / "rgbd.mp4"
    calls = []
    meta = rgbd_video(src, dst, model=model, progress=lambda d, t, s: calls.append((d, t, s)))
    source, result = probe_streams(src), probe_streams(dst)
    assert result["video"]["nb_read_frames"] == source["video"]["nb_read_frames"] == "16"
    assert result["video"]["avg_frame_rate"] == source["video"]["avg_frame_rate"] == "10/1"
    assert float(result["video"]["duration"]) == pytest.approx(float(source["video"]["duration"]), abs=0.01)
    assert (int(result["video"]["width"]), int(result["video"]["height"])) == (320, 120)
    assert result["audio"]["codec_name"] == "aac"
    assert float(result["audio"]["duration"]) == pytest.approx(float(source["audio"]["duration"]), abs=0.03)
    assert meta["frame_count"] == 16 and meta["layout"] == "colour_left_depth_right"
    assert meta["polarity"] == "near_dark" and meta["depth_frames_computed"] == 16
    frames = [c for c in calls if c[2].startswith("frame ")]
    assert [c[0] for c in frames] == list(range(1, 17)) and frames[-1][2] == "frame 16/16"

    # The colour half is the source frame; the depth half is that frame's own depth.
    decoded = _decode(dst, 320, 120)
    sources = [f.image for f in iter_video_frames(src)]
    assert len(decoded) == len(sources) == 16
    stabilizer, cuts = DepthStabilizer(lookahead=8), SceneCutDetector()
    expected = []
    for image, raw in zip(sources, model.predict(sources)):
        expected += stabilizer.push(raw, image, cut=cuts(image))
    expected += stabilizer.flush()
    for i, (frame, image, depth) in enumerate(zip(decoded, sources, expected)):
        assert np.abs(frame[:, :160].astype(int) - image.astype(int)).mean() < 4
        grey = frame[:, 160:].astype(int)
        # Grey (R = G = B), but for 4:2:0 chroma bleeding across the seam between the halves.
        assert np.abs(grey[:, 2:, 0] - grey[:, 2:, 2]).max() <= 3
        want = quantize_depth(depth, 8, "near_dark").astype(int)
        assert np.abs(grey[..., 1] - want).mean() < 2.5, i
        other = quantize_depth(expected[(i + 8) % 16], 8, "near_dark").astype(int)
        assert np.abs(grey[..., 1] - other).mean() > np.abs(grey[..., 1] - want).mean() + 2  # frame-specific


def test_depth_between_computed_frames_is_interpolated(tmp_path, model, media_dir):
    src = make_video(media_dir / "rgbd-30fps.mp4", seconds=1.0, fps=30)
    items = list(iter_video_depth(src, model=model, depth_fps=10, height=None))
    assert len(items) == 30
    computed = [i for i, item in enumerate(items) if item.computed]
    assert computed == list(range(0, 30, 3))
    # A frame between two computed ones lies between them, weighted by time.
    before, middle, after = items[3].depth, items[4].depth, items[6].depth
    assert np.allclose(middle, (2 * before + after) / 3, atol=1e-5)
    assert not np.allclose(before, after)
    # The frames after the last computed one hold its depth.
    assert np.array_equal(items[29].depth, items[27].depth)
    meta = rgbd_video(src, tmp_path / "r.mp4", model=model, depth_fps=10)
    assert meta["depth_frames_computed"] == 10 and meta["frame_count"] == 30 and meta["depth_fps"] == 10


def test_scene_cut_detector_finds_the_hard_cut_and_nothing_else(media_dir):
    clip = make_cut_video(media_dir / "cut.mp4", first=1.0, second=1.0, fps=10)
    detector = SceneCutDetector()
    cuts = [frame.time for frame in iter_video_frames(clip) if detector(frame.image)]
    assert cuts == [pytest.approx(1.0)]
    moving = make_video(media_dir / "moving-no-cut.mp4", seconds=3, fps=10)
    detector = SceneCutDetector()
    assert not any(detector(frame.image) for frame in iter_video_frames(moving))


def test_depth_is_computed_at_a_cut_and_never_interpolated_across_it(tmp_path, model, media_dir):
    clip = make_cut_video(media_dir / "cut-rgbd.mp4", first=1.05, second=1.0, fps=20, audio=True)
    items = list(iter_video_depth(clip, model=model, depth_fps=4, height=None))
    cut_frames = [i for i, item in enumerate(items) if item.cut]
    assert len(cut_frames) == 1
    at = cut_frames[0]
    assert items[at].computed and items[at].frame.time == pytest.approx(1.05, abs=0.03)
    # The frame just before the cut holds the last depth of the first shot.
    last_first_shot = max(i for i in range(at) if items[i].computed)
    assert np.array_equal(items[at - 1].depth, items[last_first_shot].depth)
    meta = rgbd_video(clip, tmp_path / "cut.mp4", model=model, depth_fps=4)
    assert meta["scene_cuts"] == [pytest.approx(1.05, abs=0.03)]


def test_rgbd_cancel_and_bad_input_leave_nothing(tmp_path, model, media_dir):
    src = make_video(media_dir / "rgbd-cancel.mp4", seconds=2, fps=10)
    dst = tmp_path / "cancelled.mp4"

    def progress(done, total, stage):
        if stage.startswith("frame ") and done == 4:
            raise Cancelled()

    with pytest.raises(Cancelled):
        rgbd_video(src, dst, model=model, progress=progress)
    assert not dst.exists()
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n" * 20)
    with pytest.raises(InvalidMediaError):
        rgbd_video(text, tmp_path / "x.mp4", model=model)
    with pytest.raises(ValueError, match="polarity"):
        rgbd_video(src, tmp_path / "x.mp4", model=model, polarity="up")
    with pytest.raises(ValueError, match="depth_fps"):
        rgbd_video(src, tmp_path / "x.mp4", model=model, depth_fps=0)
    assert not (tmp_path / "x.mp4").exists()


# -- stabilisation on synthetic depth with known values ------------------------------------------


def _stabilised(clip, **options):
    stabilizer = DepthStabilizer(**options)
    out = []
    for frame in clip:
        out += stabilizer.push(frame.raw, frame.rgb)
    return out + stabilizer.flush(), stabilizer


def test_static_pixels_flicker_five_times_less_than_per_frame_min_max_without_clipping():
    clip = list(synthetic_clip(frames=40))
    min_max = measure_stability([normalize_min_max(f.raw)[0] for f in clip], clip)
    running = RunningPercentileBaseline()
    before = measure_stability([running(f.raw) for f in clip], clip)
    out, stabilizer = _stabilised(clip)
    new = measure_stability(out, clip)
    assert min_max.static_std > 5.0  # the scene really makes min-max breathe
    assert new.static_std * 5 <= min_max.static_std
    assert new.static_std <= before.static_std
    assert new.clipped_percent < 2.0
    assert stabilizer.fallbacks == 0  # aligned pixel by pixel, not by ranges
    ahead, _ = _stabilised(clip, lookahead=8)
    assert measure_stability(ahead, clip).static_std <= new.static_std


def test_alignment_undoes_the_models_scale_and_shift():
    clip = list(synthetic_clip(frames=12, noise=0.0))
    out, _ = _stabilised(clip, smoothing=0.0, adaptation=0.0)
    background = ~np.any([f.subject for f in clip], axis=0)
    for frame in out[1:]:
        assert np.abs(frame[background] - out[0][background]).max() < 1e-3


def test_a_cut_resets_the_reference():
    clip = list(synthetic_clip(frames=20, cut_at=10))
    stabilizer = DepthStabilizer()
    outputs = [stabilizer.push(f.raw, f.rgb, cut=(i == 10))[0] for i, f in enumerate(clip)]
    assert stabilizer.cuts == 1
    # The new shot gets its own range: its first frame spans the margins like the first shot's.
    for first in (outputs[0], outputs[10]):
        low, high = np.percentile(first, [0.5, 99.5])
        assert low == pytest.approx(0.05, abs=0.01) and high == pytest.approx(0.85, abs=0.01)
