"""Video cut-out: containers, alpha, audio, timing, temporal smoothing, errors.

Generated videos only (160x120, 2 s at 10 fps) and the stand-in segmentation model, so the real
decoder (ai.frames), rembg session code and ffmpeg encoders all run. Outputs are read back with
ffprobe/ffmpeg, the WebM with the libvpx decoder because ffmpeg's native VP9 decoder drops alpha.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ai.cutout import AlphaSmoother, InvalidOptionError, VideoEncodeError, cutout_video_filename, video_cutout
from ai.errors import Cancelled, InvalidMediaError
from tests.media_factory import make_video
from tests.stand_in_onnx import stand_in_home  # noqa: F401  (pytest fixture)

MODEL = "u2netp"  # the 320x320 stand-in: the 1024 one (default model) is covered by the photo tests
# make_video(still=True): a 0x336699 background with a 0xffcc00 box at x 40:120, y 30:90.
BOX_INSIDE = (slice(36, 84), slice(46, 114))
BOX_OUTSIDE = (slice(0, 20), slice(None))


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            str(path),
        ],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    return json.loads(out)


def video_stream(path: Path) -> dict:
    return next(s for s in ffprobe(path)["streams"] if s["codec_type"] == "video")


def audio_streams(path: Path) -> list[dict]:
    return [s for s in ffprobe(path)["streams"] if s["codec_type"] == "audio"]


def audio_seconds(path: Path) -> float:
    """Length of the decoded audio (what a player plays), independent of container bookkeeping."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", "8000", "-f", "s16le", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return len(raw) / 2 / 8000


def decode_rgba(path: Path, width: int = 160, height: int = 120) -> np.ndarray:
    """All frames as N x H x W x 4 uint8; WebM through libvpx-vp9 (keeps the alpha plane)."""
    decoder = ["-c:v", "libvpx-vp9"] if path.suffix == ".webm" else []
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", *decoder, "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgba", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 4)


@pytest.fixture(scope="module")
def still_with_audio(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("v") / "still_audio.mp4", seconds=2, fps=10, still=True, audio=True)


