"""ImmichClient against a fake Immich server that validates every exchange against Immich's
official OpenAPI spec (the fixtures fail a test on any spec violation)."""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

from backend.immich import (
    ImmichAsset,
    ImmichAuthError,
    ImmichClient,
    ImmichConnectionError,
    ImmichIncompleteDownload,
    ImmichNotFound,
    ImmichPermissionError,
    ImmichServerError,
    format_immich_datetime,
    parse_duration,
)
from tests.fake_immich import EPOCH, closed_port_url, fake_immich, fake_immich_factory  # noqa: F401


def client_for(server, **kwargs) -> ImmichClient:
    kwargs.setdefault("backoff", 0)
    kwargs.setdefault("api_key", server.api_key)
    return ImmichClient(server.url, **kwargs)


def sha1_b64(path: Path) -> str:
    return base64.b64encode(hashlib.sha1(path.read_bytes()).digest()).decode()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------ listing assets
def test_lists_every_asset_across_several_pages(fake_immich):
    photos = [fake_immich.add_photo() for _ in range(6)]
    video = fake_immich.add_video(seconds=1.5)
    client = client_for(fake_immich)

    assets = list(client.iter_assets(page_size=3))

    assert {a.id for a in assets} == {p.id for p in photos} | {video.id}
    searches = fake_immich.calls("POST", "/api/search/metadata")
    assert [body["page"] for _, _, body in searches] == [1, 2, 3]
    assert all(body["size"] == 3 and body["withExif"] is True for _, _, body in searches)
    listed_video = next(a for a in assets if a.id == video.id)
    assert listed_video.type == "VIDEO" and listed_video.duration_seconds == pytest.approx(1.5)
    assert listed_video.checksum == video.checksum
    assert listed_video.original_mime_type == "video/mp4"
    photo = next(a for a in assets if a.id == photos[0].id)
    assert photo.duration_seconds is None and (photo.width, photo.height) == (160, 120)
    assert photo.updated_at == photos[0].updated_at and photo.updated_at.tzinfo is not None


def test_type_filter(fake_immich):
    fake_immich.add_photo()
    video = fake_immich.add_video()
    client = client_for(fake_immich)
    assert [a.id for a in client.iter_assets(asset_type="VIDEO")] == [video.id]
    assert fake_immich.calls("POST", "/api/search/metadata")[0][2]["type"] == "VIDEO"
    with pytest.raises(ValueError):
        list(client.iter_assets(asset_type="PHOTO"))


def test_updated_after_is_sent_with_z_and_is_inclusive(fake_immich):
    old = fake_immich.add_photo(updated_at=EPOCH + timedelta(days=1))
    edge = fake_immich.add_photo(updated_at=EPOCH + timedelta(days=2))
    new = fake_immich.add_photo(updated_at=EPOCH + timedelta(days=3, microseconds=500))
    client = client_for(fake_immich)

    since = datetime(2026, 1, 3, tzinfo=UTC)  # == edge.updated_at
    ids = {a.id for a in client.iter_assets(updated_after=since)}

    assert ids == {edge.id, new.id} and old.id not in ids
    body = fake_immich.calls("POST", "/api/search/metadata")[0][2]
    assert body["updatedAfter"] == "2026-01-03T00:00:00.000Z"


def test_datetime_formatting_for_request_bodies():
    cet = timezone(timedelta(hours=1))
    assert format_immich_datetime(datetime(2026, 1, 1, 1, 0, 0, 123999, tzinfo=cet)) == "2026-01-01T00:00:00.123Z"
    assert format_immich_datetime(datetime(2026, 5, 6, 7, 8, 9)) == "2026-05-06T07:08:09.000Z"  # naive = UTC


def test_archived_hidden_and_trashed_are_not_listed(fake_immich):
    kept = fake_immich.add_photo()
    archived = fake_immich.add_photo(visibility="archive")
    fake_immich.add_photo(is_trashed=True)
    fake_immich.add_photo(visibility="hidden")
    fake_immich.add_video(visibility="locked")
    client = client_for(fake_immich)

    assert [a.id for a in client.iter_assets()] == [kept.id]
    assert {a.id for a in client.iter_assets(with_archived=True)} == {kept.id, archived.id}


def test_client_filters_archived_and_trashed_even_when_the_server_lists_them(fake_immich):
    # An older or differently configured server may return them anyway: the client must still skip.
    kept = fake_immich.add_video()
    fake_immich.add_photo(visibility="archive")
    fake_immich.add_photo(is_trashed=True)
    fake_immich.list_everything = True
    assert [a.id for a in client_for(fake_immich).iter_assets(page_size=1)] == [kept.id]


