"""The AI service's depth and frame endpoints through Flask's test client."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from ai.server import AISettings, create_app
from tests.media_factory import make_photo, make_video
from tests.tiny_models import TINY_DEPTH_INPUT_SIZE


@pytest.fixture(scope="module")
def client(tiny_depth_model_dir, tmp_path_factory):
    settings = AISettings(
        depth_model=str(tiny_depth_model_dir),
        segmentation_model="isnet-general-use",
        device="cpu",
        precision="fp32",
        depth_input_size=TINY_DEPTH_INPUT_SIZE,
        depth_batch_size=2,
        model_cache_dir=tmp_path_factory.mktemp("model-cache"),
        host="127.0.0.1",
        port=0,
        max_upload_bytes=50 * 1024 * 1024,
    )
    app = create_app(settings)
    app.testing = True
    return app.test_client()


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path, monkeypatch):
    """Uploads go to a temp folder of this test only, so leftovers can be checked."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture(scope="module")
def photo_bytes(tmp_path_factory) -> bytes:
    return make_photo(tmp_path_factory.mktemp("p") / "rotated.jpg", 160, 120, orientation=6).read_bytes()


@pytest.fixture(scope="module")
def video_bytes(tmp_path_factory) -> bytes:
    return make_video(tmp_path_factory.mktemp("v") / "clip.mp4", seconds=2, fps=10, gop=5).read_bytes()


def post(client, url, field, data, filename, **params):
    form = {field: (io.BytesIO(data), filename), **{k: str(v) for k, v in params.items()}}
    return client.post(url, data=form, content_type="multipart/form-data")


def test_photo_depth_png(client, photo_bytes, private_tempdir):
    response = post(client, "/api/depth", "image", photo_bytes, "rotated.jpg")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "image/png"
    assert response.headers["X-Depth-Polarity"] == "near_dark"
    with Image.open(io.BytesIO(response.data)) as png:
        assert png.mode == "L" and png.size == (120, 160)  # EXIF orientation 6 applied
        dark = np.asarray(png).astype(int)
    bright = post(client, "/api/depth", "file", photo_bytes, "x.jpg", polarity="near_bright")
    assert bright.headers["X-Depth-Polarity"] == "near_bright"
    assert np.array_equal(dark + np.asarray(Image.open(io.BytesIO(bright.data))).astype(int), np.full_like(dark, 255))
    deep = client.post(
        "/api/depth?bit_depth=16",
        data={"image": (io.BytesIO(photo_bytes), "x.jpg")},
        content_type="multipart/form-data",
    )
    assert Image.open(io.BytesIO(deep.data)).mode == "I;16"
    assert list(private_tempdir.iterdir()) == []


@pytest.mark.parametrize(
    "url, field, params, word",
    [
        ("/api/depth", "image", {"polarity": "sideways"}, "polarity"),
        ("/api/depth", "image", {"bit_depth": "12"}, "bit_depth"),
        ("/api/video/frames", "video", {"fps": "0"}, "fps"),
        ("/api/video/frames", "video", {"fps": "abc"}, "fps"),
        ("/api/video/frames", "video", {"max_frames": "-3"}, "max_frames"),
        ("/api/video/frames", "video", {"method": "scenes"}, "method"),
        ("/api/video/depth", "video", {"height": "2"}, "height"),
        ("/api/video/depth", "video", {"include_color": "maybe"}, "include_color"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(client, url, field, params, word):
    response = post(client, url, field, b"irrelevant", "x.bin", **params)
    assert response.status_code == 400
    assert word in response.get_json()["error"]["message"]


@pytest.mark.parametrize("url", ["/api/depth", "/api/video/frames", "/api/video/depth"])
def test_missing_upload_is_400(client, url):
    response = client.post(url, data={}, content_type="multipart/form-data")
    assert response.status_code == 400 and "missing file" in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    "url, field", [("/api/depth", "image"), ("/api/video/frames", "video"), ("/api/video/depth", "video")]
)
def test_bad_media_is_422_and_cleaned_up(client, url, field, private_tempdir):
    response = post(client, url, field, b"just some text\n" * 50, "notes.txt")
    assert response.status_code == 422
    body = response.get_json()["error"]
    assert body["code"] == "invalid_media" and "not" in body["message"]
    assert list(private_tempdir.iterdir()) == []


def test_video_frames_summary(client, video_bytes):
    response = post(client, "/api/video/frames", "video", video_bytes, "clip.mp4", fps=2, max_frames=3, height=60)
    assert response.status_code == 200
    body = response.get_json()
    assert body["frame_count"] == 3 and body["method"] == "interval"
    assert [(f["index"], f["time"], f["width"], f["height"]) for f in body["frames"]] == [
        (1, 0.0, 80, 60),
        (2, 0.5, 80, 60),
        (3, 1.0, 80, 60),
    ]
    keys = post(client, "/api/video/frames", "file", video_bytes, "clip.mp4", method="keyframes", height="source")
    assert [f["time"] for f in keys.get_json()["frames"]] == [0.0, 0.5, 1.0, 1.5]
    assert keys.get_json()["frames"][0]["width"] == 160


def test_video_depth_zip(client, video_bytes, private_tempdir):
    response = post(
        client,
        "/api/video/depth",
        "video",
        video_bytes,
        "clip.mp4",
        fps=2,
        max_frames=3,
        height=96,
        polarity="near_bright",
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/zip"
    assert response.headers["X-Depth-Polarity"] == "near_bright"
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert sorted(archive.namelist()) == [
            "color_frame_0001.jpg",
            "color_frame_0002.jpg",
            "color_frame_0003.jpg",
            "depth_frame_0001.png",
            "depth_frame_0002.png",
            "depth_frame_0003.png",
            "manifest.json",
        ]
    assert manifest["source"] == {"filename": "clip.mp4"} and manifest["polarity"] == "near_bright"
    assert [f["time"] for f in manifest["frames"]] == [0.0, 0.5, 1.0]
    assert (manifest["frame_width"], manifest["frame_height"]) == (128, 96)
    assert list(private_tempdir.iterdir()) == []  # upload and ZIP are gone from disk already
    response.close()
