"""Migrations on an empty database, applied twice, and concurrently."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from psycopg import sql as pgsql

from backend.db import available_migrations, ensure_database, migrate
from tests.conftest import with_database


@pytest.fixture
def empty_database(test_database):
    base = psycopg.conninfo.make_conninfo(test_database, dbname="postgres")
    name = f"parallax_mig_{uuid.uuid4().hex[:8]}"
    url = with_database(test_database, name)
    yield url
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))


def _tables(url):
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_migrations_create_schema_on_an_empty_database(empty_database):
    assert ensure_database(empty_database) is True
    applied = migrate(empty_database)
    assert applied == [v for v, _, _ in available_migrations()]
    assert {"media_items", "processing_jobs", "derived_assets", "immich_sync_state", "schema_migrations"} <= _tables(
        empty_database
    )
    with psycopg.connect(empty_database) as conn:
        recorded = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert recorded == applied


def test_migrations_applied_twice_change_nothing(empty_database):
    ensure_database(empty_database)
    migrate(empty_database)
    assert ensure_database(empty_database) is False
    assert migrate(empty_database) == []


def test_concurrent_migrators_apply_each_version_once(empty_database):
    ensure_database(empty_database)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: migrate(empty_database), range(4)))
    assert sorted(v for r in results for v in r) == [v for v, _, _ in available_migrations()]


def test_web_app_and_cli_refuse_a_database_without_the_schema(empty_database, base_settings):
    """Migrations are applied by `python -m backend migrate` (or the launcher), never on import; a
    process started on a database without them stops with a message saying what to run."""
    import os
    import subprocess
    import sys

    from backend.app import create_app
    from backend.db import SchemaError
    from tests.conftest import ROOT

    ensure_database(empty_database)
    settings = base_settings.replace(database_url=empty_database)
    with pytest.raises(SchemaError, match="python -m backend migrate"):
        create_app(settings)
    env = {**os.environ, **settings.as_env()}
    listed = subprocess.run(
        [sys.executable, "-m", "backend", "list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 2 and "python -m backend migrate" in listed.stderr
    assert _tables(empty_database) == set(), "nothing was created behind the user's back"
    migrated = subprocess.run(
        [sys.executable, "-m", "backend", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr
    assert create_app(settings).test_client().get("/api/health").status_code in (200, 503)
