"""The firmware's exit log: every exit of every vCPU, including the ones the
firmware answers itself (PSCI, WFI, SGIs, the emulated GIC and UART, fast
rules), which never reach a Python handler.

The firmware keeps one ring of entries per physical CPU (layout from
``_core.exit_log_layout()``, defined once in C++); the host drains the rings
while the guest runs. A reader that falls more than a ring behind loses the
oldest entries and counts them in :attr:`ExitLogReader.dropped`.

When vCPUs time-share physical CPUs, the EL2 scheduler's world switches
are entries of the same rings (kind :data:`WORLD_SWITCH`, handler
``Scheduler``), so the log shows them in order with the exits: ``vm`` and
``vcpu`` name the vCPU switched out, ``cpu`` the physical CPU, ``arg`` how
long the outgoing vCPU had run (nanoseconds of counter time) and ``esr`` the
incoming vCPU and the reason (:func:`switch_rows` decodes them). An exit's
``cpu`` is the physical CPU its vCPU was on, as the switches say.

>>> with Hypervisor() as hv:                                # doctest: +SKIP
...     hv.enable_exit_log()
...     hv.load(guest)
...     hv.run()
...     log = hv.firmware_exits()       # a numpy structured array
...     summarize(log)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _core

LAYOUT: dict[str, Any] = dict(_core.exit_log_layout())
_FIELDS: dict[str, int] = dict(LAYOUT["fields"])
#: One raw ring entry, as the firmware writes it.
ENTRY_DTYPE = np.dtype({
    "names": ["time", "arg", "esr", "kind", "vm", "vcpu", "handler"],
    "formats": ["<u8", "<u8", "<u4", "u1", "u1", "u1", "u1"],
    "offsets": [_FIELDS["time"], _FIELDS["arg"], _FIELDS["esr"], _FIELDS["kind"],
                _FIELDS["vm_id"], _FIELDS["vcpu_id"], _FIELDS["handler"]],
    "itemsize": int(LAYOUT["entry_size"]),
})  # fmt: skip
#: What :meth:`ExitLogReader.drain` returns: time in seconds since the
#: counter's zero, the physical CPU, and the entry's fields.
DTYPE = np.dtype([("time_s", "<f8"), ("cpu", "u1"), ("vm", "u1"), ("vcpu", "u1"),
                  ("kind", "u1"), ("handler", "u1"), ("esr", "<u4"), ("arg", "<u8")])  # fmt: skip
HANDLERS = {int(h): h.name for h in _core.ExitLogHandler.__members__.values()}
#: The ``kind`` of a world switch's row (no :class:`ExitKind` has it).
WORLD_SWITCH: int = int(_core.EXIT_LOG_WORLD_SWITCH)
#: :func:`switch_rows`' result: when (counter seconds), how long the outgoing
#: vCPU had run, on which physical CPU, from and to which (VM, vCPU), why
#: (an index into :data:`SWITCH_REASONS`).
SWITCH_DTYPE = np.dtype([("time_s", "<f8"), ("ran_s", "<f8"), ("cpu", "u1"),
                         ("from_vm", "u1"), ("from_vcpu", "u1"), ("to_vm", "u1"),
                         ("to_vcpu", "u1"), ("reason", "u1")])  # fmt: skip
SWITCH_REASONS: list[str] = list(_core.SWITCH_REASONS)
_RAN_MASK = int(dict(_core.SWITCH_LOG_LAYOUT)["ran_mask"])


def kind_name(kind: int) -> str:
    """A row's kind as a name: an :class:`ExitKind`'s, or ``"WorldSwitch"``.

    >>> kind_name(1), kind_name(WORLD_SWITCH)
    ('Hypercall', 'WorldSwitch')
    """
    return "WorldSwitch" if kind == WORLD_SWITCH else _core.ExitKind(kind).name


def switch_rows(log: np.ndarray) -> np.ndarray:
    """The world switches among exit-log rows, decoded (:data:`SWITCH_DTYPE`).

    >>> switch_rows(np.empty(0, dtype=DTYPE)).dtype == SWITCH_DTYPE
    True
    """
    rows = log[log["kind"] == WORLD_SWITCH]
    out = np.empty(len(rows), dtype=SWITCH_DTYPE)
    esr = rows["esr"]
    out["time_s"] = rows["time_s"]
    out["ran_s"] = rows["arg"] / 1e9
    out["cpu"] = rows["cpu"]
    out["from_vm"] = rows["vm"]
    out["from_vcpu"] = rows["vcpu"]
    out["to_vm"] = (esr >> 8) & 0xFF
    out["to_vcpu"] = (esr >> 16) & 0xFF
    out["reason"] = (esr >> 24) & 0xFF
    return out


class ExitLogReader:
    """Drains the per-CPU rings through ``read(pa, length)``."""

    def __init__(self, read: Callable[[int, int], bytes], base: int, num_cpus: int,
                 placement: Callable[[], list[int]] | None = None) -> None:  # fmt: skip
        """``num_cpus`` rings (one per vCPU slot); ``placement()`` gives each
        slot's first physical CPU when vCPUs time-share CPUs (default: slot s
        on CPU s)."""
        self._read = read
        self._base = base
        self._num_cpus = num_cpus
        self._next = [0] * num_cpus
        self._placement = placement
        self._where: list[int] | None = None  # each slot's CPU, as the switches say
        self.dropped = 0

    def _ring(self, cpu: int) -> int:
        return self._base + cpu * int(LAYOUT["size"])

    def drain(self) -> np.ndarray:
        """Entries written since the last call, oldest first per CPU."""
        out = []
        size = int(LAYOUT["entries"])
        entry = int(LAYOUT["entry_size"])
        header = int(LAYOUT["header_size"])
        for cpu in range(self._num_cpus):
            ring = self._ring(cpu)
            written = int.from_bytes(self._read(ring + int(LAYOUT["written"]), 8), "little")
            start = self._next[cpu]
            if written <= start:
                continue
            if written - start > size:
                self.dropped += written - start - size
                start = written - size
            freq = int.from_bytes(self._read(ring + int(LAYOUT["frequency"]), 8), "little") or 1
            chunks = []
            pos = start
            while pos < written:
                index = pos % size
                count = min(written - pos, size - index)
                chunks.append(self._read(ring + header + index * entry, count * entry))
                pos += count
            raw = np.frombuffer(b"".join(chunks), dtype=ENTRY_DTYPE)
            self._next[cpu] = written
            rows = np.empty(len(raw), dtype=DTYPE)
            rows["time_s"] = raw["time"] / float(freq)
            rows["cpu"] = cpu  # the ring's slot, until _place_exits
            for name in ("vm", "vcpu", "kind", "handler", "esr", "arg"):
                rows[name] = raw[name]
            switch = raw["kind"] == WORLD_SWITCH
            if switch.any():
                arg = raw["arg"][switch]
                rows["cpu"][switch] = arg >> np.uint64(56)
                ticks = (arg & np.uint64(_RAN_MASK)).astype(np.float64)
                rows["arg"][switch] = np.round(ticks * (1e9 / float(freq))).astype(np.uint64)
            out.append(rows)
        if not out:
            return np.empty(0, dtype=DTYPE)
        rows = np.concatenate(out)
        rows = rows[np.argsort(rows["time_s"], kind="stable")]
        self._place_exits(rows)
        return rows

    def _place_exits(self, rows: np.ndarray) -> None:
        """Turns each exit's slot (its ring) into the physical CPU its vCPU
        was on: where it was placed, then where each switch to it put it."""
        switch = rows["kind"] == WORLD_SWITCH
        if self._where is None:
            placed = self._placement() if self._placement is not None else None
            self._where = list(placed) if placed else list(range(self._num_cpus))
        if not switch.any() and self._where == list(range(len(self._where))):
            return  # nothing time-shared: slot s is CPU s
        to_slot = rows["esr"][switch] & 0xFF
        to_time, to_cpu = rows["time_s"][switch], rows["cpu"][switch]
        exits = ~switch
        slots = rows["cpu"].copy()
        for slot in range(self._num_cpus):
            mine = exits & (slots == slot)
            ins = to_slot == slot
            first = self._where[slot] if slot < len(self._where) else slot
            if mine.any():
                # The last switch to this slot at or before each exit.
                at = np.searchsorted(to_time[ins], rows["time_s"][mine], side="right") - 1
                cpus = np.append(to_cpu[ins], first)  # index -1: none yet
                rows["cpu"][mine] = cpus[at]
            if ins.any() and slot < len(self._where):
                self._where[slot] = int(to_cpu[ins][-1])


@dataclass(frozen=True)
class LogKindSummary:
    kind: str
    handler: str
    count: int
    per_second: float


def summarize(log: np.ndarray) -> list[LogKindSummary]:
    """Exits (and world switches) per kind and per handler, with their rate
    over the log's span."""
    if len(log) == 0:
        return []
    span = float(log["time_s"].max() - log["time_s"].min()) or 1e-9
    keys, counts = np.unique(log[["kind", "handler"]], return_counts=True)
    out = [
        LogKindSummary(kind_name(int(k["kind"])), HANDLERS.get(int(k["handler"]), "?"),
                       int(c), float(c) / span)
        for k, c in zip(keys, counts, strict=True)
    ]  # fmt: skip
    return sorted(out, key=lambda s: -s.count)
