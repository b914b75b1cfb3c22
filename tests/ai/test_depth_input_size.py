"""The size video frames are extracted and fed to the depth model at: never an upscaled frame."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from ai.depth import get_depth_model, video_depth
from tests.media_factory import make_video


@pytest.fixture(scope="module")
def model(tiny_depth_model_dir):
    return get_depth_model(str(tiny_depth_model_dir), device="cpu", precision="fp32", input_size=56, batch_size=2)


@pytest.fixture(scope="module")
def wide_video(media_dir):
    return make_video(media_dir / "wide.mp4", seconds=1, fps=10, width=320, height=180)


def sizes_in_zip(path) -> set[tuple[str, tuple[int, int]]]:
    with zipfile.ZipFile(path) as archive:
        return {
            (name.split("_")[0], Image.open(io.BytesIO(archive.read(name))).size)
            for name in archive.namelist()
            if name.endswith((".png", ".jpg"))
        }


def test_a_downscaled_frame_is_fed_as_it_is_not_upscaled_to_the_input_size(model, wide_video, tmp_path):
    # 320x180 scaled to 160 high is 284x160; the checkpoint's rule would enlarge it to 168 high
    # (input size 168). Instead it is extracted at the patch multiple below (280x154) and fed as is.
    manifest = video_depth(wide_video, tmp_path / "d.zip", model=model, fps=5, height=160, input_size=168)
    assert (manifest["frame_width"], manifest["frame_height"]) == (280, 154)
    assert manifest["inference_size"] == [154, 280]
    assert sizes_in_zip(tmp_path / "d.zip") == {("depth", (280, 154)), ("color", (280, 154))}


def test_a_frame_larger_than_the_input_size_is_scaled_down_for_the_model_only(model, wide_video, tmp_path):
    manifest = video_depth(wide_video, tmp_path / "d.zip", model=model, fps=5, height=None, input_size=112)
    assert (manifest["frame_width"], manifest["frame_height"]) == (320, 180)
    assert manifest["inference_size"] == [112, 196]  # the cap: DEPTH_INPUT_SIZE
    # The depth map comes back at the frame size the viewer shows, like the colour frame.
    assert sizes_in_zip(tmp_path / "d.zip") == {("depth", (320, 180)), ("color", (320, 180))}
