"""armvcpu: see and script every VM exit of an AArch64 guest.

A C++ core (``armvcpu._core``) decodes and classifies exits; the same core
runs inside an EL2 firmware on QEMU's ``virt`` machine; this package drives
that firmware over QEMU's gdbstub.

>>> import armvcpu
>>> armvcpu.firmware_path().name  # doctest: +SKIP
'armvcpu-firmware.elf'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _core
from .assets import example_guest_path, firmware_path
from .errors import (
    ArmvcpuError,
    DeviceTreeError,
    FirmwareError,
    GdbProtocolError,
    GuestImageError,
    GuestTimeout,
    QemuError,
    SessionClosedError,
    SnapshotError,
    TargetConnectionError,
    ToolNotFoundError,
)
from .exits import Exit, ExitKind, Registers
from .guests import Guest, Segment
from .policy import MmioDevice, Pl011, Policy, Register, on
from .session import VM, Firmware, Hypervisor, VCpu

if TYPE_CHECKING:
    from .analysis import Trace

__version__: str = _core.__version__


def __getattr__(name: str) -> Any:
    # Trace brings numpy (a fifth of a second of CPU at start-up), which a
    # session that records no trace, such as `armvcpu run`, never needs.
    if name == "Trace":
        from .analysis import Trace

        return Trace
    raise AttributeError(f"module 'armvcpu' has no attribute {name!r}")


__all__ = [
    "VM",
    "ArmvcpuError",
    "DeviceTreeError",
    "Exit",
    "ExitKind",
    "Firmware",
    "FirmwareError",
    "GdbProtocolError",
    "Guest",
    "GuestImageError",
    "GuestTimeout",
    "Hypervisor",
    "MmioDevice",
    "Pl011",
    "Policy",
    "QemuError",
    "Register",
    "Registers",
    "Segment",
    "SessionClosedError",
    "SnapshotError",
    "TargetConnectionError",
    "ToolNotFoundError",
    "Trace",
    "VCpu",
    "__version__",
    "example_guest_path",
    "firmware_path",
    "on",
]
