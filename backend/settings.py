"""The backend's settings: one typed object, read once from the environment (``.env`` via python-dotenv).

Every variable is documented with its default in ``.env.example``. A bad value stops start-up with a
message naming the variable and what it accepts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from dotenv import load_dotenv

from ai.config import DEFAULT_DEPTH_MODEL, DEFAULT_SEGMENTATION_MODEL, parse_bool

T = TypeVar("T")

FRAME_METHODS = ("interval", "keyframes")
DEPTH_POLARITIES = ("near_dark", "near_bright")
# What happens to an item whose Immich asset was deleted, trashed or archived (see docs/immich.md).
IMMICH_REMOVED_ACTIONS = ("hide", "delete")


class SettingsError(ValueError):
    """A variable has a value we cannot use; the message names it and what it accepts."""


class _Reader:
    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def str(self, name: str, default: str | None) -> str | None:
        value = self.raw(name)
        return default if value is None else value

    def _parse(self, name: str, default: T, parse: Callable[[str], T], accepts: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except (ValueError, TypeError):
            raise SettingsError(f"{name}={value!r} is not valid: expected {accepts}") from None

    def bool(self, name: str, default: bool) -> bool:
        return self._parse(name, default, parse_bool, "true or false (also 1/0, yes/no, on/off)")

    def int(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        accepts = f"a whole number >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")

        def parse(v: str) -> int:
            n = int(v)
            if n < minimum or (maximum is not None and n > maximum):
                raise ValueError(v)
            return n

        return self._parse(name, default, parse, accepts)

    def float(self, name: str, default: float, minimum: float = 0.0, exclusive: bool = True) -> float:
        accepts = f"a number {'>' if exclusive else '>='} {minimum:g}"

        def parse(v: str) -> float:
            n = float(v)
            if n != n or n < minimum or (exclusive and n == minimum):
                raise ValueError(v)
            return n

        return self._parse(name, default, parse, accepts)

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        def parse(v: str) -> str:
            if v.lower() not in choices:
                raise ValueError(v)
            return v.lower()

        return self._parse(name, default, parse, "one of " + ", ".join(choices))

    def url(self, name: str, default: str | None, schemes: tuple[str, ...]) -> str | None:
        def parse(v: str) -> str:
            if "://" not in v or v.split("://", 1)[0].lower() not in schemes:
                raise ValueError(v)
            return v

        return self._parse(name, default, parse, "a URL starting with " + " or ".join(s + "://" for s in schemes))

    def csv(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        return tuple(p.strip() for p in value.split(",") if p.strip()) if value else ()


@dataclass(frozen=True)
class Settings:
    # Services
    database_url: str = "postgresql://postgres@127.0.0.1:5432/parallax"
    redis_url: str = "redis://127.0.0.1:6379/0"
    queue_name: str = "parallax"
    start_local_services: bool = True  # start PostgreSQL/Redis under DATA_DIR when unreachable
    data_dir: Path = Path(".data")
    media_root: Path = Path(".data/media")
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = field(default=None, repr=False)
    max_upload_bytes: int = 2048 * 1024 * 1024
    max_image_pixels: int = 150_000_000
    # Features (costly work is opt-in)
    enable_depth: bool = False
    enable_background_removal: bool = False
    enable_experimental_video: bool = False
    # Video
    video_frame_extraction_fps: float = 1.0
    video_max_frames: int = 30
    video_frame_method: str = "interval"
    video_frame_height: int = 480
    # Models
    depth_model: str = DEFAULT_DEPTH_MODEL
    depth_polarity: str = "near_dark"
    depth_bit_depth: int = 8
    segmentation_model: str = DEFAULT_SEGMENTATION_MODEL
    cutout_video_background: str = "transparent"
    model_cache_dir: Path = Path(".data/models")
    # Jobs
    job_max_attempts: int = 3
    job_timeout_base_s: int = 600
    job_timeout_per_frame_s: float = 10.0
    job_stale_after_s: int = 120
    # AI service
    ai_host: str = "127.0.0.1"
    ai_port: int = 8001
    # Immich
    immich_url: str | None = None
    immich_api_key: str | None = field(default=None, repr=False)
    immich_sync_interval_minutes: int = 0
    immich_import_concurrency: int = 3
    immich_album_ids: tuple[str, ...] = ()
    immich_public_url: str | None = None
    immich_removed_assets: str = "hide"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, dotenv: bool = True) -> Settings:
        if env is None:
            if dotenv:
                load_dotenv(override=False)
            env = os.environ
        r = _Reader(env)
        data_dir = Path(r.str("DATA_DIR", ".data")).expanduser()
        d = cls()
        return cls(
            database_url=r.url("DATABASE_URL", d.database_url, ("postgresql", "postgres")),
            redis_url=r.url("REDIS_URL", d.redis_url, ("redis", "rediss", "unix")),
            queue_name=r.str("QUEUE_NAME", d.queue_name),
            start_local_services=r.bool("START_LOCAL_SERVICES", d.start_local_services),
            data_dir=data_dir,
            media_root=Path(r.str("MEDIA_ROOT", str(data_dir / "media"))).expanduser(),
            host=r.str("HOST", d.host),
            port=r.int("PORT", d.port, 1, 65535),
            api_key=r.str("API_KEY", None),
            max_upload_bytes=r.int("MAX_UPLOAD_MB", 2048, 1) * 1024 * 1024,
            max_image_pixels=r.int("MAX_IMAGE_MEGAPIXELS", 150, 1) * 1_000_000,
            enable_depth=r.bool("ENABLE_DEPTH", d.enable_depth),
            enable_background_removal=r.bool("ENABLE_BACKGROUND_REMOVAL", d.enable_background_removal),
            enable_experimental_video=r.bool("ENABLE_EXPERIMENTAL_VIDEO", d.enable_experimental_video),
            video_frame_extraction_fps=r.float("VIDEO_FRAME_EXTRACTION_FPS", d.video_frame_extraction_fps),
            video_max_frames=r.int("VIDEO_MAX_FRAMES", d.video_max_frames, 1, 100_000),
            video_frame_method=r.choice("VIDEO_FRAME_METHOD", d.video_frame_method, FRAME_METHODS),
            video_frame_height=r.int("VIDEO_FRAME_HEIGHT", d.video_frame_height, 16, 8192),
            depth_model=r.str("DEPTH_MODEL", d.depth_model),
            depth_polarity=r.choice("DEPTH_POLARITY", d.depth_polarity, DEPTH_POLARITIES),
            depth_bit_depth=int(r.choice("DEPTH_BIT_DEPTH", str(d.depth_bit_depth), ("8", "16"))),
            segmentation_model=r.str("SEGMENTATION_MODEL", d.segmentation_model),
            cutout_video_background=r.str("CUTOUT_VIDEO_BACKGROUND", d.cutout_video_background),
            model_cache_dir=Path(r.str("MODEL_CACHE_DIR", str(data_dir / "models"))).expanduser(),
            job_max_attempts=r.int("JOB_MAX_ATTEMPTS", d.job_max_attempts, 1, 20),
            job_timeout_base_s=r.int("JOB_TIMEOUT_BASE_SECONDS", d.job_timeout_base_s, 1),
            job_timeout_per_frame_s=r.float("JOB_TIMEOUT_PER_FRAME_SECONDS", d.job_timeout_per_frame_s),
            job_stale_after_s=r.int("JOB_STALE_AFTER_SECONDS", d.job_stale_after_s, 5),
            ai_host=r.str("AI_HOST", d.ai_host),
            ai_port=r.int("AI_PORT", d.ai_port, 1, 65535),
            immich_url=r.url("IMMICH_URL", None, ("http", "https")),
            immich_api_key=r.str("IMMICH_API_KEY", None),
            immich_sync_interval_minutes=r.int("IMMICH_SYNC_INTERVAL_MINUTES", 0, 0),
            immich_import_concurrency=r.int("IMMICH_IMPORT_CONCURRENCY", 3, 1, 32),
            immich_album_ids=r.csv("IMMICH_ALBUM_IDS"),
            immich_public_url=r.url("IMMICH_PUBLIC_URL", None, ("http", "https")),
            immich_removed_assets=r.choice("IMMICH_REMOVED_ASSETS", d.immich_removed_assets, IMMICH_REMOVED_ACTIONS),
        )

    def public(self) -> dict:
        """Effective configuration for ``GET /api/config``: flags and limits, never secrets or URLs with passwords."""
        return {
            "features": {
                "depth": self.enable_depth,
                "background_removal": self.enable_background_removal,
                "experimental_video": self.enable_experimental_video,
            },
            "limits": {
                "max_upload_bytes": self.max_upload_bytes,
                "max_image_pixels": self.max_image_pixels,
                "job_max_attempts": self.job_max_attempts,
            },
            "video": {
                "frame_extraction_fps": self.video_frame_extraction_fps,
                "max_frames": self.video_max_frames,
                "frame_method": self.video_frame_method,
                "frame_height": self.video_frame_height,
                "cutout_background": self.cutout_video_background,
            },
            "models": {
                "depth": self.depth_model,
                "depth_polarity": self.depth_polarity,
                "depth_bit_depth": self.depth_bit_depth,
                "segmentation": self.segmentation_model,
            },
            "immich": {
                "configured": bool(self.immich_url and self.immich_api_key),
                "url": self.immich_url,
                "sync_interval_minutes": self.immich_sync_interval_minutes,
            },
            "api_key_required": bool(self.api_key),
        }

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, for child processes (worker, AI service)."""
        d = asdict(self)
        out = {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "QUEUE_NAME": self.queue_name,
            "DATA_DIR": str(self.data_dir),
            "MEDIA_ROOT": str(self.media_root),
            "START_LOCAL_SERVICES": str(self.start_local_services).lower(),
            "MAX_UPLOAD_MB": str(self.max_upload_bytes // (1024 * 1024)),
            "MAX_IMAGE_MEGAPIXELS": str(self.max_image_pixels // 1_000_000),
            "ENABLE_DEPTH": str(self.enable_depth).lower(),
            "ENABLE_BACKGROUND_REMOVAL": str(self.enable_background_removal).lower(),
            "ENABLE_EXPERIMENTAL_VIDEO": str(self.enable_experimental_video).lower(),
            "VIDEO_FRAME_EXTRACTION_FPS": str(self.video_frame_extraction_fps),
            "VIDEO_MAX_FRAMES": str(self.video_max_frames),
            "VIDEO_FRAME_METHOD": self.video_frame_method,
            "VIDEO_FRAME_HEIGHT": str(self.video_frame_height),
            "DEPTH_MODEL": self.depth_model,
            "DEPTH_POLARITY": self.depth_polarity,
            "DEPTH_BIT_DEPTH": str(self.depth_bit_depth),
            "SEGMENTATION_MODEL": self.segmentation_model,
            "CUTOUT_VIDEO_BACKGROUND": self.cutout_video_background,
            "MODEL_CACHE_DIR": str(self.model_cache_dir),
            "JOB_MAX_ATTEMPTS": str(self.job_max_attempts),
            "JOB_TIMEOUT_BASE_SECONDS": str(self.job_timeout_base_s),
            "JOB_TIMEOUT_PER_FRAME_SECONDS": str(self.job_timeout_per_frame_s),
            "JOB_STALE_AFTER_SECONDS": str(self.job_stale_after_s),
            "AI_HOST": self.ai_host,
            "AI_PORT": str(self.ai_port),
            "HOST": self.host,
            "PORT": str(self.port),
            "IMMICH_SYNC_INTERVAL_MINUTES": str(self.immich_sync_interval_minutes),
            "IMMICH_IMPORT_CONCURRENCY": str(self.immich_import_concurrency),
            "IMMICH_ALBUM_IDS": ",".join(self.immich_album_ids),
            "IMMICH_REMOVED_ASSETS": self.immich_removed_assets,
        }
        for key, name in (
            ("api_key", "API_KEY"),
            ("immich_url", "IMMICH_URL"),
            ("immich_api_key", "IMMICH_API_KEY"),
            ("immich_public_url", "IMMICH_PUBLIC_URL"),
        ):
            if d[key]:
                out[name] = d[key]
        return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
