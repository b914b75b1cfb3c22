"""A first-time user's path through the API: still-image formats are photos, every original and
result has a preview and a file URL, previous / next, skipped work waiting to be queued, the queue's
line, and uploads while the queue is unreachable (no worker runs here)."""

from __future__ import annotations

import dataclasses
import io
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from redis import Redis

from tests.fake_immich import fake_immich, fake_immich_factory  # noqa: F401 (fixtures)
from tests.media_factory import make_photo, make_video


def _upload(client, path: Path, name: str | None = None):
    with open(path, "rb") as fh:
        return client.post(
            "/api/media/upload", data={"media": (fh, name or path.name)}, content_type="multipart/form-data"
        )


def _ffmpeg_still(path: Path, codec_args: list[str], size: str = "96x64") -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc=size={size}",
            "-frames:v",
            "1",
            *codec_args,
            str(path),
        ],
        check=True,
    )
    return path


def _image(response) -> Image.Image:
    image = Image.open(io.BytesIO(response.data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("name", "codec_args", "mime"),
    [("still.jxl", ["-c:v", "libjxl"], "image/jxl"), ("still.exr", ["-c:v", "exr"], "image/x-exr")],
)
def test_still_image_codecs_are_photos_with_photo_jobs(client, tmp_path, name, codec_args, mime):
    path = _ffmpeg_still(tmp_path / name, codec_args)
    response = _upload(client, path, name="upload.bin")  # classified by content, not the name
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    item = body["item"]
    assert (item["kind"], item["mime_type"], item["width"], item["height"]) == ("photo", mime, 96, 64)
    assert sorted(j["task"] for j in body["jobs"]) == ["cutout", "depth"]
    thumb = client.get(item["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.mimetype == "image/webp"
    assert _image(thumb).size == (96, 64)


def test_photo_thumbnail_is_small_upright_and_cached(client, tmp_path):
    photo = make_photo(tmp_path / "big.jpg", width=1600, height=1200, orientation=6)
    item = _upload(client, photo).get_json()["item"]
    response = client.get(item["thumbnail_url"])
    assert response.status_code == 200 and response.mimetype == "image/webp"
    thumb = _image(response)
    assert thumb.size == (384, 512)  # EXIF orientation 6: portrait, longest edge 512
    assert "immutable" in response.headers["Cache-Control"]
    etag = response.headers["ETag"]
    again = client.get(item["thumbnail_url"], headers={"If-None-Match": etag})
    assert again.status_code == 304
    unversioned = client.get(f"/api/media/{item['id']}/thumbnail")
    assert unversioned.status_code == 200 and "immutable" not in unversioned.headers["Cache-Control"]


def test_video_thumbnail_is_a_poster_frame(client, tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=2, fps=10, width=160, height=96, rotate=90)
    item = _upload(client, video).get_json()["item"]
    thumb = _image(client.get(item["thumbnail_url"]))
    assert thumb.size == (96, 160)  # turned upright like the video plays
    assert max(thumb.convert("L").getextrema()) > 40  # a real frame, not black


def test_missing_thumbnail_is_made_on_request(client, services, tmp_path):
    item = _upload(client, make_photo(tmp_path / "p.png", fmt="PNG")).get_json()["item"]
    rel = services.db.fetchone("SELECT storage_path FROM media_items WHERE id = %s", (item["id"],))["storage_path"]
    services.storage.path(rel + ".thumb.webp").unlink()  # an item stored before previews existed
    response = client.get(item["thumbnail_url"])
    assert response.status_code == 200 and _image(response).size == (160, 120)


def test_every_result_has_a_file_url_a_preview_and_a_download_name(client, services, tmp_path):
    """Results are written by the worker; here one is stored the way a task stores it."""
    from backend.tasks.context import TaskContext

    item = _upload(client, make_video(tmp_path / "Holiday clip.mp4", seconds=1, fps=5)).get_json()["item"]
    job = services.db.fetchone(
        "UPDATE processing_jobs SET status = 'processing' WHERE media_id = %s AND task = 'video_cutout' RETURNING *",
        (item["id"],),
    )
    row = services.db.fetchone("SELECT * FROM media_items WHERE id = %s", (item["id"],))
    result = make_video(tmp_path / "cut.webm", seconds=1, fps=5, codec="libvpx-vp9")
    ctx = TaskContext(services, job, row)
    tmp = services.storage.temp_path(".webm")
    tmp.write_bytes(result.read_bytes())
    ctx.store_asset(
        tmp, kind="cutout_video", variant="green_prores", filename="cutout_green.webm", mime_type="video/webm"
    )

    asset = client.get(f"/api/media/{item['id']}").get_json()["assets"][0]
    assert asset["kind"] == "cutout_video"
    assert asset["download_name"] == "Holiday clip_cutout_green_prores.webm"
    played = client.get(asset["url"])
    assert played.status_code == 200 and played.mimetype == "video/webm" and played.data == result.read_bytes()
    download = client.get(asset["download_url"])
    assert "attachment" in download.headers["Content-Disposition"]
    assert "Holiday clip_cutout_green_prores.webm" in download.headers["Content-Disposition"]
    thumb = client.get(asset["thumbnail_url"])
    assert thumb.status_code == 200 and _image(thumb).size == (160, 120)
    assert client.get(f"/api/media/{item['id']}/assets/00000000-0000-4000-8000-000000000000").status_code == 404
    assert client.get(f"/api/media/{item['id']}/assets/not-a-uuid").status_code == 404


def test_neighbours_follow_the_library_order(client, tmp_path):
    ids = [_upload(client, make_photo(tmp_path / f"{n}.jpg", seed=n)).get_json()["item"]["id"] for n in range(3)] + [
        _upload(client, make_video(tmp_path / "v.mp4", seconds=1)).get_json()["item"]["id"]
    ]
    listed = [i["id"] for i in client.get("/api/media").get_json()["items"]]
    middle = client.get(f"/api/media/{listed[1]}/neighbours").get_json()
    assert (middle["newer"]["id"], middle["older"]["id"]) == (listed[0], listed[2])
    assert middle["newer"]["thumbnail_url"].startswith(f"/api/media/{listed[0]}/thumbnail")
    first = client.get(f"/api/media/{listed[0]}/neighbours").get_json()
    assert first["newer"] is None and first["older"]["id"] == listed[1]
    photos = [i["id"] for i in client.get("/api/media?kind=photo").get_json()["items"]]
    among_photos = client.get(f"/api/media/{photos[0]}/neighbours?kind=photo").get_json()
    assert among_photos["newer"] is None and among_photos["older"]["id"] == photos[1]
    assert set(listed) == set(ids)


def test_skipped_work_waits_until_queued_with_one_request(make_app, tmp_path):
    off = make_app(enable_depth=False, enable_background_removal=False).test_client()
    for n in range(2):
        _upload(off, make_photo(tmp_path / f"{n}.jpg", seed=n))
    assert off.get("/api/jobs/requeue-skipped").get_json() == {"count": 0, "by_task": {}}

    on = make_app(enable_depth=True, enable_background_removal=False).test_client()
    assert on.get("/api/jobs/requeue-skipped").get_json() == {"count": 2, "by_task": {"depth": 2}}
    queued = on.post("/api/jobs/requeue-skipped").get_json()
    assert queued["count"] == 2
    assert on.get("/api/jobs/requeue-skipped").get_json()["count"] == 0
    depth_jobs = on.get("/api/jobs?task=depth").get_json()["jobs"]
    assert {j["status"] for j in depth_jobs} == {"queued"} and not any(j["skip_reason"] for j in depth_jobs)


def test_queued_jobs_say_how_many_are_ahead(make_app, tmp_path):
    client = make_app(enable_depth=True, enable_background_removal=False).test_client()
    bodies = [_upload(client, make_photo(tmp_path / f"{n}.jpg", seed=n)).get_json() for n in range(3)]
    last = bodies[-1]["item"]["id"]
    jobs = client.get(f"/api/media/{last}").get_json()["jobs"]
    depth = next(j for j in jobs if j["task"] == "depth")
    assert depth["status"] == "queued" and depth["jobs_ahead"] == 2
    assert client.get(f"/api/jobs/{depth['id']}").get_json()["jobs_ahead"] == 2
    first = next(j for j in bodies[0]["jobs"] if j["task"] == "depth")
    assert client.get(f"/api/jobs/{first['id']}").get_json()["jobs_ahead"] == 0
    listed = {j["id"]: j["jobs_ahead"] for j in client.get("/api/jobs?task=depth").get_json()["jobs"]}
    assert sorted(listed.values()) == [0, 1, 2]


def test_upload_while_redis_is_down_keeps_the_work_pending(make_app, services, tmp_path):
    from backend.app import create_app

    settings = make_app(enable_depth=True).extensions["parallax"].settings  # and an empty database
    unreachable = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    app = create_app(settings, dataclasses.replace(services, settings=settings, redis=unreachable))
    client = app.test_client()
    response = _upload(client, make_photo(tmp_path / "p.jpg"))
    assert response.status_code == 202
    depth = next(j for j in response.get_json()["jobs"] if j["task"] == "depth")
    assert depth["status"] == "pending"  # stored and recorded; queued once Redis is back
    health = client.get("/api/health").get_json()
    assert health["checks"]["redis"]["ok"] is False and health["status"] == "error"


def test_immich_links_never_carry_credentials(make_app, services, tmp_path):
    client = make_app(immich_url="https://ann:s3cret@photos.example/api", immich_api_key="key").test_client()
    item = _upload(client, make_photo(tmp_path / "p.jpg")).get_json()["item"]
    services.db.execute("UPDATE media_items SET immich_asset_id = 'abc' WHERE id = %s", (item["id"],))
    assert (
        client.get(f"/api/media/{item['id']}").get_json()["item"]["immich_url"] == "https://photos.example/photos/abc"
    )
    status = client.get("/api/immich/status").get_json()
    assert "s3cret" not in str(status)


@pytest.mark.slow
def test_immich_asset_type_is_trusted_over_how_the_bytes_read(make_app, fake_immich, start_worker, services, tmp_path):
    """Immich says IMAGE; the original reads as a one-frame video here (as JPEG XL did before it was
    decoded): the import takes Immich's full-size rendition instead of storing a 'video'."""
    from tests.conftest import wait_for_job

    asset = fake_immich.add_raw(filename="IMG_0007.jxl")
    asset.mime_type = "image/jxl"  # not a RAW type: the original is tried first
    asset.data = make_video(tmp_path / "looks-like-a-video.mp4", seconds=0.2, fps=5).read_bytes()
    app = make_app(immich_url=fake_immich.url, immich_api_key=fake_immich.api_key)
    client = app.test_client()
    worker = start_worker(app.extensions["parallax"].settings)
    started = client.post("/api/immich/import", json={"mode": "full"}).get_json()
    wait_for_job(client, started["job"]["id"], worker=worker, timeout=90)
    item = services.db.fetchone("SELECT * FROM media_items WHERE immich_asset_id = %s", (asset.id,))
    assert item["kind"] == "photo" and item["mime_type"] == "image/jpeg"
    assert item["metadata"]["immich"]["rendition"] == "fullsize"
