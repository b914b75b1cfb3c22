"""Frame extraction against what ffprobe says about the same files."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ai.errors import Cancelled, InvalidMediaError
from ai.frames import Frame, extract_frames, iter_video_frames
from ai.probe import probe_video
from tests.media_factory import make_video, shared_media


def ffprobe_frames(path: Path) -> list[tuple[float, bool]]:
    """(pts_time, is_key_frame) of every video frame, in presentation order."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts_time,key_frame",
            "-of",
            "json",
            str(path),
        ],
        check=True,
        capture_output=True,
    ).stdout
    frames = [(float(f["pts_time"]), bool(int(f["key_frame"]))) for f in json.loads(out)["frames"]]
    return sorted(frames)


def nearest(times: list[float], target: float) -> float:
    return min(times, key=lambda t: (abs(t - target), t))


@pytest.fixture(scope="module")
def gop_video(media_dir) -> Path:
    # 3 s at 10 fps with a key frame every 5 frames (0.5 s).
    return make_video(media_dir / "gop5.mp4", seconds=3, fps=10, gop=5)


def test_interval_frames_are_the_source_frames_nearest_each_interval(gop_video):
    source = [t for t, _ in ffprobe_frames(gop_video)]
    frames = list(extract_frames(gop_video, method="interval", fps=3, max_frames=100, height=None))
    assert [f.index for f in frames] == list(range(1, len(frames) + 1))
    assert len(frames) == 9  # 0, 1/3 ... 8/3 s within a 3 s video
    for k, frame in enumerate(frames):
        assert frame.time == pytest.approx(nearest(source, k / 3), abs=1e-6)
        assert frame.image.dtype == np.uint8 and frame.image.shape == (120, 160, 3)


def test_interval_frame_pixels_equal_the_decoded_source_frame(gop_video):
    every = {round(f.time, 6): f.image for f in iter_video_frames(gop_video)}
    for frame in extract_frames(gop_video, fps=2, height=None):
        assert np.array_equal(frame.image, every[round(frame.time, 6)])


def test_keyframes_method_yields_exactly_the_key_frames(gop_video):
    keys = [t for t, key in ffprobe_frames(gop_video) if key]
    assert keys == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    frames = list(extract_frames(gop_video, method="keyframes", max_frames=100, height=None))
    assert [f.time for f in frames] == pytest.approx(keys, abs=1e-6)


def test_max_frames_caps_both_methods(gop_video):
    assert len(list(extract_frames(gop_video, fps=10, max_frames=4))) == 4
    assert [f.time for f in extract_frames(gop_video, method="keyframes", max_frames=2)] == pytest.approx([0, 0.5])


def test_video_shorter_than_one_interval_yields_its_first_frame(media_dir):
    short = make_video(media_dir / "short.mp4", seconds=0.3, fps=10)
    frames = list(extract_frames(short, fps=1))
    assert [(f.index, f.time) for f in frames] == [(1, 0.0)]


def test_height_scales_keeping_aspect_with_even_width_and_never_upscales(gop_video):
    small = next(extract_frames(gop_video, height=50))
    assert small.image.shape == (50, 66, 3)  # 160*50/120 = 66.7 -> nearest even width
    assert next(extract_frames(gop_video, height=1000)).image.shape == (120, 160, 3)


def test_rotation_metadata_is_applied(media_dir):
    plain = make_video(media_dir / "plain.mp4", seconds=1, fps=10)
    rotated = make_video(media_dir / "rotated.mp4", seconds=1, fps=10, rotate=90)
    upright = next(extract_frames(plain, height=None)).image
    frame = next(extract_frames(rotated, height=None)).image
    assert frame.shape == (160, 120, 3)  # displayed portrait
    # The frames must be turned the way the display matrix says (probe: degrees clockwise).
    # ffmpeg 5.1 stores the legacy rotate=90 tag as a 90-degree counter-clockwise matrix.
    clockwise = probe_video(rotated).rotation
    assert clockwise in (90, 270)
    expected = np.rot90(upright, k=-clockwise // 90)
    assert np.abs(frame.astype(int) - expected.astype(int)).mean() < 4
    scaled = next(extract_frames(rotated, height=80))
    assert scaled.image.shape == (80, 60, 3)


def test_odd_frame_rate_times_match_ffprobe(media_dir):
    odd = make_video(media_dir / "odd.mp4", seconds=2, fps="179/6")
    source = [t for t, _ in ffprobe_frames(odd)]
    frames = list(extract_frames(odd, fps=2, height=None))
    assert len(frames) == 4
    for k, frame in enumerate(frames):
        assert frame.time in [pytest.approx(t, abs=1e-6) for t in source]
        assert frame.time == pytest.approx(nearest(source, k / 2), abs=1e-6)


def test_every_frame_at_the_source_rate_with_progress(gop_video):
    calls = []
    frames = list(iter_video_frames(gop_video, height=60, progress=lambda d, t, s: calls.append((d, t))))
    assert [f.time for f in frames] == pytest.approx([t for t, _ in ffprobe_frames(gop_video)], abs=1e-6)
    assert calls == [(i, 30) for i in range(1, 31)]
    assert isinstance(frames[0], Frame) and frames[0].image.shape == (60, 80, 3)


def test_matroska_without_frame_count_does_not_need_one():
    video = shared_media("videos", "again.mkv")
    if video is None:
        pytest.skip("../shared/media is absent")
    totals = []
    frames = list(extract_frames(video, fps=2, height=120, progress=lambda d, t, s: totals.append(t)))
    times = [f.time for f in frames]
    assert len(frames) >= 4 and times == sorted(times)
    assert all(t is None or t >= len(frames) - 1 for t in totals)
    assert frames[0].image.shape == (120, 160, 3)
    every = sum(1 for _ in iter_video_frames(video, height=60, progress=lambda d, t, s: totals.append(t)))
    assert every == len(ffprobe_frames(video))


def test_cancelled_from_progress_stops_extraction(gop_video):
    seen = []

    def progress(done, total, stage):
        seen.append(done)
        if done == 2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        list(extract_frames(gop_video, fps=10, progress=progress))
    assert seen == [1, 2]


def test_stopping_early_releases_ffmpeg(gop_video):
    frames = extract_frames(gop_video, fps=10)
    first = next(frames)
    frames.close()  # kills ffmpeg and joins its reader; must not hang
    assert first.index == 1


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("notes.mp4", b"this is a text file, not a video\n" * 20, "not a video"),
        ("empty.mp4", b"", "empty"),
    ],
)
def test_non_videos_are_invalid_media(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidMediaError, match=reason):
        next(extract_frames(path))