def test_album_filter_is_a_union_of_albums(fake_immich):
    a, b, both, neither = (fake_immich.add_photo() for _ in range(4))
    album_1 = fake_immich.add_album("Trips", [a, both])
    album_2 = fake_immich.add_album("Family", [b, both])
    client = client_for(fake_immich)

    ids = [x.id for x in client.iter_assets(album_ids=[album_1, album_2])]

    assert sorted(ids) == sorted([a.id, b.id, both.id])  # each once, though `both` is in two albums
    assert neither.id not in ids
    assert {x.name: x.asset_count for x in client.albums()} == {"Trips": 2, "Family": 2}


def test_v2_server_shapes_are_normalised(fake_immich_factory):
    server = fake_immich_factory(v2=True)
    video = server.add_video(seconds=2.0)
    photo = server.add_photo()
    client = client_for(server)

    assert client.server_version() == (2, 7, 5) and client.is_v2
    assets = {a.id: a for a in client.iter_assets()}
    assert isinstance(assets[video.id].raw["duration"], str)
    assert assets[video.id].duration_seconds == pytest.approx(2.0)
    assert assets[photo.id].duration_seconds is None  # "0:00:00.000000"


def test_parse_duration_accepts_both_formats():
    assert parse_duration(5123) == pytest.approx(5.123)
    assert parse_duration("0:00:05.123456") == pytest.approx(5.123456)
    assert parse_duration("1:02:03.5") == pytest.approx(3723.5)
    assert parse_duration(None) is None and parse_duration("0:00:00.00000") is None
    assert parse_duration("garbage") is None


def test_server_version_is_read_once(fake_immich):
    client = client_for(fake_immich)
    assert client.server_version() == (3, 0, 0) and not client.is_v2
    client.server_version()
    assert len(fake_immich.calls("GET", "/api/server/version")) == 1


def test_base_url_with_or_without_api_suffix(fake_immich):
    for url in (fake_immich.url, fake_immich.url + "/", fake_immich.url + "/api", fake_immich.url + "/api/"):
        client = ImmichClient(url, fake_immich.api_key, backoff=0)
        assert client.server_version() == (3, 0, 0)
        assert client.asset_url("abc") == f"{fake_immich.url}/photos/abc"


def test_me_and_statistics(fake_immich):
    fake_immich.add_photo()
    fake_immich.add_video()
    fake_immich.add_photo(visibility="archive")
    client = client_for(fake_immich)
    assert client.me().email == "owner@example.com"
    stats = client.statistics()
    assert (stats.images, stats.videos, stats.total) == (1, 1, 2)


# ------------------------------------------------------------------------------------- errors
def test_wrong_api_key_raises_auth_error(fake_immich):
    client = client_for(fake_immich, api_key="definitely-not-the-key")
    with pytest.raises(ImmichAuthError, match="API key was rejected") as info:
        list(client.iter_assets())
    assert info.value.status == 401
    assert len(fake_immich.calls("POST", "/api/search/metadata")) == 1  # 4xx is not retried


def test_missing_permission_raises_permission_error(fake_immich):
    fake_immich.permissions = {"asset.view", "asset.download", "album.read", "server.about"}
    client = client_for(fake_immich)
    with pytest.raises(ImmichPermissionError, match=r"lacks the permission asset\.read") as info:
        list(client.iter_assets())
    assert info.value.permission == "asset.read"
    # Optional permissions degrade gracefully.
    assert client.me() is None
    assert client.statistics() is None


def test_unreachable_server_raises_connection_error_naming_the_url():
    url = closed_port_url()
    client = ImmichClient(url, "secret-key-123", retries=2, backoff=0, timeout=(1, 2))
    with pytest.raises(ImmichConnectionError) as info:
        client.server_version()
    assert url in str(info.value) and "secret-key-123" not in str(info.value)


def test_invalid_configuration_is_refused_clearly():
    with pytest.raises(ImmichConnectionError, match="not valid"):
        ImmichClient("immich.local:2283", "key")
    with pytest.raises(ImmichAuthError, match="IMMICH_API_KEY"):
        ImmichClient("http://immich.local:2283", "  ")


