"""Model base class and the per-process cache.

Follows Immich's machine-learning service: a small base class per model kind with ``load()`` and
``predict()``, instances cached so a worker loads each model once per process, not once per job.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from typing import Any


def hub_offline() -> bool:
    """Whether model downloads are off. HF_HUB_OFFLINE is huggingface_hub's own switch (read here as the
    library reads it, at call time, not a Parallax setting); rembg models obey it too, so an offline
    deployment sets it once for both model kinds."""
    from ai.config import parse_bool

    try:
        return parse_bool(os.environ.get("HF_HUB_OFFLINE", "") or "0")
    except ValueError:
        return False


class InferenceModel(ABC):
    """One model, loaded lazily and at most once."""

    kind: str = "model"

    def __init__(self, model_name: str, **options: Any) -> None:
        self.model_name = model_name
        self.options = options
        self._loaded = False
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> InferenceModel:
        with self._load_lock:
            if not self._loaded:
                self._load()
                self._loaded = True
        return self

    def predict(self, inputs: Any, **kwargs: Any) -> Any:
        self.load()
        return self._predict(inputs, **kwargs)

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _predict(self, inputs: Any, /, **kwargs: Any) -> Any: ...

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.model_name,
            "loaded": self._loaded,
            **{k: v for k, v in self.options.items() if isinstance(v, (str, int, float, bool, type(None)))},
        }


class ModelCache:
    """Process-wide cache keyed by (kind, name, options)."""

    def __init__(self) -> None:
        self._models: dict[tuple[Hashable, ...], InferenceModel] = {}
        self._lock = threading.Lock()

    def get(self, factory: Callable[..., InferenceModel], model_name: str, **options: Any) -> InferenceModel:
        key = (factory, model_name, tuple(sorted(options.items())))
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = factory(model_name, **options)
                self._models[key] = model
        return model

    def loaded(self) -> list[InferenceModel]:
        with self._lock:
            return [m for m in self._models.values() if m.loaded]

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


model_cache = ModelCache()


def import_libraries(*, depth: bool = True, segmentation: bool = True) -> None:
    """Import torch and transformers (depth) and onnxruntime with rembg (segmentation), no weights.

    A worker calls this before its first job: a job's time limit is a signal raised wherever the job
    is, and raised inside a first ``import torch`` it can leave the module half-initialised and the
    job stuck. Importing up front (seconds, once per process) keeps every limit on the job's work."""
    if depth:
        import torch  # noqa: F401
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation  # noqa: F401
    if segmentation:
        import onnxruntime  # noqa: F401
        import rembg  # noqa: F401
