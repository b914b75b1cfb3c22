"""Parallax's settings: one typed object (pydantic-settings), read once from the environment and ``.env``.

The web server, the worker and the command line all read this object; ``ai/`` reads no environment and
gets what it needs (model, device, precision, cache folder) as arguments from ``backend/tasks``.
Every variable is documented with its default in ``.env.example``; a bad value stops start-up with a
message naming the variable and what it accepts. Secrets are ``SecretStr``: never in ``repr``, logs or
``GET /api/config``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ai.config import (
    AI_DEVICE_CHOICES,
    AI_PRECISION_CHOICES,
    DEFAULT_DEPTH_BATCH_SIZE,
    DEFAULT_DEPTH_INPUT_SIZE,
    DEFAULT_DEPTH_MODEL,
    DEFAULT_SEGMENTATION_MODEL,
    DEPTH_PATCH_SIZE,
    parse_bool,
)
from backend.schemas import FRAME_HEIGHT_MAX, FRAME_HEIGHT_MIN, MAX_FRAMES_MAX

FRAME_METHODS = ("interval", "keyframes")
DEPTH_POLARITIES = ("near_dark", "near_bright")
# What happens to an item whose Immich asset was deleted, trashed or archived (see docs/immich.md).
IMMICH_REMOVED_ACTIONS = ("hide", "delete")
# Hugging Face model ids: "name" or "owner/name" of letters, digits, "-", "_", ".".
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
MB = 1024 * 1024


class SettingsError(ValueError):
    """A variable has a value we cannot use; the message names it and what it accepts."""


def url_without_credentials(url: str | None) -> str | None:
    """``url`` as it may be shown (API responses, links, logs): without ``user:password@``."""
    if not url:
        return url
    parts = urlsplit(url.strip())
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()


# -- validators: each raises ValueError(<what the variable accepts>) --------------------------------
def _check(accepts: str, parse: Callable[[str], Any]) -> BeforeValidator:
    def validate(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # already typed (a default, or a value set in code)
        try:
            return parse(value.strip())
        except (ValueError, TypeError):
            raise ValueError(accepts) from None

    return BeforeValidator(validate)


def _int(minimum: int, maximum: int | None = None, multiple: int = 1, scale: int = 1) -> BeforeValidator:
    accepts = f"a whole number >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    if multiple > 1:
        accepts += f", a multiple of {multiple}"

    def parse(text: str) -> int:
        n = int(text)
        if n < minimum or (maximum is not None and n > maximum) or n % multiple:
            raise ValueError(text)
        return n * scale

    return _check(accepts, parse)


def _positive_float(text: str) -> float:
    n = float(text)
    if n != n or n <= 0 or n == float("inf"):
        raise ValueError(text)
    return n


def _choice(choices: tuple[str, ...]) -> BeforeValidator:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(text)
        return text.lower()

    return _check("one of " + ", ".join(choices), parse)


def _url(*schemes: str) -> BeforeValidator:
    def parse(text: str) -> str:
        parts = urlsplit(text)
        if parts.scheme.lower() not in schemes or not (parts.netloc or parts.scheme == "unix"):
            raise ValueError(text)
        return text

    return _check("a URL starting with " + " or ".join(s + "://" for s in schemes), parse)


def _device(text: str) -> str:
    word = text.lower()
    if word in AI_DEVICE_CHOICES or re.fullmatch(r"cuda:\d+", word):
        return word
    raise ValueError(text)


def _depth_model(text: str) -> str:
    if Path(text).expanduser().is_dir() or _HUB_ID.match(text):
        return text
    raise ValueError(text)


def _bit_depth(text: str) -> int:
    if text not in ("8", "16"):
        raise ValueError(text)
    return int(text)


def _segmentation_check(value: Any) -> Any:
    # The curated list of rembg session names; imported here so reading settings loads no model code.
    from ai.segmentation import SEGMENTATION_MODELS

    if isinstance(value, str) and value.strip() not in SEGMENTATION_MODELS:
        raise ValueError("one of " + ", ".join(SEGMENTATION_MODELS))
    return value.strip() if isinstance(value, str) else value


def _cutout_background(text: str) -> str:
    from ai.cutout import parse_background

    name, _rgb = parse_background(text)
    return name


def _stereo_format_check(value: Any) -> Any:
    from ai.stereo import STEREO_FORMATS  # the layouts and the file-name tags VR players read

    if isinstance(value, str):
        if value.strip().lower() not in STEREO_FORMATS:
            raise ValueError("one of " + ", ".join(STEREO_FORMATS))
        return value.strip().lower()
    return value


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    return value


Bool = Annotated[bool, _check("true or false (also 1/0, yes/no, on/off)", parse_bool)]
PositiveFloat = Annotated[float, _check("a number > 0", _positive_float)]


def _stereo_divergence(text: str) -> float:
    from ai.stereo import MAX_DIVERGENCE

    value = float(text)
    if not 0 < value <= MAX_DIVERGENCE:
        raise ValueError(text)
    return value


def _unit_interval(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError(text)
    return value


Port = Annotated[int, _int(1, 65535)]


def _env(name: str, **kwargs: Any) -> Any:
    """A field read from the environment variable ``name``."""
    return Field(validation_alias=name, **kwargs)


class Settings(BaseSettings):
    """Every setting, named as in code; the environment variable is each field's alias."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,  # "API_KEY=" in .env means unset, as in .env.example
        extra="ignore",
        frozen=True,
        case_sensitive=True,
        validate_default=False,  # defaults are typed already; MEDIA_ROOT/MODEL_CACHE_DIR are derived below
    )

    # Services
    database_url: Annotated[str, _url("postgresql", "postgres")] = _env(
        "DATABASE_URL", default="postgresql://postgres@127.0.0.1:5432/parallax"
    )
    redis_url: Annotated[str, _url("redis", "rediss", "unix")] = _env("REDIS_URL", default="redis://127.0.0.1:6379/0")
    queue_name: str = _env("QUEUE_NAME", default="parallax", min_length=1)
    start_local_services: Bool = _env("START_LOCAL_SERVICES", default=True)
    data_dir: Path = _env("DATA_DIR", default=Path(".data"))
    media_root: Path = _env("MEDIA_ROOT", default=None)  # default DATA_DIR/media
    host: str = _env("HOST", default="127.0.0.1")
    port: Port = _env("PORT", default=8000)
    api_key: SecretStr | None = _env("API_KEY", default=None)
    # HTTPS: a certificate you provide; else one is generated under DATA_DIR when serving the LAN.
    tls_cert: Path | None = _env("TLS_CERT", default=None)
    tls_key: Path | None = _env("TLS_KEY", default=None)
    allow_xr_emulation: Bool = _env("ALLOW_XR_EMULATION", default=False)  # the viewer's ?xr-emulate=1
    # Names the server answers to besides IP addresses and localhost (DNS rebinding protection).
    allowed_hosts: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_csv)] = _env("ALLOWED_HOSTS", default=())
    # Longest wait for a database connection before a request answers 503.
    database_timeout_s: PositiveFloat = _env("DATABASE_TIMEOUT_SECONDS", default=3.0)
    # A request body may not pause longer, and must then average at least BODY_MIN_RATE_KB KB/s (else 408).
    body_idle_timeout_s: PositiveFloat = _env("BODY_IDLE_TIMEOUT_SECONDS", default=30.0)
    body_min_rate_kb: PositiveFloat = _env("BODY_MIN_RATE_KB", default=10.0)
    max_upload_bytes: Annotated[int, _int(1, scale=MB)] = _env("MAX_UPLOAD_MB", default=2048 * MB)
    max_image_pixels: Annotated[int, _int(1, scale=1_000_000)] = _env("MAX_IMAGE_MEGAPIXELS", default=150_000_000)
    # Features: photo depth and cut-outs on; video is experimental and slow on CPU
    enable_depth: Bool = _env("ENABLE_DEPTH", default=True)
    enable_background_removal: Bool = _env("ENABLE_BACKGROUND_REMOVAL", default=True)
    enable_experimental_video: Bool = _env("ENABLE_EXPERIMENTAL_VIDEO", default=False)
    enable_depth_video: Bool = _env("ENABLE_DEPTH_VIDEO", default=True)  # RGB-D video; runs when video is on
    enable_stereo: Bool = _env("ENABLE_STEREO", default=True)  # stereo exports, made when asked for
    # Video
    video_frame_extraction_fps: PositiveFloat = _env("VIDEO_FRAME_EXTRACTION_FPS", default=1.0)
    video_max_frames: Annotated[int, _int(1, MAX_FRAMES_MAX)] = _env("VIDEO_MAX_FRAMES", default=30)
    video_frame_method: Annotated[str, _choice(FRAME_METHODS)] = _env("VIDEO_FRAME_METHOD", default="interval")
    video_frame_height: Annotated[int, _int(FRAME_HEIGHT_MIN, FRAME_HEIGHT_MAX)] = _env(
        "VIDEO_FRAME_HEIGHT", default=480
    )
    depth_video_fps: PositiveFloat | None = _env("DEPTH_VIDEO_FPS", default=None)  # None: source rate, <= 30
    depth_video_height: Annotated[int, _int(16, 8192)] = _env("DEPTH_VIDEO_HEIGHT", default=1080)
    stereo_divergence: Annotated[float, _check("a number > 0 and <= 10 (% of the width)", _stereo_divergence)] = _env(
        "STEREO_DIVERGENCE", default=2.0
    )
    stereo_convergence: Annotated[float, _check("a number from 0 (farthest) to 1 (nearest)", _unit_interval)] = _env(
        "STEREO_CONVERGENCE", default=0.5
    )
    # Cut-outs process every frame: longer videos fail at job start; a run stops past the frame cap.
    video_cutout_max_seconds: PositiveFloat = _env("VIDEO_CUTOUT_MAX_SECONDS", default=600.0)
    video_cutout_max_frames: Annotated[int, _int(1)] = _env("VIDEO_CUTOUT_MAX_FRAMES", default=18_000)
    cutout_video_background: Annotated[
        str, _check("transparent, green, blue, white, black or a #rrggbb colour", _cutout_background)
    ] = _env("CUTOUT_VIDEO_BACKGROUND", default="transparent")
    # Models
    depth_model: Annotated[
        str, _check("a Hugging Face model id (owner/name) or an existing folder holding a model", _depth_model)
    ] = _env("DEPTH_MODEL", default=DEFAULT_DEPTH_MODEL)
    depth_polarity: Annotated[str, _choice(DEPTH_POLARITIES)] = _env("DEPTH_POLARITY", default="near_dark")
    depth_bit_depth: Annotated[int, _check("8 or 16", _bit_depth)] = _env("DEPTH_BIT_DEPTH", default=8)
    depth_input_size: Annotated[int, _int(DEPTH_PATCH_SIZE, 4096, multiple=DEPTH_PATCH_SIZE)] = _env(
        "DEPTH_INPUT_SIZE", default=DEFAULT_DEPTH_INPUT_SIZE
    )
    depth_batch_size: Annotated[int, _int(1, 256)] = _env("DEPTH_BATCH_SIZE", default=DEFAULT_DEPTH_BATCH_SIZE)
    segmentation_model: Annotated[str, BeforeValidator(_segmentation_check)] = _env(
        "SEGMENTATION_MODEL", default=DEFAULT_SEGMENTATION_MODEL
    )
    ai_device: Annotated[str, _check("auto, cpu, cuda or cuda:N", _device)] = _env("AI_DEVICE", default="auto")
    ai_precision: Annotated[str, _choice(AI_PRECISION_CHOICES)] = _env("AI_PRECISION", default="auto")
    model_cache_dir: Path = _env("MODEL_CACHE_DIR", default=None)  # default DATA_DIR/models
    # Jobs
    job_max_attempts: Annotated[int, _int(1, 20)] = _env("JOB_MAX_ATTEMPTS", default=3)
    job_timeout_base_s: Annotated[int, _int(1)] = _env("JOB_TIMEOUT_BASE_SECONDS", default=600)
    job_timeout_per_frame_s: PositiveFloat = _env("JOB_TIMEOUT_PER_FRAME_SECONDS", default=10.0)
    job_stale_after_s: Annotated[int, _int(5)] = _env("JOB_STALE_AFTER_SECONDS", default=120)
    # Immich
    immich_url: Annotated[str | None, _url("http", "https")] = _env("IMMICH_URL", default=None)
    immich_api_key: SecretStr | None = _env("IMMICH_API_KEY", default=None)
    immich_sync_interval_minutes: Annotated[int, _int(0)] = _env("IMMICH_SYNC_INTERVAL_MINUTES", default=0)
    immich_import_concurrency: Annotated[int, _int(1, 32)] = _env("IMMICH_IMPORT_CONCURRENCY", default=3)
    immich_album_ids: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_csv)] = _env("IMMICH_ALBUM_IDS", default=())
    immich_public_url: Annotated[str | None, _url("http", "https")] = _env("IMMICH_PUBLIC_URL", default=None)
    immich_removed_assets: Annotated[str, _choice(IMMICH_REMOVED_ACTIONS)] = _env(
        "IMMICH_REMOVED_ASSETS", default="hide"
    )
    # Write-back: upload each Immich item's stereo 3D version into Immich, in an album, stacked with
    # its original (docs/immich.md "Write-back"). Off by default: Parallax otherwise only reads.
    immich_write_back: Bool = _env("IMMICH_WRITE_BACK", default=False)
    immich_write_back_album: str = _env("IMMICH_WRITE_BACK_ALBUM", default="Parallax 3D", min_length=1)
    immich_write_back_format: Annotated[str, BeforeValidator(_stereo_format_check)] = _env(
        "IMMICH_WRITE_BACK_FORMAT", default="full_sbs"
    )

    @model_validator(mode="after")
    def _derived_defaults(self) -> Settings:
        # Folders under DATA_DIR unless set on their own; "~" works in every path.
        data_dir = self.data_dir.expanduser()
        self.__dict__["data_dir"] = data_dir
        self.__dict__["media_root"] = (self.media_root or data_dir / "media").expanduser()
        self.__dict__["model_cache_dir"] = (self.model_cache_dir or data_dir / "models").expanduser()
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS_CERT and TLS_KEY go together: set both (PEM files) or neither")
        return self

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings: from ``env`` (a mapping of variable names, as tests pass) or, without it,
        from the process environment and ``.env``. Raises SettingsError naming the first bad variable."""
        try:
            if env is None:
                return cls()
            given = {k: v for k, v in env.items() if k in _ENV_NAMES and v is not None and v.strip()}
            return cls.model_validate(given)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (by field name, typed values; secrets and paths may be plain
        strings). Used by tests and by code that derives settings for one purpose."""
        unknown = set(changes) - set(type(self).model_fields)
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        for name, value in changes.items():
            if name in _SECRET_FIELDS and isinstance(value, str):
                changes[name] = SecretStr(value)
            elif name in _PATH_FIELDS and isinstance(value, str):
                changes[name] = Path(value)
        return self.model_copy(update=changes)

    # -- views ---------------------------------------------------------------------------------
    def secret(self, name: str) -> str | None:
        """The plain value of a secret field (``api_key``, ``immich_api_key``), or None when unset."""
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else None

    @property
    def immich_web_url(self) -> str | None:
        """Where browsers open Immich ("open in Immich" links): the public URL or the API URL, without
        credentials or a trailing ``/api``."""
        base = url_without_credentials(self.immich_public_url or self.immich_url)
        return base.rstrip("/").removesuffix("/api") if base else None

    def public(self) -> dict:
        """Effective configuration for ``GET /api/config``: flags and limits, never secrets or URLs with passwords."""
        from backend.tasks.registry import JobStatus

        return {
            "features": {
                "depth": self.enable_depth,
                "background_removal": self.enable_background_removal,
                "experimental_video": self.enable_experimental_video,
                "depth_video": self.enable_depth_video,
                "stereo": self.enable_stereo,
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
                "cutout_max_seconds": self.video_cutout_max_seconds,
                "cutout_max_frames": self.video_cutout_max_frames,
                "cutout_background": self.cutout_video_background,
                "depth_video_fps": self.depth_video_fps,
                "depth_video_height": self.depth_video_height,
            },
            "stereo": {"divergence": self.stereo_divergence, "convergence": self.stereo_convergence},
            "models": {
                "depth": self.depth_model,
                "depth_polarity": self.depth_polarity,
                "depth_bit_depth": self.depth_bit_depth,
                "segmentation": self.segmentation_model,
            },
            "immich": {
                "configured": bool(self.immich_url and self.immich_api_key),
                "url": self.immich_web_url,
                "sync_interval_minutes": self.immich_sync_interval_minutes,
            },
            "job_statuses": [s.value for s in JobStatus],
            "api_key_required": bool(self.api_key),
            "viewer": {"xr_emulation": self.allow_xr_emulation},
        }

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, for child processes (web server, worker)."""
        out: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, bool):
                value = str(value).lower()
            elif isinstance(value, tuple):
                value = ",".join(value)
            elif name in _SCALED:
                value = value // _SCALED[name]
            out[str(field.validation_alias)] = str(value)
        return out


_ENV_NAMES = {str(f.validation_alias) for f in Settings.model_fields.values()}
_SECRET_FIELDS = {n for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)}
_PATH_FIELDS = {"data_dir", "media_root", "model_cache_dir", "tls_cert", "tls_key"}
_SCALED = {"max_upload_bytes": MB, "max_image_pixels": 1_000_000}


def _describe(exc: ValidationError) -> str:
    """``NAME='value' is not valid: expected ...`` for each bad variable."""
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "settings"
        cause = error.get("ctx", {}).get("error")
        accepts = str(cause) if isinstance(cause, ValueError) else error["msg"]
        lines.append(f"{name}={error.get('input')!r} is not valid: expected {accepts}")
    return "; ".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
