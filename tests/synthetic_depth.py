"""Synthetic video depth with known values, for the stabilisation tests and bench.

A static camera looks at a textured room (inverse depth 1 at the top to 2 at the bottom, with
texture); a near subject (a disk, inverse depth rising from ``subject_from`` to ``subject_to``: it
walks towards the camera) moves across. The "model output" of each frame is the true inverse depth
under a per-frame random scale (1 +- ``scale_jitter``) and shift, plus noise, as an affine-invariant
depth model gives it. Colour frames go with it: the room's texture and a red disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class SyntheticFrame:
    rgb: np.ndarray  # HxWx3 uint8
    raw: np.ndarray  # "model output": affine-jittered true inverse depth with noise
    true: np.ndarray  # true inverse depth
    subject: np.ndarray  # bool mask of the subject


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    coarse = rng.random((height // cell + 2, width // cell + 2))
    ys = np.linspace(0, coarse.shape[0] - 1.001, height)
    xs = np.linspace(0, coarse.shape[1] - 1.001, width)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a = coarse[y0][:, x0]
    b = coarse[y0][:, x0 + 1]
    c = coarse[y0 + 1][:, x0]
    d = coarse[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def synthetic_clip(
    frames: int = 60,
    height: int = 180,
    width: int = 320,
    subject_share: float = 0.067,
    subject_from: float = 2.5,
    subject_to: float = 6.0,
    scale_jitter: float = 0.10,
    shift_jitter: float = 0.05,
    noise: float = 0.005,
    cut_at: int | None = None,
    seed: int = 0,
) -> Iterator[SyntheticFrame]:
    """``frames`` frames; with ``cut_at``, a second, different room from that frame on."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

    def room(room_seed: int):
        room_rng = np.random.default_rng(1000 + room_seed)
        texture = _smooth_noise(room_rng, height, width, 12).astype(np.float32)
        inverse = 1.0 + (yy / (height - 1)) ** 2 + 0.15 * texture
        hue = room_rng.random(3) * 0.6 + 0.2
        shade = 0.35 + 0.6 * _smooth_noise(room_rng, height, width, 6)[..., None]
        colour = np.clip(255 * shade * hue[None, None, :], 0, 255).astype(np.uint8)
        return inverse.astype(np.float32), colour

    rooms = [room(0), room(1)]
    radius = float(np.sqrt(subject_share * height * width / np.pi))
    for i in range(frames):
        which = 1 if cut_at is not None and i >= cut_at else 0
        true, rgb = rooms[which][0].copy(), rooms[which][1].copy()
        progress = i / max(frames - 1, 1)
        # Enters from the left edge, crosses to about 3/4 of the width.
        cx = -radius + progress * (0.75 * width + radius)
        cy = 0.55 * height
        subject = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
        nearness = subject_from + progress * (subject_to - subject_from)
        true[subject] = nearness
        rgb[subject] = (220, 40, 40)
        scale = 1.0 + rng.uniform(-scale_jitter, scale_jitter)
        shift = rng.uniform(-shift_jitter, shift_jitter)
        raw = scale * true + shift + rng.normal(0.0, noise * float(true.max() - true.min()), true.shape)
        yield SyntheticFrame(rgb=rgb, raw=raw.astype(np.float32), true=true, subject=subject)


@dataclass
class StabilityResult:
    static_std: float  # mean over static pixels of the temporal std of their 8-bit grey level
    clipped_percent: float  # pixels at 0 or 255 that are not the nearest/farthest: % of all pixels
    frames: int


def measure_stability(normalised: Iterator[np.ndarray], clip: list[SyntheticFrame]) -> StabilityResult:
    """Flicker and clipping of a sequence of 0..1 depth maps, as 8-bit grey levels.

    Static pixels: never covered by the subject in any frame (for a clip with a cut: within each
    shot, then the mean of the shots weighted by frames).
    """
    greys = np.stack([np.rint(np.asarray(n, dtype=np.float32) * 255) for n in normalised])
    covered = np.zeros(clip[0].true.shape, dtype=bool)
    for frame in clip:
        covered |= frame.subject
    # Clipped: flattened to the end of the grey range although not the scene's nearest/farthest value.
    clipped_pixels = 0
    for grey, frame in zip(greys, clip):
        near_end, far_end = frame.true.max(), frame.true.min()
        clipped_pixels += int(
            (((grey >= 255) & (frame.true < near_end)) | ((grey <= 0) & (frame.true > far_end))).sum()
        )
    clipped = 100.0 * clipped_pixels / greys.size
    # Shots: split where the true scene changes outside the subject.
    starts = [0] + [
        i for i in range(1, len(clip)) if not np.array_equal(clip[i].true[~covered], clip[i - 1].true[~covered])
    ]
    bounds = [*starts, len(clip)]
    total = 0.0
    for begin, end in zip(bounds, bounds[1:]):
        shot = greys[begin:end][:, ~covered]
        total += float(shot.std(axis=0).mean()) * (end - begin)
    return StabilityResult(static_std=total / len(clip), clipped_percent=clipped, frames=len(clip))


class RunningPercentileBaseline:
    """The video normaliser Parallax used before the stabiliser, kept as the baseline the tests and
    bench compare against: an exponential moving average (momentum 0.8) of each frame's 2nd and
    98th percentiles, raw values mapped from that range to 0..1 and clipped."""

    def __init__(self, low_percentile: float = 2.0, high_percentile: float = 98.0, momentum: float = 0.8) -> None:
        self.percentiles = (low_percentile, high_percentile)
        self.momentum = momentum
        self.low: float | None = None
        self.high: float | None = None

    def __call__(self, depth: np.ndarray) -> np.ndarray:
        frame_low, frame_high = (float(v) for v in np.percentile(depth, self.percentiles))
        if self.low is None or self.high is None:
            self.low, self.high = frame_low, frame_high
        else:
            m = self.momentum
            self.low = m * self.low + (1 - m) * frame_low
            self.high = m * self.high + (1 - m) * frame_high
        span = max(self.high - self.low, 1e-12)
        return np.clip((depth - self.low) / span, 0.0, 1.0).astype(np.float32)