def test_transient_server_errors_are_retried(fake_immich):
    photo = fake_immich.add_photo()
    fake_immich.fail("searchAssets", times=2, status=500)
    fake_immich.fail("downloadAsset", times=1, status=503)
    client = client_for(fake_immich, retries=3)

    assert [a.id for a in client.iter_assets()] == [photo.id]
    assert len(fake_immich.calls("POST", "/api/search/metadata")) == 3


def test_persistent_server_error_gives_up_after_all_retries(fake_immich):
    fake_immich.fail("searchAssets", times=100, status=500)
    client = client_for(fake_immich, retries=2)
    with pytest.raises(ImmichServerError) as info:
        list(client.iter_assets())
    assert info.value.status == 500
    assert len(fake_immich.calls("POST", "/api/search/metadata")) == 3  # first try + 2 retries


def test_deleted_asset_raises_not_found(fake_immich, tmp_path):
    client = client_for(fake_immich)
    missing = "0b0c6f9e-9c5e-4f6a-8b1a-1c2d3e4f5a6b"
    with pytest.raises(ImmichNotFound):
        client.download_original(missing, tmp_path / "x.jpg")
    with pytest.raises(ImmichNotFound):
        client.asset(missing)
    assert leftovers(tmp_path) == []


def test_api_key_never_appears_in_errors_repr_or_logs(fake_immich, caplog):
    secret = fake_immich.api_key
    caplog.set_level(logging.DEBUG)
    client = client_for(fake_immich)
    messages = [repr(client), str(client)]
    fake_immich.fail("searchAssets", times=1)
    list(client.iter_assets())  # logs a retry warning
    for failing in (
        client_for(fake_immich, api_key=secret + "x"),
        ImmichClient(closed_port_url(), secret, retries=1, backoff=0),
    ):
        with pytest.raises(Exception) as info:
            list(failing.iter_assets())
        messages += [str(info.value), repr(info.value), repr(failing)]
    fake_immich.permissions = set()
    with pytest.raises(ImmichPermissionError) as info:
        client.albums()
    messages += [str(info.value), repr(info.value)]

    assert any("retry" in r.getMessage() for r in caplog.records)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in messages + [logged]:
        assert secret not in text
    assert "***" in repr(client)


# ---------------------------------------------------------------------------------- downloads
def test_download_original_is_byte_identical(fake_immich, tmp_path):
    video = fake_immich.add_video()
    client = client_for(fake_immich)
    dest = tmp_path / "media" / "original.mp4"

    result = client.download_original(video.id, dest)

    assert result.path == dest and Path(result) == dest
    assert result.content_type == "video/mp4" and result.size == len(video.data)
    assert sha1_b64(dest) == video.checksum
    assert leftovers(dest.parent) == ["original.mp4"]


def test_connection_drop_mid_download_keeps_no_partial_file(fake_immich, tmp_path):
    photo = fake_immich.add_photo(width=320, height=240)
    fake_immich.drop("downloadAsset", times=10)
    client = client_for(fake_immich, retries=2)
    dest = tmp_path / "photo.jpg"

    with pytest.raises(ImmichIncompleteDownload):
        client.download_original(photo.id, dest)

    assert leftovers(tmp_path) == []  # neither dest nor a temp file
    assert len(fake_immich.calls("GET", f"/api/assets/{photo.id}/original")) == 3


def test_connection_drop_is_recovered_by_retrying(fake_immich, tmp_path):
    photo = fake_immich.add_photo()
    fake_immich.drop("downloadAsset", times=1)
    dest = tmp_path / "photo.jpg"
    client_for(fake_immich).download_original(photo.id, dest)
    assert sha1_b64(dest) == photo.checksum
    assert leftovers(tmp_path) == ["photo.jpg"]


def test_failed_download_does_not_replace_an_existing_file(fake_immich, tmp_path):
    photo = fake_immich.add_photo()
    dest = tmp_path / "photo.jpg"
    dest.write_bytes(b"previous version")
    fake_immich.drop("downloadAsset", times=10)
    with pytest.raises(ImmichIncompleteDownload):
        client_for(fake_immich, retries=0).download_original(photo.id, dest)
    assert dest.read_bytes() == b"previous version"
    assert leftovers(tmp_path) == ["photo.jpg"]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow probing the fake DNG's TIFF header
