"""Tiny randomly initialised models saved like real ones, so tests load them through the same
``from_pretrained`` path as a downloaded model (the model hubs are not reachable from CI)."""

from __future__ import annotations

from pathlib import Path

# The real Depth Anything V2 processor settings (preprocessor_config.json of the -hf checkpoints),
# only the inference size made tiny.
DEPTH_PROCESSOR_MEAN = [0.485, 0.456, 0.406]
DEPTH_PROCESSOR_STD = [0.229, 0.224, 0.225]
TINY_DEPTH_INPUT_SIZE = 56  # a multiple of the patch size 14


def build_tiny_depth_model(path: Path | str, seed: int = 0) -> Path:
    """Save a ~100k-parameter Depth Anything (DINOv2 backbone + DPT head) and its processor to ``path``.

    Returns the folder, usable as DEPTH_MODEL. Idempotent: an existing complete folder is reused.
    """
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    path = Path(path)
    if (path / "config.json").exists() and (path / "preprocessor_config.json").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    backbone = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        mlp_ratio=2,
        patch_size=14,
        image_size=TINY_DEPTH_INPUT_SIZE,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
        apply_layernorm=True,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        fusion_hidden_size=16,
        head_hidden_size=8,
        neck_hidden_sizes=[8, 16, 16, 32],
        reassemble_hidden_size=32,
        patch_size=14,
        depth_estimation_type="relative",
    )
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(config).eval()
    # Transformers' init (normal, std 0.02) makes this tiny net output ~1e-7 and mostly exact zeros
    # after the head's final ReLU. PyTorch's default init plus a positive output bias gives depth
    # maps with a usable spread (~0.9-1.1) that depend on the image, like a real model's.
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            module.reset_parameters()
    with torch.no_grad():
        model.head.conv3.weight.mul_(20.0)
        model.head.conv3.bias.fill_(1.0)
    model.save_pretrained(path)
    processor = DPTImageProcessor(
        do_resize=True,
        size={"height": TINY_DEPTH_INPUT_SIZE, "width": TINY_DEPTH_INPUT_SIZE},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=DEPTH_PROCESSOR_MEAN,
        image_std=DEPTH_PROCESSOR_STD,
        do_pad=False,
    )
    processor.save_pretrained(path)
    return path
