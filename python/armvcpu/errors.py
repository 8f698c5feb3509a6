"""The errors armvcpu raises. Every one is an :class:`ArmvcpuError`."""

from __future__ import annotations


class ArmvcpuError(Exception):
    """Base class of every armvcpu error."""


class ToolNotFoundError(ArmvcpuError):
    """A program armvcpu needs (QEMU, the cross toolchain) is not installed."""


class FirmwareError(ArmvcpuError):
    """The firmware image is missing, malformed, or lacks a symbol armvcpu needs."""


class GuestImageError(ArmvcpuError):
    """A guest image is malformed or does not fit the guest's memory."""


class QemuError(ArmvcpuError):
    """QEMU failed to start or exited while armvcpu still needed it."""


class GdbProtocolError(ArmvcpuError):
    """The GDB remote target answered something armvcpu did not expect."""


class TargetConnectionError(ArmvcpuError, ConnectionError):
    """The connection to the GDB remote target broke or was closed."""


class GuestTimeout(ArmvcpuError):
    """The guest made no exit within the allowed time."""


class SessionClosedError(ArmvcpuError):
    """The Hypervisor session has ended; start a new one."""
