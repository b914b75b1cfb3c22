"""The worker process: RQ's SimpleWorker runs jobs in this process, so a model loaded for one job
stays loaded for the next (RQ's default worker forks a fresh process per job, which would reload
models every time and cannot share a CUDA context).

Time limits come from each job's ``job_timeout`` (RQ's SIGALRM death penalty works in-process).
Cancellation is cooperative: the job's progress reports see the cancelled status and stop.
A background thread sends heartbeats for the running job and reconciles PostgreSQL with Redis.
"""

from __future__ import annotations

import logging
import threading
import time

from rq import SimpleWorker

from backend import jobs
from backend.services import Services
from backend.tasks import runner
from backend.tasks.context import worker_name

log = logging.getLogger(__name__)


class ParallaxWorker(SimpleWorker):
    """Runs jobs in-process and keeps the models it loaded."""


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
        while not self.stopped.wait(self.heartbeat_s if next_reconcile else 0):
            try:
                job_id = runner.current_job_id
                if job_id:
                    self.services.db.execute(
                        "UPDATE processing_jobs SET heartbeat_at = now() WHERE id = %s AND status = 'processing'",
                        (job_id,),
                    )
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


def preload_models(services: Services) -> None:
    """Load the enabled models before the first job so its time limit isn't spent loading."""
    s = services.settings
    try:
        if s.enable_depth:
            from backend.tasks.depth import depth_model

            depth_model(s).load()
        if s.enable_background_removal:
            from backend.tasks.cutout import segmentation_model

            segmentation_model(s, s.segmentation_model).load()
    except Exception as exc:  # the job that needs it will fail with the reason
        log.warning("could not preload models: %s", exc)


def run_worker(
    services: Services, burst: bool = False, preload: bool = False, reconcile_s: float | None = None
) -> bool:
    runner.set_services(services)
    if preload:
        preload_models(services)
    supervisor = Supervisor(services, reconcile_s=reconcile_s or 10.0)
    supervisor.start()
    worker = ParallaxWorker([services.queue], connection=services.redis, name=f"parallax.{worker_name()}")
    log.info("worker %s listening on queue %r", worker.name, services.settings.queue_name)
    try:
        return worker.work(burst=burst, logging_level="INFO", with_scheduler=False)
    finally:
        supervisor.stopped.set()
