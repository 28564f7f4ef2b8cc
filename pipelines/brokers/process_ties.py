"""Child processes that die with their parent, even when the parent is SIGKILLed (Linux; a no-op elsewhere)."""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
from typing import List, Sequence

_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Asks the kernel to send `signum` to this process when its parent dies (call in the child). The kernel
    means the parent *thread*: a child started from a pool thread dies when that thread ends (docs/DESIGN.md 7)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)


def tie_worker_to(parent_pid: int) -> None:
    """A process-pool worker's initializer: SIGKILL when the parent dies, and exit now if it already has
    (it may die between the fork and this call, which the kernel would not report)."""
    die_with_parent(signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def dying_with_parent(command: Sequence[str], signum: int = signal.SIGTERM) -> List[str]:
    """`command` wrapped so the kernel sends `signum` to it when its parent dies: util-linux's
    `setpriv --pdeathsig` sets the flag and execs the command (the flag survives exec; same pid).
    Not a Popen preexec_fn: Python code between fork and exec runs the fork handlers of libraries
    already loaded, and gRPC's (Beam's) now and then abort the child before it execs ("epoll_wait
    error: Bad file descriptor", exit -6: a Tansu broker on a clean-clone CI run, 2026-11-26)."""
    if sys.platform.startswith("linux") and shutil.which("setpriv"):
        return ["setpriv", f"--pdeathsig={signal.Signals(signum).name[3:]}", "--", *command]
    return list(command)
