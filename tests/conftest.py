"""Shared fixtures: every test run gets its own PostgreSQL database, its own Redis database and queue,
and its own media folder, against the real servers (started under .data/ when none answers)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql as pgsql
from redis import Redis

from tests.openapi_check import SpecCheckingClient

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = uuid.uuid4().hex[:10]


def _base_urls() -> tuple[str, str]:
    return (
        os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


@pytest.fixture(scope="session")
def _servers():
    from backend.devstack import ensure_services

    db_url, redis_url = _base_urls()
    stack = ensure_services(db_url, redis_url, ROOT / ".data" / "test-services")
    yield db_url, redis_url
    stack.stop()


@pytest.fixture(scope="session")
def test_database(_servers) -> str:
    base, _ = _servers
    name = f"parallax_test_{RUN_ID}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    yield with_database(base, name)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))


@pytest.fixture(scope="session")
def test_redis(_servers) -> str:
    """Claim a Redis database index nobody else is using, for this run alone."""
    _, base = _servers
    root = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    for index in range(1, 16):
        client = Redis.from_url(f"{root}/{index}")
        if client.set("parallax:test-claim", RUN_ID, nx=True, ex=6 * 3600):
            if client.dbsize() == 1:
                yield f"{root}/{index}"
                client.flushdb()
                return
            client.delete("parallax:test-claim")
    pytest.fail("no free Redis database index (1-15) for this test run")


@pytest.fixture(scope="session")
def base_settings(test_database, test_redis, tmp_path_factory):
    from backend.settings import Settings

    env = {
        "DATABASE_URL": test_database,
        "REDIS_URL": test_redis,
        "QUEUE_NAME": f"parallax_test_{RUN_ID}",
        "DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "START_LOCAL_SERVICES": "false",
        "MODEL_CACHE_DIR": str(tmp_path_factory.mktemp("models")),
        "JOB_STALE_AFTER_SECONDS": "10",
        "JOB_MAX_ATTEMPTS": "3",
        # Tests start with every costly feature off and turn on what they exercise (make_app(enable_depth=True)).
        "ENABLE_DEPTH": "false",
        "ENABLE_BACKGROUND_REMOVAL": "false",
    }
    return Settings.from_env(env)


@pytest.fixture(scope="session")
def services(base_settings):
    from backend.db import migrate
    from backend.services import Services

    migrate(base_settings.database_url)  # once per run, as `python -m backend migrate` does
    svc = Services.create(base_settings)
    yield svc
    svc.close()


def _reset(services) -> None:
    with services.db.connection() as conn:
        conn.execute(
            "TRUNCATE media_items, processing_jobs, derived_assets, immich_import_runs, immich_sync_state CASCADE"
        )
    shutil.rmtree(services.storage.root, ignore_errors=True)
    services.storage.ensure()
    claim = services.redis.get("parallax:test-claim")
    services.redis.flushdb()
    if claim:
        services.redis.set("parallax:test-claim", claim, ex=6 * 3600)


@pytest.fixture
def make_app(services):
    """Build the Flask app with settings overridden for one test; the database starts empty."""
    from backend.app import create_app

    _reset(services)

    def build(**overrides):
        settings = services.settings.replace(**overrides)
        svc = dataclasses.replace(services, settings=settings)
        svc.__dict__.pop("queue", None)
        app = create_app(settings, svc)
        app.test_client_class = SpecCheckingClient  # every response is checked against the OpenAPI document
        return app

    return build


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


class WorkerProcess:
    """A real ``python -m backend worker`` process with the test's settings."""

    def __init__(self, settings, extra_env: dict | None = None, args: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.extra_env = extra_env or {}
        self.args = args  # more ``worker`` options, e.g. ("--queue", "import")
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(settings.data_dir) / f"worker-{uuid.uuid4().hex[:6]}.log"

    def start(self) -> WorkerProcess:
        env = {**os.environ, **self.settings.as_env(), **self.extra_env, "PYTHONUNBUFFERED": "1"}
        env.pop("API_KEY", None)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop(), after the process ends)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "worker", "--reconcile-interval", "1", *self.args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def freeze(self) -> None:
        """SIGSTOP: the process stays but does nothing (a hung worker)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen worker must run to handle SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def start_worker(services):
    started: list[WorkerProcess] = []

    def start(settings=None, args: tuple[str, ...] = (), **env) -> WorkerProcess:
        worker = WorkerProcess(settings or services.settings, {k: str(v) for k, v in env.items()}, args).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def upload_media(client, path: Path) -> dict:
    """POST a file to /api/media/upload; the 202 answer's body (the item and its jobs)."""
    with open(path, "rb") as fh:
        response = client.post("/api/media/upload", data={"media": (fh, path.name)})
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def job_of(body: dict, task: str) -> dict:
    """The job of ``task`` in an upload answer."""
    return next(j for j in body["jobs"] if j["task"] == task)


