"""Write-back of 3D versions into Immich (IMMICH_WRITE_BACK), walked the user's way through real
workers, the HTTP API and the CLI against the spec-validating fake Immich: import -> depth ->
stereo -> upload, in the album and stacked with the original; nothing imported back or uploaded
twice; a changed result replaces the old upload; undo removes everything; a key's missing
permissions are named; failures retry without uploading twice."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

import pytest

from tests.conftest import wait_for_job, worker_env
from tests.fake_immich import fake_immich, fake_immich_factory  # noqa: F401 (fixtures)
from tests.immich_helpers import cli, counts, finished_run, immich_app, items_by_asset, start_import

pytestmark = pytest.mark.slow

ALBUM = "Parallax 3D"
OUR_UPLOAD = "uploaded by Parallax (IMMICH_WRITE_BACK)"
# What an import and write-back need, and nothing else.
KEY_PERMISSIONS = {
    "asset.read",
    "asset.view",
    "asset.download",
    "asset.upload",
    "asset.delete",
    "album.read",
    "album.create",
    "albumAsset.create",
    "stack.create",
}


@pytest.fixture(autouse=True)
def _no_albums_left(services):
    """The album records are not tied to items, so the suite's reset leaves them: start clean."""
    services.db.execute("TRUNCATE immich_writeback_albums")


def _app(make_app, fake, tiny_depth_model, **overrides):
    settings = {
        "enable_depth": True,
        "enable_background_removal": False,
        "depth_model": str(tiny_depth_model),
        "immich_write_back": True,
        **overrides,
    }
    return immich_app(make_app, fake, **settings)


def _jobs(client, task: str) -> list[dict]:
    return client.get(f"/api/jobs?task={task}&per_page=200").get_json()["jobs"]


def _wait_writebacks(client, worker, done: int, timeout: float = 240) -> list[dict]:
    """Wait until ``done`` write-back jobs completed and nothing is left to do; fail at once on a
    failed job of the chain (its error shown)."""
    deadline = time.monotonic() + timeout
    while True:
        all_jobs = client.get("/api/jobs?per_page=200").get_json()["jobs"]
        failed = [j for j in all_jobs if j["status"] == "failed"]
        assert not failed, f"{failed}\nworker log:\n{worker.log()[-4000:]}"
        completed = [j for j in all_jobs if j["task"] == "immich_writeback" and j["status"] == "completed"]
        active = [j for j in all_jobs if j["status"] in ("pending", "queued", "processing")]
        if len(completed) >= done and not active:
            assert len(completed) == done, completed
            return completed
        assert time.monotonic() < deadline, (
            f"{len(completed)}/{done} write-backs; active: {active}\n{worker.log()[-4000:]}"
        )
        time.sleep(0.2)


def _write_back(client, fake) -> dict:
    """What GET /api/immich/status says about write-back (never the key)."""
    answer = client.get("/api/immich/status")
    assert answer.status_code == 200 and fake.api_key not in answer.get_data(as_text=True)
    return answer.get_json()["write_back"]


def _counts(state: dict) -> tuple:
    return state["uploaded"], state["in_progress"], state["replaced"], state["jobs_waiting"], state["jobs_failed"]


def _export(services, item_id: str) -> dict:
    row = services.db.fetchone(
        "SELECT * FROM derived_assets WHERE media_id = %s AND kind IN ('stereo', 'stereo_video') AND variant = 'full_sbs'",
        (item_id,),
    )
    assert row is not None
    row["sha256"] = hashlib.sha256(services.storage.path(row["path"]).read_bytes()).hexdigest()
    return row


def _records(services) -> list[dict]:
    return services.db.fetchall("SELECT * FROM immich_writebacks ORDER BY created_at")


