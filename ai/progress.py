"""The progress callback every pipeline accepts.

``progress(done, total, stage)``: ``total`` is None when unknown (containers that report no
frame count). The callback may raise :class:`ai.errors.Cancelled` to stop the pipeline.
"""

from collections.abc import Callable

ProgressCallback = Callable[[int, int | None, str], None]


def no_progress(done: int, total: int | None, stage: str) -> None:
    return None
