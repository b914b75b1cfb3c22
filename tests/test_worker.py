"""Jobs through real worker processes with a tiny randomly initialised Depth Anything: round trips,
bad input, cancellation, time limits, and a worker killed mid-job."""

import io
import json
import time
import zipfile

import pytest
from PIL import Image

from tests.conftest import job_of, upload_media, wait_for_job, worker_env
from tests.media_factory import make_photo, make_video

pytestmark = pytest.mark.slow


@pytest.fixture
def depth_app(make_app, tiny_depth_model):
    def build(**overrides):
        # The RGB-D video task is tested in test_vr_exports.py; here it would only add work to wait for.
        return make_app(enable_depth=True, enable_depth_video=False, depth_model=str(tiny_depth_model), **overrides)

    return build


def test_photo_depth_round_trip(depth_app, start_worker, tiny_depth_model, services, tmp_path):
    app = depth_app()
    client = app.test_client()
    body = upload_media(client, make_photo(tmp_path / "p.jpg", 96, 64, orientation=6))
    worker = start_worker(app.extensions["parallax"].settings, **worker_env(tiny_depth_model))
    job = wait_for_job(client, job_of(body, "depth")["id"], worker=worker)
    assert job["status"] == "completed", job
    assert job["attempts"] == 1 and job["progress"]["done"] == job["progress"]["total"]
    assert job["started_at"] and job["finished_at"]

    item_id = body["item"]["id"]
    depth = client.get(f"/api/media/{item_id}/depth")
    assert depth.status_code == 200 and depth.mimetype == "image/png"
    assert depth.headers["X-Depth-Polarity"] == "near_dark"
    png = Image.open(io.BytesIO(depth.data))
    assert png.size == (64, 96) and png.mode == "L"  # the photo's upright size
    assert len(set(png.tobytes())) > 4  # a real map, not a flat image
    etag = depth.headers["ETag"]
    assert client.get(f"/api/media/{item_id}/depth", headers={"If-None-Match": etag}).status_code == 304
    assert "max-age" in depth.headers["Cache-Control"]

    info = client.get(f"/api/media/{item_id}/depth/info").get_json()
    assert info["kind"] == "depth" and info["metadata"]["polarity"] == "near_dark"
    manifest = client.get(f"/api/media/{item_id}/depth/manifest").get_json()
    assert manifest["kind"] == "photo" and manifest["frame_count"] == 1
    frame = client.get(manifest["frames"][0]["depth_url"])
    assert frame.data == depth.data
    color = client.get(manifest["frames"][0]["color_url"])
    assert color.mimetype == "image/jpeg" and Image.open(io.BytesIO(color.data)).size == (64, 96)

    # Reprocessing replaces the result in place: still one asset row, one file.
    again = client.post(f"/api/media/{item_id}/reprocess", json={"tasks": ["depth"], "parameters": {"bit_depth": 16}})
    assert wait_for_job(client, again.get_json()["jobs"][0]["id"], worker=worker)["status"] == "completed"
    assert services.db.fetchone("SELECT count(*) AS n FROM derived_assets WHERE media_id = %s", (item_id,))["n"] == 1
    assert Image.open(io.BytesIO(client.get(f"/api/media/{item_id}/depth").data)).mode.startswith("I")
    assert list(services.storage.tmp.iterdir()) == []


def test_video_depth_zip_manifest_and_frames(depth_app, start_worker, tiny_depth_model, tmp_path):
    app = depth_app(enable_experimental_video=True, video_frame_extraction_fps=2.0, video_frame_height=64)
    client = app.test_client()
    body = upload_media(client, make_video(tmp_path / "v.mp4", seconds=3, fps=10, width=128, height=96))
    worker = start_worker(app.extensions["parallax"].settings, **worker_env(tiny_depth_model))
    job = wait_for_job(client, job_of(body, "video_depth")["id"], worker=worker)
    assert job["status"] == "completed", job
    assert job["progress"]["total"] == 6 and job["progress"]["done"] == 6
    assert job_of(client.get(f"/api/media/{body['item']['id']}").get_json(), "video_cutout")["status"] == "skipped"

    item_id = body["item"]["id"]
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/api/media/{item_id}/depth").data))
    manifest = json.loads(archive.read("manifest.json"))
    assert [f["depth"] for f in manifest["frames"]] == [f"depth_frame_{i:04d}.png" for i in range(1, 7)]
    assert [round(f["time"], 2) for f in manifest["frames"]] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]

    viewer = client.get(f"/api/media/{item_id}/depth/manifest").get_json()
    assert viewer["kind"] == "video" and viewer["polarity"] == "near_dark" and len(viewer["frames"]) == 6
    third = client.get(viewer["frames"][2]["depth_url"])
    assert third.data == archive.read("depth_frame_0003.png")
    assert client.get(viewer["frames"][2]["color_url"]).data == archive.read(manifest["frames"][2]["color"])
    assert client.get(f"/api/media/{item_id}/depth/frames/99").status_code == 404


