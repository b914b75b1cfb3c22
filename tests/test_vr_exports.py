"""VR outputs through the API with a real worker and the tiny depth model: the RGB-D video of a video
(served with byte ranges, announced by the manifest) and stereo exports of photos and videos."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.conftest import job_of, upload_media, wait_for_job, worker_env
from tests.media_factory import make_photo, make_video, probe_streams

pytestmark = pytest.mark.slow


@pytest.fixture
def vr_app(make_app, tiny_depth_model):
    def build(**overrides):
        return make_app(enable_depth=True, depth_model=str(tiny_depth_model), **overrides)

    return build


def _stereo_when_ready(client, item_id: str, fmt: str, worker) -> object:
    """Ask for a stereo export; when it is queued, wait for its job and ask again."""
    first = client.get(f"/api/media/{item_id}/stereo?format={fmt}")
    assert first.status_code == 202, first.get_json()
    body = first.get_json()
    assert body["status"] == "queued" and body["job"]["task"] in ("stereo", "video_stereo")
    job = wait_for_job(client, body["job"]["id"], worker=worker)
    assert job["status"] == "completed", job
    again = client.get(f"/api/media/{item_id}/stereo?format={fmt}")
    assert again.status_code == 200
    return again


def test_rgbd_video_served_with_ranges_and_in_the_manifest(vr_app, start_worker, tiny_depth_model, tmp_path):
    app = vr_app(enable_experimental_video=True, enable_background_removal=False)
    client = app.test_client()
    source = make_video(tmp_path / "walk.mp4", seconds=1.5, fps=10, width=128, height=96, audio=True)
    body = upload_media(client, source)
    item_id = body["item"]["id"]
    assert job_of(body, "depth_video")["status"] in ("pending", "queued")
    assert "video_stereo" not in [j["task"] for j in body["jobs"]]  # made on request only
    worker = start_worker(app.extensions["parallax"].settings, **worker_env(tiny_depth_model))
    job = wait_for_job(client, job_of(body, "depth_video")["id"], worker=worker)
    assert job["status"] == "completed", job
    assert job["progress"]["done"] == job["progress"]["total"] == 15

    video = client.get(f"/api/media/{item_id}/depth/video")
    assert video.status_code == 200 and video.mimetype == "video/mp4"
    assert video.headers["Accept-Ranges"] == "bytes"
    assert video.headers["X-Depth-Polarity"] == "near_dark"
    assert "walk_rgbd.mp4" in video.headers["Content-Disposition"]
    part = client.get(f"/api/media/{item_id}/depth/video", headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.data == video.data[100:300]
    stored = tmp_path / "rgbd.mp4"
    stored.write_bytes(video.data)
    streams, original = probe_streams(stored), probe_streams(source)
    assert streams["video"]["nb_read_frames"] == original["video"]["nb_read_frames"] == "15"
    assert (int(streams["video"]["width"]), int(streams["video"]["height"])) == (256, 96)
    assert streams["audio"]["codec_name"] == "aac"

    manifest = client.get(f"/api/media/{item_id}/depth/manifest").get_json()
    rgbd = manifest["rgbd_video"]
    assert rgbd["url"] == f"/api/media/{item_id}/depth/video"
    assert rgbd["layout"] == "colour_left_depth_right" and rgbd["polarity"] == "near_dark"
    assert rgbd["frame_count"] == 15 and rgbd["fps"] == 10 and rgbd["width"] == 256 and rgbd["height"] == 96

    # A stereo video reuses the stored RGB-D video: same frames and audio as the source.
    sbs = _stereo_when_ready(client, item_id, "tb", worker)
    assert sbs.mimetype == "video/mp4" and "walk_TB.mp4" in sbs.headers["Content-Disposition"]
    (tmp_path / "tb.mp4").write_bytes(sbs.data)
    streams = probe_streams(tmp_path / "tb.mp4")
    assert streams["video"]["nb_read_frames"] == "15" and streams["audio"]["codec_name"] == "aac"
    assert (int(streams["video"]["width"]), int(streams["video"]["height"])) == (128, 96)
    info = client.get(f"/api/media/{item_id}/stereo/info?format=tb").get_json()
    assert info["metadata"]["depth_source"] == "rgbd_video"


def test_rgbd_video_missing_says_why(vr_app, tmp_path):
    app = vr_app(enable_experimental_video=False)
    client = app.test_client()
    body = upload_media(client, make_video(tmp_path / "v.mp4", seconds=1, fps=10))
    missing = client.get(f"/api/media/{body['item']['id']}/depth/video")
    assert missing.status_code == 404
    assert "ENABLE_EXPERIMENTAL_VIDEO" in missing.get_json()["error"]["message"]
    photo = upload_media(client, make_photo(tmp_path / "p.jpg"))
    assert client.get(f"/api/media/{photo['item']['id']}/depth/video").status_code == 404


def test_photo_stereo_formats_queued_on_request(vr_app, start_worker, tiny_depth_model, services, tmp_path):
    app = vr_app(enable_background_removal=False)
    client = app.test_client()
    body = upload_media(client, make_photo(tmp_path / "beach.jpg", 96, 64))
    item_id = body["item"]["id"]
    worker = start_worker(app.extensions["parallax"].settings, **worker_env(tiny_depth_model))
    assert wait_for_job(client, job_of(body, "depth")["id"], worker=worker)["status"] == "completed"

    assert client.get(f"/api/media/{item_id}/stereo?format=sideways").status_code == 400
    half = _stereo_when_ready(client, item_id, "half_sbs", worker)
    assert half.mimetype == "image/jpeg" and "beach_LR_Half_SBS.jpg" in half.headers["Content-Disposition"]
    assert Image.open(io.BytesIO(half.data)).size == (96, 64)
    full = _stereo_when_ready(client, item_id, "full_sbs", worker)
    assert "beach_LRF_Full_SBS.jpg" in full.headers["Content-Disposition"]
    assert Image.open(io.BytesIO(full.data)).size == (192, 64)
    # Rendered from the stored depth map, with the configured 3D parameters.
    info = client.get(f"/api/media/{item_id}/stereo/info?format=full_sbs").get_json()
    assert info["metadata"]["depth_source"] == "depth_map"
    assert info["parameters"] == {"format": "full_sbs", "divergence": 2.0, "convergence": 0.5}
    rows = services.db.fetchall(
        "SELECT variant FROM derived_assets WHERE media_id = %s AND kind = 'stereo'", (item_id,)
    )
    assert sorted(r["variant"] for r in rows) == ["full_sbs", "half_sbs"]


def test_stereo_switched_off_says_so(vr_app, tmp_path):
    app = vr_app(enable_stereo=False)
    client = app.test_client()
    body = upload_media(client, make_photo(tmp_path / "p.jpg"))
    response = client.get(f"/api/media/{body['item']['id']}/stereo?format=anaglyph")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "feature_disabled"
    assert "ENABLE_STEREO" in response.get_json()["error"]["message"]
