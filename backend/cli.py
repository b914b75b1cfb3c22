"""``python -m backend`` (or ``parallax``): run the service, a worker, and manage media and jobs."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from backend.db import SchemaError
from backend.immich.cli import add_commands as add_immich_commands
from backend.jobs import ACTIVE, FINISHED, TASKS
from backend.pairing_cli import add_commands as add_pairing_commands
from backend.settings import Settings, SettingsError, get_settings, url_without_credentials
from backend.tasks.registry import QUEUE_PRIORITY

TERMINAL = FINISHED
JOB_STATUSES = ACTIVE + FINISHED
TASK_NAMES = tuple(TASKS)


def _services(settings: Settings):
    from backend.services import Services

    # Import downloads run in threads that each need a connection.
    return Services.create(settings, pool_size=settings.immich_import_concurrency + 2)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def outage_message(exc: BaseException, settings: Settings) -> str | None:
    """One line for a database or Redis that does not answer, instead of a driver's traceback."""
    import psycopg
    import psycopg_pool
    import redis

    if isinstance(exc, (psycopg.OperationalError, psycopg_pool.PoolTimeout)):
        return (
            f"cannot reach the database at {url_without_credentials(settings.database_url)} ({first_line(exc)});"
            " is PostgreSQL running? (parallax run starts a local one)"
        )
    if isinstance(exc, redis.exceptions.RedisError):
        return (
            f"cannot reach Redis at {url_without_credentials(settings.redis_url)} ({first_line(exc)});"
            " is Redis running? (parallax run starts a local one)"
        )
    return None


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def cmd_run(settings: Settings, args) -> int:
    from backend.auth import is_loopback
    from backend.launcher import run_all

    if args.lan and is_loopback(settings.host):
        settings = settings.replace(host="0.0.0.0")
    return run_all(settings, workers=args.workers)


def cmd_web(settings: Settings, args) -> int:
    from backend.app import create_app

    create_app(settings).run(host=settings.host, port=settings.port, threaded=True)
    return 0


def cmd_worker(settings: Settings, args) -> int:
    from backend.worker import run_worker

    services = _services(settings)
    try:
        run_worker(
            services,
            burst=args.burst,
            preload=args.preload,
            reconcile_s=args.reconcile_interval,
            queues=args.queue or None,
        )
    finally:
        services.close()
    return 0


def cmd_migrate(settings: Settings, args) -> int:
    from backend.db import ensure_database, migrate

    ensure_database(settings.database_url)
    applied = migrate(settings.database_url)
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


# Names of the files a directory upload takes (the content decides the kind once uploaded; the name
# only keeps sidecars, notes and thumbnails caches out).
MEDIA_SUFFIXES = frozenset(
    [
        ".jpg",
        ".jpeg",
        ".jpe",
        ".png",
        ".webp",
        ".gif",
        ".tif",
        ".tiff",
        ".bmp",
        ".heic",
        ".heif",
        ".avif",
        ".jxl",
        ".jp2",
        ".exr",
        ".mp4",
        ".m4v",
        ".mov",
        ".webm",
        ".mkv",
        ".avi",
        ".3gp",
        ".mts",
        ".m2ts",
        ".mpg",
        ".mpeg",
        ".wmv",
    ]
)
SHORT_ID = 8  # characters of a UUID the CLI prints; commands take any unique prefix


def short_id(value) -> str:
    return str(value)[:SHORT_ID]


def media_files(paths: list[str], recursive: bool) -> tuple[list[Path], list[str]]:
    """The files to upload (directories expanded to their media, sorted) and a message per argument
    that gave nothing."""
    files: list[Path] = []
    problems: list[str] = []
    for name in paths:
        path = Path(name)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            pattern = path.rglob("*") if recursive else path.iterdir()
            found = sorted(
                p
                for p in pattern
                if p.is_file()
                and p.suffix.lower() in MEDIA_SUFFIXES
                and not any(part.startswith(".") for part in p.parts)
            )
            if found:
                files.extend(found)
            else:
                hint = "" if recursive else " (add --recursive to look in its subfolders)"
                problems.append(f"{name}: no photos or videos in this folder{hint}")
        else:
            problems.append(f"{name}: no such file or folder")
    return files, problems


