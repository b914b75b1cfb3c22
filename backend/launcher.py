"""``python -m backend run``: everything in one terminal. Starts PostgreSQL and Redis under DATA_DIR
when the configured ones do not answer, applies migrations (once, here: the web server and workers
only check the schema), then runs the web server and the worker(s), with their logs prefixed, and stops
all of it cleanly on Ctrl-C. The worker is the only process that loads models."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from backend.db import ensure_database, migrate
from backend.devstack import ensure_services
from backend.settings import Settings
from backend.tls import Serving, prepare_serving

log = logging.getLogger("parallax.run")
COLOURS = {"web": "36", "worker": "35"}


def _pump(name: str, stream, tty: bool) -> None:
    prefix = f"\033[{COLOURS.get(name, '0')}m{name:>6}\033[0m | " if tty else f"{name:>6} | "
    for line in iter(stream.readline, ""):
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


def web_server_command(serving: Serving, *options: str) -> list[str]:
    """gunicorn with the one config file; command-line options (the TLS files, ``options``) win over it."""
    return [
        sys.executable, "-m", "gunicorn", "-c", "python:backend.gunicorn_conf",
        *serving.gunicorn_args, *options, "backend.wsgi:app",
    ]  # fmt: skip


def run_all(settings: Settings, workers: int = 1) -> int:
    serving = prepare_serving(settings)  # beyond loopback: HTTPS and an API key
    settings = serving.settings
    stack = None
    if settings.start_local_services:
        stack = ensure_services(settings.database_url, settings.redis_url, settings.data_dir)
    ensure_database(settings.database_url)
    applied = migrate(settings.database_url)
    if applied:
        log.info("applied migrations %s", ", ".join(applied))
    env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"}
    commands = {
        "web": web_server_command(serving),
    }
    for n in range(workers):
        commands["worker" if workers == 1 else f"worker{n + 1}"] = [sys.executable, "-m", "backend", "worker"]
    children: dict[str, subprocess.Popen] = {}
    tty = sys.stdout.isatty()
    stopping = threading.Event()

    def stop(*_args) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for name, cmd in commands.items():
            proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
            children[name] = proc
            threading.Thread(target=_pump, args=(name, proc.stdout, tty), daemon=True).start()
        print(f"\n{serving.banner()}\n", flush=True)
        exit_code = 0
        while not stopping.wait(0.5):
            for name, proc in children.items():
                if proc.poll() is not None:
                    log.error("%s exited with code %s; stopping everything", name, proc.returncode)
                    exit_code = proc.returncode or 1
                    stopping.set()
        return exit_code
    finally:
        print("\nstopping...", flush=True)
        for proc in children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for name, proc in children.items():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
                proc.kill()
        if stack is not None:
            stack.stop()
        print("stopped.", flush=True)
