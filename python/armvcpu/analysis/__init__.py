"""The analysis room: traces of host exits and the firmware's exit log, as data."""

from __future__ import annotations

from .trace import Trace

__all__ = ["Trace"]
