"""The policy room: scripted exit handling (:class:`Policy` and ``on.*``), the
firmware's fast rules, and device models written in Python."""

from __future__ import annotations

from .devices import MmioDevice, Pl011, Register
from .policy import Policy, on
from .rules import FastRules

__all__ = ["FastRules", "MmioDevice", "Pl011", "Policy", "Register", "on"]
