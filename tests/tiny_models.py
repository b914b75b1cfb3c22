"""Tiny randomly initialised models saved like real ones, so tests load them through the same
``from_pretrained`` path as a downloaded model (the model hubs are not reachable from CI)."""

from __future__ import annotations

from pathlib import Path

# The real Depth Anything V2 processor settings (preprocessor_config.json of the -hf checkpoints),
# only the inference size made tiny.
DEPTH_PROCESSOR_MEAN = [0.485, 0.456, 0.406]
DEPTH_PROCESSOR_STD = [0.229, 0.224, 0.225]
TINY_DEPTH_INPUT_SIZE = 56  # a multiple of the patch size 14
SMALL_DEPTH_INPUT_SIZE = 518  # the real checkpoints' input size


def build_tiny_depth_model(path: Path | str, seed: int = 0) -> Path:
    """Save a ~100k-parameter Depth Anything (DINOv2 backbone + DPT head) and its processor to ``path``.

    Returns the folder, usable as DEPTH_MODEL. Idempotent: an existing complete folder is reused.
    """
    import torch

    def spread_outputs(model) -> None:
        # Transformers' init (normal, std 0.02) makes this tiny net output ~1e-7 and mostly exact zeros
        # after the head's final ReLU. PyTorch's default init plus a positive output bias gives depth
        # maps with a usable spread (~0.9-1.1) that depend on the image, like a real model's.
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                module.reset_parameters()
        with torch.no_grad():
            model.head.conv3.weight.mul_(20.0)
            model.head.conv3.bias.fill_(1.0)

    return _save_depth_anything(
        path,
        seed,
        TINY_DEPTH_INPUT_SIZE,
        backbone={"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2, "mlp_ratio": 2},
        out_indices=[1, 2, 3, 4],
        head={"fusion_hidden_size": 16, "head_hidden_size": 8, "neck_hidden_sizes": [8, 16, 16, 32]},
        reassemble_hidden_size=32,
        adjust=spread_outputs,
    )


def build_small_sized_depth_model(path: Path | str, seed: int = 0) -> Path:
    """Depth Anything V2 Small's exact architecture (the values of its config.json: DINOv2 ViT-S/14 +
    DPT head, 24.8M parameters) with random weights: the real model's speed and memory, meaningless
    depth. For benchmarks; idempotent like :func:`build_tiny_depth_model`."""
    return _save_depth_anything(
        path,
        seed,
        SMALL_DEPTH_INPUT_SIZE,
        backbone={"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "mlp_ratio": 4},
        out_indices=[3, 6, 9, 12],
        head={"fusion_hidden_size": 64, "head_hidden_size": 32, "neck_hidden_sizes": [48, 96, 192, 384]},
        reassemble_hidden_size=384,
    )


def _save_depth_anything(
    path: Path | str,
    seed: int,
    input_size: int,
    *,
    backbone: dict,
    out_indices: list[int],
    head: dict,
    reassemble_hidden_size: int,
    adjust=None,
) -> Path:
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    path = Path(path)
    if (path / "config.json").exists() and (path / "preprocessor_config.json").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    config = DepthAnythingConfig(
        backbone_config=Dinov2Config(
            **backbone,
            patch_size=14,
            image_size=input_size,
            out_indices=out_indices,
            reshape_hidden_states=False,
            apply_layernorm=True,
        ),
        reassemble_hidden_size=reassemble_hidden_size,
        patch_size=14,
        depth_estimation_type="relative",
        **head,
    )
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(config).eval()
    if adjust is not None:
        adjust(model)
    model.save_pretrained(path)
    processor = DPTImageProcessor(
        do_resize=True,
        size={"height": input_size, "width": input_size},
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
