"""A tiny stand-in for rembg's ONNX models, built by the tests themselves (model hubs are unreachable).

The graph has the real model's interface (one float input 1x3xSxS, first output 1x1xSxS, S = 1024 for
IS-Net/BiRefNet, 320 for the U^2-Net family) and does a real computation: a 3x3 box blur of the
channel mean followed by a steep sigmoid, i.e. "bright = foreground". A bright subject on a dark
background therefore gets a meaningful matte, so tests can check alignment, compositing and
temporal behaviour through rembg's real loading and pre/post-processing code.

The file is written where rembg looks for models (``U2NET_HOME/<name>.onnx``), so
``rembg.new_session(name)`` loads it without any network access.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Same names as the real IS-Net export; rembg only uses the first input and the first output.
INPUT_NAME = "input_image"
OUTPUT_NAME = "output_image"
# rembg scales pixels by the image maximum and subtracts a mean of ~0.5, so channel means lie in about
# [-0.5, 0.5]; a gain of 30 turns "brighter than mid-grey" into ~1 and "darker" into ~0.
SIGMOID_GAIN = 30.0

_INPUT_SIZES = {"u2net": 320, "u2netp": 320, "u2net_human_seg": 320, "silueta": 320}


def stand_in_input_size(name: str) -> int:
    return _INPUT_SIZES.get(name, 1024)


def build_stand_in_model_bytes(size: int, batch: int | str = "N") -> bytes:
    """``batch``: a symbolic name (any batch size, like BiRefNet's exports) or 1 (fixed, like rembg's U^2-Net files)."""
    # Conv weights: 1 output channel, 3 input channels, 3x3, all equal -> mean of 27 values.
    weights = np.full((1, 3, 3, 3), 1.0 / 27.0, dtype=np.float32)
    nodes = [
        helper.make_node("Conv", [INPUT_NAME, "box_w"], ["mean"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Mul", ["mean", "gain"], ["scaled"]),
        helper.make_node("Sigmoid", ["scaled"], [OUTPUT_NAME]),
    ]
    graph = helper.make_graph(
        nodes,
        "parallax_stand_in_segmentation",
        inputs=[helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch, 3, size, size])],
        outputs=[helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch, 1, size, size])],
        initializer=[
            numpy_helper.from_array(weights, "box_w"),
            numpy_helper.from_array(np.array(SIGMOID_GAIN, dtype=np.float32), "gain"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="parallax-tests")
    model.ir_version = 8  # readable by every onnxruntime >= 1.10
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build_stand_in_rembg_model(u2net_home: Path, name: str = "isnet-general-use", batch: int | str = "N") -> Path:
    """Write a stand-in ``<name>.onnx`` into ``u2net_home`` (rembg's flat layout) and return its path."""
    u2net_home = Path(u2net_home)
    u2net_home.mkdir(parents=True, exist_ok=True)
    path = u2net_home / f"{name}.onnx"
    path.write_bytes(build_stand_in_model_bytes(stand_in_input_size(name), batch))
    return path


# --- pytest fixtures (import them into a test module: ``from tests.stand_in_onnx import stand_in_home``) ---

import pytest  # noqa: E402  (kept below: the builder above is usable without pytest)


@pytest.fixture(scope="module")
def stand_in_home(tmp_path_factory):
    """U2NET_HOME holding stand-in models for isnet-general-use (the default, any batch size) and u2netp
    (a fixed batch of one), per test module.

    Downloads are switched off (HF_HUB_OFFLINE) so a test that asks for any other model gets
    ModelUnavailableError at once instead of trying the network.
    """
    from ai.models import model_cache

    home = tmp_path_factory.mktemp("u2net_home")
    build_stand_in_rembg_model(home, "isnet-general-use")
    build_stand_in_rembg_model(home, "u2netp", batch=1)  # both kinds of export: fixed and dynamic batch
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("U2NET_HOME", str(home))
        patch.setenv("HF_HUB_OFFLINE", "1")
        model_cache.clear()  # a model loaded from another folder must not leak in
        yield home
        model_cache.clear()