def _assert_written_back(fake, services, originals: list) -> dict:
    """Exactly one live upload per original: its export's bytes, dated like it, in the album, and
    stacked under it. Returns original id -> upload."""
    items = items_by_asset(services)
    album_id = fake.album_named(ALBUM)
    assert album_id is not None and list(fake.albums).count(album_id) == 1
    assert sum(a["name"] == ALBUM for a in fake.albums.values()) == 1
    uploads = {}
    for original in originals:
        stack = [fake.stack_members(original.stack_id)] if original.stack_id else []
        assert stack, f"{original.original_filename} is in no stack"
        members = [a for a in stack[0] if a.uploaded and not a.is_trashed]
        assert len(members) == 1, members
        upload = members[0]
        assert stack[0][0].id == original.id  # the original on top
        export = _export(services, items[original.id]["id"])
        assert hashlib.sha256(upload.data).hexdigest() == export["sha256"]
        assert upload.original_filename == export["metadata"]["filename"]
        assert "_LRF_Full_SBS" in upload.original_filename
        assert upload.file_created_at == original.file_created_at  # sorts beside it
        assert album_id in upload.album_ids
        uploads[original.id] = upload
    assert len(fake.uploads()) == len(originals)
    return uploads


def test_write_back_end_to_end(make_app, fake_immich, start_worker, services, tiny_depth_model):
    fake = fake_immich
    photos = [fake.add_photo(), fake.add_photo(fmt="PNG")]
    video = fake.add_video()
    app = _app(make_app, fake, tiny_depth_model, enable_experimental_video=True, video_frame_height=96)
    client = app.test_client()
    settings = app.extensions["parallax"].settings
    worker = start_worker(settings, **worker_env(tiny_depth_model))
    # Uploads are stamped after the import starts (an incremental run lists them).
    fake.set_clock(datetime.now(UTC))

    # 1. Import; the worker goes depth -> stereo -> write-back for each item unasked.
    run = finished_run(client, start_import(client, mode="full"), worker)
    assert counts(run) == (3, 3, 0, 0, 0), run
    completed = _wait_writebacks(client, worker, done=3)
    assert all(j["result"]["uploaded"] for j in completed)
    items = items_by_asset(services)
    stereo_tasks = {j["task"] for j in _jobs(client, "stereo") + _jobs(client, "video_stereo")}
    assert stereo_tasks == {"stereo", "video_stereo"}
    uploads = _assert_written_back(fake, services, photos + [video])
    assert uploads[video.id].type == "VIDEO" and uploads[video.id].original_filename.endswith(".mp4")
    assert uploads[photos[1].id].original_filename.endswith("_LRF_Full_SBS.png")
    assert {r["state"] for r in _records(services)} == {"done"} and len(_records(services)) == 3
    status = cli(settings, "immich-status")
    assert f"write-back: on (full_sbs into album '{ALBUM}'): 3 uploaded" in status.stdout, status.stdout
    state = _write_back(client, fake)  # the web UI's Immich panel shows the same
    album_id = fake.album_named(ALBUM)
    assert (state["enabled"], state["album"], state["layout"], state["album_id"]) == (True, ALBUM, "full_sbs", album_id)
    assert state["album_url"] == f"{fake.url}/albums/{album_id}"
    assert _counts(state) == (3, 0, 0, 0, 0) and state["last_failure"] is None
    # Uploads name their bytes (x-immich-checksum) and carry no v2-only fields.
    posts = fake.calls("POST", "/api/assets")
    assert len(posts) == 3 and all(
        set(body["form"]) == {"fileCreatedAt", "fileModifiedAt", "filename"} for *_, body in posts
    )

    # 2. Imports again, full and incremental: our uploads are recognised, skipped with the
    # reason, never imported; nothing is uploaded or queued again.
    writeback_jobs = len(_jobs(client, "immich_writeback"))
    run = finished_run(client, start_import(client, mode="full"), worker)
    assert counts(run) == (6, 0, 3, 3, 0), run
    assert sorted(s["asset_id"] for s in run["skips"]) == sorted(u.id for u in uploads.values())
    assert all(s["reason"].startswith(OUR_UPLOAD) for s in run["skips"])
    for upload in uploads.values():  # e.g. favourited in Immich: listed by the next incremental run
        fake.touch(upload.id)
    run = finished_run(client, start_import(client), worker)
    assert run["mode"] == "incremental" and run["imported"] == 0 and run["failed"] == 0, run
    assert {s["asset_id"] for s in run["skips"]} == {u.id for u in uploads.values()}
    assert set(items_by_asset(services)) == {a.id for a in photos + [video]}
    assert len(fake.calls("POST", "/api/assets")) == 3
    assert len(_jobs(client, "immich_writeback")) == writeback_jobs
    # Asking for what is missing finds nothing to do.
    queued = cli(settings, "immich-writeback")
    assert queued.returncode == 0 and "queued 0 uploads and 0 3D versions" in queued.stdout, queued.stdout

    # 3. A lost record never makes a second copy: Immich answers "duplicate" for the same bytes.
    photo_item = items[photos[0].id]["id"]
    services.db.execute("DELETE FROM immich_writebacks WHERE media_id = %s", (photo_item,))
    queued = cli(settings, "immich-writeback")
    assert "queued 1 uploads" in queued.stdout, queued.stdout
    _wait_writebacks(client, worker, done=4)
    assert len(fake.calls("POST", "/api/assets")) == 4 and len(fake.uploads()) == 3
    assert _assert_written_back(fake, services, photos + [video]) == uploads
    assert len(_records(services)) == 3

    # 4. The result changes (the user asks for stronger 3D): the new version replaces the old.
    stronger = _app(make_app, fake, tiny_depth_model, stereo_divergence=5.0).test_client()
    answer = stronger.get(f"/api/media/{photo_item}/stereo?format=full_sbs")
    assert answer.status_code == 202, answer.get_json()
    wait_for_job(client, answer.get_json()["job"]["id"], worker=worker)
    completed = _wait_writebacks(client, worker, done=5)
    newest = max(completed, key=lambda j: j["finished_at"])
    assert newest["result"]["uploaded"] and newest["result"]["replaced"] == 1
    replaced = _assert_written_back(fake, services, photos + [video])
    assert replaced[photos[0].id].id != uploads[photos[0].id].id
    assert fake.assets[uploads[photos[0].id].id].is_trashed  # the old version went to the trash
    assert [r["asset_id"] for r in _records(services) if r["media_id"] == items[photos[0].id]["id"]] == [
        replaced[photos[0].id].id
    ]

    # 5. Undo: every upload leaves Immich, the album Parallax created goes, the records too.
    undone = cli(settings, "immich-writeback-undo")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert "removed 3 uploads from Immich" in undone.stdout and f"album deleted: '{ALBUM}'" in undone.stdout
    assert fake.uploads() == [] and fake.album_named(ALBUM) is None
    assert _records(services) == []
    assert all(not fake.assets[a.id].is_trashed for a in photos + [video])  # originals untouched
    again = cli(settings, "immich-writeback-undo")
    assert again.returncode == 0 and "removed 0 uploads" in again.stdout, again.stdout
    status = cli(settings, "immich-status")
    assert "write-back: on (full_sbs into album 'Parallax 3D'): 0 uploaded" in status.stdout
    state = _write_back(client, fake)
    assert _counts(state) == (0, 0, 0, 0, 0) and (state["album_id"], state["album_url"]) == (None, None)

    # 6. Written back again after an undo: Immich still holds the bytes in its trash, answers
    # "duplicate", and the uploads come back out of the trash instead of being made twice.
    trashed = {a.id for a in fake.uploads(trashed=True)}
    queued = cli(settings, "immich-writeback")
    assert "queued 3 uploads" in queued.stdout, queued.stdout
    _wait_writebacks(client, worker, done=8)
    back = _assert_written_back(fake, services, photos + [video])
    assert {a.id for a in back.values()} == {replaced[p.id].id for p in photos} | {uploads[video.id].id} <= trashed
    assert len(fake.uploads(trashed=None)) == 4  # the three, and the version replaced in step 4
    everything = worker.log() + status.stdout + undone.stdout + queued.stdout + str(_jobs(client, "immich_writeback"))
    assert fake.api_key not in everything


