"""The session room: a running QEMU with the firmware (:class:`Hypervisor`), its
VMs, and how exit records travel (shared memory or the gdbstub)."""

from __future__ import annotations

from .firmware import Firmware
from .gdbstub import GdbRemote
from .hypervisor import RAM_BASE, Hypervisor
from .qemu import QemuConfig, QemuProcess
from .transport import GdbTransport, SharedMemoryTransport, Transport
from .vm import VM, VCpu

__all__ = [
    "RAM_BASE",
    "VM",
    "Firmware",
    "GdbRemote",
    "GdbTransport",
    "Hypervisor",
    "QemuConfig",
    "QemuProcess",
    "SharedMemoryTransport",
    "Transport",
    "VCpu",
]