@pytest.fixture(scope="module")
def jump_video(tmp_path_factory):
    """A bright 40x40 square on a dark background at x=20 for 1 s, then at x=100 (a real, sudden move)."""
    path = tmp_path_factory.mktemp("v") / "jump.mp4"
    graph = (
        "color=c=0x202840:s=160x120:r=10:d=2[bg];color=c=0xf0e0c0:s=40x40:r=10:d=2[fg];"
        "[bg][fg]overlay=x='if(lt(t,1),20,100)':y=40:shortest=1"
    )
    subprocess.run(
        [
            "ffmpeg",
            "-y",
            "-v",
            "error",
            "-filter_complex",
            graph,
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "10",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )
    return path


def test_transparent_webm_carries_alpha_and_opus_audio(stand_in_home, still_with_audio, tmp_path):
    dst = tmp_path / cutout_video_filename("transparent")
    assert dst.name == "cutout_transparent.webm"
    meta = video_cutout(still_with_audio, dst, model=MODEL)
    stream = video_stream(dst)
    assert stream["codec_name"] == "vp9" and stream["tags"].get("alpha_mode") == "1"
    assert int(stream["nb_read_frames"]) == 20 and stream["r_frame_rate"] == "10/1"
    frames = decode_rgba(dst)
    assert frames.shape[0] == 20
    alpha = frames[:, :, :, 3]
    assert alpha[(slice(None),) + BOX_INSIDE].min() >= 200, "subject opaque"
    assert alpha[(slice(None),) + BOX_OUTSIDE].max() <= 50, "background transparent"
    assert [s["codec_name"] for s in audio_streams(dst)] == ["opus"]
    assert audio_seconds(dst) == pytest.approx(audio_seconds(still_with_audio), abs=0.1)
    assert meta["frames"] == 20 and meta["fps"] == 10 and meta["has_alpha"] and meta["audio_codec"] == "opus"
    assert meta["container"] == "webm" and (meta["width"], meta["height"]) == (160, 120)


def test_colour_background_mp4_copies_aac_audio(stand_in_home, still_with_audio, tmp_path):
    dst = tmp_path / cutout_video_filename("green")
    assert dst.name == "cutout_green.mp4"
    meta = video_cutout(still_with_audio, dst, model=MODEL, background="green")
    stream = video_stream(dst)
    assert stream["codec_name"] == "h264" and stream["pix_fmt"] == "yuv420p"
    assert int(stream["nb_read_frames"]) == 20 and stream["r_frame_rate"] == "10/1"
    frames = decode_rgba(dst).astype(int)
    assert np.abs(frames[(slice(None),) + BOX_OUTSIDE][..., :3] - (0, 255, 0)).max() <= 12
    assert np.abs(frames[(slice(None),) + BOX_INSIDE][..., :3] - (0xFF, 0xCC, 0x00)).max() <= 16
    audio = audio_streams(dst)
    assert [s["codec_name"] for s in audio] == ["aac"]
    source_audio = audio_streams(still_with_audio)[0]
    assert audio[0]["nb_read_frames"] == source_audio["nb_read_frames"], "AAC copied, not re-encoded"
    assert audio_seconds(dst) == pytest.approx(audio_seconds(still_with_audio), abs=0.1)
    assert float(ffprobe(dst)["format"]["duration"]) == pytest.approx(
        float(ffprobe(still_with_audio)["format"]["duration"]), abs=0.1
    )
    assert meta["background"] == "green" and not meta["has_alpha"]


def test_non_aac_audio_is_reencoded_to_aac_for_mp4(stand_in_home, tmp_path):
    src = make_video(tmp_path / "opus.mkv", seconds=2, fps=10, still=True, audio=True, extra=["-c:a", "libopus"])
    assert audio_streams(src)[0]["codec_name"] == "opus"
    dst = tmp_path / cutout_video_filename("#FF00AA")
    assert dst.name == "cutout_ff00aa.mp4"
    video_cutout(src, dst, model=MODEL, background="#FF00AA")
    assert [s["codec_name"] for s in audio_streams(dst)] == ["aac"]
    assert audio_seconds(dst) == pytest.approx(audio_seconds(src), abs=0.1)
    frames = decode_rgba(dst).astype(int)
    assert np.abs(frames[(slice(None),) + BOX_OUTSIDE][..., :3] - (255, 0, 170)).max() <= 16


def test_prores_4444_mov_has_alpha_and_pcm_audio(stand_in_home, still_with_audio, tmp_path):
    dst = tmp_path / cutout_video_filename("transparent", prores=True)
    assert dst.name == "cutout_transparent.mov"
    meta = video_cutout(still_with_audio, dst, model=MODEL, prores=True)
    stream = video_stream(dst)
    assert stream["codec_name"] == "prores" and stream["pix_fmt"].startswith("yuva444p")
    assert int(stream["nb_read_frames"]) == 20 and stream["r_frame_rate"] == "10/1"
    alpha = decode_rgba(dst)[:, :, :, 3]
    assert alpha[(slice(None),) + BOX_INSIDE].min() >= 240 and alpha[(slice(None),) + BOX_OUTSIDE].max() <= 15
    assert [s["codec_name"] for s in audio_streams(dst)] == ["pcm_s16le"]
    assert audio_seconds(dst) == pytest.approx(audio_seconds(still_with_audio), abs=0.1)
    assert meta["video_codec"] == "prores" and meta["prores"]


def test_video_without_audio_and_odd_size_and_rotation(stand_in_home, tmp_path):
    src = tmp_path / "odd.mp4"  # 4:4:4 H.264 can have odd sizes; 4:2:0 output cannot
    subprocess.run(
        [
            "ffmpeg",
            "-y",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=0x336699:s=161x121:r=10:d=1,format=rgb24,drawbox=x=40:y=30:w=80:h=60:color=0xffcc00:t=fill",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv444p",
            str(src),
        ],
        check=True,
    )
    dst = tmp_path / "odd.mp4.out.mp4"
    meta = video_cutout(src, dst, model=MODEL, background="black")
    stream = video_stream(dst)
    assert (stream["width"], stream["height"]) == (162, 122), "padded to even for 4:2:0"
    assert audio_streams(dst) == [] and meta["audio_codec"] is None
    assert int(stream["nb_read_frames"]) == 10

    rotated = make_video(tmp_path / "rotated.mp4", seconds=1, fps=10, still=True, rotate=90)
    out = tmp_path / "rotated.webm"
    meta = video_cutout(rotated, out, model=MODEL)
    assert (meta["width"], meta["height"]) == (120, 160), "frames come out upright"
    assert (video_stream(out)["width"], video_stream(out)["height"]) == (120, 160)


def test_height_scales_the_output_down(stand_in_home, still_with_audio, tmp_path):
    meta = video_cutout(still_with_audio, tmp_path / "small.webm", model=MODEL, height=60)
    stream = video_stream(tmp_path / "small.webm")
    assert (stream["width"], stream["height"]) == (80, 60) == (meta["width"], meta["height"])


# --- temporal smoothing ---


def test_alpha_smoother_steadies_noise_but_follows_a_jump():
    rng = np.random.default_rng(0)
    truth = np.zeros((40, 40), np.float32)
    truth[10:30, 10:30] = 1.0
    noisy = [np.clip(truth + rng.normal(0, 0.05, truth.shape), 0, 1).astype(np.float32) for _ in range(30)]
    smoother = AlphaSmoother(strength=0.6)
    smoothed = [smoother(a) for a in noisy]
    raw_wobble = np.mean([np.abs(b - a).mean() for a, b in zip(noisy[10:], noisy[11:])])
    smooth_wobble = np.mean([np.abs(b - a).mean() for a, b in zip(smoothed[10:], smoothed[11:])])
    assert smooth_wobble < 0.6 * raw_wobble

    moved = np.zeros_like(truth)
    moved[10:30, 20:40] = 1.0  # the subject moves 10 px: a 0 <-> 1 change at its edges
    after = smoother(moved)
    assert after[10:30, 30:40].min() > 0.95, "newly covered pixels become opaque at once"
    assert after[10:30, 10:20].max() < 0.05, "uncovered pixels become transparent at once"

    passthrough = AlphaSmoother(strength=0.0)
    assert all(np.array_equal(passthrough(a), a) for a in noisy[:3])


@pytest.mark.parametrize("strength", [-0.1, 1.0, 2])
def test_alpha_smoother_rejects_bad_strength(strength):
    with pytest.raises(InvalidOptionError):
        AlphaSmoother(strength=strength)


def test_smoothing_reduces_flicker_on_a_noisy_still_video(stand_in_home, tmp_path):
    # Temporal noise on a still scene makes the per-frame matte wobble at the subject's edges.
    src = make_video(
        tmp_path / "noisy.mp4", seconds=2, fps=10, still=True, extra=["-vf", "noise=alls=20:allf=t+u", "-crf", "10"]
    )
    wobble = {}
    for smoothing in (0.0, 0.6):
        dst = tmp_path / f"noisy_{smoothing}.mov"
        video_cutout(src, dst, model=MODEL, prores=True, smoothing=smoothing)
        alpha = decode_rgba(dst)[:, :, :, 3].astype(float) / 255
        wobble[smoothing] = np.abs(np.diff(alpha, axis=0)).mean()
    assert wobble[0.6] < 0.7 * wobble[0.0]


def test_smoothing_does_not_smear_a_moving_subject(stand_in_home, jump_video, tmp_path):
    dst = tmp_path / "jump.mov"
    video_cutout(jump_video, dst, model=MODEL, prores=True, smoothing=0.6)
    alpha = decode_rgba(dst)[:, :, :, 3].astype(float) / 255
    old_place, new_place = (slice(46, 74), slice(26, 54)), (slice(46, 74), slice(106, 134))
    jump = next(i for i in range(alpha.shape[0]) if alpha[i][new_place].mean() > 0.5)
    assert jump in (10, 11), "the square moves at t=1 s (frame 10)"
    assert alpha[jump - 1][old_place].min() > 0.9
    assert alpha[jump][new_place].min() > 0.9, "the matte follows the move in the same frame"
    assert alpha[jump][old_place].max() < 0.1, "no ghost left where the subject was"


# --- errors and cancelling ---


def test_cancel_stops_and_removes_partial_output(stand_in_home, still_with_audio, tmp_path):
    dst = tmp_path / "cancelled.webm"
    seen = []

    def progress(done, total, stage):
        seen.append((done, total, stage))
        if done == 5 and stage.startswith("removing background"):
            raise Cancelled()

    with pytest.raises(Cancelled):
        video_cutout(still_with_audio, dst, model=MODEL, progress=progress)
    assert not dst.exists()
    assert seen[-1][0] == 5 and seen[-1][1] == 20


def test_progress_counts_every_frame(stand_in_home, still_with_audio, tmp_path):
    seen = []
    video_cutout(
        still_with_audio,
        tmp_path / "p.mp4",
        model=MODEL,
        background="white",
        progress=lambda d, t, s: seen.append((d, t, s)),
    )
    frames = [d for d, _, s in seen if s.startswith("removing background")]
    assert frames == list(range(1, 21))
    assert seen[-1][:2] == (20, 20)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty"),
        (b"just some text, not a video\n" * 50, "not a video"),
    ],
)
def test_bad_input_is_invalid_media(stand_in_home, tmp_path, content, reason):
    src = tmp_path / "upload.mp4"
    src.write_bytes(content)
    dst = tmp_path / "out.webm"
    with pytest.raises(InvalidMediaError, match=reason):
        video_cutout(src, dst, model=MODEL)
    assert not dst.exists()