def test_permissions_and_failures_never_upload_twice(make_app, fake_immich, start_worker, services, tiny_depth_model):
    fake = fake_immich
    photo = fake.add_photo()
    app = _app(make_app, fake, tiny_depth_model)
    client = app.test_client()
    settings = app.extensions["parallax"].settings
    off = _app(make_app, fake, tiny_depth_model, immich_write_back=False).test_client()
    assert _write_back(off, fake) == {"enabled": False, "enable_with": "IMMICH_WRITE_BACK=true"}
    state = _write_back(client, fake)
    assert state["enabled"] and state["album"] == ALBUM and state["album_id"] is None
    assert _counts(state) == (0, 0, 0, 0, 0) and state["last_failure"] is None

    # The connection test names what write-back needs and the key lacks.
    fake.permissions = KEY_PERMISSIONS - {"asset.upload"}
    answer = client.post("/api/immich/test")
    assert answer.status_code == 400, answer.get_json()
    error = answer.get_json()["error"]
    assert error["code"] == "immich_permission"
    assert [m["permission"] for m in error["missing"]] == ["asset.upload"]
    assert "IMMICH_WRITE_BACK" in error["missing"][0]["needed_for"]
    tested = cli(settings, "immich-test")
    assert tested.returncode == 1 and "asset.upload" in tested.stderr, tested.stderr
    # album.delete is optional: undo then leaves the empty album.
    assert cli(settings.replace(immich_write_back=False), "immich-test").returncode == 0
    fake.permissions = KEY_PERMISSIONS
    report = client.post("/api/immich/test").get_json()
    assert report["permissions"]["missing"] == []
    assert "album.delete" in [m["permission"] for m in report["permissions"]["missing_optional"]]

    # A permission removed after the upload: the job fails with Immich's reason, at once; the
    # upload is recorded, so the retry only does what is left.
    fake.permissions = KEY_PERMISSIONS - {"stack.create"}
    worker = start_worker(settings, **worker_env(tiny_depth_model))
    fake.set_clock(datetime.now(UTC))
    finished_run(client, start_import(client), worker)
    deadline = time.monotonic() + 180
    while not (failed := [j for j in _jobs(client, "immich_writeback") if j["status"] == "failed"]):
        assert time.monotonic() < deadline, worker.log()[-4000:]
        time.sleep(0.2)
    job = failed[0]
    assert "stack.create" in job["error"] and job["error_kind"] == "immich" and job["attempts"] == 1, job
    assert fake.api_key not in job["error"]
    assert len(fake.uploads()) == 1 and photo.stack_id is None
    record = _records(services)[0]
    assert record["state"] == "uploaded" and record["asset_id"] == fake.uploads()[0].id
    # The status (web UI and CLI) says so: uploaded but not stacked, one failure and its reason.
    state = _write_back(client, fake)
    assert _counts(state) == (0, 1, 0, 0, 1), state
    failure = state["last_failure"]
    assert (failure["job_id"], failure["reason"], failure["error_kind"]) == (job["id"], job["error"], "immich")
    assert (failure["media_id"], failure["url"]) == (job["media_id"], job["url"])
    status = cli(settings, "immich-status")
    assert f"1 failed (parallax jobs --task immich_writeback --status failed); latest failure: {job['error']}" in (
        status.stdout
    ), status.stdout
    fake.permissions = KEY_PERMISSIONS
    assert client.post(f"/api/jobs/{job['id']}/retry").status_code == 202
    _wait_writebacks(client, worker, done=1)
    assert len(fake.calls("POST", "/api/assets")) == 1
    first = _assert_written_back(fake, services, [photo])[photo.id]
    state = _write_back(client, fake)  # retried and done: the failure is gone
    assert _counts(state) == (1, 0, 0, 0, 0) and state["last_failure"] is None
    assert state["album_id"] == fake.album_named(ALBUM)

    # Immich down during a replacement: the job waits and retries (backoff), then replaces.
    item_id = items_by_asset(services)[photo.id]["id"]
    fake.fail("uploadAsset", 4, status=503)
    stronger = _app(make_app, fake, tiny_depth_model, stereo_divergence=5.0).test_client()
    wait_for_job(client, stronger.get(f"/api/media/{item_id}/stereo").get_json()["job"]["id"], worker=worker)
    deadline = time.monotonic() + 60
    while True:
        retrying = [j for j in _jobs(client, "immich_writeback") if j["status"] == "pending" and j["error"]]
        if retrying:
            break
        assert time.monotonic() < deadline, worker.log()[-4000:]
        time.sleep(0.2)
    assert "HTTP 503" in retrying[0]["error"] and retrying[0]["error_kind"] == "transient", retrying[0]
    # Waiting out its 15 s backoff: the new version recorded (uploading), the old one replaced,
    # the job waiting, no failure.
    assert _counts(_write_back(client, fake)) == (0, 1, 1, 1, 0)
    _wait_writebacks(client, worker, done=2, timeout=120)
    second = _assert_written_back(fake, services, [photo])[photo.id]
    assert second.id != first.id and fake.assets[first.id].is_trashed

    # Undo for good; without album.delete the album stays, and undo says why.
    undone = cli(settings, "immich-writeback-undo", "--force")
    assert undone.returncode == 0, undone.stderr
    assert "removed 1 uploads from Immich: deleted for good" in undone.stdout, undone.stdout
    assert f"album kept: '{ALBUM}'" in undone.stdout and "album.delete" in undone.stdout
    assert second.id not in fake.assets and fake.uploads(trashed=None) == [fake.assets[first.id]]
    assert _records(services) == []