def test_fullsize_of_raw_original_follows_redirect_to_a_decodable_preview(fake_immich, tmp_path):
    raw = fake_immich.add_raw()
    client = client_for(fake_immich)
    asset = next(a for a in client.iter_assets() if a.id == raw.id)
    assert asset.original_mime_type == "image/x-adobe-dng"

    original = client.download_original(raw.id, tmp_path / "raw.dng")
    with pytest.raises(OSError):
        Image.open(original.path).load()  # the original is not something Pillow can read

    fullsize = client.download_fullsize(raw.id, tmp_path / "raw.jpg")
    assert fullsize.content_type == "image/jpeg"
    with Image.open(fullsize.path) as im:
        assert im.size == (160, 120)
    paths = [p for _, p, _ in fake_immich.requests if raw.id in p]
    assert paths[-2:] == [
        f"/api/assets/{raw.id}/thumbnail?size=fullsize",
        f"/api/assets/{raw.id}/thumbnail?size=preview",
    ]


def test_fullsize_of_jpeg_original_is_the_original(fake_immich, tmp_path):
    photo = fake_immich.add_photo()
    result = client_for(fake_immich).download_fullsize(photo.id, tmp_path / "full.jpg")
    assert sha1_b64(result.path) == photo.checksum
    assert fake_immich.requests[-1][1] == f"/api/assets/{photo.id}/original"


def test_changed_asset_is_seen_with_new_checksum_on_incremental_run(fake_immich, tmp_path):
    first, second = fake_immich.add_photo(), fake_immich.add_photo()
    client = client_for(fake_immich)
    initial = {a.id: a for a in client.iter_assets()}
    watermark = max(a.updated_at for a in initial.values())

    fake_immich.replace_data(first.id)
    changed = list(client.iter_assets(updated_after=watermark))

    assert first.id in {a.id for a in changed}
    new = next(a for a in changed if a.id == first.id)
    assert new.checksum != initial[first.id].checksum and new.checksum == first.checksum
    assert new.updated_at > initial[first.id].updated_at
    # The inclusive watermark lists the latest previously seen asset again, with an unchanged
    # checksum, which is how an importer knows not to download it again.
    for asset in changed:
        if asset.id == second.id:
            assert asset.checksum == initial[second.id].checksum


# ------------------------------------------------------------------------------ the fake itself
def test_fake_rejects_requests_that_break_the_spec(fake_immich):
    """The validation is real: a body Immich would refuse gets 400 and is recorded."""
    import requests

    bad = requests.post(
        fake_immich.url + "/api/search/metadata",
        timeout=5,
        headers={"x-api-key": fake_immich.api_key},
        json={"page": 0, "updatedAfter": datetime(2026, 1, 1, tzinfo=UTC).isoformat(), "updatedAftr": "typo"},
    )
    assert bad.status_code == 400
    problems = "\n".join(fake_immich.errors)
    assert "updatedAfter" in problems or "does not match" in problems
    assert "updatedAftr" in problems
    fake_immich.errors.clear()  # expected here; any other test would fail at teardown


def test_immich_asset_from_minimal_v2_dict():
    asset = ImmichAsset.from_api(
        {
            "id": "x",
            "type": "IMAGE",
            "isArchived": True,
            "checksum": "c",
            "updatedAt": "2024-05-01T10:00:00.000Z",
            "duration": "0:00:00.00000",
            "exifInfo": {"exifImageWidth": 4000, "exifImageHeight": 3000},
        }
    )
    assert asset.is_archived and asset.visibility == "archive"
    assert (asset.width, asset.height) == (4000, 3000)
    assert asset.updated_at == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert asset.original_filename == "x"


def test_asset_links_use_the_public_url_when_given(fake_immich):
    client = client_for(fake_immich, public_url="https://photos.example.com/api/")
    assert client.asset_url("abc") == "https://photos.example.com/photos/abc"


def test_url_credentials_are_not_shown():
    client = ImmichClient("http://user:hunter2@127.0.0.1:9/", "key", retries=0)
    assert "hunter2" not in repr(client)
    with pytest.raises(ImmichConnectionError) as info:
        client.server_version()
    assert "hunter2" not in str(info.value) and "127.0.0.1:9" in str(info.value)


def test_a_url_that_is_not_immich_is_reported_as_such():
    import threading

    from werkzeug.serving import make_server
    from werkzeug.wrappers import Response

    def not_immich(environ, start_response):  # e.g. a reverse proxy's default site
        return Response("<html>Welcome to nginx</html>", status=404, mimetype="text/html")(environ, start_response)

    server = make_server("127.0.0.1", 0, not_immich)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        client = ImmichClient(f"http://127.0.0.1:{server.server_port}", "key", backoff=0)
        with pytest.raises(ImmichConnectionError, match="No Immich API answers"):
            client.server_version()
    finally:
        server.shutdown()
        server.server_close()
