"""Settings: defaults, parsing, and start-up errors that name the variable."""

import subprocess
import sys
from pathlib import Path

import pytest

from backend.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_photo_features_on_video_off():
    s = Settings.from_env({})
    assert (s.enable_depth, s.enable_background_removal, s.enable_experimental_video) == (True, True, False)
    assert (s.ai_device, s.ai_precision, s.depth_input_size, s.depth_batch_size) == ("auto", "auto", 518, 4)
    assert s.model_cache_dir == Path(".data/models")
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
            "ENABLE_BACKGROUND_REMOVAL": "off",
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
        ("CUTOUT_VIDEO_BACKGROUND", "plaid", "transparent, green"),
        ("SEGMENTATION_MODEL", "no-such-model", "isnet-general-use, u2net"),
        ("DEPTH_MODEL", "./no/such/folder", "Hugging Face model id"),
        ("DEPTH_MODEL", "not a model id", "Hugging Face model id"),
        ("AI_DEVICE", "tpu", "auto, cpu, cuda or cuda:N"),
        ("AI_PRECISION", "fp8", "auto, fp32, fp16, bf16"),
        ("DEPTH_INPUT_SIZE", "500", "a multiple of 14"),
        ("DEPTH_BATCH_SIZE", "0", "a whole number >= 1"),
        ("DEPTH_BIT_DEPTH", "12", "8 or 16"),
        ("MAX_UPLOAD_MB", "lots", "a whole number >= 1"),
    ],
)
def test_bad_values_name_the_variable_and_what_it_accepts(name, value, accepts):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({name: value})
    assert name in str(err.value) and accepts in str(err.value)


def test_good_model_names_and_colours_are_accepted(tmp_path):
    s = Settings.from_env(
        {"SEGMENTATION_MODEL": "u2netp", "DEPTH_MODEL": str(tmp_path), "CUTOUT_VIDEO_BACKGROUND": "#00FF00"}
    )
    assert (s.segmentation_model, s.depth_model, s.cutout_video_background) == ("u2netp", str(tmp_path), "00ff00")
    assert Settings.from_env({"DEPTH_MODEL": "owner/some-model_v2.1", "AI_DEVICE": "cuda:1"}).ai_device == "cuda:1"


def test_secrets_are_not_in_repr_or_public_config():
    s = Settings.from_env({"API_KEY": "key-123", "IMMICH_API_KEY": "immich-456", "IMMICH_URL": "http://i:2283"})
    assert "key-123" not in repr(s) and "immich-456" not in repr(s)
    public = str(s.public())
    assert "key-123" not in public and "immich-456" not in public
    assert s.public()["immich"]["configured"] is True
    assert s.secret("api_key") == "key-123"


def test_settings_survive_the_trip_through_child_process_environment():
    s = Settings.from_env({"IMMICH_URL": "http://i:2283", "IMMICH_API_KEY": "k", "MAX_UPLOAD_MB": "7"})
    assert Settings.from_env(s.as_env()) == s


def test_config_and_immich_links_never_show_url_credentials(make_app, services):
    app = make_app(immich_url="http://alice:s3cret@immich.local:2283/api", immich_api_key="key")
    client = app.test_client()
    config = client.get("/api/config").get_json()
    assert config["immich"]["url"] == "http://immich.local:2283"
    item = services.db.fetchone(
        "INSERT INTO media_items (id, kind, original_filename, mime_type, size_bytes, sha256, storage_path, source,"
        " immich_asset_id) VALUES (gen_random_uuid(), 'photo', 'a.jpg', 'image/jpeg', 1, 'x', 'a/a.jpg', 'immich',"
        " 'asset-1') RETURNING id"
    )
    shown = client.get(f"/api/media/{item['id']}").get_json()["item"]
    assert shown["immich_url"] == "http://immich.local:2283/photos/asset-1"
    assert "s3cret" not in client.get("/api/media").get_data(as_text=True)


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


def test_env_example_documents_every_setting_and_nothing_else():
    text = (ROOT / ".env.example").read_text()
    documented = {line.split("=", 1)[0].lstrip("# ").strip() for line in text.splitlines() if "=" in line}
    documented = {name for name in documented if name.isupper() and " " not in name}
    used = {str(field.validation_alias) for field in Settings.model_fields.values()}
    assert used == documented


def test_env_example_values_are_valid():
    lines = (ROOT / ".env.example").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    assert Settings.from_env(env) == Settings.from_env({})
