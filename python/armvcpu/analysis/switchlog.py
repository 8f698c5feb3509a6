"""The EL2 scheduler's world switches: which vCPU ran on which physical CPU,
and for how long. The switches are entries of the exit log (see
:mod:`armvcpu.analysis.exitlog`); the firmware's ``armvcpu_switch_log``
(the core's ``SwitchLog``) keeps only their count and instruction costs."""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from . import exitlog


class WorldSwitch(NamedTuple):
    """One world switch on one physical CPU."""

    time_s: float  #: when the incoming vCPU went on the CPU (counter seconds)
    ran_s: float  #: how long the outgoing vCPU had been on the CPU
    cpu: int  #: the physical CPU
    from_slot: int  #: the outgoing vCPU's slot (VM 1's vCPUs first, then VM 2's ...)
    to_slot: int  #: the incoming vCPU's slot
    from_vcpu: tuple[int, int]  #: (VM id, vCPU index) switched out
    to_vcpu: tuple[int, int]  #: (VM id, vCPU index) switched in
    reason: str  #: "slice", "blocked" (WFI, CPU_SUSPEND), "off", "wake" or "yield"


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


def world_switches(log: np.ndarray, slots: list[tuple[int, int]]) -> list[WorldSwitch]:
    """The world switches among exit-log rows (:mod:`armvcpu.analysis.exitlog`),
    oldest first; ``slots[s]`` names slot s as (VM id, vCPU index).

    >>> world_switches(np.empty(0, dtype=exitlog.DTYPE), [(1, 0)])
    []
    """
    rows = exitlog.switch_rows(log)
    to_slots = log["esr"][log["kind"] == exitlog.WORLD_SWITCH] & 0xFF
    reasons = exitlog.SWITCH_REASONS
    out: list[WorldSwitch] = []
    for row, to_slot in zip(rows, to_slots, strict=True):
        src = (int(row["from_vm"]), int(row["from_vcpu"]))
        dst = (int(row["to_vm"]), int(row["to_vcpu"]))
        why = int(row["reason"])
        reason = reasons[why] if why < len(reasons) else f"reason {why}"
        from_slot = slots.index(src) if src in slots else -1
        out.append(WorldSwitch(float(row["time_s"]), float(row["ran_s"]), int(row["cpu"]),
                               from_slot, int(to_slot), src, dst, reason))  # fmt: skip
    return out