def test_truncated_video_is_invalid_media(stand_in_home, still_with_audio, tmp_path):
    src = tmp_path / "truncated.mp4"
    data = still_with_audio.read_bytes()
    src.write_bytes(data[: len(data) // 3])
    dst = tmp_path / "out.webm"
    with pytest.raises(InvalidMediaError):
        video_cutout(src, dst, model=MODEL)
    assert not dst.exists()


def test_encoder_failure_reports_ffmpeg_reason(stand_in_home, still_with_audio, tmp_path):
    dst = tmp_path / "no-such-folder" / "out.webm"
    with pytest.raises(VideoEncodeError) as err:
        video_cutout(still_with_audio, dst, model=MODEL)
    assert "ffmpeg" in str(err.value) and "no-such-folder" in str(err.value)
    assert not dst.exists()


def test_bad_options_are_rejected(stand_in_home, still_with_audio, tmp_path):
    with pytest.raises(InvalidOptionError, match="#rrggbb"):
        video_cutout(still_with_audio, tmp_path / "a.mp4", model=MODEL, background="chartreuse-ish")
    with pytest.raises(InvalidOptionError, match="ProRes"):
        video_cutout(still_with_audio, tmp_path / "b.mov", model=MODEL, background="green", prores=True)
    with pytest.raises(InvalidOptionError, match="smoothing"):
        video_cutout(still_with_audio, tmp_path / "c.webm", model=MODEL, smoothing=1.5)
    with pytest.raises(InvalidOptionError):
        cutout_video_filename("green", prores=True)
    assert not list(tmp_path.iterdir())


def test_real_matroska_video_keeps_every_frame(stand_in_home, tmp_path):
    from tests.media_factory import shared_media

    src = shared_media("videos", "again.mkv")
    if src is None:
        pytest.skip("../shared/media is not present")
    # Matroska that reports no frame count: the output must still hold every frame.
    dst = tmp_path / "again.webm"
    meta = video_cutout(src, dst, model="u2netp", height=96)
    stream = video_stream(dst)
    source = video_stream(src)
    assert int(stream["nb_read_frames"]) == int(source["nb_read_frames"]) == meta["frames"]
    assert stream["r_frame_rate"] == source["r_frame_rate"]
    assert (stream["width"], stream["height"]) == (128, 96)


# --- timing, batching and hard frames ---


def make_vfr_video(path: Path) -> Path:
    """2 s of variable frame rate with AAC audio: 4 fps for the first second, then 20 fps (24 frames,
    average 12 fps). A bright 80x60 subject appears at t = 1.0 s, exactly when a tone starts."""
    graph = (
        "color=c=0x202840:s=160x120:r=20:d=2[bg];color=c=0xf0e0c0:s=80x60:r=20:d=2[fg];"
        "[bg][fg]overlay=x=40:y=30:enable='gte(t,1)'"
    )
    tone = "sine=frequency=440:sample_rate=8000:samples_per_frame=80:duration=2,volume='if(gte(t,1),1,0)':eval=frame"
    subprocess.run(
        ["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", graph, "-f", "lavfi", "-i", tone]
        + ["-vf", "select='lt(t,1)*not(mod(n,5))+gte(t,1)',setpts='if(lt(T,1),N*0.25,T)/TB'", "-fps_mode", "vfr"]
        + ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )
    return path


def frame_times(path: Path) -> list[float]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time", "-of", "csv=p=0"]
        + [str(path)],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    return [float(line.strip().rstrip(",")) for line in out.splitlines() if line.strip()]


def audio_onset(path: Path, rate: int = 8000) -> float:
    """Presentation time of the first loud audio sample, on the file's timeline (like frame times)."""
    start = float(audio_streams(path)[0].get("start_time") or 0.0)
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(rate), "-f", "s16le", "-"],
        capture_output=True,
        check=True,
    ).stdout
    samples = np.abs(np.frombuffer(raw, np.int16).astype(int))
    return start + int(np.argmax(samples > samples.max() // 4)) / rate


@pytest.mark.parametrize("background, suffix", [("transparent", ".webm"), ("black", ".mp4")])
def test_variable_frame_rate_source_stays_in_sync_with_its_audio(stand_in_home, tmp_path, background, suffix):
    src = make_vfr_video(tmp_path / "vfr.mp4")
    assert len(set(np.round(np.diff(frame_times(src)), 3))) > 1, "the source really is VFR"
    assert audio_onset(src) == pytest.approx(1.0, abs=0.02)
    dst = tmp_path / f"out{suffix}"
    meta = video_cutout(src, dst, model=MODEL, background=background, smoothing=0)
    assert meta["fps"] == 12 and meta["frames"] == 24
    times = frame_times(dst)
    assert np.diff(times) == pytest.approx([1 / 12] * 23, abs=0.002), "a constant rate"
    pixels = decode_rgba(dst)
    subject = (slice(40, 80), slice(50, 110))
    if background == "transparent":
        present = [frame[subject][..., 3].mean() > 200 for frame in pixels]
    else:
        present = [frame[subject][..., :3].mean() > 150 for frame in pixels]
    first = present.index(True)
    assert not any(present[:first]) and all(present[first:])
    # The subject shows up on the frame at 1.0 s, where the tone starts: picture and sound in sync
    # (re-timing the 24 frames by count would put it at 4/12 = 0.33 s).
    assert times[first] - times[0] == pytest.approx(1.0, abs=1 / 12 + 1e-3)
    assert times[first] == pytest.approx(audio_onset(dst), abs=1 / 12 + 0.01)


def test_batched_runs_give_the_same_mattes_as_single_frames(stand_in_home, still_with_audio, tmp_path):
    # isnet-general-use's stand-in takes any batch size (u2netp's is fixed at one frame per run).
    mattes = {}
    for batch_size in (1, 3):
        dst = tmp_path / f"batch{batch_size}.mov"
        meta = video_cutout(
            still_with_audio, dst, model="isnet-general-use", prores=True, smoothing=0, batch_size=batch_size
        )
        assert meta["frames"] == 20
        mattes[batch_size] = decode_rgba(dst)[:, :, :, 3]
    assert np.array_equal(mattes[1], mattes[3])
    assert mattes[3][(slice(None),) + BOX_INSIDE].min() >= 240
    assert mattes[3][(slice(None),) + BOX_OUTSIDE].max() <= 25


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_uniform_frames_keep_the_previous_matte(stand_in_home, tmp_path):
    # 2 s at 10 fps of the still scene; frames 8-11 faded fully to black, frame 15 a white flash.
    src = make_video(
        tmp_path / "fade.mp4",
        seconds=2,
        fps=10,
        still=True,
        extra=[
            "-vf",
            "drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='between(n,8,11)',"
            "drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='eq(n,15)'",
            "-crf",
            "10",
        ],
    )
    dst = tmp_path / "fade.mov"
    meta = video_cutout(src, dst, model=MODEL, prores=True, smoothing=0)
    alpha = decode_rgba(dst)[:, :, :, 3]
    assert meta["frames"] == 20 and alpha.shape[0] == 20
    for index in (8, 9, 10, 11, 15):  # nothing to separate: the subject's matte carries on
        assert alpha[index][BOX_INSIDE].min() >= 240, index
        assert alpha[index][BOX_OUTSIDE].max() <= 15, index
        assert np.array_equal(alpha[index], alpha[7] if index < 15 else alpha[14])
