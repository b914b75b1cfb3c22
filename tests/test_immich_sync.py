"""Keeping Parallax true to an Immich library over time, through real workers against the
spec-validating fake Immich: watermarks per selection, album membership, deletions, trash,
archive and restore, offline assets, duplicates, honest reports and the key's permissions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import wait_for_job, worker_env
from tests.fake_immich import fake_immich, fake_immich_factory  # noqa: F401 (fixtures)
from tests.immich_helpers import (
    cli,
    counts,
    finished_run,
    immich_app,
    items_by_asset,
    originals,
    sha256,
    start_import,
)
from tests.media_factory import make_photo

pytestmark = pytest.mark.slow

# No depth or cut-out work behind the imports: these tests are about the library, not results.
NO_WORK = {"enable_depth": False, "enable_background_removal": False}


def _searches(fake) -> list[dict]:
    return [body for _, _, body in fake.calls("POST", "/api/search/metadata")]


def _listed_ids(client) -> set[str]:
    items = client.get("/api/media?per_page=100").get_json()["items"]
    return {item["immich_asset_id"] for item in items}


def test_watermark_per_selection_and_album_membership(make_app, fake_immich, start_worker, services):
    fake = fake_immich
    a1, a2, b1, loose = (fake.add_photo() for _ in range(4))
    album_a = fake.add_album("Holidays", [a1, a2])
    album_b = fake.add_album("Family", [b1])
    app = immich_app(make_app, fake, **NO_WORK)
    client = app.test_client()
    worker = start_worker(app.extensions["parallax"].settings)

    run = finished_run(client, start_import(client, album_ids=[album_a]), worker)
    assert run["summary"] == "completed" and counts(run) == (2, 2, 0, 0, 0), run

    # Another album, then the whole library: each is a selection of its own, listed in full the
    # first time (one watermark per server used to list only what changed since album A's run).
    run = finished_run(client, start_import(client, album_ids=[album_b]), worker)
    assert counts(run) == (1, 1, 0, 0, 0) and run["updated_after"] is None, run
    fake.requests.clear()
    run = finished_run(client, start_import(client), worker)
    assert counts(run) == (4, 1, 3, 0, 0) and run["updated_after"] is None, run
    assert originals(fake) == [loose.id]
    assert set(items_by_asset(services)) == {a1.id, a2.id, b1.id, loose.id}

    # An asset added to album A keeps its old updatedAt (Immich bumps the album's instead): the
    # album's change is noticed and the album listed in full; album B, unchanged, incrementally.
    fake.set_clock(datetime.now(UTC))
    old = fake.add_photo(updated_at=datetime(2025, 6, 1, tzinfo=UTC))
    fake.add_to_album(album_a, [old])
    fake.requests.clear()
    run = finished_run(client, start_import(client, album_ids=[album_a, album_b]), worker)
    assert run["status"] == "completed" and counts(run) == (3, 1, 2, 0, 0), run
    assert originals(fake) == [old.id]
    by_album = {b["albumIds"][0]: b for b in _searches(fake)}
    assert "updatedAfter" not in by_album[album_a] and "updatedAfter" in by_album[album_b]
    assert run["updated_after"] is None  # something was listed in full

    # Nothing changed: both albums are listed incrementally and nothing is listed again.
    fake.requests.clear()
    run = finished_run(client, start_import(client, album_ids=[album_a, album_b]), worker)
    assert counts(run) == (0, 0, 0, 0, 0) and run["updated_after"] is not None, run
    assert all("updatedAfter" in b for b in _searches(fake))

    # The status shows the configured selection's last success (here the whole library).
    status = client.get("/api/immich/status").get_json()
    library_run = client.get("/api/immich/imports?limit=10").get_json()["runs"][2]
    assert library_run["album_ids"] == [] and status["last_success_at"] == library_run["started_at"]
    assert app.extensions["parallax"].settings.immich_removed_assets == status["removed_assets"] == "hide"


def test_trash_archive_delete_and_restore_hide_items(make_app, fake_immich, start_worker, services):
    fake = fake_immich
    photos = [fake.add_photo() for _ in range(4)]
    trashed, archived, deleted, kept = photos
    app = immich_app(make_app, fake, **NO_WORK)
    client = app.test_client()
    worker = start_worker(app.extensions["parallax"].settings)
    run = finished_run(client, start_import(client, mode="full"), worker)
    assert counts(run) == (4, 4, 0, 0, 0)
    items = items_by_asset(services)

    fake.set_clock(datetime.now(UTC))
    fake.trash(trashed.id)
    fake.archive(archived.id)
    fake.delete(deleted.id)

    # Trash and archive bump updatedAt: an incremental run sees them and hides their items.
    run = finished_run(client, start_import(client), worker)
    assert run["status"] == "completed" and run["removed"] == 2 and run["seen"] == 0, run
    assert {(r["asset_id"], r["reason"]) for r in run["removals"]} == {
        (trashed.id, "in Immich's trash: item hidden"),
        (archived.id, "archived in Immich: item hidden"),
    }
    assert _listed_ids(client) == {deleted.id, kept.id}
    hidden = client.get(f"/api/media/{items[trashed.id]['id']}").get_json()["item"]
    assert hidden["immich_removed"] == "trashed" and hidden["immich_url"]  # still opens in Immich's trash

    # A deletion for good leaves nothing to list: a full run finds it, confirmed asset by asset.
    fake.requests.clear()
    run = finished_run(client, start_import(client, mode="full"), worker)
    assert run["removed"] == 1 and run["removals"] == [
        {"asset_id": deleted.id, "file_name": deleted.original_filename, "reason": "deleted in Immich: item hidden"}
    ], run
    asked_one_by_one = [p for _, p, _ in fake.calls("GET", "/api/assets/") if p.count("/") == 3 and "?" not in p]
    assert asked_one_by_one == [f"/api/assets/{deleted.id}"]
    assert _listed_ids(client) == {kept.id}
    gone = client.get(f"/api/media/{items[deleted.id]['id']}").get_json()["item"]
    assert gone["immich_removed"] == "deleted" and gone["immich_url"] is None  # no dead link
    # Hidden, not lost: the files are still here.
    assert all(services.storage.path(items[p.id]["storage_path"]).is_file() for p in photos)
    cli_status = cli(app.extensions["parallax"].settings, "immich-status")
    assert "removed 1, restored 0" in cli_status.stdout

    # Restored from the trash and the archive: shown again, nothing downloaded.
    fake.restore(trashed.id)
    fake.restore(archived.id)
    fake.requests.clear()
    run = finished_run(client, start_import(client), worker)
    assert run["restored"] == 2 and counts(run) == (2, 0, 2, 0, 0), run
    assert originals(fake) == []
    assert _listed_ids(client) == {trashed.id, archived.id, kept.id}

    # A second full run removes nothing again.
    run = finished_run(client, start_import(client, mode="full"), worker)
    assert run["removed"] == 0 and run["restored"] == 0 and run["summary"] == "completed", run


def test_removed_assets_deleted_when_asked(make_app, fake_immich, start_worker, services):
    fake = fake_immich
    gone, back = fake.add_photo(), fake.add_photo()
    app = immich_app(make_app, fake, immich_removed_assets="delete", **NO_WORK)
    client = app.test_client()
    worker = start_worker(app.extensions["parallax"].settings)
    finished_run(client, start_import(client), worker)
    items = items_by_asset(services)

    fake.set_clock(datetime.now(UTC))
    fake.trash(back.id)
    fake.delete(gone.id)
    run = finished_run(client, start_import(client, mode="full"), worker)
    assert run["removed"] == 2 and {r["reason"] for r in run["removals"]} == {
        "in Immich's trash: item deleted",
        "deleted in Immich: item deleted",
    }, run
    assert items_by_asset(services) == {}
    assert client.get(f"/api/media/{items[back.id]['id']}").status_code == 404
    assert not services.storage.path(items[back.id]["storage_path"]).exists()

    # Restored in Immich: imported again.
    fake.restore(back.id)
    fake.requests.clear()
    run = finished_run(client, start_import(client), worker)
    assert counts(run) == (1, 1, 0, 0, 0) and originals(fake) == [back.id], run
    assert items_by_asset(services)[back.id]["sha256"] == sha256(back.data)

    # A library that lists nothing at all (another user's key, a reinstalled server) is not taken
    # as everything deleted.
    fake.delete(back.id)
    run = finished_run(client, start_import(client, mode="full"), worker)
    assert run["summary"] == "completed" and run["removed"] == 0, run
    assert set(items_by_asset(services)) == {back.id}


def test_offline_assets_are_skipped_without_holding_the_watermark(make_app, fake_immich, start_worker, services):
    fake = fake_immich
    fine = fake.add_photo()
    offline = fake.set_offline(fake.add_photo().id)
    app = immich_app(make_app, fake, **NO_WORK)
    client = app.test_client()
    worker = start_worker(app.extensions["parallax"].settings)
    run = finished_run(client, start_import(client), worker)
    assert run["summary"] == "completed" and counts(run) == (2, 1, 0, 1, 0), run
    assert run["skips"] == [
        {
            "asset_id": offline.id,
            "file_name": offline.original_filename,
            "reason": "offline in Immich: its file is missing from an external library",
        }
    ]
    assert originals(fake) == [fine.id]  # not even tried
    assert client.get("/api/immich/status").get_json()["last_success_at"] == run["started_at"]

    # Its file is found again (which bumps updatedAt): the next incremental run takes it.
    fake.set_clock(datetime.now(UTC))
    fake.set_offline(offline.id, False)
    run = finished_run(client, start_import(client), worker)
    assert counts(run) == (1, 1, 0, 0, 0), run
    assert set(items_by_asset(services)) == {fine.id, offline.id}


def test_failures_and_skips_are_reported_and_duplicates_linked(make_app, fake_immich, start_worker, services):
    fake = fake_immich
    photo = fake.add_photo()
    twin = fake.add_duplicate(photo)
    broken = fake.add_photo()
    app = immich_app(make_app, fake, immich_import_concurrency=1, **NO_WORK)
    client = app.test_client()
    settings = app.extensions["parallax"].settings
    start_worker(settings)
    # Newest first: the broken photo's original fails every attempt (the client retries 3 times).
    fake.fail("downloadAsset", 4)

    result = cli(settings, "immich-import", "--full", "--wait")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "completed with 1 failure" in result.stdout
    assert f"{broken.original_filename} ({broken.id}): Immich at" in result.stdout
    run = client.get("/api/immich/imports?limit=1").get_json()["runs"][0]
    assert run["status"] == "completed" and run["summary"] == "completed with 1 failure", run
    assert counts(run) == (3, 1, 0, 1, 1)
    [skip] = run["skips"]
    first, second = (photo, twin) if skip["asset_id"] == twin.id else (twin, photo)
    assert skip["asset_id"] == second.id and skip["reason"].startswith(f"the same file as Immich asset {first.id}")
    assert skip["reason"] in result.stdout
    assert originals(fake).count(second.id) == 0  # known by its checksum: never downloaded
    assert fake.api_key not in result.stdout + result.stderr + json.dumps(run)

    # The next full run downloads only the asset that failed; the twin stays linked, not fetched.
    fake.requests.clear()
    result = cli(settings, "immich-import", "--full", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    run = client.get("/api/immich/imports?limit=1").get_json()["runs"][0]
    assert run["summary"] == "completed" and counts(run) == (3, 1, 1, 1, 0), run
    assert originals(fake) == [broken.id]
    links = services.db.fetchall("SELECT * FROM immich_asset_links")
    assert [(link["asset_id"], link["checksum"]) for link in links] == [(second.id, second.checksum)]
    assert links[0]["media_id"] == items_by_asset(services)[first.id]["id"]


def test_connection_test_checks_the_keys_permissions(make_app, fake_immich):
    fake = fake_immich
    fake.add_photo()
    album = fake.add_album("Trip", [])
    app = immich_app(make_app, fake)
    client = app.test_client()
    settings = app.extensions["parallax"].settings

    tested = client.post("/api/immich/test").get_json()
    assert tested["ok"] is True and tested["permissions"] == {"checked": True, "missing": [], "missing_optional": []}
    assert tested["warnings"] == [] and tested["statistics"]["total"] == 1

    # A key without asset.download used to "work": now the test says what is missing.
    fake.permissions = {"asset.read", "asset.view", "user.read"}
    response = client.post("/api/immich/test")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "immich_permission" and "asset.download" in error["message"]
    assert error["missing"] == [{"permission": "asset.download", "needed_for": "downloading originals"}]
    result = cli(settings, "immich-test")
    assert result.returncode == 1 and "lacks asset.download (downloading originals)" in result.stderr

    # Albums selected: album.read becomes necessary.
    fake.permissions = {"asset.read", "asset.view", "asset.download"}
    with_albums = immich_app(make_app, fake, immich_album_ids=(album,)).test_client()
    error = with_albums.post("/api/immich/test").get_json()["error"]
    assert [m["permission"] for m in error["missing"]] == ["album.read"]

    # Only what is needed: the test passes and names the optional permissions it could use.
    requests_before = len(fake.requests)
    tested = client.post("/api/immich/test").get_json()
    assert tested["ok"] is True and tested["user"] is None and tested["statistics"] is None
    assert [m["permission"] for m in tested["permissions"]["missing_optional"]] == [
        "user.read",
        "asset.statistics",
        "album.read",
    ]
    result = cli(settings, "immich-test")
    assert result.returncode == 0 and "has the permissions Parallax needs" in result.stdout
    assert "optional permission missing: asset.statistics" in result.stdout
    # Nothing the key may not do was asked.
    asked = {path.split("?")[0] for _, path, _ in fake.requests[requests_before:]}
    assert asked == {"/api/server/version", "/api/api-keys/me"}

    # An optional endpoint failing does not fail the test.
    fake.permissions = None
    fake.fail("getAssetStatistics", 2)
    tested = client.post("/api/immich/test").get_json()
    assert tested["ok"] is True and tested["statistics"] is None and tested["user"]["name"] == "Owner"
    assert len(tested["warnings"]) == 1 and tested["warnings"][0].startswith("asset counts unavailable: ")
    assert fake.api_key not in json.dumps(tested) + result.stdout + result.stderr


def test_imports_and_uploads_go_before_the_bulk_backlog(
    make_app, fake_immich, start_worker, tiny_depth_model, tmp_path
):
    fake = fake_immich
    for _ in range(5):
        fake.add_photo()
    app = immich_app(
        make_app, fake, enable_depth=True, enable_background_removal=False, depth_model=str(tiny_depth_model)
    )
    client = app.test_client()
    settings = app.extensions["parallax"].settings
    env = worker_env(tiny_depth_model)

    # A worker for the import queue alone: it imports, and the items' depth jobs pile up as the
    # bulk backlog.
    importer_only = start_worker(settings, args=("--queue", "import"), **env)
    finished_run(client, start_import(client), importer_only)
    importer_only.stop()
    backlog = client.get("/api/jobs?task=depth&per_page=100").get_json()["jobs"]
    assert len(backlog) == 5 and {j["status"] for j in backlog} == {"queued"}
    assert "listening on queue(s) " + f"{settings.queue_name}-import, in that order" in importer_only.log()

    # Behind it: a photo someone uploads, then another import.
    photo = make_photo(Path(tmp_path) / "upload.jpg", 96, 64, seed=7)
    with open(photo, "rb") as fh:
        uploaded = client.post("/api/media/upload", data={"media": (fh, "upload.jpg")}).get_json()
    [upload_job] = [j for j in uploaded["jobs"] if j["task"] == "depth"]
    fake.set_clock(datetime.now(UTC))
    fake.add_photo()
    second = start_import(client)
    place = {j["id"]: j["jobs_ahead"] for j in client.get("/api/jobs?per_page=100").get_json()["jobs"]}
    assert place[second["job"]["id"]] == 0 and place[upload_job["id"]] == 1
    assert sorted(place[j["id"]] for j in backlog) == [2, 3, 4, 5, 6]

    # One worker on every queue takes the import first, then the upload's work, then the backlog.
    worker = start_worker(settings, **env)
    finished_run(client, second, worker)
    done = [wait_for_job(client, j["id"], worker=worker) for j in [second["job"], upload_job, *backlog]]
    assert {j["status"] for j in done} == {"completed"}, done
    import_job, upload_depth, *bulk = done
    assert import_job["started_at"] < upload_depth["started_at"] < min(j["started_at"] for j in bulk)
