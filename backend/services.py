"""The process-wide handles every part of the backend uses: settings, database, Redis, storage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from redis import Redis
from rq import Queue

from backend.db import Database, check_schema
from backend.settings import Settings
from backend.storage import Storage
from backend.tasks.registry import QUEUE_PRIORITY, queue_name


@dataclass
class Services:
    settings: Settings
    db: Database
    redis: Redis
    storage: Storage
    # Not an init field: a copy made with dataclasses.replace (other settings, another Redis) gets
    # its own queues, bound to its own connection.
    _queues: dict[str, Queue] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def create(cls, settings: Settings, pool_size: int = 10) -> Services:
        """Open the handles. Migrations are not run here (``python -m backend migrate`` or the launcher
        applies them once); a database without the current schema stops start-up with SchemaError."""
        check_schema(settings.database_url)
        db = Database(settings.database_url, max_size=pool_size, timeout=settings.database_timeout_s).open()
        redis = Redis.from_url(
            settings.redis_url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30
        )
        storage = Storage(settings.media_root).ensure()
        return cls(settings=settings, db=db, redis=redis, storage=storage)

    @cached_property
    def queue(self) -> Queue:
        """The default queue (QUEUE_NAME)."""
        return self.queue_for(self.settings.queue_name)

    def queue_for(self, name: str) -> Queue:
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.redis)
        return self._queues[name]

    def all_queues(self, only: Iterable[str] | None = None) -> list[Queue]:
        """The queues a worker listens on, highest priority first (RQ takes the next job from the
        first queue that has one): every queue, or those named in ``only``."""
        wanted = QUEUE_PRIORITY if only is None else [q for q in QUEUE_PRIORITY if q in set(only)]
        return [self.queue_for(queue_name(self.settings, q)) for q in wanted]

    def close(self) -> None:
        self.db.close()
        self.redis.close()
