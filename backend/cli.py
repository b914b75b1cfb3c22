"""``python -m backend`` (or ``parallax``): run the service, a worker, and manage media and jobs."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from backend.settings import Settings, SettingsError, get_settings

TERMINAL = ("completed", "failed", "cancelled", "skipped")


def _services(settings: Settings):
    from backend.services import Services

    # Import downloads run in threads that each need a connection.
    return Services.create(settings, pool_size=settings.immich_import_concurrency + 2)


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def cmd_run(settings: Settings, args) -> int:
    from backend.launcher import run_all

    return run_all(settings, workers=args.workers, with_ai=not args.no_ai)


def cmd_web(settings: Settings, args) -> int:
    from backend.app import create_app

    create_app(settings).run(host=settings.host, port=settings.port, threaded=True)
    return 0


def cmd_worker(settings: Settings, args) -> int:
    from backend.worker import run_worker

    services = _services(settings)
    try:
        run_worker(services, burst=args.burst, preload=args.preload, reconcile_s=args.reconcile_interval)
    finally:
        services.close()
    return 0


def cmd_migrate(settings: Settings, args) -> int:
    from backend.db import ensure_database, migrate

    ensure_database(settings.database_url)
    applied = migrate(settings.database_url)
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


def cmd_upload(settings: Settings, args) -> int:
    from ai.errors import InvalidMediaError
    from backend.media_service import ingest_file
    from backend.serializers import item_json, job_json

    services = _services(settings)
    status = 0
    for name in args.files:
        src = Path(name)
        if not src.is_file():
            print(f"{name}: no such file", file=sys.stderr)
            status = 1
            continue
        tmp = services.storage.temp_path(".upload")
        shutil.copyfile(src, tmp)
        try:
            result = ingest_file(services, tmp, src.name)
        except InvalidMediaError as exc:
            print(f"{name}: rejected: {exc}", file=sys.stderr)
            status = 1
            continue
        item = item_json(result.item, settings)
        word = "stored" if result.created else "already stored as"
        print(f"{name}: {word} {item['id']} ({item['kind']}, {item['width']}x{item['height']})")
        for job in result.jobs:
            j = job_json(job)
            print(
                f"  job {j['id']} {j['task']}: {j['status']}" + (f" ({j['skip_reason']})" if j["skip_reason"] else "")
            )
        if args.watch:
            for job in result.jobs:
                if job["status"] not in TERMINAL:
                    status |= watch(services, str(job["id"]))
    services.close()
    return status


def cmd_list(settings: Settings, args) -> int:
    services = _services(settings)
    rows = services.db.fetchall(
        "SELECT m.id, m.kind, m.original_filename, m.width, m.height, m.created_at,"
        " (SELECT string_agg(l.task || ':' || l.status, ' ' ORDER BY l.task) FROM latest_jobs l WHERE l.media_id = m.id) AS jobs"
        " FROM media_items m WHERE (%(kind)s::text IS NULL OR m.kind = %(kind)s) ORDER BY m.created_at DESC LIMIT %(n)s",
        {"kind": args.kind, "n": args.limit},
    )
    for r in rows:
        print(
            f"{r['id']}  {r['kind']:5}  {r['width']}x{r['height']}  {r['original_filename'][:40]:40}  {r['jobs'] or ''}"
        )
    if not rows:
        print("no media items")
    return 0


def cmd_jobs(settings: Settings, args) -> int:
    services = _services(settings)
    rows = services.db.fetchall(
        "SELECT * FROM processing_jobs WHERE (%(s)s::text IS NULL OR status = %(s)s) AND (%(t)s::text IS NULL OR task = %(t)s)"
        " ORDER BY created_at DESC LIMIT %(n)s",
        {"s": args.status, "t": args.task, "n": args.limit},
    )
    for j in rows:
        progress = f"{j['progress_done']}/{j['progress_total'] or '?'}"
        note = j["last_error"] or j["skip_reason"] or j["stage"] or ""
        print(f"{j['id']}  {j['task']:12} {j['status']:10} {progress:>9}  {note[:80]}")
    if not rows:
        print("no jobs")
    return 0


def watch(services, job_id: str, interval: float = 0.5) -> int:
    """Show a job's progress bar until it ends; exit code 0 only if it completed."""
    from tqdm import tqdm

    from backend.jobs import get_job

    job = get_job(services, job_id)
    if job is None:
        print(f"no job {job_id}", file=sys.stderr)
        return 2
    bar = tqdm(total=job["progress_total"] or None, desc=f"{job['task']} {str(job['id'])[:8]}", unit="step")
    try:
        while True:
            job = get_job(services, job_id)
            if job["progress_total"] and bar.total != job["progress_total"]:
                bar.total = job["progress_total"]
            bar.n = job["progress_done"]
            bar.set_postfix_str(f"{job['status']}: {job['stage'] or ''}"[:60])
            bar.refresh()
            if job["status"] in TERMINAL:
                break
            time.sleep(interval)
    finally:
        bar.close()
    message = job["last_error"] or job["skip_reason"] or ""
    print(f"{job['task']} {job['id']}: {job['status']}" + (f": {message}" if message else ""))
    return 0 if job["status"] == "completed" else 1


def cmd_watch(settings: Settings, args) -> int:
    return watch(_services(settings), args.job_id)


def cmd_requeue_skipped(settings: Settings, args) -> int:
    from backend import jobs

    services = _services(settings)
    requeued = jobs.requeue_skipped(services, args.task)
    print(f"queued {len(requeued)} skipped job(s)")
    for task in jobs.TASKS:
        reason = jobs.skip_reason(settings, task)
        if reason and (args.task in (None, task)):
            print(f"  still off: {task}: {reason}")
    return 0


def cmd_recover(settings: Settings, args) -> int:
    from backend import jobs

    _print_json(jobs.reconcile(_services(settings)))
    return 0


def cmd_health(settings: Settings, args) -> int:
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
    p = sub.add_parser("run", help="run everything: databases if needed, web, worker, AI service")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--no-ai", action="store_true", help="do not start the AI HTTP service")
    p.set_defaults(func=cmd_run)
    sub.add_parser("web", help="run only the web/API server (development server)").set_defaults(func=cmd_web)
    p = sub.add_parser("worker", help="run one worker")
    p.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    p.add_argument("--preload", action="store_true", help="load the enabled models before the first job")
    p.add_argument("--reconcile-interval", type=float, default=None, help="seconds between recovery sweeps")
    p.set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="create the database if needed and apply migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("health", help="check database, Redis, workers and ffmpeg").set_defaults(func=cmd_health)
    p = sub.add_parser("upload", help="store files and queue their jobs")
    p.add_argument("files", nargs="+")
    p.add_argument("--watch", action="store_true", help="show progress until the jobs end")
    p.set_defaults(func=cmd_upload)
    p = sub.add_parser("list", help="list media items")
    p.add_argument("--kind", choices=("photo", "video"))
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("jobs", help="list jobs")
    p.add_argument("--status")
    p.add_argument("--task")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_jobs)
    p = sub.add_parser("watch", help="show a job's progress until it ends")
    p.add_argument("job_id")
    p.set_defaults(func=cmd_watch)
    p = sub.add_parser("requeue-skipped", help="queue skipped jobs whose feature flag is now on")
    p.add_argument("--task")
    p.set_defaults(func=cmd_requeue_skipped)
    sub.add_parser("recover", help="re-queue work Redis lost and jobs of dead workers").set_defaults(func=cmd_recover)
    try:
        from backend.immich.cli import add_commands
    except ImportError:
        pass
    else:
        add_commands(sub)
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
    return args.func(settings, args) or 0
