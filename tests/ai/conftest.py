"""Fixtures shared by the AI pipeline tests: a tiny depth model and generated media."""

from __future__ import annotations

import pytest

from tests.tiny_models import build_tiny_depth_model


@pytest.fixture(scope="session")
def tiny_depth_model_dir(tmp_path_factory):
    """A folder holding a tiny random Depth Anything V2 (config, safetensors, processor config)."""
    return build_tiny_depth_model(tmp_path_factory.mktemp("models") / "tiny-depth-anything")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory):
    """A session-wide folder for generated videos and photos (each test names its own files)."""
    return tmp_path_factory.mktemp("media")
