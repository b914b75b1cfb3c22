"""Settings: defaults, parsing, and start-up errors that name the variable."""

import subprocess
import sys
from pathlib import Path

import pytest

from backend.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_safe_and_costly_features_off():
    s = Settings.from_env({})
    assert (s.enable_depth, s.enable_background_removal, s.enable_experimental_video) == (False, False, False)
    assert s.video_frame_extraction_fps == 1.0
    assert s.video_max_frames == 30
    assert s.video_frame_method == "interval"
    assert s.depth_model == "depth-anything/Depth-Anything-V2-Small-hf"
    assert s.host == "127.0.0.1"
    assert s.media_root == Path(".data/media")


def test_values_are_parsed():
    s = Settings.from_env(
        {
            "ENABLE_DEPTH": "yes",
            "ENABLE_EXPERIMENTAL_VIDEO": "1",
            "VIDEO_FRAME_EXTRACTION_FPS": "2.5",
            "VIDEO_MAX_FRAMES": "12",
            "VIDEO_FRAME_METHOD": "KEYFRAMES",
            "MAX_UPLOAD_MB": "5",
            "IMMICH_URL": "http://immich.local:2283",
            "IMMICH_API_KEY": "secret",
            "IMMICH_ALBUM_IDS": "a, b",
            "DATA_DIR": "/srv/parallax",
        }
    )
    assert s.enable_depth and s.enable_experimental_video and not s.enable_background_removal
    assert s.video_frame_extraction_fps == 2.5 and s.video_max_frames == 12
    assert s.video_frame_method == "keyframes"
    assert s.max_upload_bytes == 5 * 1024 * 1024
    assert s.immich_album_ids == ("a", "b")
    assert s.media_root == Path("/srv/parallax/media")


@pytest.mark.parametrize(
    "name,value,accepts",
    [
        ("ENABLE_DEPTH", "maybe", "true or false"),
        ("VIDEO_FRAME_EXTRACTION_FPS", "0", "a number > 0"),
        ("VIDEO_FRAME_EXTRACTION_FPS", "fast", "a number > 0"),
        ("VIDEO_MAX_FRAMES", "-3", "a whole number >= 1"),
        ("VIDEO_FRAME_METHOD", "every", "interval, keyframes"),
        ("DATABASE_URL", "mysql://x", "postgresql://"),
        ("PORT", "99999", "<= 65535"),
        ("IMMICH_URL", "immich.local", "http://"),
    ],
)
def test_bad_values_name_the_variable_and_what_it_accepts(name, value, accepts):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({name: value})
    assert name in str(err.value) and accepts in str(err.value)


def test_secrets_are_not_in_repr_or_public_config():
    s = Settings.from_env({"API_KEY": "key-123", "IMMICH_API_KEY": "immich-456", "IMMICH_URL": "http://i:2283"})
    assert "key-123" not in repr(s) and "immich-456" not in repr(s)
    public = str(s.public())
    assert "key-123" not in public and "immich-456" not in public
    assert s.public()["immich"]["configured"] is True


def test_bad_value_stops_the_cli_with_a_message(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "VIDEO_FRAME_METHOD": "sometimes"}
    proc = subprocess.run(
        [sys.executable, "-m", "backend", "migrate"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "VIDEO_FRAME_METHOD" in proc.stderr and "interval, keyframes" in proc.stderr


def test_env_example_documents_every_setting():
    text = (ROOT / ".env.example").read_text()
    documented = {line.split("=", 1)[0].lstrip("# ").strip() for line in text.splitlines() if "=" in line}
    used = set(Settings.from_env({}).as_env()) | {
        "API_KEY",
        "IMMICH_URL",
        "IMMICH_API_KEY",
        "IMMICH_PUBLIC_URL",
        "AI_DEVICE",
        "AI_PRECISION",
        "DEPTH_INPUT_SIZE",
        "DEPTH_BATCH_SIZE",
    }
    assert used - documented == set()
