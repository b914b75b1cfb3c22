"""Browser-facing protections: allowed hosts (DNS rebinding), Origin checks on state-changing requests
(cross-site form posts), security headers on every response, originals served as what they are."""

from __future__ import annotations

import io
import socket
import zipfile

from tests.media_factory import make_photo


def _upload(client, data: bytes, name: str = "p.jpg", **headers):
    return client.post("/api/media/upload", data={"media": (io.BytesIO(data), name)}, headers=headers)


def test_a_name_the_server_does_not_know_is_refused(make_app):
    client = make_app().test_client()
    rebound = client.get("/api/media", headers={"Host": "attacker.example:8000"})
    assert rebound.status_code == 400
    assert "ALLOWED_HOSTS" in rebound.get_json()["error"]["message"]
    machine = socket.gethostname()
    for host in ("localhost:8000", "127.0.0.1:8000", "192.168.1.20:8000", "[::1]:8000", machine, f"{machine}.local"):
        assert client.get("/api/media", headers={"Host": host}).status_code == 200, host

    named = make_app(allowed_hosts=("parallax.home.lan", ".example.org")).test_client()
    assert named.get("/api/media", headers={"Host": "parallax.home.lan:8000"}).status_code == 200
    assert named.get("/api/media", headers={"Host": "photos.example.org"}).status_code == 200
    assert named.get("/api/media", headers={"Host": "example.org.attacker.example"}).status_code == 400


def test_cross_site_requests_cannot_change_anything(client, tmp_path):
    photo = make_photo(tmp_path / "p.jpg").read_bytes()
    # A plain HTML form on another site posting an upload: the browser says where it comes from.
    forged = _upload(client, photo, Origin="http://attacker.example")
    assert forged.status_code == 403 and forged.get_json()["error"]["code"] == "cross_site_request"
    assert _upload(client, photo, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert _upload(client, photo, Origin="null").status_code == 403
    assert client.get("/api/media").get_json()["total"] == 0
    # Our own pages (same origin) and clients that are not browsers (no Origin) are served.
    assert _upload(client, photo, Origin="http://localhost").status_code == 202
    item = client.get("/api/media").get_json()["items"][0]
    assert client.delete(f"/api/media/{item['id']}", headers={"Origin": "http://attacker.example"}).status_code == 403
    assert client.delete(f"/api/media/{item['id']}").status_code == 204
    # Reading stays possible cross-site only as far as the browser's same-origin policy allows.
    assert client.get("/api/media", headers={"Origin": "http://attacker.example"}).status_code == 200


def test_every_response_carries_security_headers(client):
    for path in ("/", "/viewer/x", "/api/media", "/api/health", "/static/js/api.js", "/api/nothing-here"):
        response = client.get(path)
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["Referrer-Policy"] == "same-origin", path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path
    page = client.get("/").headers["Content-Security-Policy"]
    assert "script-src 'self'" in page and "object-src 'none'" in page
    assert "sandbox" in client.get("/api/media").headers["Content-Security-Policy"]


def test_original_is_served_as_its_detected_type_never_as_anything_else(client, tmp_path):
    # A JPEG with a ZIP appended (a polyglot), uploaded under a name that claims HTML.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<script>alert(1)</script>")
    polyglot = make_photo(tmp_path / "p.jpg").read_bytes() + buffer.getvalue()
    body = _upload(client, polyglot, name="page.html").get_json()
    original = client.get(f"/api/media/{body['item']['id']}/original")
    assert original.status_code == 200
    assert original.headers["Content-Type"] == "image/jpeg"
    assert original.headers["X-Content-Type-Options"] == "nosniff"
    assert original.headers["Content-Disposition"].startswith("inline")
    assert "sandbox" in original.headers["Content-Security-Policy"]
