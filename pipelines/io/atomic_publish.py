"""Publishing a directory atomically, so readers never see a partial one and a crash keeps the old one.

A date's outputs are built in a temporary sibling (`.date=D.tmp-<pid>`) and
swapped in with one atomic `renameat2(RENAME_EXCHANGE)` on Linux; elsewhere
(or where the filesystem refuses it) the old directory is renamed aside,
the new one renamed into place and the old one deleted. `recover()` undoes
what a crash between those steps left, under an exclusive `flock` on the
output directory (`OutputLock`), which the kernel releases if the process dies.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import glob
import os
import select
import shutil
import signal
import sys
import threading
from typing import List

from schemas.errors import UserError


class OutputLocked(UserError):
    """Another backfill holds the output directory's lock."""


LOCK_FILE = ".backfill.lock"
PUBLISH_BARRIER_ENV = "PAYBEAM_PUBLISH_BARRIER"
MANIFEST = "manifest.json"  # written last: a directory that has it is complete


def date_dir(output: str, day: str) -> str:
    return os.path.join(output, f"date={day}")


def tmp_dir(output: str, day: str, pid: int) -> str:
    return os.path.join(output, f".date={day}.tmp-{pid}")


def old_dir(output: str, day: str, pid: int) -> str:
    return os.path.join(output, f".date={day}.old-{pid}")


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: str, second: str) -> bool:
    """Atomically swaps two directories (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(code, f"cannot swap {first} and {second}: {os.strerror(code)}")


def fsync_dir(path: str) -> None:
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def publish(tmp: str, final: str, old: str, use_exchange: bool = True) -> None:
    """Makes the complete directory `tmp` visible as `final`; the previous `final` survives any crash.

    With RENAME_EXCHANGE the swap is one atomic step (readers always see a
    complete directory); afterwards `tmp` holds the previous output and is
    deleted. Otherwise: final -> old, tmp -> final, delete old; a crash
    between the two renames leaves no `final` but a complete `old`, which
    `recover` renames back on the next start.
    """
    parent = os.path.dirname(final)
    if not os.path.isdir(final):
        os.rename(tmp, final)
    elif use_exchange and _exchange(tmp, final):
        fsync_dir(parent)
        shutil.rmtree(tmp)
    else:
        os.rename(final, old)
        os.rename(tmp, final)
        fsync_dir(parent)
        shutil.rmtree(old)
    fsync_dir(parent)


def publish_barrier() -> None:
    """An explicit synchronisation point for crash tests, called with everything staged and nothing published:
    with PAYBEAM_PUBLISH_BARRIER naming a FIFO, say "staged" into it and wait until the test closes it again.
    A test can kill the process here without racing the clock."""
    fifo = os.environ.get(PUBLISH_BARRIER_ENV)
    if fifo:
        with open(fifo, "w", encoding="utf-8") as handle:
            handle.write("staged\n")
        _wait_until_released(fifo)


def _wait_until_released(fifo: str) -> None:
    """Returns once the test has opened and closed the FIFO again; a signal raises its handler's exception.

    The blocking open runs in a daemon thread, the main thread waits on it and on the signal wakeup fd.
    Why: Python runs signal handlers in the main thread only, and the kernel may hand a signal to any of
    the process's threads (Beam leaves several): a main thread blocked in open() stayed blocked, and a run
    stopped with SIGINT never ended (a test timed out after 120 s, 2026-12-05)."""
    if threading.current_thread() is not threading.main_thread():
        _read_to_end(fifo)
        return
    signals, signal_writer = os.pipe()
    released, released_writer = os.pipe()
    os.set_blocking(signal_writer, False)  # set_wakeup_fd requires it

    def wait_for_the_test() -> None:
        try:
            _read_to_end(fifo)
            os.write(released_writer, b"r")
        except OSError:  # the run ended first: nobody waits any more
            pass
        finally:
            os.close(released_writer)

    previous_wakeup_fd = signal.set_wakeup_fd(signal_writer)
    try:
        threading.Thread(target=wait_for_the_test, name="publish-barrier", daemon=True).start()
        while released not in select.select([signals, released], [], [])[0]:
            os.read(signals, 64)  # a signal arrived: its Python handler runs before the next wait
    finally:
        signal.set_wakeup_fd(previous_wakeup_fd)
        for fd in (signals, signal_writer, released):
            os.close(fd)


def _read_to_end(fifo: str) -> None:
    with open(fifo, encoding="utf-8") as handle:
        handle.read()


def recover(output: str) -> List[str]:
    """Cleans what a crashed run left in `output` (call with the output lock held); returns what it did."""
    actions: List[str] = []
    leftovers = sorted(glob.glob(os.path.join(glob.escape(output), ".date=*.old-*")))
    for old in leftovers:
        day = os.path.basename(old)[len(".date="):].split(".old-", 1)[0]
        final = date_dir(output, day)
        if not os.path.isdir(final) and os.path.isfile(os.path.join(old, MANIFEST)):
            os.rename(old, final)
            actions.append(f"restored {final} from {os.path.basename(old)}")
        else:
            shutil.rmtree(old, ignore_errors=True)
            actions.append(f"removed {os.path.basename(old)}")
    for tmp in sorted(glob.glob(os.path.join(glob.escape(output), ".date=*.tmp-*"))):
        shutil.rmtree(tmp, ignore_errors=True)
        actions.append(f"removed {os.path.basename(tmp)}")
    return actions


class OutputLock:
    """An exclusive flock on DIR/.backfill.lock: one backfill per output directory at a time.

    The kernel drops it when the process dies, so a SIGKILLed run never
    leaves a stale lock, and whoever holds it may treat every leftover
    `.tmp-`/`.old-` directory as debris of a dead run.
    """

    def __init__(self, output: str):
        self._path = os.path.join(output, LOCK_FILE)
        self._handle = None

    def __enter__(self) -> "OutputLock":
        self._handle = open(self._path, "a+")
        try:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise OutputLocked(f"another backfill is writing to {os.path.dirname(self._path)}") from None
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._handle.close()
