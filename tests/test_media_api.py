"""Uploads, storage, listing, deletion, flags and the job endpoints (no worker running here)."""

import io
import json
import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from rq.job import Job as RQJob

from tests.media_factory import make_photo, make_video


def _upload(client, path: Path, name: str | None = None, field: str = "media"):
    with open(path, "rb") as fh:
        return client.post(
            "/api/media/upload", data={field: (fh, name or path.name)}, content_type="multipart/form-data"
        )


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_photo_upload_stores_once_and_records_metadata(client, services, tmp_path):
    photo = make_photo(tmp_path / "p.jpg", 200, 100, orientation=6)
    response = _upload(client, photo)
    assert response.status_code == 202
    body = response.get_json()
    item = body["item"]
    assert item["kind"] == "photo" and item["mime_type"] == "image/jpeg"
    assert (item["width"], item["height"]) == (100, 200)  # EXIF orientation 6: shown rotated
    assert item["rotation"] == 90
    assert response.headers["Location"] == f"/api/media/{item['id']}"
    stored = services.storage.path(
        services.db.fetchone("SELECT storage_path FROM media_items WHERE id = %s", (item["id"],))["storage_path"]
    )
    assert stored.read_bytes() == photo.read_bytes()
    assert item["id"] in str(stored)
    assert client.get(item["original_url"]).data == photo.read_bytes()


def test_video_upload_records_duration_fps_and_audio(client, tmp_path):
    video = make_video(tmp_path / "v.mp4", seconds=2, fps=12, width=160, height=96, audio=True)
    body = _upload(client, video, field="file").get_json()
    item = body["item"]
    assert item["kind"] == "video" and item["mime_type"] == "video/mp4"
    assert (item["width"], item["height"]) == (160, 96)
    assert item["fps"] == pytest.approx(12)
    assert item["duration"] == pytest.approx(2, abs=0.2)
    assert item["has_audio"] is True
    assert {j["task"] for j in body["jobs"]} == {"video_depth", "video_cutout", "depth_video"}


def test_type_comes_from_content_not_name(client, tmp_path):
    photo = make_photo(tmp_path / "p.png", fmt="PNG")
    body = _upload(client, photo, name="holiday.mp4").get_json()
    assert body["item"]["kind"] == "photo" and body["item"]["mime_type"] == "image/png"
    assert body["item"]["original_filename"] == "holiday.mp4"


def test_duplicate_upload_returns_the_existing_item(client, services, tmp_path):
    photo = make_photo(tmp_path / "p.jpg")
    first = _upload(client, photo).get_json()
    second = _upload(client, photo, name="copy.jpg")
    assert second.status_code == 200
    assert second.get_json()["duplicate"] is True
    assert second.get_json()["item"]["id"] == first["item"]["id"]
    assert services.db.fetchone("SELECT count(*) AS n FROM media_items")["n"] == 1
    stored = sorted(p.name for p in _files_under(services.storage.root / "items"))
    assert stored == ["original.jpg", "original.jpg.thumb.webp"]  # the original once, and its preview


def test_oversized_upload_is_413_and_leaves_nothing(make_app, services, tmp_path):
    client = make_app(max_upload_bytes=50_000).test_client()
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + b"\0" * 200_000)
    response = _upload(client, big)
    assert response.status_code == 413
    assert "MAX_UPLOAD_MB" in response.get_json()["error"]["message"]
    assert _files_under(services.storage.root) == []


@pytest.mark.parametrize("case", ["zero", "text", "truncated", "bomb", "audio_only"])
def test_bad_input_gets_a_clear_4xx_and_the_service_keeps_serving(case, client, services, tmp_path):
    path = tmp_path / "bad.mp4"
    if case == "zero":
        path.write_bytes(b"")
        expected = "empty"
    elif case == "text":
        path.write_text("this is not a video, just text renamed .mp4\n" * 20)
        expected = "not a recognised image or video"
    elif case == "truncated":
        video = make_video(tmp_path / "full.mp4", seconds=2)
        path.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
        expected = ""
    elif case == "bomb":
        path = tmp_path / "bomb.png"
        path.write_bytes(_png_claiming(50000, 50000))
        expected = "50000x50000"
    else:
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", str(path)], check=True)
        expected = "no video stream"
    response = _upload(client, path)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_media" and expected in error["message"]
    assert services.db.fetchone("SELECT count(*) AS n FROM media_items")["n"] == 0
    assert _files_under(services.storage.root) == []
    ok = _upload(client, make_photo(tmp_path / "fine.jpg"))
    assert ok.status_code == 202


