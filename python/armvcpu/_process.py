"""Child processes that do not outlive their owner (Linux's parent-death signal)."""

from __future__ import annotations

import contextlib
import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:  # pragma: no cover - runs in the child
    """In a child (before exec, or first thing in a worker): deliver ``sig`` to
    it when the thread that started it dies, so no QEMU or worker is orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
