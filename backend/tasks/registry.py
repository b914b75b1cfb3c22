"""Every task the worker can run, and the statuses a job goes through: the one place to add a task.

A task names its handler as ``"module:function"`` (resolved when a job runs, so importing this module
loads no model code), the feature flags that must all be on for it to run, the kind of media item it
applies to (None: not tied to an item) and the RQ queue it goes to.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.settings import Settings
    from backend.tasks.context import TaskContext


class JobStatus(StrEnum):
    PENDING = "pending"  # recorded, not yet in Redis (new, or waiting out a retry backoff)
    QUEUED = "queued"  # in Redis, waiting for a worker
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # its feature flag was off

    @classmethod
    def active(cls) -> tuple[JobStatus, ...]:
        return (cls.PENDING, cls.QUEUED, cls.PROCESSING)

    @classmethod
    def finished(cls) -> tuple[JobStatus, ...]:
        return (cls.COMPLETED, cls.FAILED, cls.CANCELLED, cls.SKIPPED)


# Feature flag (environment variable) -> Settings field.
FLAGS = {
    "ENABLE_DEPTH": "enable_depth",
    "ENABLE_BACKGROUND_REMOVAL": "enable_background_removal",
    "ENABLE_EXPERIMENTAL_VIDEO": "enable_experimental_video",
    "ENABLE_DEPTH_VIDEO": "enable_depth_video",
    "ENABLE_STEREO": "enable_stereo",
    "IMMICH_WRITE_BACK": "immich_write_back",
}
# RQ queues, in the order a worker takes work from them (see docs/architecture.md "Queues"): Immich
# imports (and their retries, and the periodic sync) first, then work on what people upload or ask
# for, then the bulk backlog: the results of items imported from Immich.
IMPORT_QUEUE = "import"
DEFAULT_QUEUE = "default"  # the configured QUEUE_NAME
BULK_QUEUE = "bulk"
QUEUE_PRIORITY = (IMPORT_QUEUE, DEFAULT_QUEUE, BULK_QUEUE)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    handler: str  # "module:function" taking a TaskContext, returning the job's result dict
    media_kind: str | None  # photo | video | None (not tied to an item, or to one kind: immich_writeback)
    flags: tuple[str, ...]  # every one must be on
    title: str
    queue: str = DEFAULT_QUEUE
    automatic: bool = True  # run for every new item; False: only when asked for (stereo exports)

    def resolve(self) -> Callable[[TaskContext], dict[str, Any]]:
        module, func = self.handler.split(":")
        handler: Callable[[TaskContext], dict[str, Any]] = getattr(importlib.import_module(module), func)
        return handler

    def disabled_flags(self, settings: Settings) -> list[str]:
        return [flag for flag in self.flags if not getattr(settings, FLAGS[flag])]


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("depth", "backend.tasks.depth:photo_depth", "photo", ("ENABLE_DEPTH",), "Depth map"),
        TaskSpec(
            "cutout", "backend.tasks.cutout:photo_cutout", "photo", ("ENABLE_BACKGROUND_REMOVAL",), "Background removal"
        ),
        TaskSpec(
            "video_depth",
            "backend.tasks.depth:video_depth",
            "video",
            ("ENABLE_EXPERIMENTAL_VIDEO", "ENABLE_DEPTH"),
            "Depth frames",
        ),
        TaskSpec(
            "video_cutout",
            "backend.tasks.cutout:video_cutout",
            "video",
            ("ENABLE_EXPERIMENTAL_VIDEO", "ENABLE_BACKGROUND_REMOVAL"),
            "Cut-out video",
        ),
        TaskSpec(
            "depth_video",
            "backend.tasks.depth:depth_video",
            "video",
            ("ENABLE_EXPERIMENTAL_VIDEO", "ENABLE_DEPTH", "ENABLE_DEPTH_VIDEO"),
            "RGB-D video",
        ),
        TaskSpec(
            "stereo", "backend.tasks.stereo:photo_stereo", "photo", ("ENABLE_STEREO",), "Stereo 3D", automatic=False
        ),
        TaskSpec(
            "video_stereo",
            "backend.tasks.stereo:video_stereo",
            "video",
            ("ENABLE_EXPERIMENTAL_VIDEO", "ENABLE_STEREO"),
            "Stereo 3D video",
            automatic=False,
        ),
        # The frames a depth video would use (POST /api/video/frames): only when asked for.
        TaskSpec(
            "video_frames",
            "backend.tasks.frames:video_frames",
            "video",
            ("ENABLE_EXPERIMENTAL_VIDEO",),
            "Frame list",
            automatic=False,
        ),
        TaskSpec("immich_import", "backend.tasks.immich_import:run_import", None, (), "Immich import", IMPORT_QUEUE),
        # Uploading an Immich item's finished stereo export back into Immich (IMMICH_WRITE_BACK):
        # queued by the worker when that export completes (backend/immich/writeback.py). Network
        # work, no model: it goes with the imports, so results appear in Immich without waiting
        # behind the bulk backlog.
        TaskSpec(
            "immich_writeback",
            "backend.tasks.immich_writeback:run_writeback",
            None,
            ("IMMICH_WRITE_BACK",),
            "Immich write-back",
            IMPORT_QUEUE,
            automatic=False,
        ),
    )
}


def get_task(name: str) -> TaskSpec:
    return TASKS[name]


def tasks_for_kind(kind: str, automatic_only: bool = False) -> list[TaskSpec]:
    """The tasks that apply to an item of ``kind`` (with ``automatic_only``: the ones run for every new item)."""
    return [t for t in TASKS.values() if t.media_kind == kind and (t.automatic or not automatic_only)]


def job_queue(task: str, item_source: str | None = None) -> str:
    """The queue a job goes to: its task's, except that work on an item imported from Immich is
    the bulk backlog, which waits behind imports and whatever people upload."""
    queue = TASKS[task].queue
    return BULK_QUEUE if queue == DEFAULT_QUEUE and item_source == "immich" else queue


def queue_name(settings: Settings, queue: str) -> str:
    """The RQ name of a queue: QUEUE_NAME for the default queue, QUEUE_NAME-<queue> otherwise."""
    if queue not in QUEUE_PRIORITY:
        raise ValueError(f"unknown queue {queue!r}: one of {', '.join(QUEUE_PRIORITY)}")
    return settings.queue_name if queue == DEFAULT_QUEUE else f"{settings.queue_name}-{queue}"
