"""Defaults and small helpers shared by the AI pipelines. Reads no environment: the backend's settings
(``backend/settings.py``) are the one place configuration is read; pipelines and model loaders get
model names, device, precision and cache folders as arguments.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
# isnet-general-use: MIT/Apache-style licence, good edges on general objects (rembg's default
# "u2net" is Apache-2.0 too); BRIA's RMBG models are non-commercial and never a default.
DEFAULT_SEGMENTATION_MODEL = "isnet-general-use"
DEPTH_PATCH_SIZE = 14  # Depth Anything's ViT patch: input sizes are multiples of it
DEFAULT_DEPTH_INPUT_SIZE = 518
DEFAULT_DEPTH_BATCH_SIZE = 4
AI_DEVICE_CHOICES = ("auto", "cpu", "cuda")  # or cuda:N
AI_PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16")

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_bool(text: str) -> bool:
    """true/false and their usual spellings (1/0, yes/no, on/off); ValueError otherwise."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(text)


def huggingface_cache(model_cache_dir: Path) -> Path:
    """Where Hugging Face models live under MODEL_CACHE_DIR (the layout HF_HOME=<dir>/huggingface gives)."""
    return Path(model_cache_dir) / "huggingface" / "hub"


def rembg_home(model_cache_dir: Path) -> Path:
    """Where rembg models live under MODEL_CACHE_DIR."""
    return Path(model_cache_dir) / "rembg"


def model_cache_env(model_cache_dir: Path) -> dict[str, str]:
    """Environment variables that point Hugging Face and rembg at MODEL_CACHE_DIR, for a process that
    lets those libraries find models on their own (benchmarks); the caller decides whether to apply them."""
    cache = Path(model_cache_dir).expanduser().resolve()
    return {"HF_HOME": str(cache / "huggingface"), "U2NET_HOME": str(rembg_home(cache))}
