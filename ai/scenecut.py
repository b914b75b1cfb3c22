"""Hard scene cuts, detected from the decoded frames alone (no model, a few microseconds a frame).

A cut is where the colour distribution jumps between two consecutive frames: the L1 distance of
the per-channel histograms of a small thumbnail. Motion inside one shot moves colours around but
keeps most of them (distance well below 0.2 on generated and real clips), a cut to another shot
replaces them (above 0.5 on the generated test clip). The score must also stand out from the recent
scores, so a flickering or flashing shot does not become a stream of cuts.
Depth stabilisation resets its reference at a cut: aligning a new shot to the old one makes no sense.
"""

from __future__ import annotations

import collections

import numpy as np

THUMBNAIL_SAMPLES = 96  # samples along the longer side: enough for a histogram, nearly free
HISTOGRAM_BINS = 16


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    step = max(1, max(height, width) // THUMBNAIL_SAMPLES)
    return rgb[::step, ::step, :3]


def colour_histogram(rgb: np.ndarray) -> np.ndarray:
    """Per-channel histograms of a frame's thumbnail, each summing to 1 (shape 3 x bins)."""
    thumb = _thumbnail(rgb)
    indices = (thumb.astype(np.int32) * HISTOGRAM_BINS) >> 8  # 0..bins-1 per channel
    counts = np.stack([np.bincount(indices[..., c].ravel(), minlength=HISTOGRAM_BINS) for c in range(3)])
    return counts / max(1, indices.shape[0] * indices.shape[1])


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Share of the colour mass that moved, 0 (same distribution) to 1 (disjoint), mean of channels."""
    return float(np.abs(a - b).sum(axis=1).mean() / 2.0)


class SceneCutDetector:
    """Call with each frame (HxWx3 uint8) in order; returns True for the first frame of a new shot.

    ``threshold``: the histogram distance a cut must exceed. ``contrast``: how many times the
    recent mean distance it must also exceed (flashes and fast pans raise the recent mean).
    The first frame is not a cut (nothing came before it).
    """

    def __init__(self, threshold: float = 0.3, contrast: float = 3.0, window: int = 8) -> None:
        if not 0 < threshold < 1:
            raise ValueError("threshold must be between 0 and 1")
        self.threshold = threshold
        self.contrast = contrast
        self._previous: np.ndarray | None = None
        self._recent: collections.deque[float] = collections.deque(maxlen=window)
        self.last_score = 0.0

    def reset(self) -> None:
        self._previous = None
        self._recent.clear()

    def __call__(self, rgb: np.ndarray) -> bool:
        histogram = colour_histogram(rgb)
        previous, self._previous = self._previous, histogram
        if previous is None:
            return False
        score = histogram_distance(previous, histogram)
        self.last_score = score
        recent = float(np.mean(self._recent)) if self._recent else 0.0
        cut = score > self.threshold and score > self.contrast * recent
        # A cut starts a new shot: its distance says nothing about the new shot's motion.
        if cut:
            self._recent.clear()
        else:
            self._recent.append(score)
        return cut

    def describe(self) -> dict:
        return {"method": "colour-histogram", "threshold": self.threshold, "contrast": self.contrast}
