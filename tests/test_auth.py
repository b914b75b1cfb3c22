"""Access from beyond loopback: the API key in every form the web UI sends it, pairing a headset
with a one-time code (HTTP and CLI), revoking it, the generated key and the self-signed certificate."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from backend.auth import SESSION_COOKIE, load_or_create_api_key
from backend.tls import certificate_names, ensure_certificate, prepare_serving

ROOT = Path(__file__).resolve().parents[1]
KEY = "k3y/with+base64=="  # what `openssl rand -base64` gives: '/', '+' and '='


@pytest.fixture
def keyed(make_app, services):
    services.db.execute("TRUNCATE device_pairings")
    return make_app(api_key=KEY)


def test_api_key_accepted_as_header_bearer_and_percent_encoded_cookie(keyed):
    client = keyed.test_client()
    assert client.get("/api/media").status_code == 401
    assert client.get("/api/media", headers={"X-API-Key": KEY}).status_code == 200
    assert client.get("/api/media", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    # The web UI writes the cookie with encodeURIComponent.
    client.set_cookie("parallax_api_key", quote(KEY, safe=""))
    assert client.get("/api/media").status_code == 200
    client.set_cookie("parallax_api_key", quote("wrong/key", safe=""))
    assert client.get("/api/media").status_code == 401
    assert client.get("/api/health").status_code == 200


def test_pairing_code_gives_a_revocable_session(keyed):
    desktop = keyed.test_client()
    headset = keyed.test_client()
    assert headset.post("/api/pairing", json={}).status_code == 401  # making codes needs the key

    made = desktop.post("/api/pairing", json={"label": "Quest 3"}, headers={"X-API-Key": KEY})
    assert made.status_code == 201
    body = made.get_json()
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", body["code"])
    assert body["link"] == "/pair?code=" + body["code"].replace("-", "")
    assert body["pairing"]["state"] == "waiting" and body["pairing"]["label"] == "Quest 3"

    # Typed by a person: lower case and without the dash still works.
    claimed = headset.post(
        "/api/pairing/claim", json={"code": body["code"].lower().replace("-", " ")}, headers={"User-Agent": "Quest"}
    )
    assert claimed.status_code == 200, claimed.get_json()
    cookie = headset.get_cookie(SESSION_COOKIE)
    assert cookie is not None and cookie.http_only and cookie.same_site == "Strict"
    assert headset.get("/api/media").status_code == 200
    # A paired device browses but does not manage pairings.
    assert headset.post("/api/pairing", json={}).status_code == 403
    assert headset.get("/api/pairings").status_code == 403

    again = keyed.test_client().post("/api/pairing/claim", json={"code": body["code"]})
    assert again.status_code == 404 and again.get_json()["error"]["code"] == "invalid_code"

    listed = desktop.get("/api/pairings", headers={"X-API-Key": KEY}).get_json()["pairings"]
    assert [(p["id"], p["state"], p["user_agent"]) for p in listed] == [(body["pairing"]["id"], "paired", "Quest")]

    revoked = desktop.delete(f"/api/pairings/{body['pairing']['id']}", headers={"X-API-Key": KEY})
    assert revoked.status_code == 200 and revoked.get_json()["pairing"]["state"] == "revoked"
    assert headset.get("/api/media").status_code == 401
    assert desktop.delete("/api/pairings/not-a-uuid", headers={"X-API-Key": KEY}).status_code == 404


def test_expired_and_malformed_codes_are_refused(keyed, services):
    desktop = keyed.test_client()
    code = desktop.post("/api/pairing", json={}, headers={"X-API-Key": KEY}).get_json()["code"]
    services.db.execute("UPDATE device_pairings SET code_expires_at = now() - interval '1 second'")
    expired = keyed.test_client().post("/api/pairing/claim", json={"code": code})
    assert expired.status_code == 404
    assert desktop.get("/api/pairings", headers={"X-API-Key": KEY}).get_json()["pairings"][0]["state"] == "expired"
    for bad in ({"code": "x"}, {"code": ""}, {}, {"code": 12345678}):
        assert keyed.test_client().post("/api/pairing/claim", json=bad).status_code in (400, 404)
    assert keyed.test_client().get("/pair").status_code == 200  # the page a headset types the code into


def _cli(settings, *args):
    env = {**os.environ, **settings.as_env()}
    return subprocess.run(
        [sys.executable, "-m", "backend", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_pair_and_revoke_from_the_command_line(keyed, services):
    settings = keyed.extensions["parallax"].settings
    out = _cli(settings, "pair", "--label", "living room")
    assert out.returncode == 0, out.stderr
    code = re.search(r"Pairing code: ([A-Z2-9]{4})-([A-Z2-9]{4})", out.stdout)
    assert code and f"pair?code={code[1]}{code[2]}" in out.stdout

    headset = keyed.test_client()
    assert headset.post("/api/pairing/claim", json={"code": code[1] + code[2]}).status_code == 200
    listing = _cli(settings, "pairings", "list").stdout
    pairing_id = listing.split()[0]
    assert "paired" in listing and "living room" in listing
    assert _cli(settings, "pairings", "revoke", pairing_id).returncode == 0
    assert headset.get("/api/media").status_code == 401
    assert "revoked" in _cli(settings, "pairings").stdout
    assert _cli(settings, "pairings", "revoke", "nope").returncode == 1


def test_generated_api_key_is_private_and_stable(tmp_path):
    key, created = load_or_create_api_key(tmp_path)
    assert created and len(key) >= 32
    assert stat.S_IMODE((tmp_path / "api_key").stat().st_mode) == 0o600
    assert load_or_create_api_key(tmp_path) == (key, False)


def test_serving_beyond_loopback_needs_tls_and_a_key(base_settings, tmp_path):
    local = prepare_serving(base_settings.replace(data_dir=tmp_path, host="127.0.0.1"))
    assert local.tls is None and local.settings.api_key is None and local.gunicorn_args == []

    lan = prepare_serving(base_settings.replace(data_dir=tmp_path, host="0.0.0.0"))
    assert lan.api_key_created and lan.settings.secret("api_key") == (tmp_path / "api_key").read_text().strip()
    assert lan.tls.self_signed and lan.gunicorn_args == ["--certfile", str(lan.tls.cert), "--keyfile", str(lan.tls.key)]
    assert stat.S_IMODE(lan.tls.key.stat().st_mode) == 0o600
    names = certificate_names(lan.tls.cert)
    assert "localhost" in names and "127.0.0.1" in names
    assert lan.settings.secret("api_key") in lan.banner() and "https://" in lan.banner()

    # Made once: a restart keeps the certificate the headset already accepted.
    before = lan.tls.cert.read_bytes()
    assert ensure_certificate(lan.settings).cert.read_bytes() == before
    # A configured certificate is used as is; a missing file is a clear error.
    given = lan.settings.replace(tls_cert=lan.tls.cert, tls_key=lan.tls.key)
    assert ensure_certificate(given).self_signed is False
    with pytest.raises(FileNotFoundError, match="TLS_CERT"):
        ensure_certificate(given.replace(tls_cert=tmp_path / "missing.pem"))
