"""Depth maps with Depth Anything V2 (through transformers), for photos and videos.

The model predicts *relative inverse depth*: larger values are nearer, in an arbitrary scale that
can change from image to image. Pipelines turn it into grayscale PNGs:

* photos: min-max over the photo, so the full grey range is used;
* videos: :class:`ai.stabilize.DepthStabilizer` aligns each frame's scale and shift to the part of
  the picture that did not change, so a static background keeps its grey level while things move
  through the scene (per-frame min-max makes every frame "breathe" whenever the nearest object
  changes), and resets at scene cuts. Memory stays constant in the video's length.

Every depth PNG carries its polarity, bit depth, model and normalisation (:mod:`ai.depth_metadata`).

Polarity ``near_dark`` (the default: darker is nearer) or ``near_bright``. Preprocessing (resize to
the inference size, normalise with the checkpoint's own mean/std) runs in torch on the model's
device instead of through the PIL image processor, which costs more than the small model itself.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import zipfile
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ai.config import DEFAULT_DEPTH_MODEL
from ai.depth_metadata import depth_metadata, depth_pnginfo
from ai.errors import ModelUnavailableError, TransientError
from ai.frames import effective_fps as nominal_effective_fps
from ai.frames import estimate_frame_total, extract_frames, output_size, probe_source_video
from ai.models import InferenceModel, hub_offline, model_cache
from ai.probe import open_photo
from ai.progress import ProgressCallback, no_progress
from ai.scenecut import SceneCutDetector
from ai.stabilize import DepthStabilizer

log = logging.getLogger(__name__)

POLARITIES = ("near_dark", "near_bright")
BIT_DEPTHS = (8, 16)
DEVICES_HELP = "auto, cpu, cuda or cuda:N"
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# Only the files from_pretrained needs (the hub repos also hold sample images and other formats).
MODEL_FILE_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------
# Model


def _cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 in hardware (AVX512-BF16 or AMX); else bf16 is slower."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_device(device: str = "auto") -> str:
    import torch

    device = (device or "auto").strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ModelUnavailableError(
                f"AI_DEVICE={device} but no CUDA GPU is available to torch; set AI_DEVICE=auto or cpu"
            )
        return device
    raise ValueError(f"device must be {DEVICES_HELP}, got {device!r}")


def resolve_precision(precision: str, device: str) -> str:
    """fp16 on CUDA, bf16 on CPUs that compute it natively, otherwise fp32."""
    precision = (precision or "auto").strip().lower()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "fp16"
    return "bf16" if _cpu_has_native_bf16() else "fp32"


def _looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else with a slash is a folder.
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def local_model_dir(name: str) -> Path | None:
    """The folder ``name`` refers to, or None for a hub id. Raises if a folder path does not exist."""
    candidate = Path(name).expanduser()
    if candidate.is_dir():
        return candidate
    if _looks_like_path(name):
        raise ModelUnavailableError(
            f"the depth model folder {name!r} does not exist; set DEPTH_MODEL to a folder holding "
            f"config.json, model.safetensors and preprocessor_config.json, or to a Hugging Face model id"
        )
    return None


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hugging Face endpoint answers a TCP connect. Without this check an offline host
    spends minutes in huggingface_hub's retries before failing. Assumed reachable behind a proxy."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def _unavailable_message(name: str, exc: BaseException) -> str:
    return (
        f"the depth model {name!r} is not available on this machine and could not be downloaded "
        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}). "
        f"Run `python -m backend download-models` on a machine with internet access (it fills "
        f"MODEL_CACHE_DIR, which you can then copy here), or set DEPTH_MODEL to a local folder "
        f"holding the model"
    )


class DepthModel(InferenceModel):
    """Depth Anything (V1/V2, any size) or any ``AutoModelForDepthEstimation`` checkpoint.

    Options: ``device`` (auto|cpu|cuda|cuda:N), ``precision`` (auto|fp32|fp16|bf16),
    ``input_size`` (shorter side fed to the model, a multiple of the patch size 14),
    ``batch_size`` (frames per forward pass), ``cache_dir`` (Hugging Face cache folder).
    """

    kind = "depth"

    def __init__(self, model_name: str = DEFAULT_DEPTH_MODEL, **options: Any) -> None:
        options.setdefault("device", "auto")
        options.setdefault("precision", "auto")
        options.setdefault("input_size", 518)
        options.setdefault("batch_size", 4)
        super().__init__(model_name, **options)
        self.device: str | None = None
        self.precision: str | None = None
        self.multiple = 14
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD
        self.keep_aspect_ratio = True
        self._model: Any = None  # the transformers model, once loaded
        self._predict_lock = threading.Lock()  # one forward at a time per model (HTTP threads)

    # -- loading ------------------------------------------------------------------------------
    def _load(self) -> None:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        device = resolve_device(self.options["device"])
        precision = resolve_precision(self.options["precision"], device)
        local = local_model_dir(self.model_name)
        source = str(local) if local is not None else self.model_name
        cache_dir = self.options.get("cache_dir")
        kwargs: dict[str, Any] = {"cache_dir": str(cache_dir)} if cache_dir else {}
        try:
            try:
                # Cached copy first: no network round trip (or long timeout) when it is there.
                processor = AutoImageProcessor.from_pretrained(source, local_files_only=True, **kwargs)
                model = AutoModelForDepthEstimation.from_pretrained(source, local_files_only=True, **kwargs)
            except OSError as not_cached:
                if local is not None or hub_offline():
                    raise
                if not hub_reachable():
                    raise ModelUnavailableError(
                        _unavailable_message(
                            self.model_name, OSError("not in the local cache and huggingface.co is unreachable")
                        )
                    ) from not_cached
                processor = AutoImageProcessor.from_pretrained(source, **kwargs)
                model = AutoModelForDepthEstimation.from_pretrained(source, **kwargs)
        except ModelUnavailableError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            if local is not None:
                raise ModelUnavailableError(
                    f"the folder {str(local)!r} does not hold a loadable depth model ({exc}); it needs "
                    f"config.json, model.safetensors and preprocessor_config.json"
                ) from exc
            raise ModelUnavailableError(_unavailable_message(self.model_name, exc)) from exc
        self.mean = tuple(getattr(processor, "image_mean", None) or IMAGENET_MEAN)
        self.std = tuple(getattr(processor, "image_std", None) or IMAGENET_STD)
        self.multiple = int(
            getattr(processor, "ensure_multiple_of", None)
            or getattr(getattr(model.config, "backbone_config", None), "patch_size", 14)
            or 14
        )
        self.keep_aspect_ratio = bool(getattr(processor, "keep_aspect_ratio", True))
        model.eval().to(device)
        self._model = model
        self.device = device
        self._set_precision(precision)
        log.info("depth model %s loaded on %s (%s)", self.model_name, device, self.precision)

    def _set_precision(self, precision: str) -> None:
        import torch

        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self._model.to(dtype)
        self.dtype = dtype
        self.precision = precision

    # -- inference ----------------------------------------------------------------------------
    def inference_size(self, height: int, width: int, input_size: int | None = None) -> tuple[int, int]:
        """(h, w) fed to the model, exactly as the checkpoint's DPT processor computes it
        (keep_aspect_ratio, ensure_multiple_of=14): of the two scales that would bring height or
        width to ``input_size``, the one closer to 1 is used for both sides. For frames larger
        than input_size on both sides that puts the shorter side at input_size."""
        target = int(input_size or self.options["input_size"])
        multiple = self.multiple
        target = max(multiple, round(target / multiple) * multiple)
        scale_h, scale_w = target / height, target / width
        if self.keep_aspect_ratio:
            # The processor keeps the scale closer to 1 (resizes as little as possible).
            if abs(1 - scale_w) < abs(1 - scale_h):
                scale_h = scale_w
            else:
                scale_w = scale_h

        def constrain(value: float) -> int:
            return max(multiple, round(value / multiple) * multiple)

        return constrain(scale_h * height), constrain(scale_w * width)

    # Narrower than the base class on purpose: a depth model takes only input_size.
    def _predict(self, images: Sequence[Any], input_size: int | None = None) -> list[np.ndarray]:  # type: ignore[override]
        """Relative inverse depth (float32, larger = nearer) for each image, at its own HxW."""
        arrays = [_as_rgb_array(image) for image in images]
        results: list[np.ndarray | None] = [None] * len(arrays)
        # Batch images of one size together (every frame of a video has the same size).
        groups: dict[tuple[int, int], list[int]] = {}
        for i, array in enumerate(arrays):
            groups.setdefault(array.shape[:2], []).append(i)
        batch_size = max(1, int(self.options["batch_size"]))
        for (height, width), indices in groups.items():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                depths = self._forward_batch([arrays[i] for i in chunk], height, width, input_size)
                for i, depth in zip(chunk, depths):
                    results[i] = depth
        return results  # type: ignore[return-value]

    def preprocess(self, arrays: list[np.ndarray], input_size: int | None = None):
        """uint8 HxWx3 arrays -> normalised pixel_values on the model's device and dtype."""
        import torch
        import torch.nn.functional as F

        height, width = arrays[0].shape[:2]
        target = self.inference_size(height, width, input_size)
        batch = torch.from_numpy(np.stack(arrays)).to(self.device, non_blocking=True)
        batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
        if (height, width) != target:
            batch = F.interpolate(
                batch, size=target, mode="bicubic", align_corners=False, antialias=target[0] < height
            ).clamp_(0.0, 1.0)
        mean = torch.tensor(self.mean, device=batch.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, 3, 1, 1)
        return ((batch - mean) / std).to(self.dtype)

    def _forward_batch(
        self, arrays: list[np.ndarray], height: int, width: int, input_size: int | None
    ) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        with self._predict_lock:
            try:
                with torch.inference_mode():
                    pixel_values = self.preprocess(arrays, input_size)
                    try:
                        predicted = self._model(pixel_values=pixel_values).predicted_depth
                        if self.precision != "fp32" and not torch.isfinite(predicted).all():
                            raise FloatingPointError("non-finite depth in half precision")
                    except (RuntimeError, FloatingPointError) as exc:
                        if self.precision == "fp32" or isinstance(exc, torch.cuda.OutOfMemoryError):
                            raise
                        # Some ops have no half-precision kernel on some devices, or fp16 overflows.
                        log.warning("depth model failed in %s (%s); falling back to fp32", self.precision, exc)
                        self._set_precision("fp32")
                        predicted = self._model(pixel_values=pixel_values.float()).predicted_depth
                    depth = F.interpolate(
                        predicted.float().unsqueeze(1), size=(height, width), mode="bicubic", align_corners=False
                    ).squeeze(1)
                    return list(depth.cpu().numpy().astype(np.float32, copy=False))
            except torch.cuda.OutOfMemoryError as exc:
                torch.cuda.empty_cache()
                raise TransientError(
                    "the GPU ran out of memory; lower DEPTH_BATCH_SIZE or DEPTH_INPUT_SIZE or free the GPU, then retry"
                ) from exc
            except MemoryError as exc:
                raise TransientError(
                    "out of memory while computing depth; retry or lower DEPTH_INPUT_SIZE / DEPTH_BATCH_SIZE"
                ) from exc

    def forward_only(self, pixel_values) -> Any:
        """The bare model forward (for benchmarks: the time the pipeline cannot avoid)."""
        import torch

        self.load()
        with torch.inference_mode():
            return self._model(pixel_values=pixel_values).predicted_depth

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update({"device_resolved": self.device, "precision_resolved": self.precision})
        return info


