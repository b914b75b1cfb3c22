"""Temporal stabilisation of video depth: one frame's grey level per surface, frame after frame.

Depth Anything predicts *affine-invariant* inverse depth: each frame comes in its own unknown
scale and shift, which jitter from frame to frame even when nothing moves. Normalising each frame
by its own range (min-max, or percentiles) makes the whole picture "breathe" whenever the nearest
thing in view changes. :class:`DepthStabilizer` instead

1. **aligns** each frame to a running reference: a robust least-squares fit of scale and shift
   (``s * raw + b ~ reference``, Huber weights) over the pixels whose colour did not change since
   the previous frame (moving things are left out of the fit, so they cannot drag the background);
2. **smooths** the aligned values of those unchanged pixels over time (model noise), and takes
   the new values everywhere else;
3. **maps** the aligned values to 0..1 through a range fixed at the start of each shot, with soft
   knees at both ends: values beyond the range are compressed into a reserved margin instead of
   being clipped, so a near subject walking in keeps its relief and does not push the background's
   grey level. The range follows a lasting change slowly; with ``lookahead`` frames it moves
   towards the extremes of the coming frames in advance rather than after them;
4. **resets** at scene cuts (the caller says where: :class:`ai.scenecut.SceneCutDetector`).

Memory is constant in the video's length: one reference map plus ``lookahead`` frames.
Numbers (static-pixel flicker, clipping) are in docs/performance.md, from ``bench/bench_stability.py``.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

import numpy as np

FIT_SAMPLES = 32768  # pixels used for the fit: a subsampling grid, the same pixels every frame


@dataclass
class _State:
    """A past frame: its raw depth and colour, how raw maps to the shot's units, and its output."""

    raw: np.ndarray
    rgb: np.ndarray | None
    scale: float
    shift: float
    output: np.ndarray


def _unchanged(rgb: np.ndarray | None, previous: np.ndarray | None, threshold: float) -> np.ndarray | None:
    """Pixels where no colour channel moved more than ``threshold``; None without both frames."""
    if rgb is None or previous is None or rgb.shape != previous.shape:
        return None
    difference = np.abs(rgb.astype(np.int16) - previous.astype(np.int16)).max(axis=2)
    return difference <= threshold


@dataclass
class _Aligned:
    values: np.ndarray  # aligned (and smoothed) inverse depth, in the shot's reference units
    low: float  # robust extremes of this frame, for the output range
    high: float
    cut: bool  # first frame of a shot
    scale: float
    shift: float
    static_share: float


def soft_range(values: np.ndarray, low: float, high: float, margin_far: float, margin_near: float) -> np.ndarray:
    """Map [low, high] linearly onto [margin_far, 1 - margin_near]; beyond, approach 0 and 1
    exponentially (continuous, same slope at the joints), so nothing is clipped unless far out."""
    span = max(high - low, 1e-12)
    u = (values.astype(np.float32) - np.float32(low)) / np.float32(span)
    slope = np.float32(1.0 - margin_far - margin_near)
    out = np.float32(margin_far) + u * slope
    if margin_near > 0:
        above = u > 1.0
        out[above] = 1.0 - margin_near * np.exp(-(u[above] - 1.0) * slope / margin_near)
    if margin_far > 0:
        below = u < 0.0
        out[below] = margin_far * np.exp(u[below] * slope / margin_far)
    np.nan_to_num(out, copy=False, nan=0.5, posinf=1.0, neginf=0.0)
    return np.clip(out, 0.0, 1.0, out=out)


def robust_affine_fit(x: np.ndarray, y: np.ndarray, hypotheses: int = 64, seed: int = 0) -> tuple[float, float] | None:
    """Scale and shift with ``s * x + b ~ y``, robust to up to half the points disagreeing.

    Least median of squares picks the best of ``hypotheses`` two-point fits (a plain least-squares
    start is dragged by a few far-off points: the inside of a plain moving object keeps its colour
    but not its depth); least squares then refits on the points within three robust standard
    deviations of it. The refit is symmetric (reduced major axis: the ratio of the standard
    deviations), because both sides are noisy model outputs: an ordinary least-squares slope is
    biased towards zero by the noise in ``x``, and chained frame to frame that bias compounds into
    a steady drift. None when the points cannot determine it (too few, no spread, scale <= 0).
    """
    x64, y64 = x.astype(np.float64).ravel(), y.astype(np.float64).ravel()
    if x64.size < 16:
        return None
    rng = np.random.default_rng(seed)
    probe = rng.choice(x64.size, size=min(x64.size, 4096), replace=False)
    first, second = rng.integers(0, x64.size, (2, hypotheses))
    dx = x64[second] - x64[first]
    usable = np.abs(dx) > 1e-9 * (np.abs(x64).max() + 1e-30)
    if not usable.any():
        return None
    scales = (y64[second] - y64[first])[usable] / dx[usable]
    shifts = y64[first][usable] - scales * x64[first][usable]
    residuals = np.abs(scales[:, None] * x64[probe][None, :] + shifts[:, None] - y64[probe][None, :])
    best = int(np.argmin(np.median(residuals, axis=1)))
    scale, shift = float(scales[best]), float(shifts[best])
    for _ in range(3):
        residual = np.abs(scale * x64 + shift - y64)
        sigma = 1.4826 * float(np.median(residual))
        keep = residual <= max(3.0 * sigma, 1e-9 * (np.abs(y64).max() + 1e-30))
        if keep.sum() < 16:
            break
        xs, ys = x64[keep], y64[keep]
        spread_x, spread_y = float(xs.std()), float(ys.std())
        if not spread_x > 1e-12 or float(np.mean((xs - xs.mean()) * (ys - ys.mean()))) <= 0:
            break
        scale = spread_y / spread_x
        shift = float(ys.mean() - scale * xs.mean())
    if not (np.isfinite(scale) and np.isfinite(shift)) or scale <= 0:
        return None
    return scale, shift


