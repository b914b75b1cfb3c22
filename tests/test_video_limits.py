"""Hostile videos: a "duration bomb" (a tiny file declaring hours) and a file that declares no length
at all. Work is bounded by what the cut-out needs, with clear reasons, not by what the file claims."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import job_of, upload_media, wait_for_job, worker_env

pytestmark = pytest.mark.slow


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture
def cutout_app(make_app, tiny_depth_model, start_worker, tmp_path):
    """An app with video cut-outs on (stand-in rembg model) and a worker for it."""
    from tests.stand_in_onnx import build_stand_in_rembg_model

    models = tmp_path / "models"
    build_stand_in_rembg_model(models / "rembg", "isnet-general-use")

    def build(**overrides):
        app = make_app(
            enable_background_removal=True,
            enable_experimental_video=True,
            model_cache_dir=models,
            **overrides,
        )
        worker = start_worker(
            app.extensions["parallax"].settings,
            **worker_env(tiny_depth_model, U2NET_HOME=models / "rembg", MODEL_CHECKSUM_DISABLED="1"),
        )
        return app, worker

    return build


def _upload(client, path: Path) -> dict:
    return job_of(upload_media(client, path), "video_cutout")


def test_duration_bomb_fails_at_job_start_with_a_bounded_time_limit(cutout_app, tmp_path):
    app, worker = cutout_app()
    bomb = tmp_path / "bomb.mp4"  # 3 hours of 32x32 black at 1 fps: ~150 KB
    _ffmpeg(
        "-f", "lavfi", "-i", "color=c=black:s=32x32:r=1:d=10800", "-c:v", "libx264", "-preset", "ultrafast", str(bomb)
    )
    job = _upload(app.test_client(), bomb)
    settings = app.extensions["parallax"].settings
    # The limit follows what a cut-out may process (VIDEO_CUTOUT_MAX_SECONDS at 1 fps), not 3 hours.
    assert job["timeout_s"] == settings.job_timeout_base_s + settings.job_timeout_per_frame_s * 600
    final = wait_for_job(app.test_client(), job["id"], worker=worker)
    assert final["status"] == "failed" and final["error_kind"] == "invalid_input" and final["attempts"] == 1
    assert (
        final["error"] == "the video is 3:00:00 long; cut-out videos are limited to 0:10:00 (VIDEO_CUTOUT_MAX_SECONDS)"
    )
    assert final["progress"]["done"] == 0


def test_frames_are_counted_as_they_are_decoded_when_the_file_declares_no_length(cutout_app, tmp_path):
    app, worker = cutout_app(video_cutout_max_frames=10)
    unknown = tmp_path / "streamed.webm"  # written to a pipe: no duration, no frame count in the file
    with open(unknown, "wb") as out:
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc=s=32x32:r=10:d=3",
                "-c:v",
                "libvpx-vp9",
                "-f",
                "webm",
                "pipe:1",
            ],
            stdout=out,
            check=True,
        )
    client = app.test_client()
    job = _upload(client, unknown)
    item = client.get(f"/api/media/{job['media_id']}").get_json()["item"]
    assert item["duration"] is None
    final = wait_for_job(client, job["id"], worker=worker)
    assert final["status"] == "failed" and final["error_kind"] == "invalid_input", final
    assert "more than 10 frames" in final["error"] and "VIDEO_CUTOUT_MAX_FRAMES" in final["error"]
    assert client.get(f"/api/media/{job['media_id']}").get_json()["assets"] == []