def _as_rgb_array(image: Any) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 RGB image, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {array.dtype}")
    return np.ascontiguousarray(array[:, :, :3])


def get_depth_model(
    name: str = DEFAULT_DEPTH_MODEL,
    device: str = "auto",
    precision: str = "auto",
    input_size: int = 518,
    batch_size: int = 4,
    cache_dir: str | None = None,
) -> DepthModel:
    """The process-wide DepthModel for these options (loaded on first use, then reused)."""
    options: dict[str, Any] = {
        "device": device,
        "precision": precision,
        "input_size": int(input_size),
        "batch_size": int(batch_size),
    }
    if cache_dir:
        options["cache_dir"] = str(cache_dir)
    return model_cache.get(DepthModel, name, **options)  # type: ignore[return-value]


def download_depth_model(name: str = DEFAULT_DEPTH_MODEL, cache_dir: str | None = None) -> str:
    """Fetch a hub model into the Hugging Face cache (HF_HOME / MODEL_CACHE_DIR); return its folder.

    A local folder is returned as it is. Raises ModelUnavailableError when it cannot be fetched.
    """
    local = local_model_dir(name)
    if local is not None:
        return str(local)
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id=name, allow_patterns=MODEL_FILE_PATTERNS, cache_dir=cache_dir)
    except Exception as exc:  # network, auth, unknown id: all "cannot make it available here"
        raise ModelUnavailableError(
            f"could not download the depth model {name!r} ({type(exc).__name__}: {str(exc)[:200]}); check "
            f"the model id and this machine's access to huggingface.co, or copy a downloaded "
            f"MODEL_CACHE_DIR from a machine that has it"
        ) from exc