def test_audio_only_file_is_invalid_media(tmp_path):
    audio = make_video(tmp_path / "sound.m4a", seconds=1, audio=True, extra=["-vn"])
    with pytest.raises(InvalidMediaError, match="no video stream"):
        list(extract_frames(audio))


def test_truncated_videos_are_invalid_media_with_ffmpegs_words_in_the_log_only(tmp_path, caplog):
    cases = (
        (".mkv", "the video file is truncated: it ends before its declared length", "File ended prematurely"),
        (".mp4", "the file is not a video, or it is damaged", "moov atom not found"),
    )
    for suffix, message, ffmpeg_words in cases:
        whole = make_video(tmp_path / f"whole{suffix}", seconds=3, fps=10)
        data = whole.read_bytes()
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(data[: len(data) // 2])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ai.frames"), pytest.raises(InvalidMediaError) as err:
            list(extract_frames(cut, fps=5, max_frames=None))
        assert str(err.value) == message
        assert ffmpeg_words in caplog.text and str(cut) in caplog.text


def test_zero_frame_video_gets_one_clear_sentence(tmp_path, caplog):
    # A Matroska file whose video track has a header but no frames (ffmpeg -frames:v 0).
    zero = tmp_path / "zero.mkv"
    subprocess.run(
        ["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", "color=s=160x120:r=10:d=1", "-frames:v", "0"]
        + ["-c:v", "libx264", str(zero)],
        check=True,
    )
    with caplog.at_level(logging.WARNING, logger="ai.frames"), pytest.raises(InvalidMediaError) as err:
        list(iter_video_frames(zero))
    assert str(err.value) == "the file is not a video, or it is damaged"
    assert "ffprobe" in caplog.text and "EBML" in caplog.text, "ffmpeg's own words are kept for the log"


@pytest.mark.parametrize(
    "options, word",
    [
        ({"method": "scenes"}, "method"),
        ({"fps": 0}, "fps"),
        ({"fps": "x"}, "fps"),
        ({"max_frames": -1}, "max_frames"),
        ({"height": 0}, "height"),
    ],
)
def test_bad_options_are_rejected(gop_video, options, word):
    with pytest.raises(ValueError, match=word):
        next(extract_frames(gop_video, **options))


def test_interval_sampling_on_variable_frame_rate_takes_the_nearest_frame_by_its_own_time(tmp_path):
    # 4 fps for the first second, then 20 fps: sampling at 3 fps wants 1/3 s, whose nearest frame
    # is the one at 0.25 s (0.083 s away), not the one at 0.5 s that an average-interval guess picks.
    src = tmp_path / "vfr.mp4"
    subprocess.run(
        ["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=160x120:r=20:d=2"]
        + ["-vf", "select='lt(t,1)*not(mod(n,5))+gte(t,1)',setpts='if(lt(T,1),N*0.25,T)/TB'", "-fps_mode", "vfr"]
        + ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(src)],
        check=True,
    )
    source = [t for t, _ in ffprobe_frames(src)]
    assert source[:5] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0]) and len(source) == 24
    frames = list(extract_frames(src, method="interval", fps=3, max_frames=None, height=None))
    assert [f.time for f in frames] == pytest.approx([nearest(source, k / 3) for k in range(6)], abs=1e-6)
    assert frames[1].time == pytest.approx(0.25)
    every = {round(f.time, 6): f.image for f in iter_video_frames(src)}
    assert all(np.array_equal(f.image, every[round(f.time, 6)]) for f in frames)


def test_interval_sampling_of_hundreds_of_frames(tmp_path):
    # More chosen frames than ffmpeg's expression parser takes in one chain of terms.
    video = make_video(tmp_path / "long.mp4", seconds=15, fps=10, width=64, height=48)
    source = [t for t, _ in ffprobe_frames(video)]
    frames = list(extract_frames(video, fps=10, max_frames=None, height=None))
    assert [f.time for f in frames] == pytest.approx(source, abs=1e-6) and len(frames) == 150
