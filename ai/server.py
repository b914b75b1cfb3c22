"""The AI service's thin Flask app: synchronous depth and background removal over HTTP.

Being replaced by endpoints of the backend that run through the worker's queue (issue 10): nothing
starts this service any more. It takes its settings as an argument and reads no environment.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, jsonify

from ai.config import (
    DEFAULT_DEPTH_BATCH_SIZE,
    DEFAULT_DEPTH_INPUT_SIZE,
    DEFAULT_DEPTH_MODEL,
    DEFAULT_SEGMENTATION_MODEL,
)
from ai.errors import InvalidMediaError, ModelUnavailableError
from ai.models import model_cache


@dataclass(frozen=True)
class AISettings:
    depth_model: str = DEFAULT_DEPTH_MODEL
    segmentation_model: str = DEFAULT_SEGMENTATION_MODEL
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | fp16 | bf16
    depth_input_size: int = DEFAULT_DEPTH_INPUT_SIZE
    depth_batch_size: int = DEFAULT_DEPTH_BATCH_SIZE
    model_cache_dir: Path = field(default_factory=lambda: Path(".data/models"))
    host: str = "127.0.0.1"
    port: int = 8001
    max_upload_bytes: int = 2048 * 1024 * 1024


def create_app(settings: AISettings | None = None) -> Flask:
    settings = settings or AISettings()
    app = Flask("parallax-ai")
    app.config["AI_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes

    from ai.api_depth import bp as depth_bp
    from ai.api_segmentation import bp as segmentation_bp

    app.register_blueprint(depth_bp)
    app.register_blueprint(segmentation_bp)

    @app.get("/health")
    def health():
        return jsonify(
            status="ok",
            ffmpeg=shutil.which("ffmpeg") is not None,
            loaded_models=[m.describe() for m in model_cache.loaded()],
        )

    @app.get("/api/models")
    def models():
        from ai.segmentation import available_segmentation_models

        return jsonify(
            depth={
                "default": settings.depth_model,
                "loaded": [m.describe() for m in model_cache.loaded() if m.kind == "depth"],
            },
            segmentation={
                "default": settings.segmentation_model,
                "available": available_segmentation_models(),
                "loaded": [m.describe() for m in model_cache.loaded() if m.kind == "segmentation"],
            },
            device=settings.device,
            precision=settings.precision,
        )

    @app.errorhandler(InvalidMediaError)
    def invalid_media(exc):
        return jsonify(error={"code": "invalid_media", "message": str(exc)}), 422

    @app.errorhandler(ModelUnavailableError)
    def model_unavailable(exc):
        return jsonify(error={"code": "model_unavailable", "message": str(exc)}), 503

    @app.errorhandler(413)
    def too_large(exc):
        return jsonify(error={"code": "too_large", "message": "the upload is larger than MAX_UPLOAD_MB"}), 413

    @app.errorhandler(400)
    def bad_request(exc):
        return jsonify(error={"code": "bad_request", "message": getattr(exc, "description", str(exc))}), 400

    return app
