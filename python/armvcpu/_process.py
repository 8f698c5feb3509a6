"""Child processes that do not outlive their owner (Linux's parent-death signal),
and telling whether an owner is gone."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:  # pragma: no cover - runs in the child
    """In a child (before exec, or first thing in a worker): deliver ``sig`` to
    it when the thread that started it dies, so no QEMU or worker is orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def is_dead(pid: int) -> bool:
    """True when process ``pid`` is gone or a zombie nobody has reaped (a
    killed worker); False while it lives, and for a process that is not ours
    to judge (another user's)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (ProcessLookupError, FileNotFoundError):
        return True  # gone (between the two looks, too)
    except OSError:
        return False
