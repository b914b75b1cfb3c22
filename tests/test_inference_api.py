"""The original AI service's endpoints, now served by the backend through the queue and a real worker
(tiny Depth Anything, stand-in rembg model). Every response is checked against the OpenAPI document."""

from __future__ import annotations

import io
import json
import subprocess
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.media_factory import make_photo, make_video

WAIT = "120"  # seconds a synchronous call may wait: a safety net on 2 shared cores, not a speed target
pytestmark = pytest.mark.slow


def post(client, url: str, field: str, data: bytes, filename: str, **form):
    body = {field: (io.BytesIO(data), filename), **{k: str(v) for k, v in form.items()}}
    return client.post(url, data=body, content_type="multipart/form-data")


def wait_until_finished(client, status_url: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(status_url).get_json()
        if job["status"] in ("completed", "failed", "cancelled", "skipped") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


@pytest.fixture
def client(live_stack):
    return live_stack.app.test_client()


@pytest.fixture(scope="module")
def rotated_photo(tmp_path_factory) -> bytes:
    return make_photo(tmp_path_factory.mktemp("p") / "rotated.jpg", 160, 120, orientation=6).read_bytes()


@pytest.fixture(scope="module")
def subject_photo() -> bytes:
    """A bright rectangle on a dark background: the stand-in model's foreground."""
    pixels = np.zeros((120, 160, 3), np.uint8)
    pixels[:] = (20, 30, 60)
    pixels[30:90, 40:120] = (240, 230, 200)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def test_photo_depth_and_cutout_through_the_worker(client, rotated_photo, subject_photo):
    depth = post(client, "/api/depth", "image", rotated_photo, "rotated.jpg", wait=WAIT)
    assert depth.status_code == 200, depth.get_data(as_text=True)
    assert depth.mimetype == "image/png" and depth.headers["X-Depth-Polarity"] == "near_dark"
    with Image.open(io.BytesIO(depth.data)) as png:
        assert png.mode == "L" and png.size == (120, 160)  # EXIF orientation 6 applied
        dark = np.asarray(png).astype(int)
    bright = post(client, "/api/depth", "file", rotated_photo, "x.jpg", polarity="near_bright", wait=WAIT)
    assert bright.headers["X-Depth-Polarity"] == "near_bright"
    assert np.array_equal(dark + np.asarray(Image.open(io.BytesIO(bright.data))).astype(int), np.full_like(dark, 255))
    deep = post(client, "/api/depth", "image", rotated_photo, "x.jpg", bit_depth=16, wait=WAIT)
    assert Image.open(io.BytesIO(deep.data)).mode == "I;16" and deep.headers["X-Depth-Bit-Depth"] == "16"
    # The upload is stored once, as a library item, whatever it was called.
    items = client.get("/api/media").get_json()
    assert items["total"] == 1 and items["items"][0]["id"] == deep.headers["X-Media-Id"]

    cutout = post(client, "/remove-bg", "image", subject_photo, "photo.png", wait=WAIT)
    assert cutout.status_code == 200, cutout.get_data(as_text=True)
    image = Image.open(io.BytesIO(cutout.data))
    assert image.mode == "RGBA" and image.size == (160, 120)
    alpha = np.asarray(image)[:, :, 3]
    assert alpha[40:80, 50:110].min() >= 230 and alpha[:20].max() <= 25
    assert cutout.headers["X-Cutout-Model"] == "isnet-general-use" and cutout.headers["X-Cutout-Size"] == "160x120"
    assert float(cutout.headers["X-Cutout-Coverage"]) == pytest.approx(0.25, abs=0.03)
    mask = post(client, "/remove-bg", "file", subject_photo, "photo.png", output="mask", wait=WAIT)
    assert mask.status_code == 200 and Image.open(io.BytesIO(mask.data)).mode == "L"
    green = post(client, "/remove-bg", "image", subject_photo, "photo.png", background="#00ff00", wait=WAIT)
    pixels = np.asarray(Image.open(io.BytesIO(green.data)))
    assert pixels.shape == (120, 160, 3) and np.abs(pixels[:20].astype(int) - (0, 255, 0)).max() <= 6

    # A valid model name whose file is not installed (downloads are off): the job fails, 503.
    missing = post(client, "/remove-bg", "image", subject_photo, "photo.png", model="u2net", wait=WAIT)
    assert missing.status_code == 503
    error = missing.get_json()["error"]
    assert error["code"] == "model_unavailable" and "download-models" in error["message"]
    assert error["job"]["status"] == "failed"

    # Every call was a job of the one job system: listed with where to download its result.
    listed = client.get("/jobs?task=cutout").get_json()
    assert listed["total"] == 4
    done = [j for j in listed["jobs"] if j["status"] == "completed"]
    assert len(done) == 3 and all(j["result_url"] == f"/jobs/{j['id']}/result" for j in done)
    assert client.get(f"/api/jobs/{done[0]['id']}").get_json()["id"] == done[0]["id"]
    downloaded = client.get(done[0]["result_url"])
    assert downloaded.status_code == 200 and downloaded.mimetype == "image/png"
    failed = next(j for j in listed["jobs"] if j["status"] == "failed")
    assert failed["result_url"] is None and client.get(f"/jobs/{failed['id']}/result").status_code == 409


def test_a_call_that_takes_longer_answers_202_with_its_job(client, rotated_photo):
    queued = post(client, "/api/depth", "image", rotated_photo, "rotated.jpg", wait=0)
    assert queued.status_code == 202
    job = queued.get_json()
    assert job["job_id"] == job["id"] and job["task"] == "depth" and job["status"] in ("queued", "processing")
    assert queued.headers["Location"] == job["status_url"] == f"/jobs/{job['id']}"
    final = wait_until_finished(client, job["status_url"])
    assert final["status"] == "completed", final
    result = client.get(final["result_url"])
    assert result.status_code == 200 and Image.open(io.BytesIO(result.data)).size == (120, 160)
    assert client.get("/jobs/00000000-0000-0000-0000-000000000000").status_code == 404


def test_video_frames_depth_and_cutout_through_the_worker(client, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", seconds=2, fps=10, gop=5).read_bytes()
    frames = post(client, "/api/video/frames", "video", clip, "clip.mp4", fps=2, max_frames=3, height=60, wait=WAIT)
    assert frames.status_code == 200, frames.get_data(as_text=True)
    body = frames.get_json()
    assert body["frame_count"] == 3 and body["method"] == "interval"
    assert [(f["index"], f["time"], f["width"], f["height"]) for f in body["frames"]] == [
        (1, 0.0, 80, 60),
        (2, 0.5, 80, 60),
        (3, 1.0, 80, 60),
    ]
    keys = post(client, "/api/video/frames", "file", clip, "clip.mp4", method="keyframes", height="source", wait=WAIT)
    assert [f["time"] for f in keys.get_json()["frames"]] == [0.0, 0.5, 1.0, 1.5]
    assert keys.get_json()["frames"][0]["width"] == 160

    depth = post(
        client,
        "/api/video/depth",
        "video",
        clip,
        "clip.mp4",
        fps=2,
        max_frames=3,
        height=96,
        polarity="near_bright",
        wait=WAIT,
    )
    assert depth.status_code == 200, depth.get_data(as_text=True)
    assert depth.mimetype == "application/zip" and depth.headers["X-Depth-Polarity"] == "near_bright"
    assert depth.headers["X-Frame-Count"] == "3"
    with zipfile.ZipFile(io.BytesIO(depth.data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert sorted(archive.namelist()) == [
            *(f"color_frame_000{i}.jpg" for i in (1, 2, 3)),
            *(f"depth_frame_000{i}.png" for i in (1, 2, 3)),
            "manifest.json",
        ]
    assert [f["time"] for f in manifest["frames"]] == [0.0, 0.5, 1.0] and manifest["polarity"] == "near_bright"
    assert (manifest["frame_width"], manifest["frame_height"]) == (128, 96)

    still = make_video(tmp_path / "still.mp4", seconds=2, fps=10, still=True, audio=True)
    started = post(client, "/remove-bg-video", "video", still.read_bytes(), "still.mp4")
    assert started.status_code == 202
    job = started.get_json()
    assert set(job) >= {"job_id", "status", "status_url", "result_url"} and job["task"] == "video_cutout"
    final = wait_until_finished(client, job["status_url"])
    assert final["status"] == "completed", final
    assert final["progress"]["done"] == final["progress"]["total"] == 20
    result = client.get(final["result_url"])
    assert result.status_code == 200 and result.mimetype == "video/webm"
    out = tmp_path / "out.webm"
    out.write_bytes(result.data)
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-c:v", "libvpx-vp9", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "rgba", "-"],
        capture_output=True,
        check=True,
    ).stdout
    alpha = np.frombuffer(raw, np.uint8).reshape(-1, 120, 160, 4)[:, :, :, 3]
    assert alpha.shape[0] == 20 and alpha[:, 40:80, 50:110].min() >= 200 and alpha[:, :20].max() <= 50