def test_undecodable_video_fails_with_its_reason_and_no_retry(depth_app, start_worker, tiny_depth_model, tmp_path):
    app = depth_app(enable_experimental_video=True)
    client = app.test_client()
    full = make_video(tmp_path / "full.mp4", seconds=4, extra=["-movflags", "+faststart"])
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    body = upload_media(client, truncated)  # the header is intact, so the upload is accepted
    worker = start_worker(app.extensions["parallax"].settings, **worker_env(tiny_depth_model))
    job = wait_for_job(client, job_of(body, "video_depth")["id"], worker=worker)
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error_kind"] == "invalid_input" and "truncated" in job["error"]
    # The worker keeps going with other work.
    good = upload_media(client, make_photo(tmp_path / "p.jpg"))
    assert wait_for_job(client, job_of(good, "depth")["id"], worker=worker)["status"] == "completed"


def test_missing_model_fails_with_instructions(make_app, start_worker, tmp_path):
    # A well-formed hub id that is not in the model cache, with downloads off. (A folder that does not
    # exist is refused earlier, at start-up: see test_settings.)
    app = make_app(enable_depth=True, depth_model="parallax-tests/no-such-model")
    client = app.test_client()
    body = upload_media(client, make_photo(tmp_path / "p.jpg"))
    worker = start_worker(app.extensions["parallax"].settings, HF_HUB_OFFLINE="1")
    job = wait_for_job(client, job_of(body, "depth")["id"], worker=worker)
    assert job["status"] == "failed" and job["error_kind"] == "model_unavailable"
    assert "no-such-model" in job["error"]


def _long_video_job(client, tmp_path, seconds=40):
    body = upload_media(client, make_video(tmp_path / "long.mp4", seconds=seconds, fps=15, width=96, height=64))
    return body, job_of(body, "video_depth")


