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


class DeviceTreeError(ArmvcpuError, ValueError):
    """A device tree blob is malformed, or a guest's device tree cannot be made
    as asked. When the C++ core rejected a blob, ``code`` names its reason
    (``"BadMagic"``, ``"Truncated"``, ...) and ``offset`` the byte where it
    found it."""

    def __init__(self, message: str, *, code: str | None = None, offset: int | None = None):
        super().__init__(message)
        self.code = code
        self.offset = offset


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


class SnapshotError(ArmvcpuError):
    """A VM snapshot cannot be restored: none was taken, or the firmware
    could not keep it (its reason is in the message)."""
