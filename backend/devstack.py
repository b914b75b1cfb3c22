"""Embedded defaults for a machine that has no PostgreSQL or Redis running: when the configured
loopback address does not answer, start a private server under DATA_DIR as a child process."""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from psycopg.conninfo import conninfo_to_dict

from backend.lifetime import end_with_parent

log = logging.getLogger("parallax.devstack")
LOOPBACK = {"127.0.0.1", "localhost", "::1", ""}


class DevStackError(RuntimeError):
    pass


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait(host: str, port: int, what: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if reachable(host, port, 0.5):
            return
        if proc.poll() is not None:
            raise DevStackError(f"{what} exited with code {proc.returncode} while starting; see its log above")
        time.sleep(0.2)
    raise DevStackError(f"{what} did not start listening on {host}:{port} within {seconds:.0f} s")


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _as_service_user(cmd: list[str]) -> tuple[list[str], str | None]:
    """PostgreSQL refuses to run as root: run it as the 'postgres' system user when we are root."""
    if os.geteuid() != 0:
        return cmd, None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise DevStackError(
            "running as root and there is no 'postgres' user to run PostgreSQL as;"
            " install PostgreSQL (apt-get install postgresql) or set DATABASE_URL"
        ) from None
    return ["runuser", "-u", "postgres", "--", *cmd], "postgres"


def _check_reachable_by(user: str, folder: Path) -> None:
    """Stop with the reason when ``user`` cannot enter ``folder`` (a private folder above it, such
    as /root or a ``mktemp -d``), instead of initdb's bare "permission denied"."""
    if subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(folder)], check=False).returncode == 0:
        return
    blocked = next((p for p in reversed(folder.parents) if not os.stat(p).st_mode & 0o001), folder)
    raise DevStackError(
        f"PostgreSQL runs as the '{user}' user, who cannot enter {blocked} to reach its data folder {folder};"
        " set DATA_DIR to a folder it can reach, or let others enter the folder (chmod o+x), or set DATABASE_URL"
        " to a running server"
    )


@dataclass
class DevStack:
    data_dir: Path
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def ensure_postgres(self, url: str) -> bool:
        info = conninfo_to_dict(url)
        host, port = str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432)
        if reachable(host, port):
            return False
        if host not in LOOPBACK:
            raise DevStackError(f"PostgreSQL at {host}:{port} (DATABASE_URL) is not reachable")
        initdb, postgres = _postgres_bin("initdb"), _postgres_bin("postgres")
        if not (initdb and postgres):
            raise DevStackError(
                f"PostgreSQL at {host}:{port} is not reachable and PostgreSQL is not installed;"
                " install it (apt-get install postgresql) or point DATABASE_URL at a server"
            )
        pgdata = (self.data_dir / "postgres").resolve()
        pgdata.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(pgdata, "postgres", "postgres")
            os.chmod(pgdata, 0o700)
            _check_reachable_by("postgres", pgdata)
        if not (pgdata / "PG_VERSION").exists():
            cmd, _ = _as_service_user(
                [
                    initdb,
                    "-D",
                    str(pgdata),
                    "-U",
                    str(info.get("user") or "postgres"),
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ]
            )
            log.info("initialising a PostgreSQL data folder in %s", pgdata)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        cmd, _ = _as_service_user(
            [
                postgres,
                "-D",
                str(pgdata),
                "-c",
                "listen_addresses=127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(pgdata),
                "-c",
                "fsync=on",
            ]
        )
        log.info("starting PostgreSQL on 127.0.0.1:%s (data in %s)", port, pgdata)
        proc = self._spawn("postgres", cmd)
        _wait(host, port, "PostgreSQL", proc)
        return True

    def ensure_redis(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return False
        host, port = parts.hostname or "127.0.0.1", parts.port or 6379
        if reachable(host, port):
            return False
        if host not in LOOPBACK:
            raise DevStackError(f"Redis at {host}:{port} (REDIS_URL) is not reachable")
        server = shutil.which("redis-server")
        if not server:
            raise DevStackError(
                f"Redis at {host}:{port} is not reachable and redis-server is not installed;"
                " install it (apt-get install redis-server) or point REDIS_URL at a server"
            )
        folder = (self.data_dir / "redis").resolve()
        folder.mkdir(parents=True, exist_ok=True)
        # Redis only carries work (PostgreSQL is the record), so it keeps nothing on disk.
        cmd = [
            server,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(folder),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ]
        log.info("starting Redis on 127.0.0.1:%s", port)
        proc = self._spawn("redis", cmd)
        _wait(host, port, "Redis", proc)
        return True

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        logs = (self.data_dir / "logs").resolve()
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as out:
            # Its own session: Ctrl-C in the terminal reaches us, and we stop it in order; and it ends
            # with us if we are killed without a chance to stop it.
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=end_with_parent(signal.SIGTERM),
            )
        log.info("%s log: %s", name, logs / f"{name}.log")
        self.processes.append((name, proc))
        return proc

    def stop(self) -> None:
        for _name, proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()  # postgres: SIGTERM is a "smart" shutdown; redis saves nothing
        for _name, proc in reversed(self.processes):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.processes.clear()


def ensure_services(database_url: str, redis_url: str, data_dir: Path) -> DevStack:
    stack = DevStack(Path(data_dir))
    try:
        stack.ensure_postgres(database_url)
        stack.ensure_redis(redis_url)
    except Exception:
        stack.stop()
        raise
    return stack
