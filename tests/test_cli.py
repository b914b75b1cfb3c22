"""The command line: upload, list, jobs, watch, requeue-skipped."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import worker_env
from tests.media_factory import make_photo

ROOT = Path(__file__).resolve().parents[1]


def _cli(settings, *args, **env):
    full = {**os.environ, **settings.as_env(), **{k: str(v) for k, v in env.items()}}
    full.pop("API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "backend", *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=180
    )


def test_upload_list_jobs_and_requeue(make_app, services, tmp_path):
    make_app()  # fresh database
    settings = services.settings
    photo = make_photo(tmp_path / "cli.jpg")
    out = _cli(settings, "upload", str(photo), str(tmp_path / "missing.jpg"))
    assert out.returncode == 1  # one file was missing
    assert "cli.jpg: stored" in out.stdout and "missing.jpg: no such file" in out.stderr
    assert "depth: skipped (depth map is turned off; set ENABLE_DEPTH=true" in out.stdout

    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    rejected = _cli(settings, "upload", str(text))
    assert rejected.returncode == 1 and "not a recognised image or video" in rejected.stderr

    listing = _cli(settings, "list")
    assert "cli.jpg" in listing.stdout and "depth:skipped" in listing.stdout
    assert "skipped" in _cli(settings, "jobs", "--status", "skipped").stdout

    still_off = _cli(settings, "requeue-skipped")
    assert "queued 0 skipped job(s)" in still_off.stdout and "ENABLE_DEPTH=true" in still_off.stdout
    turned_on = _cli(settings, "requeue-skipped", "--task", "depth", ENABLE_DEPTH="true")
    assert "queued 1 skipped job(s)" in turned_on.stdout
    assert "queued" in _cli(settings, "jobs", "--task", "depth").stdout


def test_upload_and_watch_until_done(make_app, services, tiny_depth_model, start_worker, tmp_path):
    make_app()
    settings = dataclasses.replace(services.settings, enable_depth=True, depth_model=str(tiny_depth_model))
    start_worker(settings, **worker_env(tiny_depth_model))
    out = _cli(settings, "upload", "--watch", str(make_photo(tmp_path / "w.jpg")))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "completed" in out.stdout
