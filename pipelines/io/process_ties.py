"""Child processes that die with their parent, even when the parent is SIGKILLed (Linux; a no-op elsewhere)."""
from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Asks the kernel to send `signum` to this process when its parent dies (call in the child)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)


def tie_worker_to(parent_pid: int) -> None:
    """A process-pool worker's initializer: SIGKILL when the parent dies, and exit now if it already has
    (it may die between the fork and this call, which the kernel would not report)."""
    die_with_parent(signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)
