"""Helpers for tests that run Immich imports through real workers against the fake Immich."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

from tests.conftest import ROOT, wait_for_job


def immich_app(make_app, fake, **overrides):
    return make_app(immich_url=fake.url, immich_api_key=fake.api_key, **overrides)


def start_import(client, **body) -> dict:
    response = client.post("/api/immich/import", json=body)
    assert response.status_code == 202, response.get_json()
    started = response.get_json()
    # A listening worker may claim the run before this answer is written: queued or already running.
    assert started["run"]["status"] in ("queued", "running") and started["job"]["task"] == "immich_import"
    return started


def finished_run(client, started: dict, worker) -> dict:
    wait_for_job(client, started["job"]["id"], worker=worker, timeout=90)
    return client.get(started["run"]["url"]).get_json()


def settled_run(client, url: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(url).get_json()
        if run["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def counts(run: dict) -> tuple:
    return run["seen"], run["imported"], run["unchanged"], run["skipped"], run["failed"]


def originals(fake) -> list[str]:
    """Asset ids whose original was downloaded, in request order."""
    return [path.split("/")[3] for _, path, _ in fake.calls("GET", "/api/assets/") if path.endswith("/original")]


def items_by_asset(services) -> dict:
    rows = services.db.fetchall("SELECT * FROM media_items WHERE source = 'immich'")
    return {r["immich_asset_id"]: r for r in rows}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "backend", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
