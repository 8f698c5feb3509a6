"""Traces: every exit of a run, as data.

A trace keeps each exit record exactly as the firmware wrote it (so it can be
re-classified and replayed offline through ``_core``), when it arrived, how
long the host took to answer it, and the answer.

>>> trace = Trace()
>>> with Hypervisor() as hv:                           # doctest: +SKIP
...     hv.load(guest)
...     hv.run(policy, trace=trace)
>>> trace.save("run.npz"); Trace.load("run.npz").summary()   # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from ..exits import Exit
from . import exitlog
from .switchlog import WorldSwitch

RECORD_SIZE: int = _core.ExitRecord.SIZE
_OFF = dict(_core.ExitRecord.OFFSETS)
FORMAT = "armvcpu-trace"
VERSION = 1
#: A trace's world switches: when (counter seconds), how long the outgoing
#: vCPU had run, on which physical CPU, from and to which (VM, vCPU), why.
SWITCH_DTYPE = exitlog.SWITCH_DTYPE
SWITCH_REASONS: list[str] = exitlog.SWITCH_REASONS


@dataclass(frozen=True)
class KindSummary:
    kind: str
    count: int
    share: float  # of all exits
    median_us: float  # host handling time
    p99_us: float


@dataclass
class ReplayResult:
    exits: int
    mismatches: int  # records whose re-classification differs from the firmware's
    answers: list[tuple[int, int]]  # (HostAction, x0 the guest would see) per exit


class Trace:
    """Exit records with timing; columns are numpy arrays."""

    def __init__(self, meta: dict[str, Any] | None = None) -> None:
        self.meta: dict[str, Any] = {"format": FORMAT, "version": VERSION, **(meta or {})}
        self._records: list[bytes] = []
        self._t_ns: list[int] = []
        self._handle_ns: list[int] = []
        self._action: list[int] = []
        self._x0: list[int] = []
        self._frozen: dict[str, np.ndarray] | None = None
        self._start_ns = time.perf_counter_ns()
        #: Every exit the firmware logged, including the ones it answered
        #: itself, and the world switches in order with them (see
        #: :mod:`armvcpu.analysis.exitlog`); empty unless the run had
        #: ``Hypervisor.enable_exit_log()``.
        self.firmware_log: np.ndarray = np.empty(0, dtype=exitlog.DTYPE)
        self._added_switches: np.ndarray = np.empty(0, dtype=SWITCH_DTYPE)

    # -- recording ----------------------------------------------------------------

    def add(self, exit: Exit) -> None:
        """Record an answered exit."""
        self._frozen = None
        self._records.append(exit.raw)
        delivered = exit.delivered_ns or self._start_ns
        answered = exit.answered_ns or delivered
        self._t_ns.append(delivered - self._start_ns)
        self._handle_ns.append(max(0, answered - delivered))
        self._action.append(int(exit.record.action))
        self._x0.append(int(exit.frame.gpr(0)))

    def add_firmware_log(self, rows: np.ndarray) -> None:
        """Append exit-log rows (``Hypervisor.firmware_exits()``)."""
        self.firmware_log = np.concatenate([self.firmware_log, rows.astype(exitlog.DTYPE)])

    def add_world_switches(self, switches: Iterable[WorldSwitch]) -> None:
        """Append the scheduler's switches (``Hypervisor.world_switches()``),
        for a run without the exit log (with it, :meth:`add_firmware_log`
        brings them; one added both ways counts once)."""
        rows = np.array([(s.time_s, s.ran_s, s.cpu, *s.from_vcpu, *s.to_vcpu,
                          SWITCH_REASONS.index(s.reason) if s.reason in SWITCH_REASONS else 255)
                         for s in switches], dtype=SWITCH_DTYPE)  # fmt: skip
        self._added_switches = np.concatenate([self._added_switches, rows])

    @property
    def world_switches(self) -> np.ndarray:
        """The EL2 scheduler's world switches (vCPUs time-sharing CPUs), oldest
        first: one row per switch, :data:`SWITCH_DTYPE`; empty without time
        sharing."""
        logged = exitlog.switch_rows(self.firmware_log)
        if not len(self._added_switches):
            return logged
        return np.unique(np.concatenate([logged, self._added_switches]))

    def firmware_summary(self) -> list[exitlog.LogKindSummary]:
        """The firmware log's exits per kind and handler, with their rates."""
        return exitlog.summarize(self.firmware_log)

    def __len__(self) -> int:
        return len(self._records) if self._frozen is None else len(self._frozen["t_ns"])

    # -- columns ------------------------------------------------------------------

    @property
    def columns(self) -> dict[str, np.ndarray]:
        if self._frozen is None:
            records = np.frombuffer(b"".join(self._records), dtype=np.uint8)
            self._frozen = {
                "records": records.reshape(-1, RECORD_SIZE),
                "t_ns": np.array(self._t_ns, dtype=np.int64),
                "handle_ns": np.array(self._handle_ns, dtype=np.int64),
                "action": np.array(self._action, dtype=np.uint32),
                "answer_x0": np.array(self._x0, dtype=np.uint64),
            }
        return self._frozen

    def _field(self, name: str, dtype: Any, offset: int = 0) -> np.ndarray:
        records = self.columns["records"]
        start = _OFF[name] + offset
        width = np.dtype(dtype).itemsize
        raw = np.ascontiguousarray(records[:, start : start + width])
        column: np.ndarray = raw.view(dtype).reshape(-1)
        return column

    @property
    def kind(self) -> np.ndarray:
        """ExitKind values (uint32), one per exit."""
        return self._field("reason", np.uint32)

    @property
    def esr(self) -> np.ndarray:
        return self._field("esr", np.uint64)

    @property
    def elr(self) -> np.ndarray:
        """ELR_EL2 as each exception left it (past the call for HVC/SVC)."""
        return self._field("elr", np.uint64)

    @property
    def pc(self) -> np.ndarray:
        """The instruction that made each exit (``Exit.pc``: the HVC itself,
        the trapped or faulting instruction), as the core decides it."""
        return np.array([r.instruction_address for r in self.exits()], dtype=np.uint64)

    @property
    def return_address(self) -> np.ndarray:
        """Where the guest would resume as the firmware reported the exit (the
        frame's ELR after classification, before any host edit)."""
        return self._field("frame", np.uint64, _core.TrapFrame.OFFSETS["elr"])

    @property
    def vcpu(self) -> np.ndarray:
        return self._field("vcpu_id", np.uint32)

    @property
    def vm(self) -> np.ndarray:
        return self._field("vm_id", np.uint32)

    def gpr(self, index: int) -> np.ndarray:
        """Register x<index> at each exit."""
        if not 0 <= index <= 30:
            raise IndexError("x0..x30")
        return self._field("frame", np.uint64, 8 * index)

    def exits(self) -> Iterator[Any]:
        """The records as ``_core.ExitRecord`` objects."""
        for row in self.columns["records"]:
            yield _core.ExitRecord.from_bytes(row.tobytes())

    # -- analysis -----------------------------------------------------------------

    def summary(self) -> list[KindSummary]:
        """Exits per kind with their share and host handling times."""
        kinds = self.kind
        handle_us = self.columns["handle_ns"] / 1000.0
        out = []
        total = max(len(kinds), 1)
        values, counts = np.unique(kinds, return_counts=True)
        for value, count in sorted(zip(values, counts, strict=True), key=lambda vc: -vc[1]):
            times = handle_us[kinds == value]
            name = _core.ExitKind(int(value)).name
            median, p99 = float(np.median(times)), float(np.percentile(times, 99))
            out.append(KindSummary(name, int(count), count / total, median, p99))
        return out

    def to_dataframe(self) -> Any:
        """A pandas DataFrame, one row per exit (needs pandas)."""
        import pandas as pd

        ec = (self.esr >> np.uint64(26)) & np.uint64(0x3F)
        data: dict[str, Any] = {
            "t_us": self.columns["t_ns"] / 1000.0,
            "handle_us": self.columns["handle_ns"] / 1000.0,
            "vm": self.vm,
            "vcpu": self.vcpu,
            "seq": self._field("seq", np.uint64),
            "kind": pd.Categorical([_core.ExitKind(int(k)).name for k in self.kind]),
            "esr": self.esr,
            "ec": ec.astype(np.uint8),
            "pc": self.pc,
            "return_address": self.return_address,
            "elr": self.elr,
        }
        for i in range(8):
            data[f"x{i}"] = self.gpr(i)
        data["detail"] = [repr(r.reason) for r in self.exits()]
        data["answer_x0"] = self.columns["answer_x0"]
        return pd.DataFrame(data)

    def to_chrome_trace(self) -> dict[str, Any]:
        """Chrome/Perfetto trace-event JSON (open it at ui.perfetto.dev or
        chrome://tracing): one complete event per exit, lasting as long as the
        host took to answer it, on a track per VM and vCPU."""
        events: list[dict[str, Any]] = []
        t_ns, handle_ns = self.columns["t_ns"], self.columns["handle_ns"]
        for i, record in enumerate(self.exits()):
            events.append({
                "name": _core.ExitKind(int(record.reason.kind)).name,
                "cat": "exit", "ph": "X",
                "ts": float(t_ns[i]) / 1000.0,
                "dur": max(float(handle_ns[i]) / 1000.0, 0.001),
                "pid": int(record.vm_id), "tid": int(record.vcpu_id),
                "args": {"seq": int(record.seq), "esr": hex(record.esr),
                         "pc": hex(record.instruction_address), "reason": repr(record.reason)},
            })  # fmt: skip
        meta = [{"name": "process_name", "ph": "M", "pid": pid, "args": {"name": f"VM {pid}"}}
                for pid in sorted({e["pid"] for e in events})]  # fmt: skip
        log = self.firmware_log
        if len(log):
            # The firmware's log on a track of its own: instant events on the
            # guest's counter clock (its zero is the first logged exit), one
            # thread per vCPU.
            pid = 1000
            meta.append({"name": "process_name", "ph": "M", "pid": pid,
                         "args": {"name": "firmware exit log (counter time)"}})  # fmt: skip
            t0 = float(log["time_s"].min())
            for row in log:
                kind = int(row["kind"])
                args: dict[str, Any]
                if kind == exitlog.WORLD_SWITCH:
                    # The vCPU left its CPU here (the span is on the CPU's track).
                    esr = int(row["esr"])
                    why = esr >> 24
                    args = {
                        "cpu": int(row["cpu"]),
                        "ran_us": int(row["arg"]) / 1000.0,
                        "to": f"VM {(esr >> 8) & 0xFF} vCPU {(esr >> 16) & 0xFF}",
                        "why": SWITCH_REASONS[why] if why < len(SWITCH_REASONS) else "?",
                    }
                else:
                    args = {
                        "esr": hex(int(row["esr"])),
                        "arg": hex(int(row["arg"])),
                        "cpu": int(row["cpu"]),
                        "by": exitlog.HANDLERS.get(int(row["handler"]), "?"),
                    }
                events.append({
                    "name": exitlog.kind_name(kind), "cat": "firmware",
                    "ph": "i", "s": "t", "ts": (float(row["time_s"]) - t0) * 1e6,
                    "pid": pid, "tid": int(row["vm"]) * 100 + int(row["vcpu"]), "args": args,
                })  # fmt: skip
        switches = self.world_switches
        if len(switches):
            # Which vCPU each physical CPU ran, and for how long: the span that
            # ended at each switch, on the guest's counter clock.
            pid = 2000
            meta.append({"name": "process_name", "ph": "M", "pid": pid,
                         "args": {"name": "physical CPUs (counter time)"}})  # fmt: skip
            t0 = float((switches["time_s"] - switches["ran_s"]).min())
            for row in switches:
                start = float(row["time_s"]) - float(row["ran_s"])
                reason = int(row["reason"])
                events.append({
                    "name": f"VM {int(row['from_vm'])} vCPU {int(row['from_vcpu'])}",
                    "cat": "world switch", "ph": "X", "ts": (start - t0) * 1e6,
                    "dur": float(row["ran_s"]) * 1e6, "pid": pid, "tid": int(row["cpu"]),
                    "args": {"left for": f"VM {int(row['to_vm'])} vCPU {int(row['to_vcpu'])}",
                             "why": SWITCH_REASONS[reason] if reason < len(SWITCH_REASONS)
                             else "?"},
                })  # fmt: skip
        return {"traceEvents": meta + events, "displayTimeUnit": "ns", "metadata": self.meta}

    def replay(self, handler: Callable[[Exit], Any] | None = None) -> ReplayResult:
        """Offline, with no QEMU: re-classify every record through ``_core``
        (counting disagreements with the firmware) and, with a handler or
        policy, compute the answer it would have given each exit."""
        mismatches = 0
        answers: list[tuple[int, int]] = []
        for record in self.exits():
            exit = Exit(record, lambda _exit, _changed: None, None)
            if repr(exit.reclassify()) != repr(exit.reason):
                mismatches += 1
            if handler is not None:
                value = handler(exit)
                if value is not None and not exit.resolved:
                    exit.resume(x0=value)
                if not exit.resolved:
                    exit.resume_default()
                answers.append((int(exit.record.action), int(exit.frame.gpr(0))))
        return ReplayResult(len(self), mismatches, answers)

    # -- files ----------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Save as a compressed .npz: the columns plus JSON metadata. A name
        without the suffix gets it (``run`` -> ``run.npz``); :meth:`load`
        takes either name."""
        p = _npz_name(path)
        meta = {**self.meta, "record_size": RECORD_SIZE,
                "exit_record_version": int(_core.EXIT_RECORD_VERSION)}  # fmt: skip
        c = self.columns
        np.savez_compressed(p, meta=np.array(json.dumps(meta)), records=c["records"],
                            t_ns=c["t_ns"], handle_ns=c["handle_ns"], action=c["action"],
                            answer_x0=c["answer_x0"], firmware_log=self.firmware_log,
                            world_switches=self.world_switches)  # fmt: skip
        return p

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        """Load a trace saved by :meth:`save`, by the name given to it or the
        one it returned; errors name what is wrong."""
        p = Path(path)
        if not p.exists() and _npz_name(p).exists():
            p = _npz_name(p)
        try:
            with np.load(p, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                columns = {k: data[k] for k in ("records", "t_ns", "handle_ns", "action",
                                                 "answer_x0")}  # fmt: skip
                firmware_log = (data["firmware_log"] if "firmware_log" in data.files
                                else np.empty(0, dtype=exitlog.DTYPE))  # fmt: skip
                switches = (data["world_switches"] if "world_switches" in data.files
                            else np.empty(0, dtype=SWITCH_DTYPE))  # fmt: skip
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{p} is not an armvcpu trace ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise ValueError(f"{p} is not an armvcpu trace")
        if meta.get("record_size") != RECORD_SIZE or columns["records"].shape[1:] != (RECORD_SIZE,):
            raise ValueError(
                f"{p} holds exit records of version {meta.get('exit_record_version')} "
                f"({meta.get('record_size')} bytes); this armvcpu reads version "
                f"{_core.EXIT_RECORD_VERSION} ({RECORD_SIZE} bytes)"
            )
        trace = cls(meta)
        trace._frozen = columns
        if firmware_log.dtype != exitlog.DTYPE:
            raise ValueError(f"{p}: its firmware log has an unknown layout ({firmware_log.dtype})")
        trace.firmware_log = firmware_log
        if switches.dtype != SWITCH_DTYPE:
            raise ValueError(f"{p}: its world switches have an unknown layout ({switches.dtype})")
        trace._added_switches = switches
        return trace


def _npz_name(path: str | Path) -> Path:
    """Where :meth:`Trace.save` writes ``path``: numpy adds ``.npz``."""
    p = Path(path)
    if p.suffix == ".npz":
        return p
    return p.with_suffix(p.suffix + ".npz") if p.suffix else p.with_suffix(".npz")