def test_hostile_filename_is_only_a_label(client, services, tmp_path):
    photo = make_photo(tmp_path / "p.jpg")
    item = _upload(client, photo, name="../../etc/passwd").get_json()["item"]
    assert item["original_filename"] == "passwd"
    row = services.db.fetchone("SELECT storage_path FROM media_items WHERE id = %s", (item["id"],))
    assert ".." not in row["storage_path"] and "passwd" not in row["storage_path"]
    assert all(services.storage.root in p.parents for p in _files_under(services.storage.root))
    disposition = client.get(f"/api/media/{item['id']}/original?download=1").headers["Content-Disposition"]
    assert "passwd" in disposition and "/" not in disposition


def test_missing_file_field_is_400(client):
    response = client.post("/api/media/upload", data={"other": (io.BytesIO(b"x"), "a.jpg")})
    assert response.status_code == 400
    assert "media" in response.get_json()["error"]["message"]


def test_list_filter_paginate_get_and_delete(client, services, tmp_path):
    ids = [_upload(client, make_photo(tmp_path / f"p{i}.jpg", seed=i)).get_json()["item"]["id"] for i in range(3)]
    video_id = _upload(client, make_video(tmp_path / "v.mp4")).get_json()["item"]["id"]
    listing = client.get("/api/media?per_page=2&page=1").get_json()
    assert listing["total"] == 4 and len(listing["items"]) == 2
    page2 = client.get("/api/media?per_page=2&page=2").get_json()
    assert {i["id"] for i in listing["items"] + page2["items"]} == set(ids + [video_id])
    photos = client.get("/api/media?kind=photo").get_json()
    assert photos["total"] == 3 and all(i["kind"] == "photo" for i in photos["items"])
    assert client.get("/api/media?status=skipped").get_json()["total"] == 4
    assert client.get("/api/media?kind=audio").status_code == 400

    detail = client.get(f"/api/media/{video_id}").get_json()
    assert detail["item"]["status"] == "skipped" and len(detail["jobs"]) == 3 and detail["assets"] == []
    folder = services.storage.item_dir(video_id)
    assert folder.exists()
    assert client.delete(f"/api/media/{video_id}").status_code == 204
    assert not folder.exists()
    assert client.get(f"/api/media/{video_id}").status_code == 404
    assert client.get("/api/media/not-a-uuid").get_json()["error"]["code"] == "not_found"


def test_original_download_supports_ranges_and_etags(client, tmp_path):
    photo = make_photo(tmp_path / "p.jpg", 300, 200)
    item = _upload(client, photo).get_json()["item"]
    partial = client.get(item["original_url"], headers={"Range": "bytes=0-99"})
    assert partial.status_code == 206 and partial.data == photo.read_bytes()[:100]
    etag = client.get(item["original_url"]).headers["ETag"]
    assert client.get(item["original_url"], headers={"If-None-Match": etag}).status_code == 304


def test_flags_off_skip_with_reason_then_requeue_when_turned_on(make_app, services, tmp_path):
    client = make_app().test_client()
    body = _upload(client, make_photo(tmp_path / "p.jpg")).get_json()
    depth = next(j for j in body["jobs"] if j["task"] == "depth")
    assert depth["status"] == "skipped" and depth["enable_with"] == "ENABLE_DEPTH"
    assert "ENABLE_DEPTH=true" in depth["skip_reason"]
    assert services.queue.count == 0  # skipped work never reaches Redis
    missing = client.get(f"/api/media/{body['item']['id']}/depth/manifest")
    assert missing.status_code == 404 and "ENABLE_DEPTH=true" in missing.get_json()["error"]["message"]

    client_on = make_app(enable_depth=True).test_client()
    result = client_on.post("/api/jobs/requeue-skipped", json={}).get_json()
    assert result["count"] == 1 and result["requeued"][0]["task"] == "depth"
    assert "cutout" in result["still_disabled"]
    job = client_on.get(f"/api/jobs/{depth['id']}").get_json()
    assert job["status"] == "queued"
    not_ready = client_on.get(f"/api/media/{body['item']['id']}/depth").get_json()["error"]
    assert not_ready["code"] == "not_ready" and not_ready["job"]["status"] == "queued"
    assert services.queue.count == 1