# --------------------------------------------------------------------------------------------
# Normalisation and encoding


def check_polarity(polarity: str) -> str:
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be one of {', '.join(POLARITIES)}, got {polarity!r}")
    return polarity


def check_bit_depth(bit_depth: Any) -> int:
    try:
        value = int(bit_depth)
    except (TypeError, ValueError):
        value = -1
    if value not in BIT_DEPTHS:
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    return value


def normalize_min_max(depth: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Scale one depth map to 0..1 (1 = nearest) over its own range."""
    finite = depth[np.isfinite(depth)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 0.0
    return _scale(depth, low, high), {"method": "min-max", "min": low, "max": high}


def _scale(depth: np.ndarray, low: float, high: float) -> np.ndarray:
    span = high - low
    if not span > 1e-12 * max(1.0, abs(high)):
        return np.full(depth.shape, 0.5, dtype=np.float32)  # flat: no depth information
    out = (depth.astype(np.float32) - np.float32(low)) / np.float32(span)
    np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(out, 0.0, 1.0, out=out)


def quantize_depth(normalized: np.ndarray, bit_depth: int = 8, polarity: str = "near_dark") -> np.ndarray:
    """0..1 (1 = nearest) -> uint8 or uint16 grey levels in the given polarity. near_dark and
    near_bright maps of one depth are exact complements (max - value)."""
    maximum = 255 if bit_depth == 8 else 65535
    quantized = np.rint(np.clip(normalized, 0.0, 1.0) * maximum).astype(np.int32)
    if polarity == "near_dark":
        quantized = maximum - quantized
    return quantized.astype(np.uint8 if bit_depth == 8 else np.uint16)


def encode_depth(normalized: np.ndarray, bit_depth: int = 8, polarity: str = "near_dark") -> Image.Image:
    """0..1 (1 = nearest) -> grayscale PIL image, 8-bit "L" or 16-bit "I;16"."""
    quantized = quantize_depth(normalized, bit_depth, polarity)
    return Image.fromarray(quantized, "L") if bit_depth == 8 else Image.fromarray(quantized)  # "I;16"


def _png_bytes(image: Image.Image, pnginfo=None) -> bytes:
    buffer = BytesIO()
    image.save(buffer, "PNG", compress_level=3, pnginfo=pnginfo)
    return buffer.getvalue()


def _jpeg_bytes(array: np.ndarray) -> bytes:
    buffer = BytesIO()
    Image.fromarray(array, "RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # pragma: no cover - best effort
        log.warning("could not remove %s: %s", path, exc)


# --------------------------------------------------------------------------------------------
# Pipelines


def photo_depth(
    src: Path | str,
    dst_png: Path | str,
    *,
    model: DepthModel,
    bit_depth: int = 8,
    polarity: str = "near_dark",
    input_size: int | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Depth map of a photo as a grayscale PNG at the photo's displayed (EXIF-oriented) size."""
    bit_depth = check_bit_depth(bit_depth)
    check_polarity(polarity)
    progress = progress or no_progress
    src, dst_png = Path(src), Path(dst_png)
    _, image = open_photo(src)  # decoded once: the check and the pixels
    try:
        progress(0, 3, "loading model")
        model.load()
        progress(1, 3, "inferring")
        raw = model.predict([image], input_size=input_size)[0]
        progress(2, 3, "writing")
        normalized, normalization = normalize_min_max(raw)
        png = encode_depth(normalized, bit_depth, polarity)
        dst_png.parent.mkdir(parents=True, exist_ok=True)
        metadata = depth_metadata(
            polarity=polarity,
            bit_depth=bit_depth,
            model=model.model_name,
            normalization=normalization,
            raw_range=(normalization["min"], normalization["max"]),
        )
        png.save(dst_png, "PNG", compress_level=3, pnginfo=depth_pnginfo(metadata))
        progress(3, 3, "done")
    except BaseException:
        _remove_quietly(dst_png)
        raise
    return {
        "width": image.width,
        "height": image.height,
        "bit_depth": bit_depth,
        "polarity": polarity,
        "model": model.model_name,
        "normalization": normalization,
        "raw_min": normalization["min"],
        "raw_max": normalization["max"],
        "inference_size": list(model.inference_size(image.height, image.width, input_size)),
    }


def video_depth(
    src: Path | str,
    dst_zip: Path | str,
    *,
    model: DepthModel,
    method: str = "interval",
    fps: float = 1.0,
    max_frames: int | None = 30,
    height: int | None = 480,
    include_color: bool = True,
    polarity: str = "near_dark",
    bit_depth: int = 8,
    source: dict[str, Any] | None = None,
    input_size: int | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Depth maps of frames sampled from a video, written into a ZIP with a manifest.

    The ZIP holds ``depth_frame_0001.png``..., ``color_frame_0001.jpg``... (with include_color)
    and ``manifest.json`` (also returned). Frames stream through: memory does not grow with the
    video's length (one batch of frames at a time; see :class:`ai.stabilize.DepthStabilizer`).
    """
    bit_depth = check_bit_depth(bit_depth)
    check_polarity(polarity)
    progress = progress or no_progress
    src, dst_zip = Path(src), Path(dst_zip)
    info = probe_source_video(src)
    extract_size, input_size = video_input_size(model, info, height, input_size)
    frames = extract_frames(src, method=method, fps=fps, max_frames=max_frames, size=extract_size)
    total = estimate_frame_total(info, method, fps, max_frames) if method == "interval" else None
    # Zero-padded to at least 4 digits and to the most frames this run can give: names sort.
    # Uncapped runs only have an estimate of their length: leave room.
    most = max_frames or max(999_999, 2 * (total or 0))
    digits = max(4, len(str(most)))
    stabilizer = DepthStabilizer()  # no look-ahead: sampled frames are far apart in time
    cuts = SceneCutDetector()
    normalization = stabilizer.describe()
    batch_size = max(1, int(model.options.get("batch_size", 4)))
    entries: list[dict[str, Any]] = []
    frame_size: tuple[int, int] | None = None
    dst_zip.parent.mkdir(parents=True, exist_ok=True)
    # PNG/JPEG encoding and zip writing run on one writer thread, overlapping the next inference;
    # at most two batches wait for it (bounded memory).
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="depth-zip")
    pending: list[Future] = []
    try:
        archive = zipfile.ZipFile(dst_zip, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        try:
            progress(0, total, "loading model")
            model.load()

            def write_batch(batch, depths, infos):
                for frame, depth_png, pnginfo in zip(batch, depths, infos):
                    name = f"{frame.index:0{digits}d}"
                    archive.writestr(f"depth_frame_{name}.png", _png_bytes(depth_png, pnginfo))
                    if include_color:
                        archive.writestr(f"color_frame_{name}.jpg", _jpeg_bytes(frame.image))

            def flush(batch):
                raw = model.predict([f.image for f in batch], input_size=input_size)
                images, infos = [], []
                for frame, depth in zip(batch, raw):
                    cut = cuts(frame.image)
                    (normalized,) = stabilizer.push(depth, frame.image, cut=cut)
                    images.append(encode_depth(normalized, bit_depth, polarity))
                    raw_range = stabilizer.last_raw_range
                    infos.append(
                        depth_pnginfo(
                            depth_metadata(
                                polarity=polarity,
                                bit_depth=bit_depth,
                                model=model.model_name,
                                normalization=normalization,
                                raw_range=raw_range,
                            )
                        )
                    )
                    name = f"{frame.index:0{digits}d}"
                    entry = {
                        "index": frame.index,
                        "time": frame.time,
                        "depth": f"depth_frame_{name}.png",
                        "raw_range": list(raw_range) if raw_range else None,
                        "scene_cut": cut,
                    }
                    if include_color:
                        entry["color"] = f"color_frame_{name}.jpg"
                    entries.append(entry)
                while len(pending) >= 2:
                    pending.pop(0).result()
                pending.append(writer.submit(write_batch, batch, images, infos))
                for frame in batch:
                    shown_total = max(total, frame.index) if total else None
                    progress(frame.index, shown_total, f"frame {frame.index}/{shown_total or '?'}")

            batch: list = []
            for frame in frames:
                frame_size = frame_size or (frame.width, frame.height)
                batch.append(frame)
                if len(batch) >= batch_size:
                    flush(batch)
                    batch = []
            if batch:
                flush(batch)
            while pending:
                pending.pop(0).result()
            manifest = {
                "version": 1,
                "source": source or {"filename": src.name},
                "model": model.model_name,
                "method": method,
                "requested_fps": fps if method == "interval" else None,
                "effective_fps": _effective_fps(info, method, fps, entries),
                "frame_width": frame_size[0] if frame_size else None,
                "frame_height": frame_size[1] if frame_size else None,
                "frame_count": len(entries),
                "polarity": polarity,
                "bit_depth": bit_depth,
                "normalization": normalization,
                "inference_size": list(model.inference_size(frame_size[1], frame_size[0], input_size))
                if frame_size
                else None,
                "frames": entries,
            }
            archive.writestr(
                zipfile.ZipInfo("manifest.json", date_time=(1980, 1, 1, 0, 0, 0)),
                json.dumps(manifest, indent=2),
                compress_type=zipfile.ZIP_DEFLATED,
            )
        finally:
            # The writer must be idle before the archive closes (or is abandoned on error).
            writer.shutdown(wait=True, cancel_futures=True)
            archive.close()
    except BaseException:
        frames.close()
        _remove_quietly(dst_zip)
        raise
    progress(len(entries), len(entries), "done")
    return manifest


def video_input_size(
    model: DepthModel, info, height: int | None, input_size: int | None
) -> tuple[tuple[int, int], int]:
    """((width, height) to extract video frames at, input size to feed them at).

    Frames are extracted ``height`` high (never upscaled from the source). Where the checkpoint's
    resize rule would then enlarge them (e.g. a 480-high frame to 518: detail the frame no longer
    has, at 1.2x the tokens), they are instead extracted at the nearest smaller multiple of the patch
    size and fed as they are: no resize at all, and the depth map is exactly the frame's size.
    Larger frames are scaled down to the input size (``DEPTH_INPUT_SIZE``, the cap) inside the
    model, and their depth scaled back up to the frame size the viewer shows."""
    model.load()  # its patch size and resize rule come with the checkpoint
    cap = int(input_size or model.options["input_size"])
    width, height = output_size(info, height)
    fed_h, fed_w = model.inference_size(height, width, cap)
    if fed_h <= height and fed_w <= width:
        return (width, height), cap
    multiple = model.multiple
    width, height = max(multiple, width // multiple * multiple), max(multiple, height // multiple * multiple)
    return (width, height), min(cap, width, height)


def _effective_fps(info, method: str, fps: float, entries: list[dict[str, Any]]) -> float | None:
    if method == "interval":
        value = nominal_effective_fps(info, method, fps)
        return round(value, 6) if value else None
    if len(entries) >= 2 and entries[-1]["time"] > entries[0]["time"]:
        return round((len(entries) - 1) / (entries[-1]["time"] - entries[0]["time"]), 6)
    return None
