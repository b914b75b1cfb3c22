"""`python -m backend download-models`: the configured models into MODEL_CACHE_DIR, for offline servers."""

import os
import subprocess
import sys

from tests.stand_in_onnx import build_stand_in_rembg_model


def _download(tmp_path, *args, **env):
    full = {
        **os.environ,
        "MODEL_CACHE_DIR": str(tmp_path / "models"),
        "HF_HUB_OFFLINE": "1",  # this machine cannot reach the hubs; cached files must be found as they are
        **env,
    }
    cmd = [sys.executable, "-m", "backend", "download-models", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=full, capture_output=True, text=True, timeout=120)


def test_configured_models_are_found_in_the_model_cache(tmp_path, tiny_depth_model):
    build_stand_in_rembg_model(tmp_path / "models" / "rembg", "u2netp")
    done = _download(tmp_path, DEPTH_MODEL=str(tiny_depth_model), SEGMENTATION_MODEL="u2netp")
    assert done.returncode == 0, done.stderr
    assert f"depth model {tiny_depth_model}: {tiny_depth_model}" in done.stdout
    assert f"segmentation model u2netp: {tmp_path / 'models' / 'rembg'}" in done.stdout


def test_a_model_that_cannot_be_fetched_fails_with_the_reason(tmp_path, tiny_depth_model):
    failed = _download(tmp_path, "--segmentation-model", "silueta", DEPTH_MODEL=str(tiny_depth_model))
    assert failed.returncode == 1
    assert "segmentation model silueta: could not be downloaded" in failed.stderr
    assert "HF_HUB_OFFLINE" in failed.stderr
