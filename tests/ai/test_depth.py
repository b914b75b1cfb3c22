"""Depth pipelines on a tiny random Depth Anything loaded through the real from_pretrained path."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ai.depth import (
    DepthModel,
    download_depth_model,
    encode_depth,
    get_depth_model,
    normalize_min_max,
    photo_depth,
    resolve_precision,
    video_depth,
)
from ai.errors import Cancelled, InvalidMediaError, ModelUnavailableError
from ai.frames import extract_frames
from ai.probe import oriented_image
from tests.media_factory import make_photo, make_video
from tests.tiny_models import TINY_DEPTH_INPUT_SIZE


@pytest.fixture(scope="module")
def model(tiny_depth_model_dir) -> DepthModel:
    return get_depth_model(
        str(tiny_depth_model_dir), device="cpu", precision="fp32", input_size=TINY_DEPTH_INPUT_SIZE, batch_size=3
    ).load()


@pytest.fixture(scope="module")
def moving_video(media_dir) -> Path:
    return make_video(media_dir / "moving.mp4", seconds=2, fps=10)


def test_model_loads_once_per_process_and_predicts_each_image_at_its_own_size(model, tiny_depth_model_dir):
    again = get_depth_model(
        str(tiny_depth_model_dir), device="cpu", precision="fp32", input_size=TINY_DEPTH_INPUT_SIZE, batch_size=3
    )
    assert again is model and model.loaded and model.device == "cpu"
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 130, 3), dtype=np.uint8))
    frames = [np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8) for i in range(4)]
    depths = model.predict([photo, *frames])
    assert [d.shape for d in depths] == [(90, 130)] + [(48, 64)] * 4
    assert all(d.dtype == np.float32 and np.isfinite(d).all() for d in depths)
    assert float(depths[1].std()) > 0  # an image-dependent map, not a constant
    # Batched (frames 1-3 together, then 4 alone) equals one at a time.
    alone = model.predict([frames[3]])[0]
    assert np.allclose(depths[4], alone, atol=1e-5)
    assert not np.allclose(depths[1], depths[2])


def test_inference_size_matches_the_checkpoints_processor(model, tiny_depth_model_dir):
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(tiny_depth_model_dir)
    for height, width in ((120, 160), (160, 120), (37, 300), (56, 56)):
        image = np.zeros((height, width, 3), dtype=np.uint8)
        expected = processor(images=image, return_tensors="pt")["pixel_values"].shape[-2:]
        assert model.inference_size(height, width) == tuple(expected)
    assert model.inference_size(120, 160, input_size=112) == (112, 154)


def test_own_preprocessing_matches_the_processors_values(model, tiny_depth_model_dir):
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(tiny_depth_model_dir)
    image = np.asarray(oriented_image(make_photo(Path(tiny_depth_model_dir).parent / "p.jpg", 200, 150)))
    ours = model.preprocess([image]).float().numpy()
    theirs = processor(images=image, return_tensors="pt")["pixel_values"].numpy()
    assert ours.shape == theirs.shape
    # Same mean/std and geometry; resampling filters differ slightly (torch vs PIL bicubic).
    assert np.abs(ours - theirs).mean() < 0.1


def test_precision_choice():
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("auto", "cpu") in ("fp32", "bf16")
    assert resolve_precision("fp32", "cuda") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int4", "cpu")


def test_bf16_on_cpu_gives_nearly_the_fp32_depth(tiny_depth_model_dir, model):
    bf16 = DepthModel(str(tiny_depth_model_dir), device="cpu", precision="bf16", input_size=56).load()
    image = np.random.default_rng(3).integers(0, 255, (56, 84, 3), dtype=np.uint8)
    low, full = bf16.predict([image])[0], model.predict([image])[0]
    assert bf16.precision in ("bf16", "fp32")  # fp32 only if this CPU cannot run bf16 at all
    assert np.corrcoef(low.ravel(), full.ravel())[0, 1] > 0.9


@pytest.mark.parametrize("bit_depth, mode, maximum", [(8, "L", 255), (16, "I;16", 65535)])
def test_photo_depth_png_at_the_oriented_size(tmp_path, model, bit_depth, mode, maximum):
    src = make_photo(tmp_path / "portrait.jpg", width=160, height=120, orientation=6)
    dark, bright = tmp_path / "dark.png", tmp_path / "bright.png"
    meta = photo_depth(src, dark, model=model, bit_depth=bit_depth)
    photo_depth(src, bright, model=model, bit_depth=bit_depth, polarity="near_bright")
    with Image.open(dark) as a, Image.open(bright) as b:
        assert a.mode == b.mode == mode and a.size == b.size == (120, 160)
        dark_px, bright_px = np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64)
    assert meta["width"] == 120 and meta["height"] == 160 and meta["bit_depth"] == bit_depth
    assert meta["polarity"] == "near_dark" and meta["model"] == model.model_name
    assert meta["raw_min"] < meta["raw_max"]
    # The two polarities are exact complements, and both use the full range.
    assert np.array_equal(dark_px + bright_px, np.full_like(dark_px, maximum))
    assert dark_px.min() == 0 and dark_px.max() == maximum
    # The PNG is the model's depth of the upright photo: nearest (largest raw) is darkest.
    raw = model.predict([oriented_image(src)])[0]
    assert raw.shape == dark_px.shape
    expected = np.asarray(encode_depth(normalize_min_max(raw)[0], bit_depth, "near_dark")).astype(np.int64)
    assert np.abs(expected - dark_px).max() <= 1
    assert dark_px.ravel()[raw.argmax()] == 0 and dark_px.ravel()[raw.argmin()] == maximum


def test_video_depth_zip_layout_and_manifest(tmp_path, model, moving_video):
    calls = []
    dst = tmp_path / "out.zip"
    manifest = video_depth(
        moving_video,
        dst,
        model=model,
        fps=4,
        max_frames=6,
        height=96,
        source={"asset_id": "abc"},
        progress=lambda d, t, s: calls.append((d, t, s)),
    )
    with zipfile.ZipFile(dst) as archive:
        names = archive.namelist()
        stored = json.loads(archive.read("manifest.json"))
        depth_names = sorted(n for n in names if n.startswith("depth_frame_"))
        color_names = sorted(n for n in names if n.startswith("color_frame_"))
        assert depth_names == [f"depth_frame_{i:04d}.png" for i in range(1, 7)]
        assert color_names == [f"color_frame_{i:04d}.jpg" for i in range(1, 7)]
        assert set(names) == set(depth_names) | set(color_names) | {"manifest.json"}
        with Image.open(io.BytesIO(archive.read(depth_names[0]))) as depth:
            assert depth.mode == "L" and depth.size == (128, 96)
        with Image.open(io.BytesIO(archive.read(color_names[0]))) as color:
            assert color.format == "JPEG" and color.size == (128, 96)
    assert stored == json.loads(json.dumps(manifest))
    expected_times = [f.time for f in extract_frames(moving_video, fps=4, max_frames=6, height=96)]
    assert (
        [f["time"] for f in manifest["frames"]]
        == expected_times
        == pytest.approx([0, 0.25, 0.5, 0.75, 1, 1.25], abs=0.06)
    )
    assert manifest["frames"][0] | {"raw_range": None} == {
        "index": 1,
        "time": 0.0,
        "depth": "depth_frame_0001.png",
        "color": "color_frame_0001.jpg",
        "raw_range": None,
        "scene_cut": False,
    }
    assert {
        k: manifest[k]
        for k in (
            "version",
            "source",
            "model",
            "method",
            "requested_fps",
            "effective_fps",
            "frame_width",
            "frame_height",
            "frame_count",
            "polarity",
            "bit_depth",
        )
    } == {
        "version": 1,
        "source": {"asset_id": "abc"},
        "model": model.model_name,
        "method": "interval",
        "requested_fps": 4,
        "effective_fps": 4,
        "frame_width": 128,
        "frame_height": 96,
        "frame_count": 6,
        "polarity": "near_dark",
        "bit_depth": 8,
    }
    assert manifest["normalization"]["method"] == "aligned-reference"
    assert [c[0] for c in calls if c[2].startswith("frame ")] == [1, 2, 3, 4, 5, 6]
    assert calls[-1][:2] == (6, 6)


def test_video_depth_keyframes_16_bit_without_color(tmp_path, model, media_dir):
    video = make_video(media_dir / "gop4.mp4", seconds=2, fps=10, gop=4)
    manifest = video_depth(
        video,
        tmp_path / "k.zip",
        model=model,
        method="keyframes",
        include_color=False,
        bit_depth=16,
        polarity="near_bright",
        height=None,
        max_frames=None,
    )
    assert [f["time"] for f in manifest["frames"]] == pytest.approx([0, 0.4, 0.8, 1.2, 1.6])
    assert manifest["requested_fps"] is None and manifest["effective_fps"] == pytest.approx(2.5)
    with zipfile.ZipFile(tmp_path / "k.zip") as archive:
        assert not any(n.startswith("color_") for n in archive.namelist())
        assert all("color" not in f for f in manifest["frames"])
        # max_frames=None: names padded for up to a million frames, still sortable.
        with Image.open(io.BytesIO(archive.read("depth_frame_000001.png"))) as depth:
            assert depth.mode == "I;16" and depth.size == (160, 120)


def test_still_video_depth_frames_are_nearly_identical(tmp_path, model, media_dir):
    still = make_video(media_dir / "still.mp4", seconds=3, fps=10, still=True)
    video_depth(still, tmp_path / "still.zip", model=model, fps=2, include_color=False)
    with zipfile.ZipFile(tmp_path / "still.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".png"))
        maps = [np.asarray(Image.open(io.BytesIO(archive.read(n)))).astype(int) for n in names]
    assert len(maps) == 6
    assert maps[0].max() - maps[0].min() > 100  # real contrast, not a flat image
    assert max(np.abs(m - maps[0]).max() for m in maps) <= 3


def test_cancel_from_progress_stops_and_leaves_nothing(tmp_path, model, moving_video):
    dst = tmp_path / "cancelled.zip"
    frames_seen = []

    def progress(done, total, stage):
        if stage.startswith("frame "):
            frames_seen.append(done)
            if done == 2:
                raise Cancelled()

    with pytest.raises(Cancelled):
        video_depth(moving_video, dst, model=model, fps=10, max_frames=20, progress=progress)
    assert frames_seen == [1, 2] and not dst.exists()


def test_bad_inputs_are_invalid_media_and_leave_nothing(tmp_path, model, moving_video):
    text = tmp_path / "notes.txt"
    text.write_text("not an image at all\n" * 10)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    audio = make_video(tmp_path / "sound.m4a", seconds=1, audio=True, extra=["-vn"])
    cases = [
        (photo_depth, text, "not a recognised image"),
        (photo_depth, empty, "empty"),
        (photo_depth, moving_video, "video, not a photo"),
        (video_depth, text, "not a video"),
        (video_depth, empty, "empty"),
        (video_depth, audio, "no video stream"),
    ]
    for pipeline, src, reason in cases:
        dst = tmp_path / "out.bin"
        with pytest.raises(InvalidMediaError, match=reason):
            pipeline(src, dst, model=model)
        assert not dst.exists()


def test_bad_options_are_value_errors(tmp_path, model, moving_video):
    with pytest.raises(ValueError, match="polarity"):
        video_depth(moving_video, tmp_path / "x.zip", model=model, polarity="up")
    with pytest.raises(ValueError, match="bit_depth"):
        photo_depth(moving_video, tmp_path / "x.png", model=model, bit_depth=12)


def test_missing_model_folder_says_so(tmp_path):
    missing = tmp_path / "no" / "such-model"
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        DepthModel(str(missing), device="cpu").load()


def test_folder_without_a_model_says_what_it_needs(tmp_path):
    with pytest.raises(ModelUnavailableError, match=r"config\.json"):
        DepthModel(str(tmp_path), device="cpu").load()


def test_uncached_hub_model_offline_explains_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = DepthModel("parallax-tests/not-downloaded-depth-model", device="cpu", cache_dir=str(tmp_path))
    with pytest.raises(ModelUnavailableError) as info:
        model.load()
    message = str(info.value)
    assert "python -m backend download-models" in message and "DEPTH_MODEL" in message


def test_download_of_a_local_folder_returns_it(tiny_depth_model_dir):
    assert download_depth_model(str(tiny_depth_model_dir)) == str(tiny_depth_model_dir)


def test_depth_pngs_say_what_they_are(tmp_path, model, moving_video):
    from ai.depth_metadata import read_depth_metadata

    src = make_photo(tmp_path / "p.jpg", 160, 120)
    meta = photo_depth(src, tmp_path / "dark.png", model=model, bit_depth=16)
    photo_depth(src, tmp_path / "bright.png", model=model, polarity="near_bright")
    dark = read_depth_metadata(tmp_path / "dark.png")
    assert dark["polarity"] == "near_dark" and dark["bit_depth"] == 16 and dark["model"] == model.model_name
    assert dark["normalization"]["method"] == "min-max"
    assert dark["raw_range"] == [pytest.approx(meta["raw_min"]), pytest.approx(meta["raw_max"])]
    # GDepth RangeInverse: value 0 is Near = 1/raw_max, the top is Far = 1/raw_min.
    assert dark["gdepth"] == {
        "Format": "RangeInverse",
        "Mime": "image/png",
        "Near": pytest.approx(1 / meta["raw_max"], rel=1e-6),
        "Far": pytest.approx(1 / meta["raw_min"], rel=1e-6),
    }
    bright = read_depth_metadata((tmp_path / "bright.png").read_bytes())
    assert bright["polarity"] == "near_bright" and bright["bit_depth"] == 8 and "gdepth" not in bright
    # Video frames: their own normalisation, recorded in each PNG as in the manifest.
    manifest = video_depth(moving_video, tmp_path / "v.zip", model=model, fps=4, max_frames=3, polarity="near_bright")
    with zipfile.ZipFile(tmp_path / "v.zip") as archive:
        frame = read_depth_metadata(archive.read("depth_frame_0002.png"))
    assert frame["polarity"] == "near_bright" and frame["normalization"]["method"] == "aligned-reference"
    assert frame["raw_range"] == pytest.approx(manifest["frames"][1]["raw_range"])
    # A PNG that says nothing gives None.
    Image.new("L", (4, 4)).save(tmp_path / "plain.png")
    assert read_depth_metadata(tmp_path / "plain.png") is None


@pytest.mark.parametrize("bit_depth, polarity", [(16, "near_dark"), (8, "near_bright")])
def test_a_depth_png_reads_back_as_nearness_whatever_its_polarity(tmp_path, model, bit_depth, polarity):
    from ai.depth_metadata import read_nearness

    src = make_photo(tmp_path / "p.jpg", 160, 120)
    photo_depth(src, tmp_path / "d.png", model=model, bit_depth=bit_depth, polarity=polarity)
    expected = normalize_min_max(model.predict([oriented_image(src)])[0])[0]
    nearness = read_nearness(tmp_path / "d.png")
    assert nearness.dtype == np.float32 and nearness.shape == expected.shape
    assert np.abs(nearness - expected).max() <= 1.0 / (2**bit_depth - 1) + 1e-6
