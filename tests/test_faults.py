"""Fault scenarios end to end, against PRIVATE PostgreSQL and Redis servers on their own ports (so they
can be stopped and started without touching the shared ones): outages while a job runs, a killed
worker, a full disk. Each asserts that nothing is lost or duplicated and that the service answers."""

from __future__ import annotations

import dataclasses
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from backend.devstack import DevStack, reachable
from tests.conftest import ROOT, job_of, upload_media, wait_for_job, worker_env
from tests.media_factory import make_photo, make_video

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float = 60, what: str = "condition", interval: float = 0.1):
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class PrivateServers:
    """PostgreSQL and Redis of our own, started with the launcher's dev stack and stoppable at will."""

    def __init__(self, folder: Path) -> None:
        self.pg_port, self.redis_port = _free_port(), _free_port()
        self.database_url = f"postgresql://postgres@127.0.0.1:{self.pg_port}/parallax_faults"
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.stack = DevStack(folder)

    def start_postgres(self) -> None:
        assert self.stack.ensure_postgres(self.database_url)

    def start_redis(self) -> None:
        assert self.stack.ensure_redis(self.redis_url)

    def stop(self, name: str) -> None:
        """Stop one server abruptly for its clients: PostgreSQL's fast shutdown drops every connection."""
        for entry in list(self.stack.processes):
            found, proc = entry
            if found == name:
                if name == "postgres":  # the postmaster itself (it may run under runuser, which does not relay SIGINT)
                    pid = int((self.stack.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
                    os.kill(pid, signal.SIGINT)
                else:
                    proc.terminate()
                proc.wait(30)
                self.stack.processes.remove(entry)
        port = self.pg_port if name == "postgres" else self.redis_port
        assert not reachable("127.0.0.1", port, 0.5)

    def stop_all(self) -> None:
        self.stack.stop()


@pytest.fixture(scope="module")
def servers():
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    # Straight under the system's temp folder, opened to others: PostgreSQL may run as another user,
    # who cannot enter pytest's private temp folders, nor a checkout inside a private folder.
    folder = Path(tempfile.mkdtemp(prefix="parallax-fault-servers-"))
    folder.chmod(0o755)
    private = PrivateServers(folder)
    try:
        private.start_postgres()
        private.start_redis()
        yield private
    finally:
        private.stop_all()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def stack(servers, base_settings, tmp_path):
    """Settings, services and app on the private servers, with an empty database and media folder."""
    from backend.app import create_app
    from backend.db import ensure_database, migrate
    from backend.services import Services

    for name, start in (("postgres", servers.start_postgres), ("redis", servers.start_redis)):
        if not any(found == name for found, _ in servers.stack.processes):
            start()  # a previous test left it stopped on failure
    ensure_database(servers.database_url)
    migrate(servers.database_url)
    settings = base_settings.replace(
        database_url=servers.database_url,
        redis_url=servers.redis_url,
        data_dir=tmp_path,
        media_root=tmp_path / "media",
        job_stale_after_s=5,
        database_timeout_s=1.0,
    )
    services = Services.create(settings)
    with services.db.connection() as conn:
        conn.execute("TRUNCATE media_items, processing_jobs, derived_assets CASCADE")
    services.redis.flushdb()
    app = create_app(settings, services)
    yield app
    services.close()


def _db_job(app, job_id: str) -> dict:
    return app.extensions["parallax"].db.fetchone("SELECT * FROM processing_jobs WHERE id = %s", (job_id,))


def _depth_video_settings(app, tiny_depth_model):
    """A video depth job that runs for several seconds on the tiny model, reporting progress per frame."""
    return app.extensions["parallax"].settings.replace(
        enable_depth=True,
        enable_background_removal=False,
        enable_experimental_video=True,
        depth_model=str(tiny_depth_model),
        video_frame_extraction_fps=15.0,
        video_max_frames=300,
        video_frame_height=64,
    )


def _with_settings(app, settings):
    """The app again with other settings, on the same database and Redis."""
    from backend.app import create_app
    from backend.storage import Storage

    svc = dataclasses.replace(
        app.extensions["parallax"], settings=settings, storage=Storage(settings.media_root).ensure()
    )
    svc.__dict__.pop("queue", None)
    return create_app(settings, svc)


def _wait_processing(app, job_id: str, at_least: int = 3) -> None:
    def running():
        job = _db_job(app, job_id)
        assert job["status"] in ("pending", "queued", "processing"), job
        return job["status"] == "processing" and job["progress_done"] >= at_least

    wait_until(running, 120, f"job {job_id} to make progress")


def _video_job_running(stack, start_worker, tiny_depth_model, folder: Path, seconds: float):
    """A video depth job under way on a fresh worker: (app, client, job, worker)."""
    app = _with_settings(stack, _depth_video_settings(stack, tiny_depth_model))
    client = app.test_client()
    body = upload_media(client, make_video(folder / "v.mp4", seconds=seconds, fps=15, width=96, height=64))
    job = job_of(body, "video_depth")
    worker = start_worker(app.extensions["parallax"].settings, **worker_env(tiny_depth_model))
    _wait_processing(app, job["id"])
    return app, client, job, worker


def test_worker_rides_out_a_redis_outage(stack, servers, start_worker, tiny_depth_model, tmp_path):
    app, client, job, worker = _video_job_running(stack, start_worker, tiny_depth_model, tmp_path, seconds=20)

    servers.stop("redis")
    # The job goes on and its outcome lands in PostgreSQL; RQ's own bookkeeping fails meanwhile.
    done = wait_until(lambda: _db_job(app, job["id"])["status"] in ("completed", "failed"), 180, "the job to end")
    assert done and _db_job(app, job["id"])["status"] == "completed", worker.log()[-3000:]
    wait_until(lambda: "waiting for Redis" in worker.log(), 60, "the worker to wait for Redis")
    assert worker.proc.poll() is None, worker.log()[-3000:]
    # The API keeps answering: health says which dependency is down.
    health = client.get("/api/health")
    assert health.status_code == 503 and health.get_json()["checks"]["redis"]["ok"] is False

    servers.start_redis()
    wait_until(lambda: "Redis answers again" in worker.log(), 60, "the worker to reconnect")
    # The same worker process takes the next job.
    photo = upload_media(client, make_photo(tmp_path / "p.jpg"))
    assert wait_for_job(client, job_of(photo, "depth")["id"], worker=worker)["status"] == "completed"
    assert worker.proc.poll() is None
    final = _db_job(app, job["id"])
    assert final["status"] == "completed" and final["attempts"] == 1
    kinds = [a["kind"] for a in app.extensions["parallax"].db.fetchall("SELECT kind FROM derived_assets")]
    # The video's depth frames and the photo's depth map, once each. The video's RGB-D video job
    # (queued behind them) may have finished too by now: whether it has is timing, not the point.
    assert kinds.count("depth_frames") == 1 and kinds.count("depth") == 1, kinds
    assert set(kinds) <= {"depth", "depth_frames", "depth_video"} and len(kinds) == len(set(kinds)), kinds


def test_worker_keeps_a_finished_result_through_a_database_outage(
    stack, servers, start_worker, tiny_depth_model, tmp_path
):
    app, client, job, worker = _video_job_running(stack, start_worker, tiny_depth_model, tmp_path, seconds=8)

    servers.stop("postgres")
    # The work finishes while the database is down; the worker holds the result and keeps trying.
    wait_until(lambda: "database unavailable while storing the result" in worker.log(), 180, "the result to wait")
    health = client.get("/api/health")
    assert health.status_code == 503 and health.get_json()["checks"]["database"]["ok"] is False
    assert worker.proc.poll() is None

    servers.start_postgres()
    wait_until(lambda: client.get("/api/health").status_code == 200, 60, "the API to see the database again")
    final = wait_for_job(client, job["id"], worker=worker, timeout=120)
    assert final["status"] == "completed" and final["attempts"] == 1, final
    db = app.extensions["parallax"].db
    assert db.fetchone("SELECT count(*) AS n FROM derived_assets WHERE job_id = %s", (job["id"],))["n"] == 1
    tmp = app.extensions["parallax"].storage.tmp
    assert list(tmp.glob(f"job-{job['id']}-*")) == []
    # The RGB-D video queued behind it may be writing its own temporary file by now; once every job of
    # the item has ended, the temporary folder is empty.
    for other in db.fetchall("SELECT id FROM processing_jobs WHERE media_id = %s", (job["media_id"],)):
        assert wait_for_job(client, str(other["id"]), worker=worker, timeout=120)["status"] in ("completed", "skipped")
    assert list(tmp.iterdir()) == []


def test_nothing_is_lost_or_duplicated_when_redis_loses_its_queue_and_a_worker_is_killed(
    stack, servers, start_worker, tiny_depth_model, tmp_path
):
    app = _with_settings(stack, _depth_video_settings(stack, tiny_depth_model))
    client = app.test_client()
    settings = app.extensions["parallax"].settings
    photos = [upload_media(client, make_photo(tmp_path / f"p{n}.jpg", seed=n)) for n in range(3)]
    video = upload_media(client, make_video(tmp_path / "v.mp4", seconds=8, fps=15, width=96, height=64))
    # Redis restarts empty (it keeps nothing on disk): every queued job vanishes from it.
    servers.stop("redis")
    servers.start_redis()
    assert app.extensions["parallax"].redis.dbsize() == 0
    first = start_worker(settings, **worker_env(tiny_depth_model))
    video_job = job_of(video, "video_depth")["id"]
    _wait_processing(app, video_job)
    first.kill()  # SIGKILL in the middle of the video
    second = start_worker(settings, **worker_env(tiny_depth_model))
    for body in [*photos, video]:
        for job in (j for j in body["jobs"] if j["status"] != "skipped"):
            assert wait_for_job(client, job["id"], worker=second, timeout=180)["status"] == "completed"
    assert _db_job(app, video_job)["attempts"] == 2
    db = app.extensions["parallax"].db
    # One job per item and task, one result per item and kind: nothing ran twice into the record.
    jobs_per_task = db.fetchall("SELECT count(*) AS n FROM processing_jobs GROUP BY media_id, task")
    assert all(r["n"] == 1 for r in jobs_per_task)
    per_item = db.fetchall("SELECT media_id, kind, count(*) AS n FROM derived_assets GROUP BY media_id, kind")
    assert all(r["n"] == 1 for r in per_item)
    kinds = {r["kind"] for r in per_item}
    assert {"depth", "depth_frames"} <= kinds
    assert list(app.extensions["parallax"].storage.tmp.iterdir()) == []


def _stored_files(app) -> list[Path]:
    root = app.extensions["parallax"].storage.root
    return [p for p in root.rglob("*") if p.is_file()]


def test_database_outage_answers_503_fast_and_stores_nothing(stack, servers, tmp_path):
    client = stack.test_client()
    photo = make_photo(tmp_path / "p.jpg")
    servers.stop("postgres")

    started = time.monotonic()
    health = client.get("/api/health")
    assert time.monotonic() - started < 2.0  # the pool would wait DATABASE_TIMEOUT_SECONDS
    assert health.status_code == 503
    checks = health.get_json()["checks"]
    assert checks["database"]["ok"] is False and checks["redis"]["ok"] is True

    with open(photo, "rb") as fh:
        upload = client.post("/api/media/upload", data={"media": (fh, "p.jpg")})
    assert upload.status_code == 503, upload.get_json()
    assert upload.headers["Retry-After"].isdigit()
    assert upload.get_json()["error"]["message"].startswith("database unavailable, try again")
    assert client.get("/api/media").status_code == 503
    assert _stored_files(stack) == []  # nothing half-stored

    servers.start_postgres()
    wait_until(lambda: client.get("/api/health").status_code == 200, 60, "the database to be seen again")
    body = upload_media(client, photo)
    listed = client.get("/api/media").get_json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == body["item"]["id"]


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs for MEDIA_ROOT (needs the right to mount; skipped where it is missing)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> Path:
    """Write a file until the disk is full; it is the filler to remove to free the space again."""
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def test_full_disk_answers_507_and_a_job_that_cannot_write_retries_later(
    stack, small_disk, start_worker, tiny_depth_model, tmp_path
):
    settings = stack.extensions["parallax"].settings.replace(
        media_root=small_disk / "media",
        enable_depth=True,
        enable_background_removal=False,
        depth_model=str(tiny_depth_model),
    )
    app = _with_settings(stack, settings)
    client = app.test_client()
    # An upload larger than the free space: a clear 507, no trace left.
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(4 * 1024 * 1024))
    with open(big, "rb") as fh:
        response = client.post("/api/media/upload", data={"media": (fh, "big.mp4")})
    assert response.status_code == 507, response.get_json()
    assert response.get_json()["error"]["message"].startswith("not enough space on the server")
    assert _stored_files(app) == []
    assert client.get("/api/health").status_code == 200

    # A photo is stored, then the disk fills up before its depth job writes a result.
    body = upload_media(client, make_photo(tmp_path / "p.jpg", 480, 360))
    job_id = job_of(body, "depth")["id"]
    filler = _fill(small_disk)
    worker = start_worker(settings, **worker_env(tiny_depth_model))

    def failed_for_space():
        job = client.get(f"/api/jobs/{job_id}").get_json()
        assert job["status"] != "completed", job
        return job if job.get("error_kind") == "disk_full" else None

    job = wait_until(failed_for_space, 120, "the job to fail for lack of space")
    assert job["status"] == "pending" and job["error"].startswith("not enough space on the server")
    filler.unlink()
    final = wait_for_job(client, job_id, worker=worker, timeout=120)
    assert final["status"] == "completed" and final["attempts"] == 2, final
    assert client.get(f"/api/media/{body['item']['id']}/depth").status_code == 200


# --- the launcher: a dead child is restarted; the children end when the launcher ends --------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has ended; it only waits to be reaped


class LauncherProcess:
    """``python -m backend run`` on a free port, as a user runs it: ``run | tee out``, its
    log (stderr) in a file."""

    def __init__(self, settings, folder: Path) -> None:
        self.port = _free_port()
        self.log_path = folder / f"launcher-{self.port}.log"
        self.out_path = folder / f"launcher-{self.port}.out"
        env = {
            **os.environ,
            **settings.as_env(),
            "PORT": str(self.port),
            "START_LOCAL_SERVICES": "false",
            "PYTHONUNBUFFERED": "1",
        }
        self.tee = subprocess.Popen(["tee", str(self.out_path)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "backend", "run"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self.tee.stdin,
                stderr=log,
                start_new_session=True,
            )
        self.tee.stdin.close()  # the pipe is now between the launcher and tee alone

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pids(self, name: str) -> list[int]:
        return [int(p) for p in re.findall(rf"started {name} \(pid (\d+)\)", self.log())]

    def children(self) -> list[int]:
        return self.pids("web") + self.pids("worker")

    def answers(self) -> int | None:
        import requests

        try:
            return requests.get(f"http://127.0.0.1:{self.port}/api/health", timeout=5).status_code
        except requests.RequestException:
            return None

    def wait_ready(self) -> None:
        wait_until(lambda: "Parallax is running" in self.output(), 90, "the launcher to start")
        wait_until(lambda: self.answers() == 200, 90, "the web server to answer")
        wait_until(lambda: self.pids("worker"), 30, "the worker to start")

    def ended(self) -> None:
        """Assert that the launcher and every child ended and nothing holds the port."""
        self.proc.wait(60)
        for pid in self.children():
            wait_until(lambda pid=pid: not _alive(pid), 60, f"child {pid} to end\n{self.log()[-3000:]}")
        wait_until(lambda: not reachable("127.0.0.1", self.port, 0.5), 30, "the port to be released")

    def kill(self) -> None:
        for proc in (self.proc, self.tee):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for pid in self.children():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def launch(base_settings, tmp_path):
    started: list[LauncherProcess] = []

    def start() -> LauncherProcess:
        launcher = LauncherProcess(base_settings, tmp_path)
        started.append(launcher)
        launcher.wait_ready()
        return launcher

    yield start
    for launcher in started:
        launcher.kill()


def test_launcher_restarts_a_child_that_died(launch):
    launcher = launch()
    web, worker = launcher.pids("web"), launcher.pids("worker")
    os.kill(worker[0], signal.SIGKILL)
    answers = []

    def restarted():
        answers.append(launcher.answers())
        return len(launcher.pids("worker")) == 2

    wait_until(restarted, 60, "the worker to be started again")
    assert "worker exited with code -9; restarting it" in launcher.log()
    assert launcher.proc.poll() is None and launcher.pids("web") == web  # the rest kept running
    assert set(answers) <= {200, 503}, answers  # the API answered all along
    assert _alive(launcher.pids("worker")[1])


def test_launcher_gives_up_on_a_child_that_keeps_dying(caplog):
    import io

    from backend.launcher import Child, Output, Supervisor

    crasher = Child("crasher", [sys.executable, "-c", "raise SystemExit(3)"], signal.SIGTERM)
    output = io.StringIO()
    supervisor = Supervisor([crasher], dict(os.environ), Output(output, lambda: None), restart_limit=2)
    supervisor.start_all()
    code = wait_until(lambda: supervisor.check(time.monotonic()), 30, "the launcher to give up")
    assert code == 3
    assert caplog.text.count("crasher exited with code 3; restarting it") == 2
    assert "crasher exited with code 3, 3 times within 10 min; giving up" in caplog.text


@pytest.mark.parametrize("how", ["sigkill", "sighup", "ctrl-c with tee"])
def test_children_end_when_the_launcher_ends(launch, how):
    launcher = launch()
    if how == "sigkill":  # no chance to clean up: the kernel's parent-death signal ends the children
        launcher.proc.kill()
    elif how == "sighup":  # the terminal was closed
        launcher.proc.send_signal(signal.SIGHUP)
    else:  # `run | tee log`, Ctrl-C: both get SIGINT, tee exits at once and the launcher's stdout breaks
        launcher.tee.send_signal(signal.SIGINT)
        launcher.tee.wait(10)
        launcher.proc.send_signal(signal.SIGINT)
    launcher.ended()


# --- slow clients --------------------------------------------------------------------------------------


class SlowUploader(threading.Thread):
    """An upload that sends its body at about 1 KB/s; ``status`` is the HTTP status it got back."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.status: int | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        boundary = "slowslowslow"
        head = (
            f"POST /api/media/upload HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 1000000\r\n\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="media"; filename="slow.jpg"\r\n\r\n'
        ).encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=120) as sock:
            sock.sendall(head)
            while not self.stop.is_set():
                readable, _, _ = select.select([sock], [], [], 0.1)  # also paces the drip: 100 B / 0.1 s
                if readable:
                    break
                try:
                    sock.sendall(b"x" * 100)
                except OSError:  # the server stopped reading: its answer is waiting
                    break
            reply = sock.recv(200).decode("latin-1")
        if reply.startswith("HTTP/1.1 "):
            self.status = int(reply.split()[1])


def test_slow_uploads_do_not_starve_the_api(services, tmp_path):
    """The web server as deployed (backend/gunicorn_conf.py), with two dozen uploads at 1 KB/s."""
    base_settings = services.settings  # the fixture has migrated the test database
    port = _free_port()
    env = {
        **os.environ,
        **base_settings.as_env(),
        "PORT": str(port),
        "START_LOCAL_SERVICES": "false",
        "BODY_IDLE_TIMEOUT_SECONDS": "2",
        "BODY_MIN_RATE_KB": "10",
    }
    with open(tmp_path / "gunicorn.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:backend.gunicorn_conf", "backend.wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: reachable("127.0.0.1", port, 0.5), 60, "gunicorn to listen")
        uploaders = [SlowUploader(port) for _ in range(24)]  # as many as in the report: 1 KB/s each
        for uploader in uploaders:
            uploader.start()
        # While they trickle, the API answers (each call bounded by its own timeout).
        for _ in range(5):
            assert requests.get(f"http://127.0.0.1:{port}/api/media", timeout=5).status_code == 200
            assert any(u.is_alive() for u in uploaders)
        for uploader in uploaders:
            uploader.join(60)
        assert [u.status for u in uploaders] == [408] * 24, (tmp_path / "gunicorn.log").read_text()[-3000:]
        assert list((base_settings.media_root / "tmp").glob("*.upload")) == []  # partial uploads removed
    finally:
        server.terminate()
        server.wait(30)


def test_postgres_data_folder_the_service_user_cannot_enter_is_named(tmp_path):
    """As root, PostgreSQL runs as 'postgres'; a data folder under a private folder (here pytest's,
    like /root or a `mktemp -d` checkout) stops start-up with the folder to fix, not initdb's error."""
    import pwd

    from backend.devstack import DevStackError

    if os.geteuid() != 0:
        pytest.skip("only root starts PostgreSQL as another user")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no 'postgres' user")
    private = tmp_path / "private"
    (private / "data").mkdir(parents=True)
    private.chmod(0o700)
    port = _free_port()
    with pytest.raises(DevStackError) as stopped:
        DevStack(private / "data").ensure_postgres(f"postgresql://postgres@127.0.0.1:{port}/x")
    message = str(stopped.value)
    assert "'postgres' user, who cannot enter" in message and "DATA_DIR" in message
    assert str(private) in message or str(tmp_path) in message
    assert not reachable("127.0.0.1", port)
