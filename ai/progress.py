"""The progress callback every pipeline accepts.

``progress(done, total, stage)``: ``total`` is None when unknown (containers that report no
frame count). The callback may raise :class:`ai.errors.Cancelled` to stop the pipeline.
"""
from typing import Callable, Optional

ProgressCallback = Callable[[int, Optional[int], str], None]


def no_progress(done: int, total: Optional[int], stage: str) -> None:
    return None