class DepthStabilizer:
    """Stabilised 0..1 depth (1 = nearest) for a stream of raw inverse-depth frames.

    ``push(raw, rgb, cut)`` takes one frame (raw model output, the colour frame it came from, and
    whether it starts a new shot) and returns the frames now ready, in order: the same frame when
    ``lookahead`` is 0, else the one ``lookahead`` frames back. ``flush()`` returns the rest.

    Parameters (all dimensionless):
    ``colour_threshold``: a pixel "did not change" when no channel moved more than this (0-255).
    ``depth_tolerance``: ...and its aligned depth moved less than this share of the shot's range.
    ``smoothing``: weight of the history for unchanged pixels (0 = none, <1).
    ``margin_near`` / ``margin_far``: share of the grey range reserved at the near / far end for
    values beyond the shot's range (more at the near end: subjects walk in, backgrounds rarely recede).
    ``adaptation``: per-frame rate at which the range follows the frames' extremes (slow on purpose:
    every move of the range moves the grey level of everything static).
    ``lookahead``: frames held back; a shot's range starts as the envelope of its first frames, and
    follows the envelope of the coming frames, so a subject about to enter does not flatten.
    ``min_static_share``: below this share of unchanged pixels (a pan, a zoom) the frame is aligned
    by matching its robust range to the previous frame's instead of pixel by pixel.
    ``anchor_share``: frames are fitted to an anchor frame until fewer than this share of pixels
    still match its colour; then the previous frame becomes the anchor.
    """

    def __init__(
        self,
        lookahead: int = 0,
        colour_threshold: float = 10.0,
        depth_tolerance: float = 0.05,
        smoothing: float = 0.7,
        margin_near: float = 0.15,
        margin_far: float = 0.05,
        adaptation: float = 0.0005,
        min_static_share: float = 0.05,
        anchor_share: float = 0.5,
        low_percentile: float = 0.5,
        high_percentile: float = 99.5,
    ) -> None:
        if lookahead < 0:
            raise ValueError("lookahead must be 0 or more frames")
        if not 0 <= smoothing < 1:
            raise ValueError("smoothing must be in [0, 1)")
        if not (0 <= margin_near < 0.5 and 0 <= margin_far < 0.5):
            raise ValueError("margins must be in [0, 0.5)")
        if not 0 <= adaptation <= 1:
            raise ValueError("adaptation must be in [0, 1]")
        self.lookahead = int(lookahead)
        self.colour_threshold = float(colour_threshold)
        self.depth_tolerance = float(depth_tolerance)
        self.smoothing = float(smoothing)
        self.margin_near = float(margin_near)
        self.margin_far = float(margin_far)
        self.adaptation = float(adaptation)
        self.min_static_share = float(min_static_share)
        self.anchor_share = float(anchor_share)
        self.percentiles = (float(low_percentile), float(high_percentile))
        self._previous: _State | None = None
        self._anchor: _State | None = None
        self._grid: tuple[slice, slice] | None = None
        self._queue: collections.deque[_Aligned] = collections.deque()
        self._range: tuple[float, float] | None = None
        self.frames = 0
        self.cuts = 0
        self.fallbacks = 0  # frames aligned by range matching (too few unchanged pixels)
        self.last: _Aligned | None = None  # the most recent frame returned, for manifests and tests

    # -- stage 1: alignment (needs only the past) -------------------------------------------------
    def _fit_grid(self, shape: tuple[int, int]) -> tuple[slice, slice]:
        if self._grid is None:
            step = max(1, int(np.sqrt(shape[0] * shape[1] / FIT_SAMPLES)))
            self._grid = (slice(step // 2, None, step), slice(step // 2, None, step))
        return self._grid

    def _robust_extremes(self, values: np.ndarray) -> tuple[float, float]:
        grid = self._fit_grid(values.shape)
        sample = values[grid]
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            return 0.0, 1.0
        low, high = np.percentile(sample, self.percentiles)
        return float(low), float(high)

    def _align(self, raw: np.ndarray, rgb: np.ndarray | None, cut: bool) -> _Aligned:
        raw = np.nan_to_num(raw.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
        rgb = None if rgb is None else np.asarray(rgb)[..., :3]
        previous = self._previous
        new_shot = cut or previous is None or previous.raw.shape != raw.shape
        static_share = 0.0
        if new_shot:
            # The shot's units: its first frame's robust range becomes 0..1.
            low, high = self._robust_extremes(raw)
            scale = 1.0 / max(high - low, 1e-12)
            shift = -low * scale
            aligned = raw * np.float32(scale) + np.float32(shift)
            self.cuts += int(cut)
            self._anchor = None
        else:
            assert previous is not None  # new_shot covers the first frame
            # Fit to an anchor frame, not frame to frame: chained fits let small errors add up into a
            # drift. The anchor moves on when too little of the picture still matches it.
            anchor = self._anchor or previous
            static = _unchanged(rgb, anchor.rgb, self.colour_threshold)
            if anchor is not previous and (static is None or static.mean() < self.anchor_share):
                anchor = previous
                static = _unchanged(rgb, anchor.rgb, self.colour_threshold)
            self._anchor = anchor
            static_share = float(static.mean()) if static is not None else 0.0
            grid = self._fit_grid(raw.shape)
            step = None
            if static is not None and static_share >= self.min_static_share:
                mask = static[grid]
                step = robust_affine_fit(raw[grid][mask], anchor.raw[grid][mask])
            if step is None:
                # Too little stayed put to align pixel by pixel: match the robust ranges instead.
                self.fallbacks += 1
                anchor = previous
                raw_low, raw_high = self._robust_extremes(raw)
                old_low, old_high = self._robust_extremes(anchor.raw)
                step_scale = (old_high - old_low) / max(raw_high - raw_low, 1e-12)
                step = (step_scale, old_low - raw_low * step_scale)
            scale = anchor.scale * step[0]
            shift = anchor.scale * step[1] + anchor.shift
            aligned = raw * np.float32(scale) + np.float32(shift)
            steady = _unchanged(rgb, previous.rgb, self.colour_threshold)
            if steady is not None and self.smoothing > 0:
                # Unchanged pixels: average with their history (model noise); the rest: new values.
                reference = previous.output
                steady &= np.abs(aligned - reference) < self.depth_tolerance
                smoothed = reference + (1.0 - self.smoothing) * (aligned - reference)
                aligned = np.where(steady, smoothed, aligned).astype(np.float32, copy=False)
        self._previous = _State(
            raw=raw, rgb=None if rgb is None else rgb.copy(), scale=scale, shift=shift, output=aligned
        )
        low, high = self._robust_extremes(aligned)
        return _Aligned(aligned, low, high, new_shot, float(scale), float(shift), static_share)

    # -- stage 2: output range (may look ahead) -----------------------------------------------------
    def _emit(self) -> np.ndarray:
        frame = self._queue.popleft()
        # Look ahead within this shot: the envelope of this frame and the coming ones.
        target_low, target_high = frame.low, frame.high
        for coming in self._queue:
            if coming.cut:
                break
            target_low, target_high = min(target_low, coming.low), max(target_high, coming.high)
        if frame.cut or self._range is None:
            self._range = (target_low, target_high)
        else:
            low, high = self._range
            rate = self.adaptation
            low += rate * (target_low - low)
            high += rate * (target_high - high)
            self._range = (low, high)
        self.last = frame
        return soft_range(frame.values, *self._range, self.margin_far, self.margin_near)

    def push(self, raw: np.ndarray, rgb: np.ndarray | None = None, cut: bool = False) -> list[np.ndarray]:
        """Add one frame; return the frames whose output is now decided (0..1, 1 = nearest)."""
        self._queue.append(self._align(raw, rgb, cut))
        self.frames += 1
        ready = []
        while len(self._queue) > self.lookahead:
            ready.append(self._emit())
        return ready

    def flush(self) -> list[np.ndarray]:
        """The frames still held back for look-ahead, at the end of the stream."""
        ready = []
        while self._queue:
            ready.append(self._emit())
        return ready

    @property
    def last_raw_range(self) -> tuple[float, float] | None:
        """Raw model values that map to the ends of the linear part ([margin_far, 1 - margin_near])
        for the last frame returned: ``raw = low + (v - margin_far) / (1 - margins) * (high - low)``
        for a value ``v`` (0..1, 1 = nearest) in the linear part."""
        if self.last is None or self._range is None or not self.last.scale > 0:
            return None
        low, high = self._range
        return (low - self.last.shift) / self.last.scale, (high - self.last.shift) / self.last.scale

    @property
    def output_range(self) -> tuple[float, float] | None:
        """The aligned-value range mapped onto [margin_far, 1 - margin_near] for the last frame returned."""
        return self._range

    def describe(self) -> dict[str, Any]:
        return {
            "method": "aligned-reference",
            "lookahead": self.lookahead,
            "colour_threshold": self.colour_threshold,
            "depth_tolerance": self.depth_tolerance,
            "smoothing": self.smoothing,
            "margin_near": self.margin_near,
            "margin_far": self.margin_far,
            "adaptation": self.adaptation,
            "note": "each frame's raw inverse depth is aligned (robust least-squares scale and shift) to "
            "an anchor frame over pixels whose colour did not change, reset at scene cuts, and mapped "
            "through the shot's range onto [margin_far, 1 - margin_near] with soft knees beyond",
        }