def test_cancel_and_retry_a_queued_job(make_app, services, tmp_path):
    client = make_app(enable_depth=True).test_client()
    body = _upload(client, make_photo(tmp_path / "p.jpg")).get_json()
    job = next(j for j in body["jobs"] if j["task"] == "depth")
    assert job["status"] == "queued"
    cancelled = client.post(f"/api/jobs/{job['id']}/cancel").get_json()
    assert cancelled["status"] == "cancelled"
    again = client.post(f"/api/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.get_json()["error"]["message"]
    retried = client.post(f"/api/jobs/{job['id']}/retry")
    assert retried.status_code == 202 and retried.get_json()["status"] == "queued"
    assert client.get(f"/api/jobs?media_id={body['item']['id']}&status=queued").get_json()["total"] == 1
    assert client.post("/api/jobs/00000000-0000-0000-0000-000000000000/retry").status_code == 404


def test_redis_flush_loses_nothing(make_app, services, tmp_path):
    client = make_app(enable_depth=True).test_client()
    ids = [
        next(
            j["id"]
            for j in _upload(client, make_photo(tmp_path / f"p{i}.jpg", seed=i)).get_json()["jobs"]
            if j["task"] == "depth"
        )
        for i in range(2)
    ]
    assert services.queue.count == 2
    services.redis.flushdb()
    assert services.queue.count == 0
    counts = client.post("/api/queue/recover").get_json()
    assert counts["requeued"] == 2
    assert services.queue.count == 2
    for job_id in ids:
        rq_id = services.db.fetchone("SELECT rq_job_id FROM processing_jobs WHERE id = %s", (job_id,))["rq_job_id"]
        assert RQJob.fetch(rq_id, connection=services.redis).args == (job_id,)
    assert client.post("/api/queue/recover").get_json()["requeued"] == 0


def test_reprocess_with_new_parameters(make_app, tmp_path):
    client = make_app(enable_depth=True, enable_experimental_video=True).test_client()
    item = _upload(client, make_video(tmp_path / "v.mp4")).get_json()["item"]
    busy = client.post(f"/api/media/{item['id']}/reprocess", json={"tasks": ["video_depth"]})
    assert busy.status_code == 409
    job = client.get(f"/api/jobs?media_id={item['id']}&task=video_depth").get_json()["jobs"][0]
    client.post(f"/api/jobs/{job['id']}/cancel")
    bad = client.post(f"/api/media/{item['id']}/reprocess", json={"tasks": ["video_depth"], "parameters": {"fps": -1}})
    assert bad.status_code == 400 and "fps" in bad.get_json()["error"]["message"]
    wrong = client.post(f"/api/media/{item['id']}/reprocess", json={"tasks": ["depth"]})
    assert wrong.status_code == 400
    ok = client.post(
        f"/api/media/{item['id']}/reprocess",
        json={"tasks": ["video_depth"], "parameters": {"fps": 2, "max_frames": 5, "method": "keyframes"}},
    )
    assert ok.status_code == 202
    new = ok.get_json()["jobs"][0]
    assert new["status"] == "queued" and new["parameters"] == {"fps": 2, "max_frames": 5, "method": "keyframes"}


def test_queue_stats_and_openapi(client, tmp_path):
    _upload(client, make_photo(tmp_path / "p.jpg"))
    stats = client.get("/api/queue/stats").get_json()
    assert stats["by_status"] == {"skipped": 2}
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.1")
    from openapi_spec_validator import validate

    validate(spec)
    rules = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(r.rule))
        for r in client.application.url_map.iter_rules()
        if str(r.rule).startswith("/api/") and r.endpoint not in ("static",)
    }
    documented = set(spec["paths"])
    assert rules - documented == {"/api/openapi.json"}
    # The reprocess answer is the jobs it created, as the document says (it once claimed a page).
    reprocess = spec["paths"]["/api/media/{item_id}/reprocess"]["post"]["responses"]["202"]
    assert reprocess["content"]["application/json"]["schema"]["$ref"].endswith("/JobsCreated")
    page = client.get("/docs")
    assert page.status_code == 200 and b"swagger-ui" in page.data
    assert client.get("/docs/assets/js/swagger-ui-bundle.js").status_code == 200


