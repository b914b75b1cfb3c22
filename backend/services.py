"""The process-wide handles every part of the backend uses: settings, database, Redis, storage."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from redis import Redis
from rq import Queue

from backend.db import Database, ensure_database, migrate
from backend.settings import Settings
from backend.storage import Storage


@dataclass
class Services:
    settings: Settings
    db: Database
    redis: Redis
    storage: Storage

    @classmethod
    def create(cls, settings: Settings, run_migrations: bool = True, pool_size: int = 10) -> Services:
        if run_migrations:
            ensure_database(settings.database_url)
            migrate(settings.database_url)
        db = Database(settings.database_url, max_size=pool_size).open()
        redis = Redis.from_url(
            settings.redis_url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30
        )
        storage = Storage(settings.media_root).ensure()
        return cls(settings=settings, db=db, redis=redis, storage=storage)

    @cached_property
    def queue(self) -> Queue:
        return Queue(self.settings.queue_name, connection=self.redis)

    def close(self) -> None:
        self.db.close()
        self.redis.close()
