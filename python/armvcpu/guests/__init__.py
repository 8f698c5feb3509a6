"""The guests room: guest images (ELF, raw, assembled or compiled snippets), the
arm64 Linux boot protocol, device trees, Debian's kernels and the cross toolchain."""

from __future__ import annotations

from .guest import DEFAULT_GUEST_BASE, Guest, Segment
from .linux import BootPlan, LinuxImage

__all__ = ["DEFAULT_GUEST_BASE", "BootPlan", "Guest", "LinuxImage", "Segment"]