def test_spec_requires_the_api_key_only_when_one_is_set(make_app):
    open_spec = make_app().test_client().get("/api/openapi.json").get_json()
    assert "security" not in open_spec and "securitySchemes" not in open_spec["components"]
    keyed = make_app(api_key="s3cret").test_client()
    assert keyed.get("/api/openapi.json").status_code == 401
    spec = keyed.get("/api/openapi.json", headers={"X-API-Key": "s3cret"}).get_json()
    assert spec["security"] == [{"ApiKey": []}]
    assert spec["components"]["securitySchemes"]["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert spec["paths"]["/api/health"]["get"]["security"] == []
    assert "s3cret" not in json.dumps(spec)


@pytest.mark.parametrize(
    "url, word",
    [
        ("/api/media?page=99999999999999999999", "page"),
        ("/api/media?page=0", "page"),
        ("/api/jobs?page=9223372036854775807", "page"),
        ("/api/jobs?per_page=501", "per_page"),
        ("/api/jobs?media_id=nope", "media_id"),
        ("/api/jobs?status=done", "status"),
        ("/api/media?kind=audio", "kind"),
    ],
)
def test_bad_query_parameters_are_400_naming_them(client, url, word):
    response = client.get(url)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "bad_request" and word in error["message"]


def test_wrong_method_is_405_with_allow_header(client):
    response = client.put("/api/media")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET"}
    recover = client.get("/api/queue/recover")
    assert recover.status_code == 405 and "POST" in recover.headers["Allow"]


def test_original_design_upload_fields_queue_item_and_depth_version(make_app, tmp_path):
    client = make_app(enable_depth=True).test_client()
    photo = make_photo(tmp_path / "p.jpg")
    body = _upload(client, photo).get_json()
    assert body["success"] is True and body["mediaItemId"] == body["item"]["id"]
    assert body["filename"] == "p.jpg" and body["size"] == photo.stat().st_size and body["type"] == "image/jpeg"
    assert body["queueId"] == next(j["id"] for j in body["jobs"] if j["task"] == "depth")  # the first job made
    job = client.get(f"/api/queue/items/{body['queueId']}")
    assert job.status_code == 200 and job.get_json()["id"] == body["queueId"]
    assert client.get("/api/queue/items/not-a-job").status_code == 404
    again = _upload(client, photo).get_json()
    assert again["duplicate"] is True and again["mediaItemId"] == body["mediaItemId"] and again["success"] is True
    depth = client.get(f"/api/media/{body['mediaItemId']}/depth?version=full_resolution")
    assert depth.status_code == 404 and depth.get_json()["error"]["code"] == "not_ready"  # accepted; no worker here
    assert client.get(f"/api/media/{body['mediaItemId']}/depth?version=tiny").status_code == 400


def test_reprocess_refuses_unknown_and_out_of_range_parameters(make_app, tmp_path):
    client = make_app().test_client()
    item = _upload(client, make_video(tmp_path / "v.mp4")).get_json()["item"]
    url = f"/api/media/{item['id']}/reprocess"
    for parameters, word in (
        ({"fps": 121}, "fps"),
        ({"max_frames": 100_001}, "max_frames"),
        ({"height": 8}, "height"),
        ({"background": "plaid"}, "background"),
        ({"sharpness": 3}, "sharpness"),
    ):
        response = client.post(url, json={"tasks": ["video_depth"], "parameters": parameters})
        assert response.status_code == 400 and word in response.get_json()["error"]["message"], parameters
    assert client.post(url, json={"tasks": ["teleport"]}).status_code == 400


def test_the_schema_names_every_registered_task():
    from typing import get_args

    from backend.schemas import TaskName
    from backend.tasks.registry import TASKS

    assert set(get_args(TaskName)) == set(TASKS)
