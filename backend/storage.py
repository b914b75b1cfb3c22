"""Files under MEDIA_ROOT: one folder per media item holding its original and every derived result.

Everything is written under ``MEDIA_ROOT/tmp`` first and moved into place with an atomic rename
(same filesystem), so a reader never sees a half-written file.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

OUT_OF_SPACE_MESSAGE = "not enough space on the server"
_OUT_OF_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How tools that write through their own code (ffmpeg, PostgreSQL) report the same condition.
_OUT_OF_SPACE_TEXTS = ("No space left on device", "Disk quota exceeded")


def is_out_of_space(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it came from) says a disk or quota is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _OUT_OF_SPACE_ERRNOS:
            return True
        if any(text in str(current) for text in _OUT_OF_SPACE_TEXTS):
            return True
        current = current.__cause__ or current.__context__
    return False


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.tmp = self.root / "tmp"

    def ensure(self) -> Storage:
        (self.root / "items").mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        return self

    def item_rel(self, item_id: str | uuid.UUID) -> str:
        item_id = str(item_id)
        return f"items/{item_id[:2]}/{item_id}"

    def item_dir(self, item_id: str) -> Path:
        return self.root / self.item_rel(item_id)

    def path(self, rel: str) -> Path:
        """Absolute path of a stored file; refuses anything that would leave MEDIA_ROOT."""
        full = (self.root / rel).resolve()
        if self.root not in full.parents:
            raise ValueError(f"path {rel!r} is outside the media root")
        return full

    def temp_path(self, suffix: str = "", prefix: str = "") -> Path:
        self.tmp.mkdir(parents=True, exist_ok=True)
        return self.tmp / f"{prefix}{uuid.uuid4().hex}{suffix}"

    def place(self, tmp: Path, rel: str) -> Path:
        """Move a finished temp file to its final place atomically, replacing any older version."""
        dest = self.path(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        return dest

    def remove(self, rel: str | None) -> None:
        if rel:
            try:
                self.path(rel).unlink()
            except FileNotFoundError:
                pass

    def delete_item(self, item_id: str) -> None:
        shutil.rmtree(self.item_dir(item_id), ignore_errors=True)

    def sweep_temp(self, older_than_s: float = 24 * 3600) -> int:
        """Remove temp files left by a crash (uploads cut off, killed workers)."""
        import time

        removed = 0
        if not self.tmp.exists():
            return 0
        cutoff = time.time() - older_than_s
        for entry in self.tmp.iterdir():
            try:
                if entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed
