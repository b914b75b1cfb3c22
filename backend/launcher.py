"""``python -m backend run``: everything in one terminal. Starts PostgreSQL and Redis under DATA_DIR
when the configured ones do not answer, applies migrations (once, here: the web server and workers
only check the schema), then runs the web server and the worker(s), with their logs prefixed. The
worker is the only process that loads models.

A child that dies is started again (after a short, growing delay) up to RESTART_LIMIT times within
RESTART_WINDOW_S; past that the launcher stops everything and exits with an error. The children end
when the launcher ends, however it ends: Ctrl-C, SIGTERM, a closed terminal (SIGHUP), a closed output
pipe (``run | tee log`` stopped with Ctrl-C) or SIGKILL (the kernel's parent-death signal).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TextIO

from backend.db import ensure_database, migrate
from backend.devstack import ensure_services
from backend.lifetime import end_with_parent
from backend.settings import Settings
from backend.tls import Serving, prepare_serving

log = logging.getLogger("parallax.run")
COLOURS = {"web": "36", "worker": "35"}
RESTART_LIMIT = 5
RESTART_WINDOW_S = 600.0
STOP_GRACE_S = 20.0


class Output:
    """Where the launcher and its children write. When the reader goes away (``| tee`` stopped by
    Ctrl-C, a closed terminal) writes fail: from then on lines are dropped, ``on_lost`` is called once
    (the launcher then stops everything) and stdout points at /dev/null so nothing else trips on it."""

    def __init__(self, stream: TextIO, on_lost) -> None:
        self.stream = stream
        self.on_lost = on_lost
        self.lost = False
        self.tty = stream.isatty()
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            if self.lost:
                return
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):  # BrokenPipeError, EIO from a closed terminal, closed file
                self.lost = True
                try:
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, self.stream.fileno())
                    os.close(devnull)
                except (OSError, ValueError):
                    pass
                self.on_lost()

    def pump(self, name: str, stream) -> None:
        """Copy a child's output, prefixed with its name, until it closes (also after the reader is
        gone: a child blocked on a full pipe would never stop)."""
        prefix = (
            f"\033[{COLOURS.get(name.rstrip('0123456789'), '0')}m{name:>7}\033[0m | " if self.tty else f"{name:>7} | "
        )
        for line in iter(stream.readline, ""):
            self.write(prefix + line)
        stream.close()


@dataclass
class Child:
    name: str
    cmd: list[str]
    death_signal: int  # what the kernel sends it if the launcher dies without cleaning up
    proc: subprocess.Popen | None = None
    exits: deque = field(default_factory=deque)  # times it died on its own, within the window
    restart_at: float | None = None


class Supervisor:
    """Starts the children, restarts one that died (within limits) and stops them all."""

    def __init__(
        self,
        children: list[Child],
        env: dict[str, str],
        output: Output,
        restart_limit: int = RESTART_LIMIT,
        restart_window_s: float = RESTART_WINDOW_S,
    ) -> None:
        self.children = children
        self.env = env
        self.output = output
        self.restart_limit = restart_limit
        self.restart_window_s = restart_window_s

    def start(self, child: Child) -> None:
        # Its own session, so Ctrl-C in the terminal reaches only us and we stop the children in order;
        # started from the main thread, so the parent-death signal is tied to the launcher's life.
        child.proc = subprocess.Popen(
            child.cmd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
            preexec_fn=end_with_parent(child.death_signal),
        )
        child.restart_at = None
        log.info("started %s (pid %s)", child.name, child.proc.pid)
        threading.Thread(target=self.output.pump, args=(child.name, child.proc.stdout), daemon=True).start()

    def start_all(self) -> None:
        for child in self.children:
            self.start(child)

    def check(self, now: float) -> int | None:
        """Restart children that died; an exit code when one died too often and everything must stop."""
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self.start(child)
                continue
            code = child.proc.poll() if child.proc is not None else None
            if code is None:
                continue
            child.exits.append(now)
            while child.exits and child.exits[0] < now - self.restart_window_s:
                child.exits.popleft()
            if len(child.exits) > self.restart_limit:
                log.error(
                    "%s exited with code %s, %d times within %.0f min; giving up and stopping everything",
                    child.name,
                    code,
                    len(child.exits),
                    self.restart_window_s / 60,
                )
                return code or 1
            delay = min(2.0 ** (len(child.exits) - 1), 30.0)
            log.error(
                "%s exited with code %s; restarting it in %.0f s (restart %d of at most %d within %.0f min)",
                child.name,
                code,
                delay,
                len(child.exits),
                self.restart_limit,
                self.restart_window_s / 60,
            )
            child.restart_at = now + delay
        return None

    def stop_all(self) -> None:
        running = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in self.children:
            if child.proc is None:
                continue
            proc = child.proc
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", child.name, STOP_GRACE_S)
            # Whatever it started (gunicorn's workers, ffmpeg) goes with it: its session is its process group.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()


def web_server_command(serving: Serving, *options: str) -> list[str]:
    """gunicorn with the one config file; command-line options (the TLS files, ``options``) win over it."""
    return [
        sys.executable, "-m", "gunicorn", "-c", "python:backend.gunicorn_conf",
        *serving.gunicorn_args, *options, "backend.wsgi:app",
    ]  # fmt: skip


def child_commands(serving: Serving, workers: int) -> list[Child]:
    # The web server stops gracefully on SIGTERM; a worker is killed outright (a warm stop would finish
    # its job first, long after the launcher is gone) and its job is recovered by the next sweep.
    children = [Child("web", web_server_command(serving), signal.SIGTERM)]
    for n in range(workers):
        name = "worker" if workers == 1 else f"worker{n + 1}"
        children.append(Child(name, [sys.executable, "-m", "backend", "worker"], signal.SIGKILL))
    return children


def run_all(settings: Settings, workers: int = 1) -> int:
    stopping = threading.Event()
    # A closed terminal (SIGHUP) stops everything like Ctrl-C; SIGPIPE stays ignored (Python's default)
    # so a closed output pipe shows up as a failed write, which Output turns into a stop.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stopping.set())
    output = Output(sys.stdout, on_lost=stopping.set)
    stack = None
    supervisor = None
    try:
        serving = prepare_serving(settings)  # beyond loopback: HTTPS and an API key
        settings = serving.settings
        if settings.start_local_services:
            stack = ensure_services(settings.database_url, settings.redis_url, settings.data_dir)
        ensure_database(settings.database_url)
        applied = migrate(settings.database_url)
        if applied:
            log.info("applied migrations %s", ", ".join(applied))
        env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"}
        supervisor = Supervisor(child_commands(serving, workers), env, output)
        supervisor.start_all()
        output.write(f"\n{serving.banner()}\n\n")
        exit_code = 0
        while not stopping.wait(0.5):
            failed = supervisor.check(time.monotonic())
            if failed is not None:
                exit_code = failed
                break
        return exit_code
    finally:
        output.write("\nstopping...\n")
        if supervisor is not None:
            supervisor.stop_all()
        if stack is not None:
            stack.stop()
        output.write("stopped.\n")
