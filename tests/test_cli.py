"""The command line: upload, list, jobs, watch, requeue-skipped."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
from psycopg import sql as pgsql

from tests.conftest import with_database, worker_env
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
    settings = services.settings.replace(enable_depth=True, depth_model=str(tiny_depth_model))
    start_worker(settings, **worker_env(tiny_depth_model))
    out = _cli(settings, "upload", "--watch", str(make_photo(tmp_path / "w.jpg")))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "completed" in out.stdout


def _no_traceback(out) -> None:
    assert "Traceback" not in out.stdout + out.stderr, out.stderr


def _settings(make_app, **overrides):
    """The settings of a test app (the database starts empty), as the CLI's environment."""
    return make_app(**overrides).extensions["parallax"].settings


def test_folders_short_ids_headers_and_show(make_app, tmp_path):
    settings = _settings(make_app, enable_depth=False, enable_background_removal=False)
    folder = tmp_path / "trip"
    make_photo(folder / "a.jpg", seed=1)
    make_photo(folder / "day2" / "b.png", fmt="PNG", seed=2)
    (folder / "notes.txt").write_text("not media")
    (folder / ".thumbs").mkdir()
    make_photo(folder / ".thumbs" / "hidden.jpg", seed=3)

    flat = _cli(settings, "upload", str(folder))
    assert flat.returncode == 0, flat.stderr
    assert "a.jpg: stored as" in flat.stdout and "b.png" not in flat.stdout and "notes.txt" not in flat.stdout
    deep = _cli(settings, "upload", "--recursive", str(folder))
    assert "a.jpg: already stored as" in deep.stdout and "b.png: stored as" in deep.stdout
    assert "hidden.jpg" not in deep.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = _cli(settings, "upload", str(empty))
    assert nothing.returncode == 1 and "no photos or videos in this folder" in nothing.stderr

    listing = _cli(settings, "list").stdout.splitlines()
    assert listing[0].split()[:3] == ["ID", "KIND", "SIZE"]
    short = listing[1].split()[0]
    assert len(short) == 8
    jobs = _cli(settings, "jobs").stdout.splitlines()
    assert jobs[0].split()[:3] == ["ID", "TASK", "STATUS"]

    shown = _cli(settings, "show", short[:6])
    assert shown.returncode == 0, shown.stderr
    assert "depth" in shown.stdout and "skipped" in shown.stdout
    job_prefix = jobs[1].split()[0]
    watched = _cli(settings, "watch", job_prefix)
    assert watched.returncode == 1 and "skipped" in watched.stdout  # ended without completing
    _no_traceback(watched)


def test_bad_ids_and_values_are_explained(make_app):
    settings = _settings(make_app)
    malformed = _cli(settings, "watch", "not-an-id!")
    assert malformed.returncode == 2 and "is not a job id" in malformed.stderr
    unknown = _cli(settings, "watch", "00000000-0000-4000-8000-000000000000")
    assert unknown.returncode == 2 and "no job" in unknown.stderr
    unknown_prefix = _cli(settings, "show", "ffff0000")
    assert unknown_prefix.returncode == 2 and "no media item with an id starting with ffff0000" in unknown_prefix.stderr
    status = _cli(settings, "jobs", "--status", "done")
    assert status.returncode == 2 and "invalid choice: 'done'" in status.stderr and "'completed'" in status.stderr
    for out in (malformed, unknown, unknown_prefix, status):
        _no_traceback(out)


def test_database_and_redis_outages_are_one_line_reports(make_app, services, tmp_path):
    settings = _settings(make_app, database_url="postgresql://ann:s3cret@127.0.0.1:1/parallax")
    down = _cli(settings, "list")
    assert down.returncode == 3 and "cannot reach the database at postgresql://127.0.0.1:1/parallax" in down.stderr
    assert "s3cret" not in down.stderr
    _no_traceback(down)

    empty = f"parallax_cli_empty_{uuid.uuid4().hex[:8]}"  # exists, but `migrate` never ran
    with psycopg.connect(services.settings.database_url, autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(empty)))
    try:
        unmigrated = _cli(
            _settings(make_app, database_url=with_database(services.settings.database_url, empty)), "list"
        )
    finally:
        with psycopg.connect(services.settings.database_url, autocommit=True) as conn:
            conn.execute(pgsql.SQL("DROP DATABASE {} WITH (FORCE)").format(pgsql.Identifier(empty)))
    assert unmigrated.returncode == 2 and "python -m backend migrate" in unmigrated.stderr
    _no_traceback(unmigrated)

    no_redis = _settings(make_app, redis_url="redis://127.0.0.1:1/0", enable_depth=True)
    stored = _cli(no_redis, "upload", str(make_photo(tmp_path / "p.jpg")))
    assert stored.returncode == 0, stored.stderr
    assert "depth: pending" in stored.stdout
    assert "the queue (Redis) is unreachable" in stored.stderr
    _no_traceback(stored)


def test_watch_explains_waiting_and_a_deleted_job(make_app, services, tmp_path):
    settings = _settings(make_app, enable_depth=True, enable_background_removal=False)
    out = _cli(settings, "upload", str(make_photo(tmp_path / "p.jpg")))
    assert "no worker is listening" in out.stderr  # queued, but nothing will run it
    job = services.db.fetchone("SELECT id, media_id FROM processing_jobs WHERE task = 'depth'")
    env = {**os.environ, **settings.as_env()}
    env.pop("API_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend", "watch", str(job["id"])[:8]],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()  # printed as soon as the job is seen waiting
        assert "queued, 0 ahead" in first, first
        services.db.execute("DELETE FROM media_items WHERE id = %s", (job["media_id"],))
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert "was deleted" in stderr and "no worker is listening" in stderr
    assert "Traceback" not in stderr


def test_watch_rate_and_eta_count_from_the_start_of_the_work():
    from datetime import UTC, datetime, timedelta

    from backend.cli import progress_line

    now = datetime.now(UTC)
    job = {
        "id": "12345678-aaaa-4bbb-8ccc-000000000000",
        "task": "video_depth",
        "status": "processing",
        "progress_done": 20,
        "progress_total": 100,
        "stage": "depth",
        "started_at": now - timedelta(seconds=10),
        "created_at": now - timedelta(hours=3),  # queued for hours: not part of the rate
    }
    line = progress_line(job, now)
    assert "20/100" in line and "2.00/s" in line and "ETA 0:40" in line
    assert progress_line({**job, "status": "queued"}, now, 4) == "video_depth 12345678: queued, 4 ahead"
