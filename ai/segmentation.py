"""Foreground segmentation (background removal) with rembg's ONNX models.

One :class:`SegmentationModel` per model name, loaded once per process through
:data:`ai.models.model_cache`. rembg keeps each model's own pre/post-processing (input size,
normalisation); we only choose the model, the execution provider, and where the file comes from.

Where rembg looks for model files (rembg 2.0.6x+): ``$U2NET_HOME/models/<name>/<name>.onnx`` (where it
downloads to) and then ``$U2NET_HOME/<name>.onnx`` (the older flat layout, handy for copying files in
by hand). rembg takes its folder only from ``U2NET_HOME``: a caller that passes ``model_dir`` (the backend
passes ``MODEL_CACHE_DIR/rembg``) has it set to that folder.
A file that is already there is used as is; rembg checks the md5 only when it downloads.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ai.config import DEFAULT_SEGMENTATION_MODEL
from ai.errors import ModelUnavailableError
from ai.models import InferenceModel, hub_offline, model_cache

ImageInput = np.ndarray | Image.Image


@dataclass(frozen=True)
class SegmentationModelInfo:
    name: str
    licence: str
    commercial_use: bool
    good_for: str
    input_size: int  # the square size rembg resizes every image to before inference
    size_mb: int  # approximate download size
    speed: str  # rough CPU speed class: fast | medium | slow

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "default": self.name == DEFAULT_SEGMENTATION_MODEL}


# Only models rembg can run from a name alone, on this machine, with a foreground matte as output.
# Left out on purpose: u2net_cloth_seg (clothing classes, not a foreground), sam (needs prompts),
# *_custom (need a path), withoutbg/atlascloud (send images to a remote service).
SEGMENTATION_MODELS: dict[str, SegmentationModelInfo] = {
    m.name: m
    for m in (
        SegmentationModelInfo(
            "isnet-general-use",
            "Apache-2.0 (DIS / IS-Net)",
            True,
            "general objects and scenes; good edges; the default",
            1024,
            170,
            "medium",
        ),
        SegmentationModelInfo(
            "u2net", "Apache-2.0 (U^2-Net)", True, "general objects; rembg's classic model", 320, 170, "medium"
        ),
        SegmentationModelInfo(
            "u2netp", "Apache-2.0 (U^2-Net)", True, "fast on CPU, rougher edges: previews, long videos", 320, 5, "fast"
        ),
        SegmentationModelInfo(
            "u2net_human_seg", "Apache-2.0 (U^2-Net)", True, "people (whole body)", 320, 170, "medium"
        ),
        SegmentationModelInfo(
            "silueta",
            "Apache-2.0 (U^2-Net, reduced)",
            True,
            "general objects, smaller download than u2net",
            320,
            43,
            "medium",
        ),
        SegmentationModelInfo(
            "isnet-anime",
            "Apache-2.0 (anime-segmentation)",
            True,
            "anime and illustration characters",
            1024,
            170,
            "medium",
        ),
        SegmentationModelInfo(
            "birefnet-general",
            "MIT (BiRefNet)",
            True,
            "best quality on general objects; slow on CPU, fine on a GPU",
            1024,
            930,
            "slow",
        ),
        SegmentationModelInfo(
            "birefnet-general-lite", "MIT (BiRefNet)", True, "general objects, lighter BiRefNet", 1024, 210, "medium"
        ),
        SegmentationModelInfo(
            "birefnet-portrait",
            "MIT (BiRefNet)",
            True,
            "people and portraits, fine hair; slow on CPU",
            1024,
            930,
            "slow",
        ),
        SegmentationModelInfo(
            "birefnet-massive",
            "MIT (BiRefNet)",
            True,
            "general objects, trained on a larger data set; slow on CPU",
            1024,
            930,
            "slow",
        ),
        SegmentationModelInfo(
            "bria-rmbg",
            "CC BY-NC 4.0 (BRIA RMBG-2.0): NON-COMMERCIAL use only",
            False,
            "high quality general matting; never a default because of its licence",
            1024,
            970,
            "slow",
        ),
    )
}


class UnknownSegmentationModelError(ModelUnavailableError, ValueError):
    """A model name that is not in :data:`SEGMENTATION_MODELS` (a caller's mistake, not a missing file)."""


def segmentation_model_info(name: str) -> SegmentationModelInfo:
    """The registry entry for ``name``; raises UnknownSegmentationModelError listing valid names."""
    info = SEGMENTATION_MODELS.get((name or "").strip())
    if info is None:
        raise UnknownSegmentationModelError(
            f"unknown segmentation model {name!r}; valid names: {', '.join(SEGMENTATION_MODELS)}"
        )
    return info


def available_segmentation_models() -> list[dict[str, Any]]:
    """Every supported model: name, licence, commercial_use, good_for, speed, default, downloaded."""
    return [
        {**info.to_dict(), "downloaded": local_model_path(info.name) is not None}
        for info in SEGMENTATION_MODELS.values()
    ]


def _session_class(name: str):
    from rembg.sessions import sessions  # imported late: rembg imports onnxruntime

    segmentation_model_info(name)
    cls = sessions.get(name)
    if cls is None:  # an older rembg without this model
        raise UnknownSegmentationModelError(
            f"segmentation model {name!r} is not supported by the installed rembg; upgrade rembg"
        )
    return cls


def model_home() -> Path:
    """The folder rembg uses for models (U2NET_HOME when set)."""
    from rembg.sessions.base import BaseSession

    home = getattr(BaseSession, "rembg_home", None) or BaseSession.u2net_home
    return Path(home())


def local_model_path(name: str) -> Path | None:
    """The model file rembg would load for ``name`` without downloading, or None."""
    cls = _session_class(name)
    fname = f"{name}.onnx"
    if hasattr(cls, "resolve_existing"):
        found = cls.resolve_existing(fname)
        return Path(found) if found else None
    flat = model_home() / fname  # rembg before the per-model folders
    return flat if flat.exists() else None


def _downloads_disabled() -> bool:
    # Same switch as Hugging Face's: an offline deployment sets it once for both model kinds.
    return hub_offline()


def _how_to_install(name: str) -> str:
    return (
        f"Run `python -m backend download-models --segmentation-model {name}` on a machine with internet "
        f"access and copy MODEL_CACHE_DIR over, or copy {name}.onnx into {model_home()} "
        f"(U2NET_HOME)."
    )


def use_model_dir(model_dir: str | Path | None) -> None:
    """Point rembg at ``model_dir`` (it reads the folder from U2NET_HOME on every lookup and has no
    argument for it); None leaves rembg's own choice."""
    if model_dir is not None:
        os.environ["U2NET_HOME"] = str(Path(model_dir).expanduser())


def download_segmentation_model(name: str, model_dir: str | Path | None = None) -> str:
    """Make sure ``name`` is on disk (rembg's own download, md5-checked); return the local path."""
    use_model_dir(model_dir)
    cls = _session_class(name)
    existing = local_model_path(name)
    if existing is not None:
        return str(existing)
    if _downloads_disabled():
        raise ModelUnavailableError(
            f"segmentation model {name!r} is not downloaded and downloads are disabled (HF_HUB_OFFLINE). "
            + _how_to_install(name)
        )
    try:
        path = cls.download_models()
    except Exception as exc:  # pooch raises requests/HTTP/hash errors; the cause goes into the message
        raise ModelUnavailableError(
            f"segmentation model {name!r} could not be downloaded ({type(exc).__name__}: {exc}). "
            + _how_to_install(name)
        ) from exc
    return str(path)


def onnx_providers(device: str = "auto") -> list[str]:
    """CUDA when onnxruntime has it (and the device setting allows), else CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _as_pil_rgb(image: ImageInput) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got {array.dtype}")
    if array.ndim == 2:
        return Image.fromarray(array, "L").convert("RGB")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(array[:, :, :3]), "RGB")
    raise ValueError(f"expected an HxWx3 RGB image, got shape {array.shape}")


class SegmentationModel(InferenceModel):
    """A rembg session for one model name. ``predict(image)`` -> float32 alpha matte 0..1, HxW."""

    kind = "segmentation"

    def __init__(self, model_name: str, device: str = "auto", model_dir: str | None = None, **options: Any) -> None:
        segmentation_model_info(model_name)  # fail fast on a typo, before anything is cached
        super().__init__(model_name, device=device, model_dir=model_dir, **options)
        self.device = device
        self.model_dir = model_dir
        self.session: Any = None  # the rembg session, once loaded
        self.providers: list[str] = []

    def _load(self) -> None:
        from rembg import new_session

        # Resolve the file ourselves first: rembg would otherwise try a download with no clear message.
        download_segmentation_model(self.model_name, self.model_dir)
        self.providers = onnx_providers(self.device)
        try:
            self.session = new_session(self.model_name, providers=self.providers)
        except Exception as exc:  # a corrupt/truncated file: onnxruntime cannot parse it
            raise ModelUnavailableError(
                f"segmentation model {self.model_name!r} could not be loaded from "
                f"{local_model_path(self.model_name)} ({exc}). Delete the file and download it again. "
                + _how_to_install(self.model_name)
            ) from exc
        try:
            self.providers = list(self.session.inner_session.get_providers())
        except Exception:  # pragma: no cover - informational only
            pass

    def _predict(self, image: ImageInput, /, **kwargs: Any) -> np.ndarray:
        pil = _as_pil_rgb(image)
        mask = self.session.predict(pil)[0]  # L image at the input size (rembg resizes back)
        if mask.size != pil.size:
            mask = mask.resize(pil.size, Image.Resampling.BILINEAR)
        return np.asarray(mask, dtype=np.float32) / 255.0

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": self.providers}


def get_segmentation_model(
    name: str = DEFAULT_SEGMENTATION_MODEL, device: str = "auto", model_dir: str | Path | None = None
) -> SegmentationModel:
    """The process-wide instance for ``name``, on ``device``, with its file in ``model_dir``."""
    segmentation_model_info(name)
    options: dict[str, Any] = {"device": device}
    if model_dir is not None:
        options["model_dir"] = str(model_dir)
    return model_cache.get(SegmentationModel, name, **options)  # type: ignore[return-value]
