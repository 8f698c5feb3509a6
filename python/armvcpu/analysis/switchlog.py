"""The EL2 scheduler's switch log: which vCPU ran on which physical CPU, and
for how long (the firmware's ``armvcpu_switch_log``, laid out by the core's
``SwitchLog``)."""

from __future__ import annotations

import struct
from typing import NamedTuple

from .. import _core

_ENTRY = struct.Struct("<QQBBBBI")  # time, ran, cpu, from, to, reason, reserved


class WorldSwitch(NamedTuple):
    """One world switch on one physical CPU."""

    time_s: float  #: when the incoming vCPU went on the CPU (counter seconds)
    ran_s: float  #: how long the outgoing vCPU had been on the CPU
    cpu: int  #: the physical CPU
    from_slot: int  #: the outgoing vCPU's slot (VM 1's vCPUs first, then VM 2's ...)
    to_slot: int  #: the incoming vCPU's slot
    from_vcpu: tuple[int, int]  #: (VM id, vCPU index) switched out
    to_vcpu: tuple[int, int]  #: (VM id, vCPU index) switched in
    reason: str  #: "slice", "blocked" (WFI, CPU_SUSPEND), "off" or "wake"


class SwitchCosts(NamedTuple):
    """EL2 instructions the world switches took, as the firmware counted them
    (with ``hv.request_selftest("count-el2")``; zero otherwise)."""

    measured: int  #: world switches counted
    instructions: int  #: their EL2 instructions together
    fp_switches: int  #: lazy FP/SIMD/SVE hand-overs counted
    fp_instructions: int  #: their EL2 instructions together

    @property
    def per_switch(self) -> float:
        """EL2 instructions per world switch (0.0 when none was counted)."""
        return self.instructions / self.measured if self.measured else 0.0

    @property
    def per_fp_switch(self) -> float:
        """EL2 instructions per lazy FP hand-over (0.0 when none was counted)."""
        return self.fp_instructions / self.fp_switches if self.fp_switches else 0.0


def parse_switch_costs(raw: bytes) -> SwitchCosts:
    """The instruction counts in the header of a copy of the switch log.

    >>> parse_switch_costs(bytes(48)).per_switch
    0.0
    """
    return SwitchCosts(*struct.unpack_from("<4Q", raw, 16))


def parse_switch_log(raw: bytes, slots: list[tuple[int, int]]) -> list[WorldSwitch]:
    """The switches in a copy of the log, oldest first; ``slots[s]`` names
    slot s as (VM id, vCPU index).

    >>> parse_switch_log(bytes(48 + 24 * 1024), [(1, 0)])
    []
    """
    layout = _core.SWITCH_LOG_LAYOUT
    header, entry, capacity = int(layout["header"]), int(layout["entry"]), int(layout["entries"])
    if len(raw) < header + entry * capacity:
        raise ValueError(f"a switch log is {header + entry * capacity} bytes, not {len(raw)}")
    count, frequency = struct.unpack_from("<QQ", raw, 0)
    if count == 0 or frequency == 0:
        return []
    reasons = list(_core.SWITCH_REASONS)
    out: list[WorldSwitch] = []
    for i in range(max(0, count - capacity), count):
        time, ran, cpu, src, dst, why, _ = _ENTRY.unpack_from(raw, header + (i % capacity) * entry)
        name = reasons[why] if why < len(reasons) else f"reason {why}"
        out.append(WorldSwitch(time / frequency, ran / frequency, cpu, src, dst,
                               _name(slots, src), _name(slots, dst), name))  # fmt: skip
    return out


def _name(slots: list[tuple[int, int]], slot: int) -> tuple[int, int]:
    return slots[slot] if slot < len(slots) else (0, slot)
