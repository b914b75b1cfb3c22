"""Foreground segmentation (background removal) with rembg's ONNX models.

One :class:`SegmentationModel` per model name, loaded once per process through
:data:`ai.models.model_cache`. rembg finds, downloads and opens each model (its session); we run the
ONNX session ourselves on whole batches, with each model's own input size and normalisation
(:class:`SegmentationModelInfo`, the same values as rembg's sessions) done vectorised in numpy:
rembg's per-image PIL pre/post-processing cost more than a small model itself.

Where rembg looks for model files (rembg 2.0.6x+): ``$U2NET_HOME/models/<name>/<name>.onnx`` (where it
downloads to) and then ``$U2NET_HOME/<name>.onnx`` (the older flat layout, handy for copying files in
by hand). rembg takes its folder only from ``U2NET_HOME``: a caller that passes ``model_dir`` (the backend
passes ``MODEL_CACHE_DIR/rembg``) has it set to that folder.
A file that is already there is used as is; rembg checks the md5 only when it downloads.
"""

from __future__ import annotations

import functools
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

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# A prediction whose whole range is below this (a quarter of one 8-bit grey level) separates nothing:
# a uniform frame (flash, fade to black). Stretching it to 0..1 would divide by ~0 (rembg gives NaN).
FLAT_PREDICTION_SPAN = 1e-3
# A model-size frame whose pixels differ by at most this many levels is uniform (compression noise).
UNIFORM_FRAME_LEVELS = 4


@dataclass(frozen=True)
class SegmentationModelInfo:
    name: str
    licence: str
    commercial_use: bool
    good_for: str
    input_size: int  # the square size every image is resized to before inference
    size_mb: int  # approximate download size
    speed: str  # rough CPU speed class: fast | medium | slow
    # Normalisation the model was trained with (the same values as rembg's session for this name):
    # pixels / frame maximum, minus ``mean``, divided by ``std``, per RGB channel.
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    logits: bool = False  # the network outputs logits (BiRefNet): a sigmoid comes first

    def to_dict(self) -> dict[str, Any]:
        public = {k: v for k, v in asdict(self).items() if k not in _PREPROCESSING_FIELDS}
        return {**public, "default": self.name == DEFAULT_SEGMENTATION_MODEL}


_PREPROCESSING_FIELDS = ("mean", "std", "logits")

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
            mean=(0.5, 0.5, 0.5),
            std=(1.0, 1.0, 1.0),
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
            std=(1.0, 1.0, 1.0),
        ),
        SegmentationModelInfo(
            "birefnet-general",
            "MIT (BiRefNet)",
            True,
            "best quality on general objects; slow on CPU, fine on a GPU",
            1024,
            930,
            "slow",
            logits=True,
        ),
        SegmentationModelInfo(
            "birefnet-general-lite",
            "MIT (BiRefNet)",
            True,
            "general objects, lighter BiRefNet",
            1024,
            210,
            "medium",
            logits=True,
        ),
        SegmentationModelInfo(
            "birefnet-portrait",
            "MIT (BiRefNet)",
            True,
            "people and portraits, fine hair; slow on CPU",
            1024,
            930,
            "slow",
            logits=True,
        ),
        SegmentationModelInfo(
            "birefnet-massive",
            "MIT (BiRefNet)",
            True,
            "general objects, trained on a larger data set; slow on CPU",
            1024,
            930,
            "slow",
            logits=True,
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


def _session_options():
    """ONNX Runtime options for our sessions. No spin-waiting: by default ORT's intra-op threads
    spin between operators, which on a few cores takes the CPU from the decoder, the matte work and
    ffmpeg that run beside the model in a video cut-out (measured: see docs/performance.md)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


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


@dataclass
class Mattes:
    """Mattes of a batch at the model's input size."""

    alpha: np.ndarray  # N x H x W float32 in 0..1 (1 = subject), never NaN; model size unless asked
    # N bools: the frame was uniform or the model separated nothing in it (a flash, a fade to black).
    # Its alpha is then 0 (no subject: what rembg's stretching gave, without its NaN); a video keeps
    # its previous matte instead.
    flat: np.ndarray


@functools.lru_cache(maxsize=16)
def bilinear_weights(size_in: int, size_out: int) -> Any:
    """The resampling of one axis from ``size_in`` to ``size_out`` as a sparse matrix (CSR,
    ``size_out`` x ``size_in``): Pillow's bilinear filter, a triangle widened by the scale when
    shrinking so every input pixel counts. Applied to both axes it gives Pillow's ``resize(BILINEAR)``
    to float rounding, in a quarter of the time: Pillow's float path filters in double precision
    pixel by pixel, while a sparse product runs over whole rows."""
    from scipy import sparse

    scale = size_in / size_out
    support = max(scale, 1.0)
    centres = (np.arange(size_out) + 0.5) * scale
    first = np.clip(np.floor(centres - support + 0.5).astype(np.int64), 0, size_in)
    stop = np.clip(np.floor(centres + support + 0.5).astype(np.int64), 0, size_in)
    taps = int((stop - first).max())
    index = first[:, None] + np.arange(taps)[None, :]  # size_out x taps
    weight = np.clip(1.0 - np.abs((index + 0.5 - centres[:, None]) / support), 0.0, None)
    weight[index >= stop[:, None]] = 0.0
    weight /= weight.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(size_out), taps)
    matrix = sparse.csr_matrix(
        (weight.ravel().astype(np.float32), (rows, np.minimum(index, size_in - 1).ravel())),
        shape=(size_out, size_in),
    )
    matrix.eliminate_zeros()
    return matrix


