"""Stereo rendering on synthetic scenes with known depth: planes at known nearness."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ai.errors import Cancelled, InvalidMediaError
from ai.stereo import (
    STEREO_FORMATS,
    compose,
    photo_stereo,
    render_views,
    stereo_filename,
    video_stereo,
)
from tests.media_factory import make_photo, make_video, probe_streams

HEIGHT, WIDTH = 120, 320
BACKGROUND, MIDDLE, NEAR = 0.1, 0.5, 0.9
RED = (235, 25, 25)


def _texture(seed: int, channel_low: int, channel_high: int) -> np.ndarray:
    """A horizontally varying, vertically constant texture (so row shifts are measurable)."""
    knots = np.random.default_rng(seed).random(WIDTH // 4 + 2)
    row = np.interp(np.arange(WIDTH) / 4, np.arange(knots.size), knots)
    return np.repeat((channel_low + (channel_high - channel_low) * row)[None, :], HEIGHT, axis=0)


@pytest.fixture(scope="module")
def planes():
    """Far textured wall, a middle plane (columns 100-219), a near red plane (rows 30-89,
    columns 140-179) with its own texture in green."""
    rgb = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    nearness = np.full((HEIGHT, WIDTH), BACKGROUND, dtype=np.float32)
    rgb[..., 1] = _texture(1, 60, 160)
    rgb[..., 2] = _texture(2, 120, 250)
    nearness[:, 100:220] = MIDDLE
    rgb[:, 100:220, 1] = _texture(3, 80, 200)[:, 100:220]
    rgb[:, 100:220, 2] = 30
    nearness[30:90, 140:180] = NEAR
    rgb[30:90, 140:180, 0] = RED[0]
    rgb[30:90, 140:180, 1] = _texture(4, 0, 60)[30:90, 140:180]
    rgb[30:90, 140:180, 2] = RED[2]
    return rgb, nearness


def _as_image(view) -> np.ndarray:
    return view.permute(1, 2, 0).numpy() * 255.0


def _measured_shift(left: np.ndarray, right: np.ndarray, row: int, x0: int, x1: int, around: float) -> float:
    """The t (sub-pixel) with left(x) ~ right(x - t) over columns x0..x1 of one row (green channel)."""
    columns = np.arange(x0, x1)
    candidates = np.arange(around - 3, around + 3, 0.01)
    errors = [
        np.abs(left[row, columns, 1] - np.interp(columns - t, np.arange(WIDTH), right[row, :, 1])).mean()
        for t in candidates
    ]
    return float(candidates[int(np.argmin(errors))])


@pytest.mark.parametrize("divergence, convergence", [(5.0, 0.5), (3.0, 0.2), (4.0, 0.9)])
def test_left_right_shift_is_the_expected_disparity(planes, divergence, convergence):
    rgb, nearness = planes
    views = render_views(rgb, nearness, divergence=divergence, convergence=convergence)
    left, right = _as_image(views.left), _as_image(views.right)
    full_range = divergence / 100 * WIDTH
    # Interior columns of each plane in the source, away from its edges (and from the dilated rim).
    for nearness_value, row, (x0, x1) in ((BACKGROUND, 10, (20, 80)), (MIDDLE, 10, (112, 132)), (NEAR, 60, (150, 170))):
        expected = full_range * (nearness_value - convergence)
        # The left view shows the plane at x + d/2: measure around there.
        shifted = (int(x0 + expected / 2) + 3, int(x1 + expected / 2) - 3)
        measured = _measured_shift(left, right, row, *shifted, around=expected)
        assert measured == pytest.approx(expected, abs=0.5), (nearness_value, measured, expected)


def test_nearer_planes_occlude_farther_ones_and_keep_their_size(planes):
    rgb, nearness = planes
    views = render_views(rgb, nearness, divergence=5.0, convergence=0.5, edge_dilation=0)
    shift = 5.0 / 100 * WIDTH * (NEAR - 0.5) / 2  # 3.2 px per eye
    for view, sign in ((_as_image(views.left), 1), (_as_image(views.right), -1)):
        red = view[..., 0] > 200  # only the near plane has any red
        rows = red[30:90]
        assert red[:30].sum() == 0 and red[90:].sum() == 0
        # Every row of the near plane: a run 40 px wide (the source's), moved by its own shift.
        for line in rows:
            columns = np.flatnonzero(line)
            assert columns.size in (40, 41)
            assert columns.mean() == pytest.approx(159.5 + sign * shift, abs=0.6)
        # The middle plane shows where the near plane is not: its colour is its own (blue 30).
        assert np.abs(view[10, 105:215, 2] - 30).max() < 2  # at screen level: does not move


def test_holes_are_filled_from_the_background_side_without_foreground_colour(planes):
    rgb, nearness = planes
    views = render_views(rgb, nearness, divergence=5.0, convergence=0.5)
    for view, holes in ((views.left, views.left_holes), (views.right, views.right_holes)):
        image, holes = _as_image(view), holes.numpy()
        assert holes.sum() > 0  # disocclusions exist: the planes move relative to each other
        hole_pixels = image[holes]
        assert hole_pixels[:, 0].max() < 1  # only the near plane has any red
        # Holes next to the near plane show the middle plane behind it (blue channel 30), not red.
        near_band = holes[30:90, 120:200]
        assert near_band.any()
        assert np.abs(image[30:90, 120:200][near_band][:, 2] - 30).max() < 2


def test_formats_have_their_sizes_and_names(planes):
    rgb, nearness = planes
    views = render_views(rgb, nearness)
    sizes = {name: compose(views, name).shape for name in STEREO_FORMATS}
    assert sizes == {
        "full_sbs": (HEIGHT, 2 * WIDTH, 3),
        "half_sbs": (HEIGHT, WIDTH, 3),
        "tb": (HEIGHT, WIDTH, 3),
        "anaglyph": (HEIGHT, WIDTH, 3),
    }
    full = compose(views, "full_sbs")
    assert np.abs(full[:, :WIDTH].astype(int) - np.rint(_as_image(views.left))).max() <= 1
    top_bottom = compose(views, "tb")
    assert top_bottom[: HEIGHT // 2].mean() != top_bottom[HEIGHT // 2 :].mean()
    # Red-cyan: the red channel comes from the left eye, green and blue from the right.
    anaglyph = compose(views, "anaglyph").astype(int)
    red_left = np.flatnonzero(anaglyph[60, :, 0] > 150)
    assert red_left.size > 0
    assert stereo_filename("clip.mp4", "full_sbs") == "clip_LRF_Full_SBS.mp4"
    assert stereo_filename("a.b.jpg", "half_sbs") == "a.b_LR_Half_SBS.jpg"
    assert stereo_filename("x.png", "tb") == "x_TB.png"
    assert stereo_filename("x.png", "anaglyph", ".jpg") == "x_redcyan.jpg"


def test_a_flat_depth_at_screen_level_gives_two_identical_views(planes):
    rgb, _ = planes
    flat = np.full((HEIGHT, WIDTH), 0.5, dtype=np.float32)
    views = render_views(rgb, flat, divergence=5.0, convergence=0.5)
    assert np.abs(_as_image(views.left) - rgb).max() < 1
    assert np.abs(_as_image(views.right) - rgb).max() < 1


@pytest.fixture(scope="module")
def depth_model(tiny_depth_model_dir):
    from ai.depth import get_depth_model
    from tests.tiny_models import TINY_DEPTH_INPUT_SIZE

    return get_depth_model(
        str(tiny_depth_model_dir), device="cpu", precision="fp32", input_size=TINY_DEPTH_INPUT_SIZE, batch_size=4
    ).load()


@pytest.mark.parametrize("fmt, suffix, size", [("full_sbs", ".png", (320, 120)), ("half_sbs", ".jpg", (160, 120))])
def test_photo_stereo_writes_the_format(tmp_path, depth_model, fmt, suffix, size):
    src = make_photo(tmp_path / "photo.jpg", 160, 120)
    dst = tmp_path / f"out{suffix}"
    meta = photo_stereo(src, dst, model=depth_model, fmt=fmt)
    with Image.open(dst) as image:
        assert image.size == size and image.format == ("PNG" if suffix == ".png" else "JPEG")
    assert meta["filename"] == stereo_filename("photo.jpg", fmt, suffix)


def test_photo_stereo_from_a_given_depth_map_matches_render_views(tmp_path, planes):
    rgb, nearness = planes
    src = tmp_path / "planes.png"
    Image.fromarray(rgb).save(src)
    photo_stereo(src, tmp_path / "sbs.png", nearness=nearness, fmt="full_sbs")
    with Image.open(tmp_path / "sbs.png") as image:
        stored = np.asarray(image)
    assert np.array_equal(stored, compose(render_views(rgb, nearness), "full_sbs"))


def test_video_stereo_keeps_frames_duration_and_audio(tmp_path, depth_model, media_dir):
    src = make_video(media_dir / "stereo-src.mp4", seconds=1.2, fps=10, audio=True)
    dst = tmp_path / "out.mp4"
    calls = []
    meta = video_stereo(src, dst, model=depth_model, fmt="tb", progress=lambda d, t, s: calls.append((d, t, s)))
    source, result = probe_streams(src), probe_streams(dst)
    assert result["video"]["nb_read_frames"] == source["video"]["nb_read_frames"] == "12"
    assert (int(result["video"]["width"]), int(result["video"]["height"])) == (160, 120)
    assert float(result["video"]["duration"]) == pytest.approx(float(source["video"]["duration"]), abs=0.01)
    assert result["audio"]["codec_name"] == "aac"
    assert float(result["audio"]["duration"]) == pytest.approx(float(source["audio"]["duration"]), abs=0.03)
    assert meta["frame_count"] == 12 and meta["filename"] == "stereo-src_TB.mp4"
    assert [c[2] for c in calls if c[2].startswith("frame ")][-1] == "frame 12/12"


def test_video_stereo_cancel_leaves_nothing(tmp_path, depth_model, media_dir):
    src = make_video(media_dir / "stereo-cancel.mp4", seconds=2, fps=10)
    dst = tmp_path / "cancelled.mp4"

    def progress(done, total, stage):
        if stage.startswith("frame ") and done == 3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        video_stereo(src, dst, model=depth_model, progress=progress)
    assert not dst.exists()


def test_bad_stereo_input_and_options(tmp_path, depth_model, media_dir):
    video = make_video(media_dir / "stereo-bad.mp4", seconds=1, fps=10)
    with pytest.raises(InvalidMediaError, match="video, not a photo"):
        photo_stereo(video, tmp_path / "x.jpg", model=depth_model)
    text = tmp_path / "notes.txt"
    text.write_text("no picture here\n" * 5)
    with pytest.raises(InvalidMediaError):
        video_stereo(text, tmp_path / "x.mp4", model=depth_model)
    photo = make_photo(tmp_path / "p.jpg")
    with pytest.raises(ValueError, match="format"):
        photo_stereo(photo, tmp_path / "x.jpg", model=depth_model, fmt="cross")
    with pytest.raises(ValueError, match="divergence"):
        photo_stereo(photo, tmp_path / "x.jpg", model=depth_model, divergence=0)
    with pytest.raises(ValueError, match="convergence"):
        photo_stereo(photo, tmp_path / "x.jpg", model=depth_model, convergence=1.5)
    assert not (tmp_path / "x.jpg").exists() and not (tmp_path / "x.mp4").exists()


def test_video_stereo_from_a_stored_rgbd_video_needs_no_model(tmp_path, depth_model, media_dir):
    from ai.depth_video import iter_rgbd_video, rgbd_video

    src = make_video(media_dir / "stereo-rgbd-src.mp4", seconds=1.0, fps=10, audio=True)
    rgbd = tmp_path / "rgbd.mp4"
    rgbd_video(src, rgbd, model=depth_model, polarity="near_bright")
    dst = tmp_path / "sbs.mp4"
    meta = video_stereo(src, dst, rgbd=rgbd, rgbd_polarity="near_bright", fmt="full_sbs")
    assert meta["depth_source"] == "rgbd_video" and meta["model"] is None
    result = probe_streams(dst)
    assert result["video"]["nb_read_frames"] == "10" and result["audio"]["codec_name"] == "aac"
    # Each stereo frame is rendered from the RGB-D frame's colour and depth.
    first = next(iter_rgbd_video(rgbd, "near_bright"))
    expected = compose(render_views(first.frame.image, first.depth), "full_sbs").astype(int)
    with _first_frame(dst) as frame:
        assert np.abs(np.asarray(frame).astype(int) - expected).mean() < 4


def _first_frame(path):
    import io
    import subprocess

    png = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "image2pipe", "-vcodec", "png", "pipe:1"],
        capture_output=True,
        check=True,
    ).stdout
    return Image.open(io.BytesIO(png))