def _work_warnings(services, created_jobs: list[dict]) -> list[str]:
    """Why stored work will not start by itself: the queue is unreachable, or no worker listens."""
    from backend.jobs import live_workers

    if any(job["status"] == "pending" for job in created_jobs):
        return [
            "the queue (Redis) is unreachable: the jobs are recorded and wait; they are queued once Redis is back"
            " (a worker does it, or run: parallax recover)"
        ]
    if not any(job["status"] == "queued" for job in created_jobs):
        return []
    try:
        workers = live_workers(services)
    except Exception as exc:
        return [f"cannot see the workers ({first_line(exc)})"]
    if not workers:
        return ["no worker is listening, so queued jobs wait: start one with: parallax worker (or parallax run)"]
    return []


def cmd_upload(settings: Settings, args) -> int:
    from ai.errors import InvalidMediaError
    from backend.media_service import ingest_file
    from backend.serializers import item_json, job_json

    files, problems = media_files(args.files, args.recursive)
    for problem in problems:
        print(problem, file=sys.stderr)
    status = 1 if problems else 0
    if not files:
        return status or 1
    services = _services(settings)
    created_jobs: list[dict] = []
    for src in files:
        tmp = services.storage.temp_path(".upload")
        shutil.copyfile(src, tmp)
        try:
            result = ingest_file(services, tmp, src.name)
        except InvalidMediaError as exc:
            print(f"{src}: rejected: {exc}", file=sys.stderr)
            status = 1
            continue
        item = item_json(result.item, settings)
        word = "stored as" if result.created else "already stored as"
        print(f"{src}: {word} {short_id(item['id'])} ({item['kind']}, {item['width']}x{item['height']})")
        for job in result.jobs:
            j = job_json(job)
            note = f" ({j['skip_reason']})" if j["skip_reason"] else ""
            print(f"  job {short_id(j['id'])} {j['task']}: {j['status']}{note}")
        created_jobs.extend(result.jobs)
    for warning in _work_warnings(services, created_jobs):
        print(f"note: {warning}", file=sys.stderr)
    if args.watch:
        for job in created_jobs:
            if job["status"] not in TERMINAL:
                status |= watch(services, str(job["id"]))
    services.close()
    return status


def _waiting_line(services) -> str | None:
    from backend.jobs import requeueable_counts

    waiting = sum(requeueable_counts(services).values())
    if not waiting:
        return None
    return f"{waiting} skipped job(s) can run now that their feature is on: parallax requeue-skipped"


def cmd_list(settings: Settings, args) -> int:
    services = _services(settings)
    rows = services.db.fetchall(
        "SELECT m.id, m.kind, m.original_filename, m.width, m.height, m.created_at,"
        " (SELECT string_agg(l.task || ':' || l.status, ' ' ORDER BY l.task) FROM latest_jobs l WHERE l.media_id = m.id) AS jobs"
        " FROM media_items m WHERE (%(kind)s::text IS NULL OR m.kind = %(kind)s) ORDER BY m.created_at DESC LIMIT %(n)s",
        {"kind": args.kind, "n": args.limit},
    )
    if not rows:
        print("no media items")
        return 0
    print(f"{'ID':{SHORT_ID}}  {'KIND':5}  {'SIZE':>11}  {'NAME':40}  JOBS")
    for r in rows:
        size = f"{r['width']}x{r['height']}" if r["width"] else "?"
        print(f"{short_id(r['id'])}  {r['kind']:5}  {size:>11}  {r['original_filename'][:40]:40}  {r['jobs'] or ''}")
    waiting = _waiting_line(services)
    if waiting:
        print(waiting)
    return 0


