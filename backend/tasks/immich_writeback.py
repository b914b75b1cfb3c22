"""The ``immich_writeback`` task: upload an Immich item's stereo 3D version into Immich (the work is
in backend.immich.writeback)."""

from __future__ import annotations

from backend.tasks.context import TaskContext


def run_writeback(ctx: TaskContext) -> dict:
    from backend.immich.writeback import run_writeback as execute

    return execute(ctx)
