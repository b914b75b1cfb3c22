"""The worker process: RQ's SimpleWorker runs jobs in this process, so a model loaded for one job
stays loaded for the next (RQ's default worker forks a fresh process per job, which would reload
models every time and cannot share a CUDA context).

Time limits come from each job's ``job_timeout`` (RQ's SIGALRM death penalty works in-process).
Cancellation is cooperative: the job's progress reports see the cancelled status and stop.
A background thread sends heartbeats for the running job and for the worker itself (what
``python -m backend health --worker`` checks) and reconciles PostgreSQL with Redis.

Outages: RQ stops its work loop when Redis fails under it (for example while it records a finished
job), so :func:`run_worker` waits for Redis to answer and starts listening again; the job's outcome is
already in PostgreSQL, the record that counts. A PostgreSQL outage is ridden out by the job runner.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterable

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import SimpleWorker

from backend import jobs
from backend.services import Services
from backend.settings import Settings
from backend.tasks import runner
from backend.tasks.context import worker_name

log = logging.getLogger(__name__)


class ParallaxWorker(SimpleWorker):
    """Runs jobs in-process and keeps the models it loaded."""


def heartbeat_key(settings: Settings, name: str) -> str:
    """Redis key a live worker refreshes; it expires when the worker dies or hangs."""
    return f"parallax:worker-heartbeat:{settings.queue_name}:{name}"


def live_worker_heartbeats_in(redis: Redis, settings: Settings, host: str | None = None) -> list[str]:
    """Names of workers (on ``host``, or anywhere) whose heartbeat has not expired."""
    pattern = heartbeat_key(settings, f"{host}.*" if host else "*")
    return sorted(k.decode().rsplit(":", 1)[-1] for k in redis.scan_iter(match=pattern))


def this_host() -> str:
    return os.uname().nodename  # the first part of worker_name()


class Supervisor(threading.Thread):
    """Heartbeats for the running job and periodic recovery of lost or pending work."""

    def __init__(self, services: Services, heartbeat_s: float = 5.0, reconcile_s: float = 10.0) -> None:
        super().__init__(name="parallax-supervisor", daemon=True)
        self.services = services
        self.heartbeat_s = heartbeat_s
        self.reconcile_s = reconcile_s
        self.stopped = threading.Event()

    def run(self) -> None:
        next_reconcile = 0.0
        key = heartbeat_key(self.services.settings, worker_name())
        while not self.stopped.wait(self.heartbeat_s if next_reconcile else 0):
            running = runner.current_context
            try:  # first, and on its own: the job's heartbeat goes to PostgreSQL even while Redis is down
                if running is not None:
                    running.heartbeat()
            except Exception as exc:
                log.warning("supervisor: job heartbeat: %s", exc)
            try:
                self.services.redis.set(key, str(time.time()), ex=max(int(self.heartbeat_s * 3), 15))
                if time.monotonic() >= next_reconcile:
                    jobs.reconcile(self.services)
                    self.services.storage.sweep_temp()
                    schedule_immich_sync(self.services)
                    next_reconcile = time.monotonic() + self.reconcile_s
            except Exception as exc:  # never let the supervisor die: log and try again
                log.warning("supervisor: %s", exc)
                next_reconcile = time.monotonic() + self.reconcile_s


def schedule_immich_sync(services: Services) -> None:
    """Start an incremental Immich import when IMMICH_SYNC_INTERVAL_MINUTES says one is due."""
    if not services.settings.immich_sync_interval_minutes:
        return
    from backend.immich.importer import maybe_schedule_sync

    maybe_schedule_sync(services)


def import_pipeline_libraries(services: Services) -> None:
    """Import the enabled pipelines' libraries before taking jobs (``ai.models.import_libraries``):
    a time limit that fired inside a first ``import torch`` could leave a job stuck as processing."""
    s = services.settings
    try:
        from ai.models import import_libraries

        import_libraries(depth=s.enable_depth, segmentation=s.enable_background_removal)
    except Exception as exc:  # the job that needs them will fail with the reason
        log.warning("could not import the pipelines' libraries: %s", exc)


def preload_models(services: Services) -> None:
    """Load the enabled models before the first job so its time limit isn't spent loading."""
    s = services.settings
    try:
        if s.enable_depth:
            from backend.tasks.depth import depth_model

            depth_model(s).load()
        if s.enable_background_removal:
            from backend.tasks.cutout import segmentation_model

            segmentation_model(s).load()
    except Exception as exc:  # the job that needs it will fail with the reason
        log.warning("could not preload models: %s", exc)


def run_worker(
    services: Services,
    burst: bool = False,
    preload: bool = False,
    reconcile_s: float | None = None,
    queues: Iterable[str] | None = None,
) -> bool:
    """Work until stopped. ``queues`` (default: all) names the queues to listen on; they are taken
    in priority order whatever order they are given in (see registry.QUEUE_PRIORITY)."""
    runner.set_services(services)
    import_pipeline_libraries(services)
    if preload:
        preload_models(services)
    supervisor = Supervisor(services, reconcile_s=reconcile_s or 10.0)
    supervisor.start()
    listened = services.all_queues(queues)
    worked = False
    incarnation = 0
    try:
        while True:
            incarnation += 1
            # A fresh name after a restart: the old one may still be registered in Redis.
            suffix = f".{incarnation}" if incarnation > 1 else ""
            worker = ParallaxWorker(listened, connection=services.redis, name=f"parallax.{worker_name()}{suffix}")
            log.info(
                "worker %s listening on queue(s) %s, in that order", worker.name, ", ".join(q.name for q in listened)
            )
            try:
                worked = worker.work(burst=burst, logging_level="INFO", with_scheduler=False) or worked
            except (RedisConnectionError, RedisTimeoutError) as exc:  # raised while starting or stopping
                log.warning("worker %s: Redis failed (%s)", worker.name, exc)
            # Asked to stop (SIGTERM/SIGINT), or a burst that emptied the queue: done.
            if worker._shutdown_requested_date is not None or (burst and _redis_answers(services)):
                return worked
            log.warning("worker %s stopped on a Redis error; waiting for Redis to listen again", worker.name)
            if not wait_for_redis(services):
                return worked
    finally:
        supervisor.stopped.set()
        try:
            services.redis.delete(heartbeat_key(services.settings, worker_name()))
        except Exception:  # Redis gone: the key expires by itself
            pass


def _redis_answers(services: Services) -> bool:
    try:
        return bool(services.redis.ping())
    except (RedisConnectionError, RedisTimeoutError):
        return False


def wait_for_redis(services: Services, max_delay_s: float = 10.0) -> bool:
    """Back off until Redis answers (True) or SIGTERM/SIGINT asks the worker to stop (False)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    delay = 0.5
    try:
        while not _redis_answers(services):
            if stop.wait(delay):
                log.info("stopping while waiting for Redis")
                return False
            delay = min(delay * 2, max_delay_s)
        log.info("Redis answers again")
        return True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