def cmd_jobs(settings: Settings, args) -> int:
    services = _services(settings)
    rows = services.db.fetchall(
        "SELECT j.*, m.original_filename FROM processing_jobs j LEFT JOIN media_items m ON m.id = j.media_id"
        " WHERE (%(s)s::text IS NULL OR j.status = %(s)s) AND (%(t)s::text IS NULL OR j.task = %(t)s)"
        " ORDER BY j.created_at DESC LIMIT %(n)s",
        {"s": args.status, "t": args.task, "n": args.limit},
    )
    if not rows:
        print("no jobs")
        return 0
    print(f"{'ID':{SHORT_ID}}  {'TASK':13} {'STATUS':10} {'PROGRESS':>9}  {'ITEM':24}  NOTE")
    for j in rows:
        progress = f"{j['progress_done']}/{j['progress_total'] or '?'}"
        note = j["last_error"] or j["skip_reason"] or j["stage"] or ""
        name = (j["original_filename"] or "")[:24]
        print(f"{short_id(j['id'])}  {j['task']:13} {j['status']:10} {progress:>9}  {name:24}  {note[:80]}")
    waiting = _waiting_line(services)
    if waiting:
        print(waiting)
    return 0


class CliError(Exception):
    """A problem to report in one line (exit code 2), never as a traceback."""


