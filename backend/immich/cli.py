"""Command-line Immich commands: ``immich-test``, ``immich-import``, ``immich-status``, and for
write-back ``immich-writeback`` (queue what is missing) and ``immich-writeback-undo``.

``backend.cli`` adds them to ``python -m backend`` (``parallax``) through :func:`add_commands`, passing
its job follower (``watch``) along, so this module never imports ``backend.cli``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from backend.db import one
from backend.services import Services
from backend.settings import Settings


def _services(settings: Settings) -> Services:
    return Services.create(settings, pool_size=2)


# ``immich-import --wait`` exit codes: 0 every asset went through, 1 the run failed or was
# cancelled, 2 Immich is not configured, 3 the run completed but some assets failed.
EXIT_WITH_FAILURES = 3
SHOWN_REASONS = 10


def _run_line(run: dict) -> str:
    from backend.immich.importer import run_summary

    counts = (
        f"seen {run['seen']}, imported {run['imported']}, unchanged {run['unchanged']},"
        f" skipped {run['skipped']}, failed {run['failed']}"
    )
    if run["removed"] or run["restored"]:
        counts += f", removed {run['removed']}, restored {run['restored']}"
    started = run["started_at"].isoformat(timespec="seconds") if run["started_at"] else "not started"
    return f"{run['id']}  {run['mode']:11} {run_summary(run)}  {started}  {counts}"


def _reasons(title: str, entries: list[dict], total: int) -> list[str]:
    if not total:
        return []
    lines = [f"{title} ({total}):"]
    lines += [f"  {e['file_name']} ({e['asset_id']}): {e['reason']}" for e in entries[:SHOWN_REASONS]]
    if total > SHOWN_REASONS:
        lines.append(f"  ... and {total - SHOWN_REASONS} more (GET /api/immich/imports/<id>)")
    return lines


def cmd_immich_test(settings: Settings, args) -> int:
    from backend.immich.client import ImmichError
    from backend.immich.connection import check_connection
    from backend.immich.importer import ImmichImportError, make_client, server_label

    try:
        client = make_client(settings, timeout=(5, 15), retries=1, backoff=0.2)
    except ImmichImportError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        with client:
            report = check_connection(client, settings)
    except ImmichError as exc:
        print(f"connection test failed: {exc}", file=sys.stderr)
        return 1
    where = f"Immich {'.'.join(map(str, report.version))} at {server_label(settings.immich_url)}"
    if not report.ok:
        print(f"{where}: {report.missing_message()}", file=sys.stderr)
        return 1
    checked = "" if report.permissions is not None else " (this server cannot list the key's permissions)"
    print(f"{where}: the API key works and has the permissions Parallax needs{checked}")
    user, stats = report.user, report.statistics
    print(f"  user: {user.name} <{user.email}>" if user else "  user: (not shown)")
    print(f"  assets: {stats.images} photos, {stats.videos} videos" if stats else "  assets: (not counted)")
    for name, why in report.missing_optional.items():
        print(f"  optional permission missing: {name} ({why})")
    for warning in report.warnings:
        print(f"  note: {warning}")
    return 0


def cmd_immich_import(settings: Settings, args) -> int:
    from backend.immich.importer import ImmichImportError, ImportAlreadyRunning, get_run, start_import

    services = _services(settings)
    try:
        try:
            run, job = start_import(
                services, mode="full" if args.full else "incremental", album_ids=args.album or None, trigger="cli"
            )
        except ImmichImportError as exc:
            print(exc, file=sys.stderr)
            return 2
        except ImportAlreadyRunning as exc:
            print(f"{exc}; follow it with: parallax watch {exc.run['job_id']}", file=sys.stderr)
            return 1
        print(f"queued {run['mode']} import run {run['id']} (job {job['id']})")
        if not args.wait:
            print(f"follow it with: parallax watch {job['id']}  (a worker must be running)")
            return 0
        status = args.follow_job(services, str(job["id"]))
        run = one(get_run(services, run["id"]), "the import run")
        print(_run_line(run))
        for line in (
            _reasons("failed", run["failures"], run["failed"])
            + _reasons("skipped", run["skips"], run["skipped"])
            + _reasons("removed", run["removals"], run["removed"])
        ):
            print(line)
        if status == 0 and run["failed"]:
            return EXIT_WITH_FAILURES
        return status
    finally:
        services.close()


def cmd_immich_status(settings: Settings, args) -> int:
    from backend.immich.importer import active_run, is_configured, last_success, not_configured_message, server_label
    from backend.immich.writeback import status as writeback_status

    if not is_configured(settings):
        print(not_configured_message(settings))
    else:
        print(
            f"Immich: {server_label(settings.immich_url)}"
            + (f" (albums {', '.join(settings.immich_album_ids)})" if settings.immich_album_ids else "")
        )
    interval = settings.immich_sync_interval_minutes
    print(
        f"automatic sync: every {interval} min" if interval else "automatic sync: off (IMMICH_SYNC_INTERVAL_MINUTES=0)"
    )
    services = _services(settings)
    try:
        with services.db.connection() as conn:
            running = active_run(conn)
            runs = conn.execute(
                "SELECT * FROM immich_import_runs ORDER BY created_at DESC LIMIT %s", (args.limit,)
            ).fetchall()
        last_started = last_success(services)
        writeback = writeback_status(services)
    finally:
        services.close()
    last = last_started.isoformat(timespec="seconds") if last_started else "never"
    print(f"last successful import started: {last}")
    print(_writeback_line(writeback))
    print(f"running: {running['id']} ({running['status']})" if running else "running: none")
    for run in runs:
        print(_run_line(run))
    return 0


def _writeback_line(state: dict) -> str:
    """``state``: :func:`backend.immich.writeback.status`, which ``GET /api/immich/status`` shows too."""
    if state["enabled"]:
        line = f"write-back: on ({state['layout']} into album {state['album']!r}): {state['done']} uploaded"
    else:
        line = f"write-back: off (IMMICH_WRITE_BACK=false); {state['done']} uploads in Immich"
    extra = [
        f"{state[key]} {what}"
        for key, what in (
            ("in_progress", "being uploaded"),
            ("superseded", "replaced, to be removed"),
            ("jobs_waiting", "jobs waiting"),
            ("jobs_failed", "failed (parallax jobs --task immich_writeback --status failed)"),
        )
        if state[key]
    ]
    if extra:
        line += ", " + ", ".join(extra)
    if state["last_failure"]:
        line += f"; latest failure: {state['last_failure']['reason']}"
    return line


def cmd_immich_writeback(settings: Settings, args) -> int:
    from backend import jobs
    from backend.immich.importer import is_configured, not_configured_message
    from backend.immich.writeback import queue_missing

    if not is_configured(settings):
        print(not_configured_message(settings), file=sys.stderr)
        return 2
    if not settings.immich_write_back:
        print(
            "write-back is off: set IMMICH_WRITE_BACK=true (see docs/immich.md) and restart Parallax", file=sys.stderr
        )
        return 2
    services = _services(settings)
    try:
        counts = queue_missing(services)
    finally:
        services.close()
    print(
        f"queued {counts['uploads']} uploads and {counts['exports']} 3D versions to make first;"
        f" {counts['up_to_date']} up to date, {counts['busy']} already being worked on,"
        f" {counts['not_applicable']} not applicable (asset left Immich, or another server)"
    )
    if counts["stereo_off"]:
        reasons = sorted({r for r in (jobs.skip_reason(settings, t) for t in ("stereo", "video_stereo")) if r})
        print(f"{counts['stereo_off']} items cannot get a 3D version: {'; '.join(reasons)}", file=sys.stderr)
    if counts["uploads"] or counts["exports"]:
        print("a worker does the work: parallax jobs --task immich_writeback")
    return 0


def cmd_immich_writeback_undo(settings: Settings, args) -> int:
    from backend.immich.writeback import WritebackError, undo

    services = _services(settings)
    try:
        report = undo(services, force=args.force, say=print)
    except WritebackError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        services.close()
    where = "deleted for good" if args.force else "moved to Immich's trash (emptied by Immich after 30 days)"
    print(f"removed {report.removed} uploads from Immich: {where}")
    if report.already_gone:
        print(f"{report.already_gone} uploads were already deleted in Immich")
    if report.cancelled_jobs:
        print(f"cancelled {report.cancelled_jobs} write-back jobs that had not finished")
    for album in report.albums_deleted:
        print(f"album deleted: {album}")
    for album in report.albums_kept:
        print(f"album kept: {album}")
    if settings.immich_write_back:
        print(
            "note: IMMICH_WRITE_BACK is still true, so new 3D versions will be uploaded again;"
            " set it to false to stop that"
        )
    return 0


def add_commands(subparsers: argparse._SubParsersAction, follow_job: Callable[[Services, str], int]) -> None:
    """Add the Immich commands; ``follow_job(services, job_id)`` shows a job until it ends (exit code)."""
    p = subparsers.add_parser("immich-test", help="check the Immich URL and API key")
    p.set_defaults(func=cmd_immich_test)
    p = subparsers.add_parser("immich-import", help="import photos and videos from Immich (a worker does the work)")
    p.add_argument(
        "--full", action="store_true", help="list the whole library, not only what changed since the last import"
    )
    p.add_argument(
        "--album",
        action="append",
        metavar="ID",
        default=[],
        help="only assets in this album (repeatable; default IMMICH_ALBUM_IDS)",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="show a progress bar until the import ends; exit 0 only if every asset went through"
        f" ({EXIT_WITH_FAILURES}: completed with failures)",
    )
    p.set_defaults(func=cmd_immich_import, follow_job=follow_job)
    p = subparsers.add_parser("immich-status", help="Immich configuration and recent imports")
    p.add_argument("--limit", type=int, default=5, help="how many recent runs to list")
    p.set_defaults(func=cmd_immich_status)
    p = subparsers.add_parser(
        "immich-writeback",
        help="IMMICH_WRITE_BACK: queue the 3D versions and uploads Immich items still lack (a worker does the work)",
    )
    p.set_defaults(func=cmd_immich_writeback)
    p = subparsers.add_parser(
        "immich-writeback-undo", help="remove from Immich every 3D version Parallax uploaded, and the album it created"
    )
    p.add_argument("--force", action="store_true", help="delete them for good instead of moving them to the trash")
    p.set_defaults(func=cmd_immich_writeback_undo)
