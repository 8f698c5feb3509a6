"""The firmware's exit log: every exit of every vCPU, including the ones the
firmware answers itself (PSCI, WFI, SGIs, the emulated GIC and UART, fast
rules), which never reach a Python handler.

The firmware keeps one ring of entries per physical CPU (layout from
``_core.exit_log_layout()``, defined once in C++); the host drains the rings
while the guest runs. A reader that falls more than a ring behind loses the
oldest entries and counts them in :attr:`ExitLogReader.dropped`.

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


class ExitLogReader:
    """Drains the per-CPU rings through ``read(pa, length)``."""

    def __init__(self, read: Callable[[int, int], bytes], base: int, num_cpus: int) -> None:
        self._read = read
        self._base = base
        self._num_cpus = num_cpus
        self._next = [0] * num_cpus
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
            rows["cpu"] = cpu
            for name in ("vm", "vcpu", "kind", "handler", "esr", "arg"):
                rows[name] = raw[name]
            out.append(rows)
        if not out:
            return np.empty(0, dtype=DTYPE)
        rows = np.concatenate(out)
        return rows[np.argsort(rows["time_s"], kind="stable")]


@dataclass(frozen=True)
class LogKindSummary:
    kind: str
    handler: str
    count: int
    per_second: float


def summarize(log: np.ndarray) -> list[LogKindSummary]:
    """Exits per kind and per handler, with their rate over the log's span."""
    if len(log) == 0:
        return []
    span = float(log["time_s"].max() - log["time_s"].min()) or 1e-9
    keys, counts = np.unique(log[["kind", "handler"]], return_counts=True)
    out = [
        LogKindSummary(_core.ExitKind(int(k["kind"])).name, HANDLERS.get(int(k["handler"]), "?"),
                       int(c), float(c) / span)
        for k, c in zip(keys, counts, strict=True)
    ]  # fmt: skip
    return sorted(out, key=lambda s: -s.count)
