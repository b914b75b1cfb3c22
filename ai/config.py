"""Settings of the AI side (HTTP service and model loading), read once from the environment.

The backend has its own typed settings; the names shared by both (model ids, cache folder,
device) are the same environment variables, documented once in ``.env.example``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dotenv import load_dotenv

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
# isnet-general-use: MIT/Apache-style licence, good edges on general objects (rembg's default
# "u2net" is Apache-2.0 too); BRIA's RMBG models are non-commercial and never a default.
DEFAULT_SEGMENTATION_MODEL = "isnet-general-use"


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


class AISettingsError(ValueError):
    pass


def parse_bool(text: str) -> bool:
    """true/false and their usual spellings (1/0, yes/no, on/off); ValueError otherwise."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(text)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE set: no model downloads, for Hugging Face and rembg models alike."""
    try:
        return parse_bool(os.environ.get("HF_HUB_OFFLINE", "") or "0")
    except ValueError:
        return False


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise AISettingsError(f"{name}={raw!r} is not valid: expected a whole number >= {minimum}")
    if value < minimum:
        raise AISettingsError(f"{name}={raw!r} is not valid: expected a whole number >= {minimum}")
    return value


@dataclass(frozen=True)
class AISettings:
    depth_model: str
    segmentation_model: str
    device: str  # auto | cpu | cuda | cuda:N
    precision: str  # auto | fp32 | fp16 | bf16
    depth_input_size: int
    depth_batch_size: int
    model_cache_dir: Path
    host: str
    port: int
    max_upload_bytes: int

    @classmethod
    def from_env(cls) -> AISettings:
        load_dotenv(override=False)
        device = os.environ.get("AI_DEVICE", "auto").strip() or "auto"
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            raise AISettingsError(f"AI_DEVICE={device!r} is not valid: expected auto, cpu, cuda or cuda:N")
        precision = os.environ.get("AI_PRECISION", "auto").strip().lower() or "auto"
        if precision not in ("auto", "fp32", "fp16", "bf16"):
            raise AISettingsError(f"AI_PRECISION={precision!r} is not valid: expected auto, fp32, fp16 or bf16")
        return cls(
            depth_model=os.environ.get("DEPTH_MODEL", "").strip() or DEFAULT_DEPTH_MODEL,
            segmentation_model=os.environ.get("SEGMENTATION_MODEL", "").strip() or DEFAULT_SEGMENTATION_MODEL,
            device=device,
            precision=precision,
            depth_input_size=_int("DEPTH_INPUT_SIZE", 518, 14),
            depth_batch_size=_int("DEPTH_BATCH_SIZE", 4),
            model_cache_dir=Path(os.environ.get("MODEL_CACHE_DIR", "").strip() or ".data/models").expanduser(),
            host=os.environ.get("AI_HOST", "127.0.0.1").strip() or "127.0.0.1",
            port=_int("AI_PORT", 8001),
            max_upload_bytes=_int("MAX_UPLOAD_MB", 2048) * 1024 * 1024,
        )


@lru_cache(maxsize=1)
def get_ai_settings() -> AISettings:
    return AISettings.from_env()


def apply_model_cache_env(settings: AISettings | None = None) -> Path:
    """Point Hugging Face and rembg at our model cache folder (before either is imported)."""
    settings = settings or get_ai_settings()
    cache = settings.model_cache_dir.resolve()
    os.environ.setdefault("HF_HOME", str(cache / "huggingface"))
    os.environ.setdefault("U2NET_HOME", str(cache / "rembg"))
    return cache