def test_v2_server_uploads_are_known_by_their_device(
    make_app, fake_immich_factory, start_worker, services, tiny_depth_model
):
    fake = fake_immich_factory(v2=True)
    photo = fake.add_photo()
    app = _app(make_app, fake, tiny_depth_model)
    client = app.test_client()
    worker = start_worker(app.extensions["parallax"].settings, **worker_env(tiny_depth_model))
    fake.set_clock(datetime.now(UTC))
    finished_run(client, start_import(client), worker)
    _wait_writebacks(client, worker, done=1)
    (post,) = fake.calls("POST", "/api/assets")
    assert post[2]["form"]["deviceId"] == "parallax" and post[2]["form"]["deviceAssetId"].startswith("parallax-")
    _assert_written_back(fake, services, [photo])

    # Even with every record lost, a v2 server tells our uploads by their device.
    services.db.execute("TRUNCATE immich_writebacks")
    run = finished_run(client, start_import(client, mode="full"), worker)
    assert counts(run) == (2, 0, 1, 1, 0), run
    assert "device id is 'parallax'" in run["skips"][0]["reason"]


def test_status_links_the_album_without_credentials(make_app, services):
    url = "https://ann:s3cret@photos.example/api"
    client = make_app(immich_url=url, immich_api_key="the-key", immich_write_back=True).test_client()
    # The album as an earlier upload recorded it (found or created in Immich).
    services.db.execute(
        "INSERT INTO immich_writeback_albums (server_url, album_id, name, created) VALUES (%s, %s, %s, true)",
        ("https://photos.example", "a1b2", ALBUM),
    )
    answer = client.get("/api/immich/status")
    assert "s3cret" not in answer.get_data(as_text=True) and "the-key" not in answer.get_data(as_text=True)
    state = answer.get_json()["write_back"]
    assert (state["album_id"], state["album_url"]) == ("a1b2", "https://photos.example/albums/a1b2")
