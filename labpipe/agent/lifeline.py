"""Processes that die with their parent: no worker or task outlives the process that owns it.

Linux's prctl(PR_SET_PDEATHSIG) makes the kernel signal a process when its parent exits, even by
kill -9, which no handler in the parent could catch. Two caveats shape how it is used here: the
"parent" is the *thread* that forked the child (so the pool forks its workers from a thread that
lives exactly as long as the pool), and the parent may already be gone before the call, so the
caller compares getppid() with the pid it expects. Elsewhere it is a no-op and the workers' own
parent-pid watchdog does the job, a little later.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
_prctl = None


def _load_prctl():
    """libc's prctl, resolved once (looking it up costs a forked child ~0.1 ms of copied pages)."""
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _prctl = libc.prctl
            _prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
            _prctl.restype = ctypes.c_int
        except (OSError, AttributeError):
            _prctl = False
    return _prctl or None


def preload() -> None:
    """Load libc now, so a freshly forked child need not (call before forking)."""
    _load_prctl()


def die_with_parent(sig: int = signal.SIGKILL, expected_parent: int | None = None) -> None:
    """Ask the kernel to send `sig` to this process when its parent exits.

    expected_parent: the parent's pid; if the parent already died (we were re-parented before the
    call), the signal is sent now, since the kernel would never send it.
    """
    prctl = _load_prctl()
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if expected_parent is not None and os.getppid() != expected_parent:
        os.kill(os.getpid(), sig)