def wait_for_job(
    client,
    job_id: str,
    statuses=("completed", "failed", "cancelled", "skipped"),
    timeout: float = 120,
    worker: WorkerProcess | None = None,
) -> dict:
    deadline = time.monotonic() + timeout
    job = None
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").get_json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(
        f"job {job_id} still {job and job['status']} after {timeout}s"
        + (f"\nworker log:\n{worker.log()[-4000:]}" if worker else "")
    )


@pytest.fixture(scope="session")
def tiny_depth_model(tmp_path_factory) -> Path:
    """A randomly initialised Depth Anything saved like a real one (loaded through from_pretrained)."""
    from tests.tiny_models import build_tiny_depth_model

    return build_tiny_depth_model(tmp_path_factory.mktemp("tiny-depth"))


def worker_env(tiny_depth_model: Path, **extra) -> dict:
    """Environment for a worker that runs the tiny model fast on CPU."""
    from tests.tiny_models import TINY_DEPTH_INPUT_SIZE

    return {
        "DEPTH_INPUT_SIZE": TINY_DEPTH_INPUT_SIZE,
        "AI_DEVICE": "cpu",
        "AI_PRECISION": "fp32",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


class LiveStack:
    """The real backend served on a loopback port, with a real worker process behind it."""

    def __init__(self, url: str, worker: WorkerProcess, app) -> None:
        import requests

        self.url = url
        self.worker = worker
        self.app = app  # for app.test_client(): responses checked against the OpenAPI document
        self.api = requests.Session()
        self.api.request = self._prefixed(self.api.request)

    def _prefixed(self, request):
        def call(method, path, *args, **kwargs):
            kwargs.setdefault("timeout", 30)
            return request(method, path if path.startswith("http") else self.url + path, *args, **kwargs)

        return call


@pytest.fixture
def live_stack(make_app, tiny_depth_model, start_worker, tmp_path):
    """Backend + worker with every feature on, a tiny Depth Anything and a stand-in rembg model."""
    import threading

    from werkzeug.serving import make_server

    from tests.stand_in_onnx import build_stand_in_rembg_model

    models = tmp_path / "models"
    build_stand_in_rembg_model(models / "rembg", "isnet-general-use")
    app = make_app(
        enable_depth=True,
        enable_background_removal=True,
        enable_experimental_video=True,
        depth_model=str(tiny_depth_model),
        model_cache_dir=models,
        video_frame_extraction_fps=4.0,
        video_frame_height=96,
        allow_xr_emulation=True,  # the VR browser tests load the WebXR emulator (?xr-emulate=1)
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    worker = start_worker(
        app.extensions["parallax"].settings,
        **worker_env(tiny_depth_model, U2NET_HOME=models / "rembg", MODEL_CHECKSUM_DISABLED="1"),
    )
    yield LiveStack(f"http://127.0.0.1:{server.server_port}", worker, app)
    server.shutdown()
    thread.join(5)
