"""Bad calls to the inference endpoints are refused before any work is queued (no worker needed)."""

from __future__ import annotations

import io

import pytest

from tests.media_factory import make_photo, make_video


def post(client, url: str, field: str, data: bytes, filename: str, **form):
    body = {field: (io.BytesIO(data), filename), **{k: str(v) for k, v in form.items()}}
    return client.post(url, data=body, content_type="multipart/form-data")


@pytest.fixture
def client(make_app):
    return make_app(enable_depth=True, enable_background_removal=True, enable_experimental_video=True).test_client()


@pytest.mark.parametrize(
    "url, field, form, word",
    [
        ("/api/depth", "image", {"polarity": "sideways"}, "polarity"),
        ("/api/depth", "image", {"bit_depth": "12"}, "bit_depth"),
        ("/api/depth", "image", {"wait": "9999"}, "wait"),
        ("/api/video/frames", "video", {"fps": "0"}, "fps"),
        ("/api/video/frames", "video", {"fps": "abc"}, "fps"),
        ("/api/video/frames", "video", {"fps": "121"}, "fps"),
        ("/api/video/frames", "video", {"max_frames": "-3"}, "max_frames"),
        ("/api/video/frames", "video", {"method": "scenes"}, "method"),
        ("/api/video/depth", "video", {"height": "2"}, "height"),
        ("/api/video/depth", "video", {"include_color": "maybe"}, "include_color"),
        ("/remove-bg", "image", {"background": "purple"}, "background"),
        ("/remove-bg", "image", {"output": "outline"}, "output"),
        ("/remove-bg", "image", {"model": "not-a-model"}, "isnet-general-use"),
        ("/remove-bg", "image", {"output": "mask", "background": "green"}, "mask"),
        ("/remove-bg", "image", {"colour": "red"}, "colour"),
        ("/remove-bg-video", "video", {"background_type": "purple"}, "background_type"),
        ("/remove-bg-video", "video", {"background_type": "green", "prores": "true"}, "ProRes"),
        ("/remove-bg-video", "video", {"prores": "maybe"}, "prores"),
        ("/remove-bg-video", "video", {"height": "tall"}, "height"),
    ],
)
def test_bad_parameters_are_400_naming_them(client, services, url, field, form, word):
    response = post(client, url, field, b"irrelevant", "x.bin", **form)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "bad_request" and word in error["message"]
    assert services.db.fetchone("SELECT count(*) AS n FROM processing_jobs")["n"] == 0


@pytest.mark.parametrize(
    "url", ["/api/depth", "/remove-bg", "/remove-bg-video", "/api/video/frames", "/api/video/depth"]
)
def test_missing_upload_and_bad_media(client, services, url):
    missing = client.post(url, data={}, content_type="multipart/form-data")
    assert missing.status_code == 400 and "missing file" in missing.get_json()["error"]["message"]
    bad = post(client, url, "file", b"just some text\n" * 50, "notes.txt")
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "invalid_media"
    assert services.db.fetchone("SELECT count(*) AS n FROM media_items")["n"] == 0
    assert [p for p in services.storage.root.rglob("*") if p.is_file()] == []


def test_wrong_kind_and_features_off(make_app, client, tmp_path):
    video = make_video(tmp_path / "v.mp4").read_bytes()
    wrong = post(client, "/api/depth", "image", video, "v.mp4")
    assert wrong.status_code == 422 and "takes a photo" in wrong.get_json()["error"]["message"]
    off = make_app().test_client()
    photo = make_photo(tmp_path / "p.jpg").read_bytes()
    for url, field, data in (("/api/depth", "image", photo), ("/remove-bg-video", "video", video)):
        response = post(off, url, field, data, "x")
        assert response.status_code == 409, response.get_json()
        assert (
            response.get_json()["error"]["code"] == "feature_disabled"
            and "=true" in response.get_json()["error"]["message"]
        )


def test_inference_endpoints_need_the_api_key_when_set(make_app, tmp_path):
    client = make_app(api_key="k", enable_depth=True).test_client()
    photo = make_photo(tmp_path / "p.jpg").read_bytes()
    for method, url in (("post", "/remove-bg"), ("get", "/jobs"), ("post", "/api/depth")):
        assert getattr(client, method)(url).status_code == 401
    queued = post(client, "/api/depth", "image", photo, "p.jpg", wait=0)
    assert queued.status_code == 401
    listed = client.get("/jobs", headers={"X-API-Key": "k"})
    assert listed.status_code == 200 and listed.get_json()["jobs"] == []