class SegmentationModel(InferenceModel):
    """An ONNX segmentation model, loaded through rembg's session for its name.

    rembg finds, downloads and opens the model file; inference runs on the session's ONNX Runtime
    session directly, on whole batches: :meth:`predict_batch` takes frames already at the model's
    input size (a video decoder scales them) and does rembg's normalisation and matte stretching
    vectorised in numpy. ``predict(image)`` -> float32 alpha matte 0..1, HxW, for one photo.
    """

    kind = "segmentation"

    def __init__(self, model_name: str, device: str = "auto", model_dir: str | None = None, **options: Any) -> None:
        self.info = segmentation_model_info(model_name)  # fail fast on a typo, before anything is cached
        super().__init__(model_name, device=device, model_dir=model_dir, **options)
        self.device = device
        self.model_dir = model_dir
        self.session: Any = None  # the rembg session, once loaded
        self.providers: list[str] = []
        self._input_name = ""
        self._fixed_batch: int | None = None  # the graph's batch dimension when it is not dynamic

    @property
    def input_size(self) -> int:
        return self.info.input_size

    def _load(self) -> None:
        from rembg import new_session

        # Resolve the file ourselves first: rembg would otherwise try a download with no clear message.
        download_segmentation_model(self.model_name, self.model_dir)
        self.providers = onnx_providers(self.device)
        try:
            self.session = new_session(self.model_name, providers=self.providers, sess_opts=_session_options())
        except Exception as exc:  # a corrupt/truncated file: onnxruntime cannot parse it
            raise ModelUnavailableError(
                f"segmentation model {self.model_name!r} could not be loaded from "
                f"{local_model_path(self.model_name)} ({exc}). Delete the file and download it again. "
                + _how_to_install(self.model_name)
            ) from exc
        graph_input = self.session.inner_session.get_inputs()[0]
        self._input_name = graph_input.name
        batch_dim = graph_input.shape[0] if graph_input.shape else None
        self._fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        try:
            self.providers = list(self.session.inner_session.get_providers())
        except Exception:  # pragma: no cover - informational only
            pass

    def preprocess(self, pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """N x 3 x S x S uint8 planar RGB -> float32 model input, normalised as the model was trained
        (rembg's ``normalize``: divide by each frame's maximum, then mean/std per channel).

        ``out`` (N x 3 x S x S float32 or larger along N) is filled and returned instead of a new
        array: a video cut-out reuses a few buffers, because a fresh 12 MB per 1024x1024 frame costs
        more in page faults than the arithmetic."""
        count = pixels.shape[0]
        peak = np.maximum(pixels.reshape(count, -1).max(axis=1).astype(np.float32), 1e-6)
        mean = np.asarray(self.info.mean, np.float32)
        std = np.asarray(self.info.std, np.float32)
        scale = 1.0 / (peak[:, None] * std[None, :])  # N x 3
        offset = mean / std
        out = np.empty(pixels.shape, np.float32) if out is None else out[:count]
        # Plane by plane, in place: a cast then two in-place passes, no temporaries.
        for frame in range(count):
            for channel in range(pixels.shape[1]):
                plane = out[frame, channel]
                plane[...] = pixels[frame, channel]
                plane *= scale[frame, channel]
                plane -= offset[channel]
        return out

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """The network alone: N x 3 x S x S float32 -> N x S x S raw predictions."""
        self.load()
        session = self.session.inner_session
        if self._fixed_batch is None:
            return session.run(None, {self._input_name: inputs})[0][:, 0]
        # A graph exported with a fixed batch of one (most of rembg's files): one run per frame.
        return np.concatenate(
            [session.run(None, {self._input_name: inputs[i : i + 1]})[0][:, 0] for i in range(inputs.shape[0])]
        )

    def postprocess(
        self, raw: np.ndarray, pixels: np.ndarray | None = None, size: tuple[int, int] | None = None
    ) -> Mattes:
        """Raw predictions -> mattes: stretched to 0..1 per frame as rembg does, with no division by
        zero on a frame that separates nothing (``pixels``, when given, marks uniform frames too).

        ``size`` (width, height): mattes at that size instead of the model's (bilinear, as a video
        encoder would scale them). The stretch is linear per frame, so it is applied after resizing:
        the same matte, with the per-pixel work done on the smaller of the two sizes."""
        pred = np.asarray(raw, dtype=np.float32)
        if self.info.logits:
            pred = (1.0 / (1.0 + np.exp(-pred))).astype(np.float32, copy=False)
        count = pred.shape[0]
        flat_view = pred.reshape(count, -1)
        low, high = flat_view.min(axis=1), flat_view.max(axis=1)
        span = high - low
        flat = ~(span >= FLAT_PREDICTION_SPAN)  # also catches NaN
        if pixels is not None:
            as_rows = pixels.reshape(count, -1)
            flat |= (as_rows.max(axis=1).astype(np.int16) - as_rows.min(axis=1)) <= UNIFORM_FRAME_LEVELS
        # One pass over the pixels: (pred - low) * (1 / span), flat frames multiplied by 0.
        gain = np.where(flat, 0.0, 1.0 / np.where(flat, 1.0, span)).astype(np.float32)
        offset = np.where(np.isfinite(low), low, 0.0).astype(np.float32)
        if size is not None and tuple(size) != pred.shape[:0:-1]:
            width, height = size
            rows = bilinear_weights(pred.shape[1], height)
            columns = bilinear_weights(pred.shape[2], width)
            alpha = np.empty((count, height, width), np.float32)
            for i in range(count):
                alpha[i] = (columns @ (rows @ pred[i]).T).T
            alpha -= offset[:, None, None]
        else:
            alpha = np.subtract(pred, offset[:, None, None])
        alpha *= gain[:, None, None]
        if not (np.isfinite(low).all() and np.isfinite(high).all()):  # a NaN or inf in the output
            np.nan_to_num(alpha, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        np.clip(alpha, 0.0, 1.0, out=alpha)
        return Mattes(alpha=alpha, flat=flat)

    def predict_batch(self, pixels: np.ndarray, size: tuple[int, int] | None = None) -> Mattes:
        """Mattes for N x 3 x S x S uint8 planar RGB frames, at the model's input size or at
        ``size`` (width, height; see ``postprocess``)."""
        pixels = np.asarray(pixels)
        side = self.input_size
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (3, side, side):
            raise ValueError(f"expected N x 3 x {side} x {side} uint8 frames, got {pixels.dtype} {pixels.shape}")
        return self.postprocess(self.run(self.preprocess(pixels)), pixels, size=size)

    def _predict(self, image: ImageInput, /, **kwargs: Any) -> np.ndarray:
        pil = _as_pil_rgb(image)
        size = self.input_size
        square = np.asarray(pil.resize((size, size), Image.Resampling.LANCZOS))  # rembg's resize
        # The matte comes back at the photo's size, resized as a video's is.
        return self.predict_batch(np.ascontiguousarray(square.transpose(2, 0, 1))[None], size=pil.size).alpha[0]

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