def _wait_until(condition, what: str, timeout: float = 60, worker=None):
    """Poll ``condition()`` until it returns something truthy (and return that), failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f"\nworker log:\n{worker.log()[-3000:]}" if worker else ""))


def _wait_progress(client, job_id, at_least=3, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").get_json()
        if job["status"] == "processing" and job["progress"]["done"] >= at_least:
            return job
        assert job["status"] in ("queued", "processing"), job
        time.sleep(0.05)
    raise AssertionError("job made no progress")


def test_cancel_a_running_job(depth_app, start_worker, tiny_depth_model, services, tmp_path):
    app = depth_app(
        enable_experimental_video=True, video_frame_extraction_fps=15.0, video_max_frames=600, video_frame_height=64
    )
    client = app.test_client()
    body, job = _long_video_job(client, tmp_path)
    worker = start_worker(app.extensions["parallax"].settings, **worker_env(tiny_depth_model))
    _wait_progress(client, job["id"])
    assert client.post(f"/api/jobs/{job['id']}/cancel").get_json()["status"] == "cancelled"

    def worker_let_go():
        # The worker saw the cancellation at its next progress report: it dropped the job (RQ shows it
        # idle) and removed the job's temporary files.
        workers = client.get("/api/health").get_json()["checks"]["workers"].get("workers", [])
        idle = workers and all(w["current_job"] is None for w in workers)
        return idle and not any(services.storage.tmp.iterdir())

    _wait_until(worker_let_go, "the worker to stop the cancelled job", worker=worker)
    final = client.get(f"/api/jobs/{job['id']}").get_json()
    assert final["status"] == "cancelled"
    assert client.get(f"/api/media/{body['item']['id']}").get_json()["assets"] == []
    # The same worker is free for the next job.
    other = upload_media(client, make_photo(tmp_path / "p.jpg"))
    assert wait_for_job(client, job_of(other, "depth")["id"], worker=worker)["status"] == "completed"
    assert list(services.storage.tmp.iterdir()) == []


def test_time_limit_stops_a_job(depth_app, start_worker, tiny_depth_model, tmp_path):
    app = depth_app(
        enable_experimental_video=True,
        video_frame_extraction_fps=15.0,
        video_max_frames=600,
        video_frame_height=64,
        job_timeout_base_s=1,
        job_timeout_per_frame_s=0.001,
    )
    client = app.test_client()
    _body, job = _long_video_job(client, tmp_path)
    assert job["timeout_s"] == 1
    # --preload: the model (and torch) load before the first job, so the 1 s limit falls on frame work,
    # not inside a first-time `import torch`.
    worker = start_worker(app.extensions["parallax"].settings, args=("--preload",), **worker_env(tiny_depth_model))
    final = wait_for_job(client, job["id"], worker=worker)
    assert final["status"] == "failed" and final["error_kind"] == "timeout"
    assert "time limit of 1 s" in final["error"]


def test_worker_killed_mid_job_is_recovered(depth_app, start_worker, tiny_depth_model, services, tmp_path):
    app = depth_app(
        enable_experimental_video=True,
        video_frame_extraction_fps=15.0,
        video_max_frames=45,
        video_frame_height=64,
        job_stale_after_s=5,
    )
    client = app.test_client()
    settings = app.extensions["parallax"].settings
    body, job = _long_video_job(client, tmp_path, seconds=3)  # 45 frames: a few seconds of work
    first = start_worker(settings, **worker_env(tiny_depth_model))
    # Frozen (SIGSTOP) at its first progress report, then killed: always mid-job, however fast the machine.
    _wait_progress(client, job["id"], at_least=1)
    first.freeze()
    frozen_at = client.get(f"/api/jobs/{job['id']}").get_json()
    assert frozen_at["status"] == "processing" and frozen_at["progress"]["done"] < 45, frozen_at
    first.kill()  # SIGKILL: no chance to clean up
    assert client.get(f"/api/jobs/{job['id']}").get_json()["status"] == "processing"
    second = start_worker(settings, **worker_env(tiny_depth_model))
    final = wait_for_job(client, job["id"], worker=second, timeout=180)
    assert final["status"] == "completed", final
    assert final["attempts"] == 2
    assert (
        services.db.fetchone("SELECT count(*) AS n FROM derived_assets WHERE media_id = %s", (body["item"]["id"],))["n"]
        == 1
    )
    assert list(services.storage.tmp.iterdir()) == []


def test_photo_cutout_and_background_on_request(live_stack, tmp_path):
    api = live_stack.api
    with open(make_photo(tmp_path / "p.jpg", 96, 64), "rb") as fh:
        body = api.post("/api/media/upload", files={"media": ("p.jpg", fh)}).json()
    item_id = body["item"]["id"]
    cutout_job = job_of(body, "cutout")["id"]
    deadline = time.monotonic() + 120
    while api.get(f"/api/jobs/{cutout_job}").json()["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, live_stack.worker.log()[-3000:]
        time.sleep(0.2)
    assert api.get(f"/api/jobs/{cutout_job}").json()["status"] == "completed", live_stack.worker.log()[-3000:]
    png = api.get(f"/api/media/{item_id}/cutout")
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.mode == "RGBA" and image.size == (96, 64)
    alpha = image.getchannel("A")
    assert alpha.getextrema()[0] < 128 < alpha.getextrema()[1]  # some background removed, some subject kept

    # A background that was not rendered yet is queued, then served.
    queued = api.get(f"/api/media/{item_id}/cutout", params={"background": "#00ff00"})
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    job_id = queued.json()["job"]["id"]
    while api.get(f"/api/jobs/{job_id}").json()["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    green = api.get(f"/api/media/{item_id}/cutout", params={"background": "#00ff00"})
    assert green.status_code == 200
    assert Image.open(io.BytesIO(green.content)).mode == "RGB"
    assert api.get(f"/api/media/{item_id}/cutout", params={"background": "plaid"}).status_code == 400


def _wait_done(api, job_id, worker, timeout=180):
    deadline = time.monotonic() + timeout
    while True:
        job = api.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled", "skipped"):
            return job
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.2)


def test_video_cutout_with_sound_through_the_worker(live_stack, tmp_path):
    api = live_stack.api
    video = make_video(tmp_path / "v.mp4", seconds=1, fps=5, width=96, height=64, audio=True)
    with open(video, "rb") as fh:
        body = api.post("/api/media/upload", files={"media": ("v.mp4", fh)}).json()
    job = _wait_done(api, job_of(body, "video_cutout")["id"], live_stack.worker)
    assert job["status"] == "completed", job
    assert job["progress"]["done"] == job["progress"]["total"] == 5
    webm = api.get(f"/api/media/{body['item']['id']}/cutout")
    assert webm.status_code == 200 and webm.headers["Content-Type"] == "video/webm"
    out = tmp_path / "cut.webm"
    out.write_bytes(webm.content)
    import subprocess

    streams = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", str(out)],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert streams == ["vp9", "opus"]


def test_worker_healthcheck_fails_when_the_worker_is_dead_or_stuck(make_app, start_worker, services):
    """`python -m backend health --worker` (the worker container's healthcheck) follows the worker's
    heartbeat: ok while it runs, failing once it is frozen (SIGSTOP, as a hung process) or gone."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    app = make_app()
    settings = app.extensions["parallax"].settings
    env = {**os.environ, **settings.as_env()}

    def healthy() -> bool:
        check = [sys.executable, "-m", "backend", "health", "--worker"]
        return subprocess.run(check, cwd=ROOT, env=env, capture_output=True, timeout=60).returncode == 0

    assert not healthy(), "no worker is running yet"
    worker = start_worker(settings)
    _wait_until(healthy, "the worker's first heartbeat", worker=worker)
    worker.freeze()
    _wait_until(lambda: not healthy(), "the healthcheck to notice the stuck worker", timeout=60, worker=worker)
    worker.kill()
    assert not healthy()
