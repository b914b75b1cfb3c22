"""The ``immich_import`` task: one import run from Immich (the work is in backend.immich.importer)."""

from __future__ import annotations

from backend.tasks.context import TaskContext


def run_import(ctx: TaskContext) -> dict:
    from backend.immich.importer import run_import as execute

    return execute(ctx)
