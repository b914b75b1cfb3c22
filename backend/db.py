"""PostgreSQL through psycopg 3: a connection pool and versioned SQL migrations."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

log = logging.getLogger(__name__)
R = TypeVar("R")

MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same in every process that migrates.
MIGRATION_LOCK_ID = 7_231_004
# What a lost or unreachable server looks like to a caller: the pool found no working connection in
# time, or the server went away under a query (restart, network). Errors in our SQL are not these.
UNAVAILABLE_ERRORS = (PoolTimeout, psycopg.OperationalError)
RECONNECT_GIVE_UP_S = 5.0


class Database:
    """A small wrapper around a psycopg pool; rows come back as dicts."""

    def __init__(self, url: str, min_size: int = 1, max_size: int = 10, timeout: float = 30.0) -> None:
        self.url = url
        # ``timeout`` bounds how long a caller waits for a connection, so an outage answers fast instead
        # of hanging; ``check`` replaces connections a server restart broke before anyone gets one; a
        # short ``reconnect_timeout`` ends the pool's own doubling back-off early, so the next request
        # after an outage starts a fresh attempt rather than waiting out a long delay.
        self.pool: ConnectionPool[psycopg.Connection[DictRow]] = ConnectionPool(
            url,
            connection_class=psycopg.Connection[DictRow],
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=timeout,
            check=ConnectionPool.check_connection,
            reconnect_timeout=RECONNECT_GIVE_UP_S,
            kwargs={"row_factory": dict_row, "autocommit": False, "connect_timeout": max(int(timeout), 2)},
        )

    def open(self, wait: bool = True, timeout: float = 10.0) -> Database:
        self.pool.open(wait=wait, timeout=timeout)
        return self

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[DictRow]]:
        """A connection in a transaction: committed on success, rolled back on error."""
        with self.pool.connection() as conn:
            yield conn

    def fetchone(self, sql: str, params: Any = None) -> dict | None:
        with self.connection() as conn:
            return conn.execute(sql, params).fetchone()

    def fetchrow(self, sql: str, params: Any = None) -> dict:
        """The one row of a query that always returns one (an aggregate, INSERT ... RETURNING)."""
        return one(self.fetchone(sql, params))

    def fetchall(self, sql: str, params: Any = None) -> list[dict]:
        with self.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Any = None) -> int:
        with self.connection() as conn:
            return conn.execute(sql, params).rowcount

    def ping(self) -> None:
        with self.connection() as conn:
            conn.execute("SELECT 1")


def one(row: R | None, what: str = "a row") -> R:
    """The row of a statement that always returns one (INSERT ... RETURNING, an aggregate, a row
    locked earlier in the same transaction); LookupError when it did not."""
    if row is None:
        raise LookupError(f"expected {what}, got none")
    return row


def retry_while_unavailable(
    fn: Callable[[], Any], what: str, stop: threading.Event | None = None, max_delay_s: float = 10.0
) -> Any:
    """Run ``fn`` until it gets past a database outage, backing off between tries: for work whose
    outcome must not be lost (a finished job's result), so it is recorded once the server is back.
    Other errors propagate at once. ``stop`` (set on shutdown) ends the waiting with the last error."""
    delay = 0.5
    while True:
        try:
            return fn()
        except UNAVAILABLE_ERRORS as exc:
            log.warning("database unavailable while %s (%s); trying again in %.1f s", what, _first_line(exc), delay)
            if stop is not None and stop.wait(delay):
                raise
            if stop is None:
                time.sleep(delay)  # back-off between reconnection attempts
            delay = min(delay * 2, max_delay_s)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def jsonb(value: Any) -> Jsonb:
    return Jsonb(value)


def available_migrations() -> list[tuple[str, str, str]]:
    """(version, name, sql) for every file in backend/migrations, in order."""
    found = []
    for entry in resources.files("backend.migrations").iterdir():
        match = MIGRATION_NAME.match(entry.name)
        if match:
            found.append((match.group(1), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(url: str) -> list[str]:
    """Apply pending migrations in order, each in its own transaction. Safe to run concurrently
    (an advisory lock serialises migrators) and repeatedly (applied versions are recorded).
    Returns the versions applied by this call."""
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0]: row[1] for row in conn.execute("SELECT version, checksum FROM schema_migrations")}
            for version, name, sql in available_migrations():
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if version in done:
                    if done[version] != checksum:
                        log.warning("migration %s_%s changed after it was applied; not re-applied", version, name)
                    continue
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (version, name, checksum),
                    )
                log.info("applied migration %s_%s", version, name)
                applied_now.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    return applied_now


class SchemaError(RuntimeError):
    """The database lacks tables or migrations this code needs; the message says how to fix it."""


def check_schema(url: str) -> None:
    """Raise SchemaError unless every migration of this code has been applied to ``url``."""
    wanted = {version: name for version, name, _sql in available_migrations()}
    fix = "run `python -m backend migrate` (the launcher `python -m backend run` does it for you)"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            found = conn.execute("SELECT to_regclass('schema_migrations') AS t").fetchone()
            if found is None or found[0] is None:
                raise SchemaError(f"the database has no Parallax schema yet: {fix}")
            applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    except psycopg.OperationalError as exc:
        if "does not exist" in str(exc):
            raise SchemaError(f"the database does not exist yet: {fix}") from exc
        raise
    missing = [f"{v}_{n}" for v, n in sorted(wanted.items()) if v not in applied]
    if missing:
        raise SchemaError(f"the database schema is out of date (missing {', '.join(missing)}): {fix}")


def ensure_database(url: str) -> bool:
    """Create the database named in ``url`` if the server lacks it. Returns True if it was created."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    name = str(info.get("dbname") or "")
    if not name:
        return False
    admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
        return True
