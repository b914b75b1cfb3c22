"""GET /api/health and GET /api/config."""


def test_health_reports_each_dependency(client, start_worker, services):
    body = client.get("/api/health").get_json()
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["ffmpeg"]["ok"] is True
    assert body["checks"]["workers"]["ok"] is False  # nobody listening yet
    assert body["status"] == "degraded"

    import time

    start_worker()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = client.get("/api/health").get_json()
        if body["checks"]["workers"]["ok"]:
            break
        time.sleep(0.3)
    assert body["status"] == "ok", body
    assert body["checks"]["workers"]["count"] == 1


def test_health_is_503_when_the_database_is_down(make_app, services):
    import dataclasses

    from backend.db import Database

    app = make_app()
    svc = app.extensions["parallax"]
    broken = Database("postgresql://postgres@127.0.0.1:1/nothing", min_size=0, max_size=1)
    broken.pool.timeout = 1
    app.extensions["parallax"] = dataclasses.replace(svc, db=broken)
    response = app.test_client().get("/api/health")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"]["ok"] is False


def test_config_shows_flags_and_limits_but_no_secrets(make_app):
    app = make_app(
        enable_depth=True, api_key="top-secret", immich_api_key="immich-secret", immich_url="http://127.0.0.1:9"
    )
    response = app.test_client().get("/api/config", headers={"X-API-Key": "top-secret"})
    body = response.get_json()
    assert body["features"] == {
        "depth": True,
        "background_removal": False,
        "experimental_video": False,
        "depth_video": True,
        "stereo": True,
    }
    assert body["video"]["max_frames"] == 30
    assert "top-secret" not in response.get_data(as_text=True)
    assert "immich-secret" not in response.get_data(as_text=True)


def test_api_key_guards_every_api_route_but_health(make_app):
    client = make_app(api_key="k1").test_client()
    assert client.get("/api/health").status_code in (200, 503)
    denied = client.get("/api/media")
    assert denied.status_code == 401 and denied.get_json()["error"]["code"] == "unauthorized"
    assert client.get("/api/media", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/api/media", headers={"X-API-Key": "k1"}).status_code == 200
    assert client.get("/api/media", headers={"Authorization": "Bearer k1"}).status_code == 200