def resolve_id(services, table: str, text: str, what: str, listing: str) -> str:
    """A full id from a full UUID or a unique prefix of one (as the CLI prints them)."""
    cleaned = text.strip().lower()
    try:
        return str(uuid.UUID(cleaned))
    except ValueError:
        pass
    if not cleaned or len(cleaned) < 4 or any(c not in "0123456789abcdef-" for c in cleaned):
        raise CliError(f"{text!r} is not a {what} id: give its UUID or at least its first 4 characters ({listing})")
    rows = services.db.fetchall(
        f"SELECT id FROM {table} WHERE id::text LIKE %s ORDER BY id LIMIT 3",  # table: one of ours, never user input
        (cleaned + "%",),
    )
    if not rows:
        raise CliError(f"no {what} with an id starting with {cleaned} ({listing})")
    if len(rows) > 1:
        raise CliError(
            f"{cleaned} matches several {what}s ({', '.join(short_id(r['id']) for r in rows)}...); give more characters"
        )
    return str(rows[0]["id"])


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = round(seconds)
    return (
        f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


def progress_line(job: dict, now: datetime, jobs_ahead: int | None = None) -> str:
    """One line about a job: a bar, done/total, the rate since it started and the time left."""
    head = f"{job['task']} {short_id(job['id'])}"
    if job["status"] == "queued":
        return f"{head}: queued" + (f", {jobs_ahead} ahead" if jobs_ahead is not None else "")
    if job["status"] != "processing":
        return f"{head}: {job['status']}"
    done, total = job["progress_done"] or 0, job["progress_total"]
    stage = job["stage"] or "working"
    if not total:
        return f"{head}: {stage}"
    width = 24
    filled = min(width, int(width * done / total))
    line = f"{head} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
    elapsed = (now - job["started_at"]).total_seconds() if job["started_at"] else 0
    if done > 0 and elapsed > 0.5:
        rate = done / elapsed  # since this attempt started: waiting in the queue does not count
        line += f"  {rate:.2f}/s" if rate < 10 else f"  {rate:.0f}/s"
        line += f"  ETA {_duration((total - done) / rate)}"
    return f"{line}  {stage}"


def watch(services, job_id: str, interval: float = 0.5) -> int:
    """Show a job's progress until it ends; exit code 0 only if it completed."""
    from backend.jobs import get_job, jobs_ahead

    job = get_job(services, job_id)
    if job is None:
        print(f"no job {job_id}", file=sys.stderr)
        return 2
    tty = sys.stdout.isatty()
    last_line, last_print = "", 0.0
    warned = False
    while True:
        job = get_job(services, job_id)
        if job is None:
            print(
                ("\n" if tty and last_line else "") + f"job {short_id(job_id)} was deleted (with its item)",
                file=sys.stderr,
            )
            return 1
        if job["status"] in TERMINAL:
            break  # the closing line below says how it ended
        ahead = jobs_ahead(services, [job["id"]]).get(str(job["id"])) if job["status"] == "queued" else None
        line = progress_line(job, datetime.now(UTC), ahead)
        if tty:
            print("\r" + line[:160].ljust(len(last_line[:160])), end="", flush=True)
            last_line = line
        elif line != last_line and time.monotonic() - last_print > 5:
            print(line, flush=True)  # a log file gets a line now and then, not a redraw per poll
            last_line, last_print = line, time.monotonic()
        if job["status"] in ("queued", "pending") and not warned:
            warned = True  # once: whether work can start is checked when the job starts waiting
            for warning in _work_warnings(services, [job]):
                print(("\n" if tty else "") + f"note: {warning}", file=sys.stderr)
        time.sleep(interval)
    if tty and last_line:
        print()
    message = job["last_error"] or job["skip_reason"] or ""
    print(f"{job['task']} {short_id(job['id'])}: {job['status']}" + (f": {message}" if message else ""))
    return 0 if job["status"] == "completed" else 1


def cmd_watch(settings: Settings, args) -> int:
    services = _services(settings)
    return watch(services, resolve_id(services, "processing_jobs", args.job_id, "job", "see: parallax jobs"))


def cmd_show(settings: Settings, args) -> int:
    """One item as the item page shows it: its details, each task's current state and its results."""
    from backend.jobs import jobs_ahead
    from backend.serializers import asset_download_name

    services = _services(settings)
    item_id = resolve_id(services, "media_items", args.item_id, "media item", "see: parallax list")
    item = services.db.fetchone("SELECT * FROM media_items WHERE id = %s", (item_id,))
    latest = services.db.fetchall("SELECT * FROM latest_jobs WHERE media_id = %s ORDER BY task", (item_id,))
    assets = services.db.fetchall("SELECT * FROM derived_assets WHERE media_id = %s ORDER BY kind, variant", (item_id,))
    size = f"{item['width']}x{item['height']}" if item["width"] else "?"
    print(f"{item['id']}  {item['original_filename']}")
    print(
        f"  {item['kind']}, {item['mime_type']}, {size}, from {item['source']}, added {item['created_at']:%Y-%m-%d %H:%M}"
    )
    ahead = jobs_ahead(services, [j["id"] for j in latest])
    now = datetime.now(UTC)
    for job in latest:
        line = progress_line(job, now, ahead.get(str(job["id"])))
        reason = job["last_error"] if job["status"] == "failed" else job["skip_reason"]
        print(f"  {line}" + (f": {reason}" if reason else ""))
    for asset in assets:
        name = asset_download_name(asset, item["original_filename"])
        print(
            f"  result {asset['kind']}{' ' + asset['variant'] if asset['variant'] else ''}: {name}"
            f" ({asset['size_bytes']} bytes) /api/media/{item_id}/assets/{asset['id']}?download=1"
        )
    waiting = _waiting_line(services)
    if waiting:
        print(waiting)
    return 0


def cmd_requeue_skipped(settings: Settings, args) -> int:
    from backend import jobs

    services = _services(settings)
    requeued = jobs.requeue_skipped(services, args.task)
    print(f"queued {len(requeued)} skipped job(s)")
    for warning in _work_warnings(services, requeued):
        print(f"note: {warning}", file=sys.stderr)
    for task in jobs.TASKS:
        reason = jobs.skip_reason(settings, task)
        if reason and (args.task in (None, task)):
            print(f"  still off: {task}: {reason}")
    return 0


def cmd_recover(settings: Settings, args) -> int:
    from backend import jobs

    _print_json(jobs.reconcile(_services(settings)))
    return 0


def cmd_download_models(settings: Settings, args) -> int:
    """Fetch the configured models (or the ones named) into MODEL_CACHE_DIR, for offline use."""
    from ai.cli import main as ai_main

    argv = ["download-models", "--cache-dir", str(settings.model_cache_dir)]
    for name in args.depth_model or [settings.depth_model]:
        argv += ["--depth-model", name]
    for name in args.segmentation_model or [settings.segmentation_model]:
        argv += ["--segmentation-model", name]
    return ai_main(argv)


def worker_health(settings: Settings) -> int:
    """Exit 0 when a worker on this host sent a heartbeat recently (it expires when the worker dies or
    hangs): the worker container's healthcheck."""
    from redis import Redis

    from backend.worker import live_worker_heartbeats_in, this_host

    try:
        redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=5)
        alive = live_worker_heartbeats_in(redis, settings, this_host())
    except Exception as exc:
        print(f"unhealthy: cannot reach Redis ({first_line(exc)})", file=sys.stderr)
        return 1
    if not alive:
        print(f"unhealthy: no live worker on {this_host()}", file=sys.stderr)
        return 1
    print(f"ok: {', '.join(alive)}")
    return 0


