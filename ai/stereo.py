"""Stereo 3D from colour + depth (depth-image-based rendering), for photos and videos.

Parameters, as in VR converters such as iw3:

* ``divergence``: the 3D strength, the disparity between the nearest and the farthest point in %
  of the image width (2.0 = 2%: 38 px on a 1920-wide frame). Each eye gets half of it.
* ``convergence``: the depth that stays at screen level, 0 (farthest) to 1 (nearest). Nearer
  points come out of the screen (crossed disparity), farther ones go behind it.

With ``n`` the normalised nearness (0 = farthest, 1 = nearest) of a pixel at column ``x``, its
disparity is ``d = divergence/100 * width * (n - convergence)``; the left view shows it at
``x + d/2``, the right view at ``x - d/2`` (``x_left - x_right = d``).

Rendering (:func:`render_views`, torch, the same code on CPU and GPU, all pixels at once):

1. the nearness is dilated by ``edge_dilation`` px horizontally, so the soft edge a depth model
   draws around a foreground object moves with the object instead of being smeared;
2. **forward warping with z-order**: each pair of neighbouring source pixels is a segment from
   ``p(x)`` to ``p(x+1)`` in the target row; the target columns it covers get the interpolated
   nearness and source position, and where several segments cover a column the nearest wins
   (``scatter_reduce amax``). Segments stretched over more than ``MAX_STRETCH`` px span a
   disocclusion and cover nothing; folded ones (``p(x+1) < p(x)``) are hidden surfaces;
3. colour is sampled at the winning sub-pixel source position (linear between the segment's two
   pixels, which are on one surface), so shifts are exact to a fraction of a pixel;
4. **holes** (columns no segment covers: background the source never saw) are filled from the
   background side: the nearer-valid pixel on the left or the right, whichever is farther, is
   extended into the hole, so foreground colour never spills into it.

Formats (:data:`STEREO_FORMATS`): Full SBS, Half SBS, Top-Bottom (half height per eye) and
red-cyan anaglyph (Dubois' least-squares matrices), with the file-name tags VR players detect.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ai.depth import DepthModel, normalize_min_max
from ai.probe import open_photo
from ai.progress import ProgressCallback, no_progress
from ai.video_writer import encode_frames, remove_quietly

DEFAULT_DIVERGENCE = 2.0  # % of the width between nearest and farthest
DEFAULT_CONVERGENCE = 0.5  # the middle of the depth range at screen level
DEFAULT_EDGE_DILATION = 2  # px
MAX_STRETCH = 1.5  # px a segment between two neighbouring pixels may cover before it is a hole
MAX_DIVERGENCE = 10.0
FOOTPRINT_PRIORITY = 1e-4  # nearness handicap of a pixel's own-column candidate against segments


@dataclass(frozen=True)
class StereoFormat:
    name: str
    suffix: str  # file-name tag VR players use to detect the layout
    description: str


STEREO_FORMATS: dict[str, StereoFormat] = {
    f.name: f
    for f in (
        StereoFormat("full_sbs", "_LRF_Full_SBS", "side by side, left eye left, each eye full size (2W x H)"),
        StereoFormat("half_sbs", "_LR_Half_SBS", "side by side, each eye squeezed to half width (W x H)"),
        StereoFormat("tb", "_TB", "top-bottom, left eye on top, each eye squeezed to half height (W x H)"),
        StereoFormat("anaglyph", "_redcyan", "red-cyan anaglyph, Dubois method (W x H)"),
    )
}

# Dubois, "Conversion of a stereo pair to anaglyph with the least-squares projection method" (2009):
# red-cyan matrices applied to linear RGB, each eye's term clipped to [0, 1] before adding.
_DUBOIS_LEFT = ((0.437, 0.449, 0.164), (-0.062, -0.062, -0.024), (-0.048, -0.050, -0.017))
_DUBOIS_RIGHT = ((-0.011, -0.032, -0.007), (0.377, 0.761, 0.009), (-0.026, -0.093, 1.234))


def check_stereo_options(fmt: str, divergence: float, convergence: float) -> StereoFormat:
    if fmt not in STEREO_FORMATS:
        raise ValueError(f"format must be one of {', '.join(STEREO_FORMATS)}, got {fmt!r}")
    if not 0 < float(divergence) <= MAX_DIVERGENCE:
        raise ValueError(f"divergence must be in (0, {MAX_DIVERGENCE:g}] (% of width), got {divergence!r}")
    if not 0 <= float(convergence) <= 1:
        raise ValueError(f"convergence must be in [0, 1] (0 farthest, 1 nearest), got {convergence!r}")
    return STEREO_FORMATS[fmt]


def stereo_filename(source_name: str, fmt: str, extension: str | None = None) -> str:
    """``clip.mp4`` -> ``clip_LRF_Full_SBS.mp4``: the name VR players read the layout from."""
    path = Path(source_name)
    return f"{path.stem}{STEREO_FORMATS[fmt].suffix}{extension or path.suffix}"


@dataclass
class StereoViews:
    left: Any  # 3xHxW float tensor, 0..1
    right: Any
    left_holes: Any  # HxW bool tensor: filled from the background side
    right_holes: Any


def _warp(colour, nearness, shift):
    """Forward-warp one eye: colour 3xHxW, nearness and per-pixel shift (px) HxW -> colour, holes."""
    import torch

    height, width = nearness.shape
    device = nearness.device
    columns = torch.arange(width, device=device, dtype=torch.float32)
    target = columns + shift  # where each source pixel lands
    p0, p1 = target[:, :-1], target[:, 1:]
    n0, n1 = nearness[:, :-1], nearness[:, 1:]
    span = p1 - p0
    usable = (span > 0) & (span <= MAX_STRETCH)
    first = torch.ceil(p0)
    dump = width  # invalid candidates all go to one extra column per row: no boolean indexing
    t0 = (first - p0) / span.clamp_min(1e-6)
    step = 1.0 / span.clamp_min(1e-6)
    candidates = []  # (target column, nearness, source position) per candidate set, HxN each
    for offset in (0.0, 1.0):  # a segment of at most MAX_STRETCH px covers at most two columns
        column = first + offset
        ok = usable & (column <= p1) & (column >= 0) & (column <= width - 1)
        t = t0 + offset * step
        candidates.append((torch.where(ok, column.long(), dump), n0 + t * (n1 - n0), columns[:-1] + t))
    # Each pixel also covers the column nearest to where it lands (its own footprint), so an object
    # keeps its last column at an edge where no segment reaches; segments win ties (sub-pixel exact).
    nearest = torch.round(target)
    inside = (nearest >= 0) & (nearest <= width - 1)
    candidates.append(
        (torch.where(inside, nearest.long(), dump), nearness - FOOTPRINT_PRIORITY, columns.expand(height, width))
    )
    z = torch.full((height, width + 1), -1.0, device=device)
    for column, depth, _ in candidates:
        z.scatter_reduce_(1, column, depth, reduce="amax", include_self=True)
    source_x = torch.full((height, width + 1), -1.0, device=device)
    for column, depth, source in candidates:
        # Only the nearest candidate of a column brings its source position.
        nearest_wins = torch.where(depth >= torch.gather(z, 1, column), source, -1.0)
        source_x.scatter_reduce_(1, column, nearest_wins, reduce="amax", include_self=True)
    source_x, z = source_x[:, :width], z[:, :width]
    holes = source_x < 0

    # Colour at the sub-pixel source position (both neighbours lie on the winning segment).
    position = source_x.clamp(0, width - 1)
    x0 = position.floor()
    fraction = (position - x0).unsqueeze(0)
    x0 = x0.long()
    x1 = (x0 + 1).clamp(max=width - 1)
    c0 = torch.gather(colour, 2, x0.unsqueeze(0).expand(3, height, width))
    c1 = torch.gather(colour, 2, x1.unsqueeze(0).expand(3, height, width))
    out = torch.lerp(c0, c1, fraction)

    # Holes: extend the farther of the two valid neighbours (left or right) into them.
    index = torch.arange(width, device=device).expand(height, width)
    left = torch.where(holes, torch.full_like(index, -1), index).cummax(dim=1).values
    right = torch.where(holes, torch.full_like(index, width), index).flip(1).cummin(dim=1).values.flip(1)
    has_left, has_right = left >= 0, right < width
    z_left = torch.gather(z, 1, left.clamp(0, width - 1))
    z_right = torch.gather(z, 1, right.clamp(0, width - 1))
    take_right = has_right & (~has_left | (z_right < z_left))
    chosen = torch.where(take_right, right, left).clamp(0, width - 1)
    filled = torch.gather(out, 2, chosen.unsqueeze(0).expand(3, height, width))
    out = torch.where(holes.unsqueeze(0), filled, out)
    return out, holes


def render_views(
    rgb,
    nearness,
    *,
    divergence: float = DEFAULT_DIVERGENCE,
    convergence: float = DEFAULT_CONVERGENCE,
    edge_dilation: int = DEFAULT_EDGE_DILATION,
    device: str = "cpu",
) -> StereoViews:
    """Left and right views of an HxWx3 uint8 image with HxW nearness in 0..1 (1 = nearest)."""
    import torch
    import torch.nn.functional as F

    colour = torch.from_numpy(np.array(rgb[..., :3], dtype=np.uint8)).to(device).permute(2, 0, 1).float() / 255.0
    near = torch.as_tensor(np.asarray(nearness, dtype=np.float32), device=device).clamp(0.0, 1.0)
    if near.shape != colour.shape[1:]:
        raise ValueError(f"depth is {tuple(near.shape)}, the image {tuple(colour.shape[1:])}")
    if edge_dilation > 0:
        k = int(edge_dilation)
        near = F.max_pool2d(near[None, None], (1, 2 * k + 1), stride=1, padding=(0, k))[0, 0]
    width = near.shape[1]
    disparity = float(divergence) / 100.0 * width * (near - float(convergence))
    left, left_holes = _warp(colour, near, disparity / 2)
    right, right_holes = _warp(colour, near, -disparity / 2)
    return StereoViews(left, right, left_holes, right_holes)


def _srgb_to_linear(x):
    import torch

    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x):
    import torch

    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(0) ** (1 / 2.4) - 0.055)


def dubois_anaglyph(left, right):
    """Red-cyan anaglyph of two 3xHxW 0..1 views (Dubois least squares, on linear light)."""
    import torch

    matrix_left = torch.tensor(_DUBOIS_LEFT, device=left.device)
    matrix_right = torch.tensor(_DUBOIS_RIGHT, device=left.device)
    lin_left, lin_right = _srgb_to_linear(left), _srgb_to_linear(right)
    term_left = torch.einsum("ij,jhw->ihw", matrix_left, lin_left).clamp(0, 1)
    term_right = torch.einsum("ij,jhw->ihw", matrix_right, lin_right).clamp(0, 1)
    return _linear_to_srgb((term_left + term_right).clamp(0, 1)).clamp(0, 1)


def compose(views: StereoViews, fmt: str) -> np.ndarray:
    """The frame of a stereo format, HxWx3 uint8 (see STEREO_FORMATS for the sizes)."""
    import torch
    import torch.nn.functional as F

    left, right = views.left, views.right
    height, width = left.shape[1:]
    if fmt == "full_sbs":
        frame = torch.cat([left, right], dim=2)
    elif fmt == "half_sbs":
        size = (height, max(1, width // 2))
        pair = F.interpolate(torch.stack([left, right]), size=size, mode="bilinear", antialias=True)
        frame = torch.cat([pair[0], pair[1]], dim=2)
    elif fmt == "tb":
        size = (max(1, height // 2), width)
        pair = F.interpolate(torch.stack([left, right]), size=size, mode="bilinear", antialias=True)
        frame = torch.cat([pair[0], pair[1]], dim=1)
    elif fmt == "anaglyph":
        frame = dubois_anaglyph(left, right)
    else:
        raise ValueError(f"format must be one of {', '.join(STEREO_FORMATS)}, got {fmt!r}")
    return (frame.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()


def stereo_frame(rgb, nearness, fmt: str, **options: Any) -> np.ndarray:
    """Colour + nearness -> one frame of ``fmt`` (options as :func:`render_views`)."""
    return compose(render_views(rgb, nearness, **options), fmt)


def _stereo_device(model: DepthModel | None, device: str | None) -> str:
    if device:
        return device
    return getattr(model, "device", None) or "cpu"


def photo_stereo(
    src: Path | str,
    dst: Path | str,
    *,
    model: DepthModel | None = None,
    nearness: np.ndarray | None = None,
    fmt: str = "full_sbs",
    divergence: float = DEFAULT_DIVERGENCE,
    convergence: float = DEFAULT_CONVERGENCE,
    edge_dilation: int = DEFAULT_EDGE_DILATION,
    device: str | None = None,
    input_size: int | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """A stereo picture of a photo: PNG when ``dst`` ends in .png, else JPEG.

    Depth comes from ``nearness`` (HxW 0..1, 1 = nearest, at the photo's upright size: a stored
    depth map) or else from ``model``. Raises InvalidMediaError for anything but a photo.
    """
    spec = check_stereo_options(fmt, divergence, convergence)
    progress = progress or no_progress
    src, dst = Path(src), Path(dst)
    image = np.asarray(open_photo(src)[1])  # decoded once: the check and the pixels
    given = nearness
    try:
        if nearness is None:
            if model is None:
                raise ValueError("photo_stereo needs a depth model or a depth map")
            progress(0, 3, "loading model")
            model.load()
            progress(1, 3, "inferring")
            nearness = normalize_min_max(model.predict([image], input_size=input_size)[0])[0]
        elif nearness.shape != image.shape[:2]:
            raise ValueError(f"the depth map is {nearness.shape[::-1]}, the photo {image.shape[1::-1]}")
        progress(2, 3, "rendering")
        frame = stereo_frame(
            image,
            nearness,
            fmt,
            divergence=divergence,
            convergence=convergence,
            edge_dilation=edge_dilation,
            device=_stereo_device(model, device),
        )
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.suffix.lower() == ".png":
            Image.fromarray(frame).save(dst, "PNG", compress_level=3)
        else:
            Image.fromarray(frame).save(dst, "JPEG", quality=92)
        progress(3, 3, "done")
    except BaseException:
        remove_quietly(dst)
        raise
    return {
        "format": spec.name,
        "width": frame.shape[1],
        "height": frame.shape[0],
        "divergence": float(divergence),
        "convergence": float(convergence),
        "model": getattr(model, "model_name", None) if given is None else None,
        "depth_source": "model" if given is None else "depth_map",
        "filename": stereo_filename(src.name, fmt, dst.suffix),
    }


def video_stereo(
    src: Path | str,
    dst: Path | str,
    *,
    model: DepthModel | None = None,
    rgbd: Path | str | None = None,
    rgbd_polarity: str = "near_dark",
    fmt: str = "full_sbs",
    divergence: float = DEFAULT_DIVERGENCE,
    convergence: float = DEFAULT_CONVERGENCE,
    edge_dilation: int = DEFAULT_EDGE_DILATION,
    height: int | None = None,
    depth_fps: float | None = None,
    lookahead: int | None = None,
    device: str | None = None,
    input_size: int | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """A stereo H.264 MP4 of a video, with the source's audio, frame count and duration.

    Depth as for the RGB-D video (every frame, stabilised, interpolated above ``depth_fps``), or
    read from ``rgbd``, the source's stored RGB-D video (depth in ``rgbd_polarity``): no model then.
    ``progress`` gets "frame N/M"; raising ai.errors.Cancelled from it stops the run and removes
    the partial output.
    """
    from ai.depth_video import DEFAULT_LOOKAHEAD, DEFAULT_VIDEO_HEIGHT, iter_rgbd_video, iter_video_depth
    from ai.frames import estimate_frame_total, probe_source_video
    from ai.stabilize import DepthStabilizer

    spec = check_stereo_options(fmt, divergence, convergence)
    progress = progress or no_progress
    src, dst = Path(src), Path(dst)
    info = probe_source_video(src)
    total = estimate_frame_total(info, "all")
    progress(0, total, "loading model")
    if rgbd is not None:
        frames = iter_rgbd_video(rgbd, rgbd_polarity)
    elif model is not None:
        frames = iter_video_depth(
            src,
            model=model,
            height=height or DEFAULT_VIDEO_HEIGHT,
            depth_fps=depth_fps,
            stabilizer=DepthStabilizer(lookahead=DEFAULT_LOOKAHEAD if lookahead is None else lookahead),
            input_size=input_size,
        )
    else:
        raise ValueError("video_stereo needs a depth model or an RGB-D video")
    render = {
        "divergence": divergence,
        "convergence": convergence,
        "edge_dilation": edge_dilation,
        "device": _stereo_device(model, device),
    }
    pictures = (stereo_frame(item.frame.image, item.depth, fmt, **render) for item in frames)
    try:
        writer = encode_frames(
            dst, pictures, source=src, info=info, label="stereo video", progress=progress, total=total
        )
    finally:
        frames.close()
    return {
        "format": spec.name,
        "width": writer.width,
        "height": writer.height,
        "frame_count": writer.frames,
        "fps": round(writer.fps, 6),
        "duration": round(writer.frames / writer.fps, 6),
        "divergence": float(divergence),
        "convergence": float(convergence),
        "model": getattr(model, "model_name", None),
        "depth_source": "rgbd_video" if rgbd is not None else "model",
        "audio_codec": writer.audio_codec,
        "filename": stereo_filename(src.name, fmt, ".mp4"),
    }
