"""HTTP API of background removal on the AI service (Flask test client, stand-in model)."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from ai.server import AISettings, create_app
from tests.media_factory import make_video
from tests.stand_in_onnx import stand_in_home  # noqa: F401  (pytest fixture)

JOB_WAIT_SECONDS = 120  # a safety net against a hung worker, not a speed requirement


@pytest.fixture(scope="module")
def app(stand_in_home, tmp_path_factory):
    settings = dataclasses.replace(
        AISettings(), segmentation_model="u2netp", model_cache_dir=tmp_path_factory.mktemp("models")
    )
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    store = app.extensions.get("parallax_cutout_jobs")
    if store is not None:
        store.shutdown()


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def photo_bytes():
    pixels = np.zeros((120, 160, 3), np.uint8)
    pixels[:] = (20, 30, 60)
    pixels[30:90, 40:120] = (240, 230, 200)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def video_path(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("v") / "still.mp4", seconds=2, fps=10, still=True, audio=True)


def post_photo(client, data: bytes, field: str = "image", **form):
    return client.post(
        "/remove-bg", data={field: (io.BytesIO(data), "photo.png"), **form}, content_type="multipart/form-data"
    )


def post_video(client, path, field: str = "video", **form):
    return client.post(
        "/remove-bg-video",
        data={field: (io.BytesIO(path.read_bytes()), path.name), **form},
        content_type="multipart/form-data",
    )


def wait_for(client, status_url: str) -> dict:
    deadline = time.monotonic() + JOB_WAIT_SECONDS
    while True:
        body = client.get(status_url).get_json()
        if body["status"] in ("finished", "failed", "cancelled") or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


# --- photos ---


def test_remove_bg_returns_transparent_png(client, photo_bytes):
    response = post_photo(client, photo_bytes)
    assert response.status_code == 200 and response.mimetype == "image/png"
    image = Image.open(io.BytesIO(response.data))
    assert image.mode == "RGBA" and image.size == (160, 120)
    alpha = np.asarray(image)[:, :, 3]
    assert alpha[40:80, 50:110].min() >= 230 and alpha[:20].max() <= 25
    assert response.headers["X-Cutout-Model"] == "u2netp", "the configured default model"
    assert float(response.headers["X-Cutout-Coverage"]) == pytest.approx(0.25, abs=0.03)


def test_remove_bg_mask_and_background_and_file_field(client, photo_bytes):
    mask = post_photo(client, photo_bytes, field="file", output="mask", model="isnet-general-use")
    assert mask.status_code == 200 and mask.headers["X-Cutout-Model"] == "isnet-general-use"
    assert Image.open(io.BytesIO(mask.data)).mode == "L"
    green = post_photo(client, photo_bytes, background="#00ff00")
    assert green.status_code == 200
    pixels = np.asarray(Image.open(io.BytesIO(green.data)))
    assert pixels.shape == (120, 160, 3) and np.abs(pixels[:20].astype(int) - (0, 255, 0)).max() <= 6


@pytest.mark.parametrize(
    "form, message",
    [
        ({"background": "purple"}, "#rrggbb"),
        ({"output": "outline"}, "transparent or mask"),
        ({"model": "not-a-model"}, "isnet-general-use"),
        ({"output": "mask", "background": "green"}, "mask"),
    ],
)
def test_remove_bg_bad_options_are_400(client, photo_bytes, form, message):
    response = post_photo(client, photo_bytes, **form)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"
    assert message in response.get_json()["error"]["message"]


def test_remove_bg_errors(client):
    missing = client.post("/remove-bg", data={}, content_type="multipart/form-data")
    assert missing.status_code == 400 and "image" in missing.get_json()["error"]["message"]
    not_image = post_photo(client, b"plain text, not an image\n" * 10)
    assert not_image.status_code == 422
    assert not_image.get_json()["error"]["code"] == "invalid_media"


def test_remove_bg_missing_model_is_503(client, photo_bytes):
    # "u2net" is a valid name whose file is not in U2NET_HOME; downloads are off in the fixture.
    response = post_photo(client, photo_bytes, model="u2net")
    assert response.status_code == 503
    body = response.get_json()["error"]
    assert body["code"] == "model_unavailable" and "download-models" in body["message"]


def test_models_endpoint_lists_segmentation_models(client):
    body = client.get("/api/models").get_json()
    names = {m["name"]: m for m in body["segmentation"]["available"]}
    assert body["segmentation"]["default"] == "u2netp"
    assert names["isnet-general-use"]["default"] and names["u2netp"]["downloaded"]
    assert names["bria-rmbg"]["commercial_use"] is False


# --- videos ---


def test_video_job_runs_and_returns_webm_with_alpha(app, client, video_path, tmp_path):
    response = post_video(client, video_path)
    assert response.status_code == 202
    body = response.get_json()
    assert set(body) >= {"job_id", "status", "status_url", "result_url"} and body["status"] in ("queued", "running")
    early = client.get(body["result_url"])
    if early.status_code != 200:  # the job may not have finished yet: then it is a conflict, not a 404
        assert early.status_code == 409 and early.get_json()["error"]["code"] == "not_finished"

    final = wait_for(client, body["status_url"])
    assert final["status"] == "finished", final
    assert final["progress"]["done"] == 20 and final["progress"]["total"] == 20
    assert final["result"]["audio_codec"] == "opus" and final["filename"] == "cutout_transparent.webm"
    result = client.get(body["result_url"])
    assert result.status_code == 200 and result.mimetype == "video/webm"
    assert "cutout_transparent.webm" in result.headers["Content-Disposition"]
    out = tmp_path / "out.webm"
    out.write_bytes(result.data)
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-c:v", "libvpx-vp9", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "rgba", "-"],
        capture_output=True,
        check=True,
    ).stdout
    alpha = np.frombuffer(raw, np.uint8).reshape(-1, 120, 160, 4)[:, :, :, 3]
    assert alpha.shape[0] == 20 and alpha[:, 40:80, 50:110].min() >= 200 and alpha[:, :20].max() <= 50

    # Finished jobs expire: their status and file go away.
    store = app.extensions["parallax_cutout_jobs"]
    job = store.jobs[body["job_id"]]
    ttl = store.ttl_seconds
    store.ttl_seconds = -1
    try:
        assert client.get(body["status_url"]).status_code == 404
    finally:
        store.ttl_seconds = ttl
    assert not job.folder.exists()


def test_video_job_colour_and_prores_options(client, video_path):
    green = post_video(client, video_path, field="file", background_type="green")
    prores = post_video(client, video_path, prores="true")
    assert green.status_code == prores.status_code == 202
    green_final = wait_for(client, green.get_json()["status_url"])
    prores_final = wait_for(client, prores.get_json()["status_url"])
    assert green_final["status"] == prores_final["status"] == "finished"
    assert green_final["filename"] == "cutout_green.mp4"
    assert prores_final["filename"] == "cutout_transparent.mov"
    assert client.get(green.get_json()["result_url"]).mimetype == "video/mp4"
    assert client.get(prores.get_json()["result_url"]).mimetype == "video/quicktime"


@pytest.mark.parametrize(
    "form, message",
    [
        ({"background_type": "purple"}, "#rrggbb"),
        ({"background_type": "green", "prores": "1"}, "ProRes"),
        ({"prores": "maybe"}, "prores"),
        ({"model": "nope"}, "valid names"),
        ({"height": "tall"}, "height"),
    ],
)
def test_video_bad_options_are_400(client, video_path, form, message):
    response = post_video(client, video_path, **form)
    assert response.status_code == 400 and message in response.get_json()["error"]["message"]


def test_video_bad_upload_and_unknown_job(client):
    not_video = client.post(
        "/remove-bg-video", data={"video": (io.BytesIO(b"hello\n" * 100), "x.mp4")}, content_type="multipart/form-data"
    )
    assert not_video.status_code == 422 and not_video.get_json()["error"]["code"] == "invalid_media"
    assert client.post("/remove-bg-video", data={}, content_type="multipart/form-data").status_code == 400
    assert client.get("/remove-bg-video/0123abcd").status_code == 404
    assert client.get("/remove-bg-video/0123abcd/result").status_code == 404


def test_video_job_can_be_cancelled(client, video_path):
    first = post_video(client, video_path).get_json()
    second = post_video(client, video_path).get_json()  # queued behind the first (one worker)
    response = client.delete(second["status_url"])
    assert response.status_code == 202
    final = wait_for(client, second["status_url"])
    assert final["status"] == "cancelled"
    conflict = client.get(second["result_url"])
    assert conflict.status_code == 409 and "cancelled" in conflict.get_json()["error"]["message"]
    assert wait_for(client, first["status_url"])["status"] == "finished"
    assert client.delete(first["status_url"]).status_code == 204
    assert client.get(first["status_url"]).status_code == 404