def cmd_health(settings: Settings, args) -> int:
    if args.worker:
        return worker_health(settings)
    from backend.app import create_app

    app = create_app(settings)
    response = app.test_client().get("/api/health")
    _print_json(response.get_json())
    return 0 if response.get_json()["status"] == "ok" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parallax", description="Parallax: depth maps and cut-outs for an Immich library"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run everything: databases if needed, migrations, web server and worker")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--lan", action="store_true", help="serve the local network over HTTPS (HOST=0.0.0.0), for headsets")
    p.set_defaults(func=cmd_run)
    sub.add_parser("web", help="run only the web/API server (development server)").set_defaults(func=cmd_web)
    p = sub.add_parser("worker", help="run one worker")
    p.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    p.add_argument("--preload", action="store_true", help="load the enabled models before the first job")
    p.add_argument("--reconcile-interval", type=float, default=None, help="seconds between recovery sweeps")
    p.add_argument(
        "--queue",
        action="append",
        choices=QUEUE_PRIORITY,
        help="only this queue (repeatable; default all, highest priority first: import, default, bulk)",
    )
    p.set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="create the database if needed and apply migrations").set_defaults(func=cmd_migrate)
    p = sub.add_parser("health", help="check database, Redis, workers and ffmpeg")
    p.add_argument(
        "--worker", action="store_true", help="only check that a worker on this host is alive (container healthcheck)"
    )
    p.set_defaults(func=cmd_health)
    p = sub.add_parser("download-models", help="download the configured models into MODEL_CACHE_DIR")
    p.add_argument("--depth-model", action="append", help="model id or folder (repeatable); default DEPTH_MODEL")
    p.add_argument(
        "--segmentation-model", action="append", help="rembg model name (repeatable); default SEGMENTATION_MODEL"
    )
    p.set_defaults(func=cmd_download_models)
    p = sub.add_parser("upload", help="store files (or the photos and videos in folders) and queue their jobs")
    p.add_argument("files", nargs="+", metavar="FILE_OR_FOLDER")
    p.add_argument("-r", "--recursive", action="store_true", help="also upload from the folders' subfolders")
    p.add_argument("--watch", action="store_true", help="show progress until the jobs end")
    p.set_defaults(func=cmd_upload)
    p = sub.add_parser("list", help="list media items")
    p.add_argument("--kind", choices=("photo", "video"))
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("jobs", help="list jobs")
    p.add_argument("--status", choices=JOB_STATUSES)
    p.add_argument("--task", choices=TASK_NAMES)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_jobs)
    p = sub.add_parser("watch", help="show a job's progress until it ends")
    p.add_argument("job_id", help="a job id, or its first characters as `parallax jobs` prints them")
    p.set_defaults(func=cmd_watch)
    p = sub.add_parser("show", help="show one media item: its jobs' current state and its results")
    p.add_argument("item_id", help="an item id, or its first characters as `parallax list` prints them")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("requeue-skipped", help="queue skipped jobs whose feature flag is now on")
    p.add_argument("--task", choices=TASK_NAMES)
    p.set_defaults(func=cmd_requeue_skipped)
    sub.add_parser("recover", help="re-queue work Redis lost and jobs of dead workers").set_defaults(func=cmd_recover)
    add_immich_commands(sub, follow_job=watch)
    add_pairing_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        return args.func(settings, args) or 0
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SchemaError as exc:
        print(f"database error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = outage_message(exc, settings)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 3
