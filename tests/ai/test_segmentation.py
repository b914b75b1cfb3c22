"""Segmentation models (registry, offline loading through rembg) and the photo cut-out pipeline.

The model is a stand-in ONNX graph with the real model's interface ("bright = foreground", see
tests/stand_in_onnx.py), loaded by rembg's own session code from U2NET_HOME.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ai.cutout import InvalidOptionError, parse_background, photo_cutout
from ai.errors import Cancelled, InvalidMediaError, ModelUnavailableError
from ai.segmentation import (
    SegmentationModel,
    UnknownSegmentationModelError,
    available_segmentation_models,
    download_segmentation_model,
    get_segmentation_model,
    local_model_path,
)
from tests.stand_in_onnx import stand_in_home  # noqa: F401  (pytest fixture)

DARK = (20, 30, 60)
BRIGHT = (240, 230, 200)
SUBJECT = (slice(30, 90), slice(40, 120))  # rows, cols of the bright subject in a 160x120 photo


def subject_photo(path: Path, orientation: int | None = None) -> Path:
    """160x120 dark background with a bright 80x60 subject; optional EXIF orientation tag."""
    pixels = np.zeros((120, 160, 3), np.uint8)
    pixels[:] = DARK
    pixels[SUBJECT] = BRIGHT
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    Image.fromarray(pixels).save(path, "PNG" if path.suffix == ".png" else "JPEG", quality=95, **kwargs)
    return path


def inside(mask: np.ndarray) -> np.ndarray:
    """Values well inside the subject (a margin away from the edge, which blends)."""
    return mask[36:84, 46:114]


def outside(mask: np.ndarray) -> np.ndarray:
    return np.concatenate([mask[:20].ravel(), mask[100:].ravel(), mask[:, :30].ravel(), mask[:, 130:].ravel()])


# --- registry ---


def test_registry_lists_supported_models_with_one_commercial_default():
    from rembg.sessions import sessions

    models = available_segmentation_models()
    names = [m["name"] for m in models]
    assert {
        "isnet-general-use",
        "u2net",
        "u2netp",
        "u2net_human_seg",
        "silueta",
        "birefnet-general",
        "birefnet-portrait",
    } <= set(names)
    assert all(name in sessions for name in names), "every listed model must be one rembg can run"
    defaults = [m for m in models if m["default"]]
    assert [m["name"] for m in defaults] == ["isnet-general-use"]
    assert defaults[0]["commercial_use"] is True
    for entry in models:
        assert entry["licence"] and entry["good_for"] and entry["speed"] in ("fast", "medium", "slow")
    bria = next(m for m in models if m["name"] == "bria-rmbg")
    assert bria["commercial_use"] is False and not bria["default"]
    assert "NON-COMMERCIAL" in bria["licence"].upper()


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(UnknownSegmentationModelError) as err:
        get_segmentation_model("u2net-typo")
    message = str(err.value)
    assert "u2net-typo" in message and "isnet-general-use" in message and "u2netp" in message
    assert isinstance(err.value, ValueError)


def test_missing_model_file_offline_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert local_model_path("u2netp") is None
    with pytest.raises(ModelUnavailableError) as err:
        SegmentationModel("u2netp").load()
    message = str(err.value)
    assert "download-models" in message and "u2netp.onnx" in message and str(tmp_path) in message
    assert not any(tmp_path.iterdir()), "nothing half-downloaded is left behind"


def test_failed_download_becomes_model_unavailable(tmp_path, monkeypatch):
    # A closed local port as proxy: rembg's real download (pooch/requests) fails at once, no hang.
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(ModelUnavailableError) as err:
        download_segmentation_model("u2netp")
    assert "could not be downloaded" in str(err.value) and "U2NET_HOME" in str(err.value)
    assert not list(tmp_path.rglob("*.onnx"))


def test_corrupt_model_file_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    (tmp_path / "u2netp.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ModelUnavailableError) as err:
        SegmentationModel("u2netp").load()
    assert "could not be loaded" in str(err.value)


# --- stand-in model through rembg ---


def test_stand_in_model_loads_offline_through_rembg(stand_in_home):
    assert download_segmentation_model("isnet-general-use") == str(stand_in_home / "isnet-general-use.onnx")
    model = get_segmentation_model("isnet-general-use")
    assert get_segmentation_model("isnet-general-use") is model, "one instance per process"
    pixels = np.zeros((120, 160, 3), np.uint8)
    pixels[:] = DARK
    pixels[SUBJECT] = BRIGHT
    alpha = model.predict(pixels)
    assert alpha.shape == (120, 160) and alpha.dtype == np.float32
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    assert inside(alpha).min() > 0.9 and outside(alpha).max() < 0.1
    assert np.allclose(model.predict(Image.fromarray(pixels)), alpha), "PIL and array input agree"
    described = model.describe()
    assert described["kind"] == "segmentation" and described["loaded"]
    assert described["providers"] and described["providers"][-1] == "CPUExecutionProvider"
    listed = {m["name"]: m["downloaded"] for m in available_segmentation_models()}
    assert listed["isnet-general-use"] and listed["u2netp"] and not listed["u2net"]


def test_predict_rejects_a_non_image_array(stand_in_home):
    with pytest.raises(ValueError):
        get_segmentation_model("isnet-general-use").predict(np.zeros((4, 4, 3), np.float64))


# --- photo cut-out ---


def test_transparent_png_aligned_with_subject(stand_in_home, tmp_path):
    src = subject_photo(tmp_path / "photo.png")
    dst = tmp_path / "cutout.png"
    meta = photo_cutout(src, dst, model="isnet-general-use")
    with Image.open(dst) as out:
        assert out.format == "PNG" and out.mode == "RGBA" and out.size == (160, 120)
        rgba = np.asarray(out)
    alpha = rgba[:, :, 3]
    assert inside(alpha).min() >= 230 and outside(alpha).max() <= 25
    assert np.abs(inside(rgba[:, :, :3]).astype(int) - BRIGHT).max() <= 1, "subject colours untouched"
    assert meta["width"] == 160 and meta["height"] == 120 and meta["model"] == "isnet-general-use"
    assert meta["output"] == "transparent" and meta["background"] == "transparent"
    assert meta["coverage"] == pytest.approx(80 * 60 / (160 * 120), abs=0.03)


def test_exif_orientation_6_is_applied_before_segmentation(stand_in_home, tmp_path):
    src = subject_photo(tmp_path / "rotated.jpg", orientation=6)
    stored = np.asarray(Image.open(src).convert("RGB"))
    upright = np.rot90(stored, k=-1)  # orientation 6: turn 90 degrees clockwise to display
    dst = tmp_path / "cutout.png"
    meta = photo_cutout(src, dst, model="isnet-general-use")
    rgba = np.asarray(Image.open(dst))
    assert rgba.shape == (160, 120, 4) and (meta["width"], meta["height"]) == (120, 160)
    # Stored rows 30:90 / cols 40:120 turn into displayed rows 40:120 / cols 30:90.
    assert upright[40:120, 30:90].mean() > 200 and upright[:, 100:].mean() < 60
    alpha = rgba[:, :, 3]
    assert alpha[46:114, 36:84].min() >= 230, "subject opaque where it is displayed"
    assert alpha[:30].max() <= 25 and alpha[:, 100:].max() <= 25, "background transparent"
    assert np.abs(rgba[46:114, 36:84, :3].astype(int) - upright[46:114, 36:84]).max() <= 1


@pytest.mark.parametrize("size", [(640, 360), (360, 640), (1500, 300), (37, 23)])
def test_mattes_at_another_size_are_pillows_bilinear_resize_of_the_model_matte(stand_in_home, size):
    # A video cut-out asks for mattes at its output size; the result must be the model-size matte
    # resized as Pillow's bilinear filter does it (shrinking, enlarging, or both at once).
    model = get_segmentation_model("isnet-general-use")
    model.load()
    rng = np.random.default_rng(7)
    raw = rng.normal(0.0, 1.0, (2, model.input_size, model.input_size)).astype(np.float32)
    full = model.postprocess(raw).alpha
    resized = model.postprocess(raw, size=size).alpha
    assert resized.shape == (2, size[1], size[0]) and resized.dtype == np.float32
    for frame in range(2):
        expected = np.asarray(Image.fromarray(full[frame], "F").resize(size, Image.Resampling.BILINEAR))
        assert np.abs(resized[frame] - expected).max() < 1e-5


def test_mask_output_is_grayscale_matte(stand_in_home, tmp_path):
    src = subject_photo(tmp_path / "photo.png")
    dst = tmp_path / "mask.png"
    meta = photo_cutout(src, dst, model="isnet-general-use", output="mask")
    with Image.open(dst) as out:
        assert out.mode == "L" and out.size == (160, 120)
        mask = np.asarray(out)
    assert inside(mask).min() >= 230 and outside(mask).max() <= 25
    assert meta["output"] == "mask" and meta["background"] is None


@pytest.mark.parametrize(
    "background, rgb",
    [
        ("green", (0, 255, 0)),
        ("blue", (0, 0, 255)),
        ("white", (255, 255, 255)),
        ("black", (0, 0, 0)),
        ("#FF00aa", (255, 0, 170)),
    ],
)
def test_solid_background_composites_subject_over_colour(stand_in_home, tmp_path, background, rgb):
    src = subject_photo(tmp_path / "photo.png")
    dst = tmp_path / "cutout.png"
    meta = photo_cutout(src, dst, model="isnet-general-use", background=background)
    with Image.open(dst) as out:
        assert out.mode == "RGB" and out.size == (160, 120)
        pixels = np.asarray(out).astype(int)
    assert np.abs(pixels[:20] - rgb).max() <= 6 and np.abs(pixels[:, 135:] - rgb).max() <= 6
    assert np.abs(inside(pixels) - BRIGHT).max() <= 6
    assert meta["background"] == parse_background(background)[0]


def test_parse_background_accepts_names_and_hex_and_explains_errors():
    assert parse_background(None) == ("transparent", None)
    assert parse_background(" Transparent ") == ("transparent", None)
    assert parse_background("GREEN") == ("green", (0, 255, 0))
    assert parse_background("#00ff7f") == ("00ff7f", (0, 255, 127))
    for bad in ("purple", "#12345", "#gg0000", "rgb(1,2,3)"):
        with pytest.raises(InvalidOptionError) as err:
            parse_background(bad)
        assert "#rrggbb" in str(err.value) and "green" in str(err.value)
        assert isinstance(err.value, ValueError) and isinstance(err.value, InvalidMediaError)


def test_bad_options_are_rejected(stand_in_home, tmp_path):
    src = subject_photo(tmp_path / "photo.png")
    with pytest.raises(InvalidOptionError, match="transparent or mask"):
        photo_cutout(src, tmp_path / "a.png", model="isnet-general-use", output="outline")
    with pytest.raises(InvalidOptionError, match="mask"):
        photo_cutout(src, tmp_path / "b.png", model="isnet-general-use", output="mask", background="green")
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty"),
        (b"hello, this is not a picture\n" * 20, "not a recognised image"),
    ],
)
def test_bad_input_is_invalid_media(stand_in_home, tmp_path, content, reason):
    src = tmp_path / "upload.jpg"
    src.write_bytes(content)
    dst = tmp_path / "out.png"
    with pytest.raises(InvalidMediaError, match=reason):
        photo_cutout(src, dst, model="isnet-general-use")
    assert not dst.exists()


def test_truncated_jpeg_is_invalid_media(stand_in_home, tmp_path):
    whole = subject_photo(tmp_path / "whole.jpg").read_bytes()
    src = tmp_path / "truncated.jpg"
    src.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InvalidMediaError, match="could not be decoded"):
        photo_cutout(src, tmp_path / "out.png", model="isnet-general-use")


def test_missing_source_file_is_invalid_media(stand_in_home, tmp_path):
    with pytest.raises(InvalidMediaError, match="could not be read"):
        photo_cutout(tmp_path / "nope.jpg", tmp_path / "out.png", model="isnet-general-use")


def test_progress_reports_and_cancel_leaves_nothing(stand_in_home, tmp_path):
    src = subject_photo(tmp_path / "photo.png")
    seen = []
    photo_cutout(
        src,
        tmp_path / "ok.png",
        model="isnet-general-use",
        progress=lambda done, total, stage: seen.append((done, total, stage)),
    )
    assert seen[0][0] == 0 and seen[-1][:2] == (3, 3)
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)

    def cancel_when_writing(done, total, stage):
        if done == 2:
            raise Cancelled()

    dst = tmp_path / "cancelled.png"
    with pytest.raises(Cancelled):
        photo_cutout(src, dst, model="isnet-general-use", progress=cancel_when_writing)
    assert not dst.exists()


def test_model_instance_can_be_passed(stand_in_home, tmp_path):
    src = subject_photo(tmp_path / "photo.png")
    meta = photo_cutout(src, tmp_path / "out.png", model=get_segmentation_model("u2netp"))
    assert meta["model"] == "u2netp"
    alpha = np.asarray(Image.open(tmp_path / "out.png"))[:, :, 3]
    assert inside(alpha).min() >= 230 and outside(alpha).max() <= 25


@pytest.mark.parametrize("name", ["portrait.jpg", "portrait-orientation-6.jpg", "IMG_2682.heic"])
def test_real_photos_keep_their_displayed_size(stand_in_home, tmp_path, name):
    from ai.probe import probe_image
    from tests.media_factory import shared_media

    src = shared_media("photos", name)
    if src is None:
        pytest.skip("../shared/media is not present")
    info = probe_image(src)
    meta = photo_cutout(src, tmp_path / "out.png", model="isnet-general-use")
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGBA" and out.size == (info.width, info.height)
    assert (meta["width"], meta["height"]) == (info.width, info.height)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (90, 90, 90)])
def test_uniform_photo_gets_a_transparent_matte_without_nan(stand_in_home, tmp_path, colour):
    src = tmp_path / "uniform.png"
    Image.new("RGB", (160, 120), colour).save(src)
    meta = photo_cutout(src, tmp_path / "mask.png", model="isnet-general-use", output="mask")
    mask = np.asarray(Image.open(tmp_path / "mask.png"))
    assert mask.shape == (120, 160) and mask.max() == 0, "nothing to separate: no subject"
    assert meta["coverage"] == 0
