"""Child processes that end with the process that started them, however it ends (Ctrl-C, a closed
terminal, a closed output pipe, or SIGKILL, which leaves no chance to clean up)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform.startswith("linux") else None


def end_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for subprocess.Popen: the kernel sends ``sig`` to the child when the parent
    dies (Linux; elsewhere None, and the parent's own clean-up is all there is). Start children from
    the main thread: the signal follows the death of the thread that started them."""
    if _libc is None:
        return None
    parent = os.getpid()

    def arm() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), sig)

    return arm
