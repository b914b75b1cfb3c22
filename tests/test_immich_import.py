"""Immich imports through real worker processes against the spec-validating fake Immich: paging,
idempotent re-runs, incremental runs, changed files, v2 servers, faults, RAW fall-back, the
endpoints, the CLI, periodic sync, and the API key kept out of every answer and log."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest

from backend.immich.client import format_immich_datetime, parse_immich_datetime
from backend.immich.importer import maybe_schedule_sync
from tests.conftest import wait_for_job
from tests.fake_immich import closed_port_url, fake_immich, fake_immich_factory  # noqa: F401 (fixtures)
from tests.immich_helpers import (
    cli,
    counts,
    finished_run,
    immich_app,
    items_by_asset,
    originals,
    settled_run,
    sha256,
    start_import,
)

pytestmark = pytest.mark.slow


def test_full_import_rerun_and_incremental(make_app, fake_immich, start_worker, services):
    fake = fake_immich
    photos = [fake.add_photo() for _ in range(4)]
    video = fake.add_video()
    archived = fake.add_photo(visibility="archive")
    trashed = fake.add_photo(is_trashed=True)
    app = immich_app(make_app, fake)
    client = app.test_client()
    settings = app.extensions["parallax"].settings
    worker = start_worker(settings)

    # 1. A full import across three pages of two.
    run = finished_run(client, start_import(client, mode="full", page_size=2), worker)
    assert run["status"] == "completed", run
    assert counts(run) == (5, 5, 0, 0, 0) and run["failures"] == [] and run["updated_after"] is None
    assert run["job"]["status"] == "completed" and run["job"]["progress"]["done"] == 5
    searches = [body for _, _, body in fake.calls("POST", "/api/search/metadata")]
    # The timeline and the archive, trashed assets included: how removals are noticed.
    assert [(b.get("visibility"), b["page"]) for b in searches] == [(None, 1), (None, 2), (None, 3), ("archive", 1)]
    assert all(b["size"] == 2 and b["withDeleted"] is True for b in searches)
    assert not any("updatedAfter" in b for b in searches)
    assert sorted(originals(fake)) == sorted(a.id for a in photos + [video])

    items = items_by_asset(services)
    assert set(items) == {a.id for a in photos + [video]}  # archived and trashed left out
    assert archived.id not in items and trashed.id not in items
    for asset in photos + [video]:
        item = items[asset.id]
        assert item["sha256"] == sha256(asset.data) and item["immich_checksum"] == asset.checksum
        assert item["metadata"]["immich"]["rendition"] == "original"
        assert item["metadata"]["immich"]["original_mime_type"] == asset.mime_type
    detail = client.get(f"/api/media/{items[video.id]['id']}").get_json()
    assert detail["item"]["kind"] == "video" and detail["item"]["source"] == "immich"
    assert detail["item"]["immich_url"] == f"{fake.url}/photos/{video.id}"
    # Jobs follow the feature flags exactly as for uploads: video work is skipped while it is off.
    assert {j["task"]: j["status"] for j in detail["jobs"]} == {
        "video_depth": "skipped",
        "video_cutout": "skipped",
        "depth_video": "skipped",
    }
    assert all("ENABLE_EXPERIMENTAL_VIDEO" in j["enable_with"] for j in detail["jobs"])
    photo_jobs = client.get(f"/api/media/{items[photos[0].id]['id']}").get_json()["jobs"]
    assert {j["task"] for j in photo_jobs} == {"depth", "cutout"}

    status = client.get("/api/immich/status").get_json()
    assert status["configured"] is True and status["running"] is None
    assert status["last_run"]["id"] == run["id"] and status["last_success_at"] == run["started_at"]

    # 2. A full re-run through the CLI downloads nothing: every checksum is known.
    fake.requests.clear()
    result = cli(settings, "immich-import", "--full", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "imported 0, unchanged 5" in result.stdout
    assert originals(fake) == []
    rerun = client.get("/api/immich/imports?limit=1").get_json()["runs"][0]
    assert rerun["trigger"] == "cli" and counts(rerun) == (5, 0, 5, 0, 0)

    # 3. Incremental: only what changed since the last run started is listed and fetched.
    fake.set_clock(datetime.now(UTC))
    new_photo = fake.add_photo()
    changed = fake.replace_data(photos[0].id)
    fake.touch(photos[1].id)  # metadata only: listed again, not downloaded
    old_jobs = {j["id"] for j in photo_jobs}
    fake.requests.clear()
    last_success = client.get("/api/immich/status").get_json()["last_success_at"]
    assert last_success == rerun["started_at"]
    incremental = finished_run(client, start_import(client), worker)
    assert incremental["status"] == "completed" and incremental["mode"] == "incremental", incremental
    searches = [body for _, _, body in fake.calls("POST", "/api/search/metadata")]
    assert searches and all(
        b["updatedAfter"] == format_immich_datetime(parse_immich_datetime(last_success)) for b in searches
    )
    assert counts(incremental) == (3, 2, 1, 0, 0)
    assert sorted(originals(fake)) == sorted([new_photo.id, changed.id])

    items_after = items_by_asset(services)
    assert items_after[new_photo.id]["sha256"] == sha256(new_photo.data)
    replaced = items_after[changed.id]
    assert replaced["id"] == items[changed.id]["id"]  # the same item, re-processed
    assert replaced["sha256"] == sha256(changed.data) != items[changed.id]["sha256"]
    assert replaced["immich_checksum"] == changed.checksum
    jobs_now = client.get(f"/api/jobs?media_id={replaced['id']}").get_json()["jobs"]
    assert {j["task"] for j in jobs_now if j["id"] not in old_jobs} == {"depth", "cutout"}

    status = cli(settings, "immich-status")
    assert status.returncode == 0 and incremental["id"] in status.stdout
    assert fake.api_key not in worker.log() + result.stdout + result.stderr + status.stdout


def test_v2_server(make_app, fake_immich_factory, start_worker, services):
    fake = fake_immich_factory(v2=True)
    photo = fake.add_photo(fmt="PNG")
    video = fake.add_video(seconds=2)
    # A HEIC original our decoder rejects: tried as is, then replaced by Immich's rendition.
    heic = fake.add_raw(filename="IMG_0042.HEIC")
    heic.mime_type = "image/heic"
    app = immich_app(make_app, fake)
    client = app.test_client()
    worker = start_worker(app.extensions["parallax"].settings)
    run = finished_run(client, start_import(client), worker)  # incremental before any success = full
    assert run["status"] == "completed" and counts(run) == (3, 3, 0, 0, 0), run
    assert run["updated_after"] is None
    items = items_by_asset(services)
    assert heic.id in originals(fake)
    assert items[heic.id]["metadata"]["immich"]["rendition"] == "fullsize"
    assert items[heic.id]["metadata"]["immich"]["original_mime_type"] == "image/heic"
    assert items[heic.id]["sha256"] == sha256(heic.preview)
    assert items[photo.id]["kind"] == "photo" and items[photo.id]["mime_type"] == "image/png"
    assert items[video.id]["kind"] == "video" and items[video.id]["duration_s"] == pytest.approx(2, abs=0.2)


def test_faults_raw_fallback_and_retrying_failed_assets(make_app, fake_immich, start_worker, services):
    fake = fake_immich
    photos = [fake.add_photo() for _ in range(3)]
    raw = fake.add_raw()
    fake.fail("searchAssets", 2)  # two 500s, then the listing works (the client retries)
    fake.drop("downloadAsset", 4)  # with one download at a time: the first original, every attempt
    app = immich_app(make_app, fake, immich_import_concurrency=1)
    client = app.test_client()
    worker = start_worker(app.extensions["parallax"].settings)

    run = finished_run(client, start_import(client, mode="full"), worker)
    assert run["status"] == "completed", run
    assert counts(run) == (4, 3, 0, 0, 1)
    first_original = originals(fake)[0]
    broken = next(p for p in photos if p.id == first_original)
    [failure] = run["failures"]
    assert failure["asset_id"] == broken.id and failure["file_name"] == broken.original_filename
    assert "download" in failure["reason"] and fake.api_key not in failure["reason"]
    assert list(services.storage.tmp.iterdir()) == []  # no half file kept

    items = items_by_asset(services)
    assert broken.id not in items
    raw_item = items[raw.id]
    assert raw_item["metadata"]["immich"] == {
        **raw_item["metadata"]["immich"],
        "rendition": "fullsize",
        "original_mime_type": "image/x-adobe-dng",
    }
    assert raw_item["mime_type"] == "image/jpeg" and raw_item["sha256"] == sha256(raw.preview)
    assert raw.id not in originals(fake)  # a known RAW type goes straight to the rendition

    # The failed asset holds the incremental watermark back: the next run lists it again, and a
    # single dropped connection is now retried transparently.
    fake.requests.clear()
    fake.drop("downloadAsset", 1)
    again = finished_run(client, start_import(client), worker)
    assert again["status"] == "completed" and again["updated_after"] is not None, again
    assert again["imported"] == 1 and again["failed"] == 0
    assert originals(fake) == [broken.id, broken.id]
    assert items_by_asset(services)[broken.id]["sha256"] == sha256(broken.data)
    assert list(services.storage.tmp.iterdir()) == []
    assert fake.api_key not in worker.log()


def test_rejected_key_fails_the_run_without_retry_or_leak(make_app, fake_immich, start_worker):
    fake_immich.add_photo()
    wrong_key = "wrong-" + fake_immich.api_key[::-1]
    app = make_app(immich_url=fake_immich.url, immich_api_key=wrong_key)
    client = app.test_client()
    worker = start_worker(app.extensions["parallax"].settings)
    started = start_import(client)
    job = wait_for_job(client, started["job"]["id"], worker=worker)
    assert job["status"] == "failed" and job["attempts"] == 1, job
    assert "API key was rejected" in job["error"]
    run = client.get(started["run"]["url"]).get_json()
    assert run["status"] == "failed" and "API key was rejected" in run["error"]
    texts = [
        json.dumps(run),
        json.dumps(job),
        client.get("/api/immich/status").get_data(as_text=True),
        client.get("/api/config").get_data(as_text=True),
        worker.log(),
    ]
    assert not any(wrong_key in text for text in texts)


def test_endpoints(make_app, fake_immich, services, caplog):
    fake = fake_immich
    fake.add_photo()
    fake.add_video()
    responses = []

    def call(method, url, **kwargs):
        response = getattr(client, method)(url, **kwargs)
        responses.append(response.get_data(as_text=True))
        return response

    # Not configured: say which variables to set.
    client = make_app().test_client()
    response = call("post", "/api/immich/import", json={})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "immich_not_configured" and "IMMICH_URL" in error["message"]
    assert "IMMICH_API_KEY" in error["message"]
    assert call("post", "/api/immich/test").status_code == 400
    assert call("get", "/api/immich/status").get_json()["configured"] is False

    app = immich_app(make_app, fake)
    client = app.test_client()
    tested = call("post", "/api/immich/test").get_json()
    assert tested["server"]["version"] == "3.0.0" and tested["user"]["name"] == "Owner"
    assert tested["statistics"] == {"images": 1, "videos": 1, "total": 2} and tested["albums"] == []
    fake.permissions = {"asset.read", "asset.view", "asset.download"}  # no optional ones
    tested = call("post", "/api/immich/test").get_json()
    assert tested["user"] is None and tested["statistics"] is None and tested["albums"] is None
    fake.permissions = None

    bad_key = make_app(immich_url=fake.url, immich_api_key="not-the-key").test_client()
    error = bad_key.post("/api/immich/test").get_json()
    assert error["error"]["code"] == "immich_auth" and "not-the-key" not in json.dumps(error)
    unreachable = make_app(immich_url=closed_port_url(), immich_api_key=fake.api_key).test_client()
    response = unreachable.post("/api/immich/test")
    assert response.status_code == 502 and response.get_json()["error"]["code"] == "immich_unreachable"
    responses.append(response.get_data(as_text=True))

    # Bad requests.
    assert call("post", "/api/immich/import", json={"mode": "sometimes"}).status_code == 400
    assert call("post", "/api/immich/import", json={"album_ids": "x"}).status_code == 400
    assert call("post", "/api/immich/import", json={"album_ids": ["not-a-uuid"]}).status_code == 400
    assert call("post", "/api/immich/import", json={"page_size": 0}).status_code == 400

    # One import at a time (no worker here, so it stays queued).
    client = immich_app(make_app, fake).test_client()
    first = call("post", "/api/immich/import", json={"mode": "full"})
    assert first.status_code == 202
    run = first.get_json()["run"]
    assert run["mode"] == "full" and run["job"]["status"] == "queued"
    second = call("post", "/api/immich/import", json={})
    assert second.status_code == 409
    assert second.get_json()["error"]["code"] == "import_running"
    assert second.get_json()["error"]["run"]["id"] == run["id"]
    assert call("get", "/api/immich/status").get_json()["running"]["id"] == run["id"]
    listed = call("get", "/api/immich/imports").get_json()["runs"]
    assert [r["id"] for r in listed] == [run["id"]] and listed[0]["job"]["status"] == "queued"
    assert call("get", "/api/immich/imports/not-a-run").status_code == 404
    assert call("get", "/api/immich/imports/00000000-0000-0000-0000-000000000000").status_code == 404

    # Cancelling its job closes the run, and a new import may start.
    assert call("post", f"/api/jobs/{run['job']['id']}/cancel").status_code == 200
    assert call("get", run["url"]).get_json()["status"] == "cancelled"
    status = call("get", "/api/immich/status").get_json()
    assert status["running"] is None and status["last_run"]["id"] == run["id"]
    assert call("post", "/api/immich/import", json={}).status_code == 202

    spec = call("get", "/api/openapi.json").get_json()
    assert {
        "/api/immich/status",
        "/api/immich/test",
        "/api/immich/import",
        "/api/immich/imports",
        "/api/immich/imports/{run_id}",
    } <= set(spec["paths"])
    responses.append(call("get", "/api/config").get_data(as_text=True))
    assert not any(fake.api_key in text for text in responses)
    assert fake.api_key not in caplog.text


def test_periodic_sync_schedules_one_run(make_app, fake_immich, services):
    app = immich_app(make_app, fake_immich, immich_sync_interval_minutes=15)
    svc = app.extensions["parallax"]
    client = app.test_client()

    # Several workers' supervisors at once: one run.
    results = []
    threads = [threading.Thread(target=lambda: results.append(maybe_schedule_sync(svc))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert maybe_schedule_sync(svc) is None
    created = [r for r in results if r]
    assert len(created) == 1
    runs = services.db.fetchall("SELECT * FROM immich_import_runs")
    assert len(runs) == 1 and runs[0]["trigger"] == "schedule" and runs[0]["mode"] == "incremental"
    job = client.get(f"/api/jobs/{runs[0]['job_id']}").get_json()
    assert job["task"] == "immich_import" and job["status"] == "queued"

    # Finished, but started less than 15 minutes ago: not due. Longer ago: due.
    client.post(f"/api/jobs/{job['id']}/cancel")
    assert maybe_schedule_sync(svc) is None
    services.db.execute("UPDATE immich_import_runs SET created_at = now() - interval '16 minutes'")
    assert maybe_schedule_sync(svc) is not None
    assert services.db.fetchone("SELECT count(*) AS n FROM immich_import_runs")["n"] == 2

    # Off, or not configured: never.
    services.db.execute("UPDATE immich_import_runs SET status = 'completed', created_at = now() - interval '1 day'")
    off = make_app(immich_url=fake_immich.url, immich_api_key=fake_immich.api_key, immich_sync_interval_minutes=0)
    assert maybe_schedule_sync(off.extensions["parallax"]) is None
    unconfigured = make_app(immich_sync_interval_minutes=15)
    assert maybe_schedule_sync(unconfigured.extensions["parallax"]) is None


def test_cancel_a_running_import(make_app, fake_immich, start_worker, services):
    photos = [fake_immich.add_photo() for _ in range(6)]
    listing = fake_immich.hold("searchAssets")  # the first page waits until the job is cancelled
    app = immich_app(make_app, fake_immich, immich_import_concurrency=1)
    client = app.test_client()
    worker = start_worker(app.extensions["parallax"].settings)
    started = start_import(client, mode="full", page_size=1)
    job_id = started["job"]["id"]
    listing.wait_arrived()
    assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    listing.release()
    job = wait_for_job(client, job_id, worker=worker)
    assert job["status"] == "cancelled"
    run = settled_run(client, started["run"]["url"])
    assert run["status"] == "cancelled" and run["summary"] == "cancelled", run
    # The worker is free for the next import (it runs once the cancelled one has stopped), which
    # takes what the cancelled one left.
    rest = finished_run(client, start_import(client, mode="full"), worker)
    assert rest["status"] == "completed" and rest["seen"] == len(photos), rest
    cancelled = client.get(started["run"]["url"]).get_json()  # its final counters, now that it stopped
    assert cancelled["status"] == "cancelled"
    assert rest["unchanged"] == cancelled["imported"] and cancelled["imported"] + rest["imported"] == len(photos)
    assert list(services.storage.tmp.iterdir()) == []
    assert set(items_by_asset(services)) == {p.id for p in photos}
