"""Start gdb-multiarch on a running session, with armvcpu's gdb extension loaded.

>>> with Hypervisor() as hv:                                  # doctest: +SKIP
...     hv.load(Guest.from_elf(example_guest_path("hypercalls")))
...     exit = next(hv.exits())
...     launch(hv.release_gdbstub(), hv.firmware.path)        # gdb until you quit it
...     exit.resume(x0=42)

Inside gdb: ``armvcpu vcpus``, ``armvcpu exit``, ``armvcpu frame``,
``armvcpu rules``, ``print armvcpu_exit_records[0]``; ``detach`` before
quitting hands the CPU back (see docs/gdb.md).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import armvcpu

from ..assets import firmware_path
from ..errors import ToolNotFoundError

#: The gdb that understands AArch64 on an x86 host (Debian: package gdb-multiarch).
GDB = "gdb-multiarch"


def site_packages() -> Path:
    """The directory that holds the ``armvcpu`` package (for gdb-Python's sys.path)."""
    return Path(armvcpu.__file__).resolve().parent.parent


def _gdb_quote(path: Path | str) -> str:
    """A file name as gdb's argument parser (libiberty buildargv) reads it back."""
    text = str(path)
    if text and not any(c.isspace() or c in "'\"\\" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def gdb_command(
    socket_path: str,
    firmware: Path,
    extra: Sequence[str] = (),
    *,
    gdb: str = GDB,
) -> list[str]:
    """The gdb-multiarch argv that attaches to a session's gdbstub with the extension loaded.

    In order: gdb-Python gets this installation's site-packages on its
    ``sys.path`` and imports ``armvcpu.tools.gdb``; the firmware ELF is loaded
    (``file``), then gdb connects (``target remote <socket_path>``). ``extra``
    (gdb options, more ``-ex`` commands) comes last, so its commands run
    once gdb is attached.

    Args:
        socket_path: the gdbstub's Unix socket, from ``Hypervisor.release_gdbstub()``.
        firmware: the firmware ELF the session runs (``hv.firmware.path``).
        extra: more gdb arguments, appended as given.
        gdb: the gdb binary.

    >>> argv = gdb_command("/tmp/s/gdb.sock", Path("/fw/fw.elf"), ["-batch"])
    >>> argv[-5:]
    ['-ex', 'file /fw/fw.elf', '-ex', 'target remote /tmp/s/gdb.sock', '-batch']
    """
    paths = str(site_packages())
    return [
        gdb,
        "-q",
        "-ex",
        f"python import sys; sys.path.insert(0, {paths!r}) if {paths!r} not in sys.path else None",
        "-ex",
        "python import armvcpu.tools.gdb",
        "-ex",
        f"file {_gdb_quote(firmware)}",
        "-ex",
        f"target remote {socket_path}",
        *extra,
    ]


def launch(
    socket_path: str,
    firmware: Path | None = None,
    extra: Sequence[str] = (),
    *,
    gdb: str = GDB,
) -> int:
    """Run gdb-multiarch on the session's gdbstub; returns gdb's exit code.

    gdb owns the terminal until it quits. Ctrl-C goes to gdb (it interrupts
    the target) and does not interrupt this process meanwhile.

    Args:
        socket_path: the gdbstub's Unix socket, from ``Hypervisor.release_gdbstub()``.
        firmware: the firmware ELF (default: the one this package carries).
        extra: more gdb arguments, appended as given.
        gdb: the gdb binary.

    Raises:
        ToolNotFoundError: gdb-multiarch is not installed.
    """
    binary = shutil.which(gdb)
    if binary is None:
        raise ToolNotFoundError(
            f"{gdb} not found on PATH; install Debian's gdb-multiarch package "
            "(apt-get install gdb-multiarch)"
        )
    argv = gdb_command(socket_path, firmware or firmware_path(), extra, gdb=binary)
    if threading.current_thread() is not threading.main_thread():
        return subprocess.run(argv, check=False).returncode

    def ignore(signum: int, frame: FrameType | None) -> None:
        """SIGINT is gdb's while it runs (a Python-level handler: exec resets it for gdb)."""

    previous = signal.signal(signal.SIGINT, ignore)
    try:
        return subprocess.run(argv, check=False).returncode
    finally:
        if previous is not None:  # None: a handler Python did not install; leave ours
            signal.signal(signal.SIGINT, previous)
