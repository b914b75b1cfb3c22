"""What a task handler gets: the job, its media item, parameters, progress reporting and a safe way
to store results as derived assets."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ai.errors import Cancelled, InvalidMediaError
from backend import thumbnails
from backend.db import jsonb, one
from backend.schemas import TaskParameters, describe_validation_error
from backend.services import Services

log = logging.getLogger(__name__)


class TaskContext:
    PROGRESS_INTERVAL_S = 0.5

    def __init__(self, services: Services, job: dict, item: dict | None) -> None:
        self.services = services
        self.settings = services.settings
        self.job = job
        self.item = item
        self.parameters: dict = dict(job.get("parameters") or {})
        self._last_report = 0.0
        self._temps: list[Path] = []
        self._lock = threading.Lock()

    @property
    def job_id(self) -> str:
        return str(self.job["id"])

    @property
    def media(self) -> dict:
        """The job's media item; every task but an Immich import has one (checked before it runs)."""
        if self.item is None:
            raise RuntimeError(f"job {self.job_id} ({self.job['task']}) has no media item")
        return self.item

    @property
    def source_path(self) -> Path:
        return self.services.storage.path(self.media["storage_path"])

    def param(self, name: str, default: Any) -> Any:
        value = self.parameters.get(name)
        return default if value is None else value

    def options(self) -> TaskParameters:
        """The job's parameters checked with the API's model (same bounds as the endpoints): a job
        stored with a bad one fails with the reason instead of reaching the pipeline."""
        try:
            return TaskParameters.model_validate(self.parameters)
        except ValidationError as exc:
            raise InvalidMediaError(f"the job's parameters are not valid: {describe_validation_error(exc)}") from None

    def progress(self, done: int, total: int | None, stage: str, force: bool = False) -> None:
        """Record progress (throttled) and stop with Cancelled if the job was cancelled meanwhile."""
        now = time.monotonic()
        if not force and now - self._last_report < self.PROGRESS_INTERVAL_S and (total is None or done < total):
            return
        self._last_report = now
        row = self.services.db.fetchone(
            "UPDATE processing_jobs SET progress_done = %s, progress_total = %s, stage = %s, heartbeat_at = now(),"
            " updated_at = now() WHERE id = %s AND status = 'processing' RETURNING id",
            (done, total, stage[:200], self.job_id),
        )
        if row is None:
            raise Cancelled(f"job {self.job_id} was cancelled")

    def temp_path(self, suffix: str) -> Path:
        # Named after the job, so a rerun can sweep what a killed attempt left behind.
        path = self.services.storage.temp_path(suffix, prefix=f"job-{self.job_id}-")
        self._temps.append(path)
        return path

    def sweep_previous_attempts(self) -> None:
        for stale in self.services.storage.tmp.glob(f"job-{self.job_id}-*"):
            stale.unlink(missing_ok=True)

    def cleanup(self) -> None:
        for path in self._temps:
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def store_asset(
        self,
        tmp: Path,
        *,
        kind: str,
        filename: str,
        mime_type: str,
        variant: str = "",
        model: str | None = None,
        parameters: dict | None = None,
        width: int | None = None,
        height: int | None = None,
        metadata: dict | None = None,
    ) -> dict:
        """Move a finished result next to its item and record it, replacing an earlier result of the
        same kind and variant: the file is renamed into place and the row upserted, so a rerun never
        leaves a half-written file or a duplicate row."""
        storage = self.services.storage
        item_id = self.media["id"]
        rel = f"{storage.item_rel(item_id)}/{filename}"
        size = tmp.stat().st_size
        with self.services.db.connection() as conn:
            # Only a job still running may publish (a cancelled one must not).
            running = conn.execute(
                "SELECT 1 FROM processing_jobs WHERE id = %s AND status = 'processing' FOR UPDATE", (self.job_id,)
            ).fetchone()
            if running is None:
                raise Cancelled(f"job {self.job_id} was cancelled")
            old = conn.execute(
                "SELECT path FROM derived_assets WHERE media_id = %s AND kind = %s AND variant = %s",
                (item_id, kind, variant),
            ).fetchone()
            row = conn.execute(
                "INSERT INTO derived_assets (id, media_id, job_id, kind, variant, model, parameters, path, mime_type,"
                " size_bytes, width, height, metadata) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (media_id, kind, variant) DO UPDATE SET job_id = EXCLUDED.job_id, model = EXCLUDED.model,"
                " parameters = EXCLUDED.parameters, path = EXCLUDED.path, mime_type = EXCLUDED.mime_type,"
                " size_bytes = EXCLUDED.size_bytes, width = EXCLUDED.width, height = EXCLUDED.height,"
                " metadata = EXCLUDED.metadata, created_at = now() RETURNING *",
                (
                    uuid.uuid4(),
                    item_id,
                    self.job_id,
                    kind,
                    variant,
                    model,
                    jsonb(parameters or {}),
                    rel,
                    mime_type,
                    size,
                    width,
                    height,
                    jsonb(metadata or {}),
                ),
            ).fetchone()
            storage.place(tmp, rel)
        if old and old["path"] != rel:
            storage.remove(old["path"])
            storage.remove(thumbnails.thumbnail_rel(old["path"]))
        thumbnails.make_quietly(storage, rel, mime_type, (metadata or {}).get("duration"))
        return one(row)

    def heartbeat(self) -> None:
        self.services.db.execute(
            "UPDATE processing_jobs SET heartbeat_at = now() WHERE id = %s AND status = 'processing'", (self.job_id,)
        )


def worker_name() -> str:
    return f"{os.uname().nodename}.{os.getpid()}"
