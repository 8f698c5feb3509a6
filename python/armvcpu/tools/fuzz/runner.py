"""Running one program under the firmware and classifying how it ended."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ... import _core
from ...errors import (
    ArmvcpuError,
    GdbProtocolError,
    GuestTimeout,
    QemuError,
    SnapshotError,
    TargetConnectionError,
)
from ...exits import Exit, ExitKind
from .a64 import WFI
from .generator import (
    BODY,
    DONE_NR,
    ENTRY,
    GUEST_RAM,
    PROGRAM_AREA,
    REPORT_HVC_INDEX,
    REPORT_NR,
    SMCCC_NOT_SUPPORTED,
    VECTORS,
    Program,
)

#: The coverage build's runtime entry (firmware/coverage.cpp).
_COVERAGE_CALLBACK = "__sanitizer_cov_trace_pc"


class CoverageSource(Protocol):
    """What the runner needs of a coverage map (:class:`.coverage.CoverageMap`,
    which imports this module): the image to run, and reading its map."""

    path: Path

    def clear(self, hv: Any) -> None: ...

    def read(self, hv: Any) -> frozenset[int]: ...


#: x0 of the hypercall a hung guest is sent to (Runner._recover), so that its
#: session can go on with the next program.
RECOVER_NR = 0xF0DE
#: The firmware's watchdog (firmware/watchdog.hpp): its control block (the
#: host's request), its state (the firmware's report), and the interrupt
#: (CNTHP's PPI) of the exit it ends a run with.
_WATCHDOG_SYMBOLS = ("armvcpu_watchdog", "armvcpu_watchdog_state")
WATCHDOG_PPI = 26
#: Guest time a program may run without an exit before the watchdog ends it.
DEFAULT_WATCHDOG = 0.1
#: The block through which the firmware answers exits as the host would
#: (firmware/fuzz_answers.hpp): its fields, then the EL1 exception counts.
_ANSWERS_SYMBOL = "armvcpu_fuzz_answers"
_ANSWERS_FIELDS = struct.Struct("<11Q")
_ANSWERS_HOST_EXITS, _ANSWERS_ANSWERED = 72, 80
#: QEMU virt's RAM window: what the guest's RAM does not fill has nothing
#: behind it, so a data access there that reaches an answer is a synchronous
#: external abort, as on a machine without memory there (device windows the
#: guest lacks are answered with 0 / skipped).
ABORT_WINDOW = (0x4000_0000, 0x40_0000_0000)
_ANSWERS_SKIPPED = struct.Struct("<192Q")
#: The guest RAM every program runs in (the generator's GUEST_RAM window).
GUEST_RAM_MB = (GUEST_RAM[1] - GUEST_RAM[0]) >> 20

# -- outcomes ------------------------------------------------------------------------------

COMPLETED = "completed"
STOPPED = "stopped at exit"
EL1_EXCEPTION = "EL1 exception"
BUDGET = "exit budget"
TIMEOUT = "timeout"
NOT_WOKEN = "halted vCPU not woken"
#: The hypervisor's failures: each one is a finding.
HV_DIED = "hypervisor died"
FW_FATAL = "firmware FATAL"
PROTOCOL = "protocol error"
UNCLASSIFIED = "unclassified exit"
ISOLATION = "isolation breach"
HOST_ERROR = "host library error"
START_FAILED = "session start failed"
FAILURES = (
    HV_DIED,
    FW_FATAL,
    PROTOCOL,
    UNCLASSIFIED,
    ISOLATION,
    NOT_WOKEN,
    HOST_ERROR,
    START_FAILED,
)


@dataclass
class Outcome:
    """How one program ended."""

    ident: str
    outcome: str
    detail: str = ""
    exits: int = 0
    #: Of ``exits``, those the firmware answered itself (``el2_answers``).
    answered_in_el2: int = 0
    seconds: float = 0.0
    fresh_session: bool = True
    flavor: str = ""
    #: EL1 exceptions the program took inside its body and went on from, by EC.
    el1_skipped: dict[str, int] = field(default_factory=dict)
    log: str = ""  # for failures: what the firmware printed, the last exits, a traceback
    #: With a coverage build: the firmware's coverage points the program reached.
    coverage: tuple[int, ...] = ()
    #: ITS programs: the LPIs the firmware put into list registers for it
    #: (``armvcpu_lpis_delivered``; its session is its own).
    lpis: int = 0

    @property
    def failure(self) -> bool:
        return self.outcome in FAILURES

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["failure"] = self.failure
        return d


_VECTOR_FROM = ("EL1t", "EL1h", "EL0 (AArch64)", "EL0 (AArch32)")
_VECTOR_TYPE = ("sync", "IRQ", "FIQ", "SError")
#: Exit kinds the firmware handles itself or never produces on arm64.
_NEVER_REPORTED = ("Nothing", "IoRead", "IoWrite", "FailEntry", "CpuUp", "CpuDown", "SendIpi",
                   "Halt")  # fmt: skip


#: EL1 exceptions the program cannot go on from by skipping one instruction:
#: illegal execution state, instruction aborts, PC alignment, software step.
_ENDS_PROGRAM = frozenset({0x0E, 0x20, 0x21, 0x22, 0x32, 0x33})
#: ...and those whose ELR_EL1 is already past the instruction (SVC).
_RETURNS_PAST = frozenset({0x11, 0x15})


def _marks_injected_vector(firmware: Any, host: Any) -> bool:
    """The firmware's classification is the host's but for the mark it adds
    to a fetch fault at the vector of the exception it just injected
    (ACCESS_AT_INJECTED_VECTOR: the syndrome alone cannot say so)."""
    mark = int(_core.ACCESS_AT_INJECTED_VECTOR)
    host = getattr(host, "value", host)  # the core's ExitReason holds the payload
    try:  # both NestedPageFaults
        flags, host_flags = int(firmware.access_flags), int(host.access_flags)
        same_address = int(firmware.addr) == int(host.addr)
    except AttributeError:
        return False
    return same_address and flags & mark != 0 and flags & ~mark == host_flags


def _ec_name(ec: int) -> str:
    return str(_core.exception_class_name(ec) or "reserved")


class _ProgramEnd(Exception):
    def __init__(self, outcome: str, detail: str, keep: bool) -> None:
        super().__init__(outcome, detail)
        self.outcome = outcome
        self.detail = detail
        self.keep = keep  # the guest stopped at an exit the session can go on from


@dataclass
class _FirmwareFacts:
    """What the host checks the firmware against: the ranges of its image
    and page tables that no guest may change, and its functions (to name
    where a CPU stuck in EL2 is)."""

    protected: list[tuple[int, int]]
    functions: list[tuple[int, int, str]]
    #: armvcpu_watchdog's and armvcpu_watchdog_state's addresses (None: an
    #: image without the watchdog).
    watchdog: tuple[int, int] | None = None
    #: armvcpu_fuzz_answers' address (None: an image without it).
    answers: int | None = None
    #: fw::its::armvcpu_lpis_delivered's address (CPU 0's count first).
    lpis: int | None = None

    @classmethod
    def load(cls, path: Path) -> _FirmwareFacts:
        from elftools.elf.elffile import ELFFile

        with path.open("rb") as f:
            elf = ELFFile(f)
            symtab, strtab = elf.get_section_by_name(".symtab"), elf.get_section_by_name(".strtab")
            if symtab is None or strtab is None:
                raise ArmvcpuError(f"{path} has no symbol table")
            # Elf64_Sym entries read directly: pyelftools' per-symbol parsing
            # takes about half a second for the image, at every worker's start.
            names, raw = strtab.data(), symtab.data()
        symbols = []
        lpis = None
        for st_name, st_info, _other, _shndx, value, size in struct.iter_unpack("<IBBHQQ", raw):
            name = names[st_name : names.index(b"\0", st_name)].decode()
            symbols.append((name, st_info & 0xF, value, size))
            if "armvcpu_lpis_delivered" in name:  # in namespace fw::its: mangled
                lpis = value
        by_name = {name: value for name, _, value, _ in symbols}
        if "__image_start" not in by_name or "__bss_start" not in by_name:
            raise ArmvcpuError(f"{path} lacks __image_start/__bss_start")
        protected = [(by_name["__image_start"], by_name["__bss_start"])]
        functions = []
        for name, kind, value, size in symbols:
            if any(t in name for t in ("g_table_pool", "g_l1", "g_l2_ram", "g_l3_guard")):
                protected.append((value, value + size))
            if kind == 2 and size:  # STT_FUNC
                functions.append((value, size, name))
        watchdog = None
        if all(name in by_name for name in _WATCHDOG_SYMBOLS):
            watchdog = (by_name[_WATCHDOG_SYMBOLS[0]], by_name[_WATCHDOG_SYMBOLS[1]])
        return cls(protected, sorted(functions), watchdog, by_name.get(_ANSWERS_SYMBOL), lpis)

    def function_at(self, pc: int) -> str:
        for addr, size, name in self.functions:
            if addr <= pc < addr + size:
                return _demangle(name)
        return "?"


def _demangle(name: str) -> str:
    """The last component of an Itanium-mangled name (enough to name it)."""
    if not name.startswith("_Z"):
        return name
    parts, i = [], 2 + (name[2] == "N")
    while i < len(name) and name[i].isdigit():
        j = i
        while name[j].isdigit():
            j += 1
        n = int(name[i:j])
        parts.append(name[j : j + n])
        i = j + n
    return "::".join(p for p in parts if not p.startswith("_GLOBAL__N")) or name


class Runner:
    """Runs programs one after another, each under the firmware in QEMU.

    A session (one QEMU) takes a snapshot of its VM at the first guest entry
    (:class:`~armvcpu.session.snapshot.Snapshots`) and is reused for the next
    program when the last one ended at an exit: that exit is answered by
    restoring the snapshot (RAM pages the program wrote, registers, system
    registers, GIC state), with the next program loaded into the program
    area and its traps set by the firmware. A fresh QEMU is started only
    when there is no exit to answer (a hang), after a hypervisor failure,
    or when the snapshot could not be kept. ``reuse=False`` starts a fresh
    QEMU for every program (what the reset is checked against).

    A hang costs no wall-clock wait: the firmware's watchdog ends a guest
    that runs ``watchdog`` seconds of guest time without an exit to the host
    (the EL2 physical timer; it also wakes a guest from a WFI nothing else
    would end), and that exit is answered by the next restore like any
    other. ``timeout`` is the host's own limit on a program's wall time (a
    program still making exits then, or a CPU the watchdog cannot reach:
    off with CPU_OFF, or stuck in EL2). ``watchdog=None``: the host's
    timeout alone, the CPU then sampled through the gdbstub.

    In a restored session (``el2_answers``) the firmware itself answers the
    exits that do not end a program, as :meth:`_answer` and
    :meth:`_el1_exception` would: EL1 exceptions the program goes on from,
    MMIO, data accesses to unmapped IPA space. It counts them, and stops
    answering when the program has one exit left before the budget, so the
    outcome (exits, EL1 exceptions skipped, the budget) is the same as with
    every exit answered here; those exits are not shown to ``on_exit`` nor
    checked one by one. A fresh session's first program is answered here in
    full.

    ``on_exit(exit, answer)`` sees every exit with a description of the answer.

    ``gic`` is the machine's GIC version (QEMU's ``gic-version``); programs
    run with the prologue for it. On a GICv2 every program gets a fresh
    session: the firmware's snapshot saves the GICv3 virtual CPU interface
    only.

    ITS programs (``Program.its``) run in sessions of their own, one fresh
    QEMU each (an inner Runner with ``its=True``; the main session stays):
    their VM has the emulated GIC and the PCIe devices, so the firmware
    passes QEMU's ITS through to it, and the state a program leaves in the
    ITS and the redistributors (tables, enables, pending LPIs) is outside
    what a snapshot restores (docs/fuzzing.md, "The ITS surface").
    """

    def __init__(self, *, timeout: float = 0.5, budget: int = 200, reuse: bool = True,
                 max_per_session: int | None = None,
                 on_exit: Callable[[Exit, str], None] | None = None,
                 coverage: CoverageSource | None = None,
                 watchdog: float | None = DEFAULT_WATCHDOG,
                 el2_answers: bool = True, gic: int = 3, its: bool = False) -> None:  # fmt: skip
        if watchdog is not None and not 0.001 <= watchdog <= 3600:
            raise ValueError(f"watchdog={watchdog!r}: from 0.001 to 3600 seconds, or None")
        if gic not in (2, 3):
            raise ValueError(f"gic must be 2 or 3, not {gic!r}")
        self.watchdog = watchdog
        self.el2_answers = el2_answers
        self._el2 = False  # the firmware answers for the running program
        self._host_exits = 0
        self.timeout = timeout
        self.budget = budget
        self.gic = gic
        if its and gic != 3:
            raise ValueError("the ITS needs a GICv3 (gic=3)")
        #: This Runner's sessions have the ITS (the one ITS programs run in).
        self.its = its
        self.reuse = reuse and gic == 3 and not its
        self._its_runner: Runner | None = None
        self.max_per_session = max_per_session
        self.on_exit = on_exit
        #: With a coverage map, sessions run its image (the coverage build) and
        #: each Outcome carries the points its program reached.
        self.coverage = coverage
        self.hv: Any = None
        self.sessions = 0
        self.reused_programs = 0
        self._pending: Exit | None = None  # the exit the last program ended at, unanswered
        self._traps: tuple[int, int] = (0, 0)
        self._written = 0  # bytes of program area written in this session
        self._in_session = 0
        self._digest: bytes | None = None
        self._facts: _FirmwareFacts | None = None

    # -- sessions -----------------------------------------------------------------------

    def close(self) -> None:
        self._pending = None
        if self._its_runner is not None:
            self._its_runner.close()
        if self.hv is not None:
            hv, self.hv = self.hv, None
            hv.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self, program: Program) -> None:
        from ...guests.guest import Guest
        from ...session.hypervisor import Hypervisor

        self.close()
        self._written = 0
        for attempt in (1, 2):
            hv = Hypervisor(
                transport="shm",
                timeout=self.timeout,
                memory_mb=GUEST_RAM_MB,
                firmware=self.coverage.path if self.coverage else None,
                gic=self.gic,
                vgic=self.its,
            )
            try:
                hv.start()
                if self._facts is None:
                    self._facts = _FirmwareFacts.load(hv.firmware.path)
                if self.its:  # the PCIe devices, and with them the ITS (load() publishes it)
                    hv.vms[1].config.features |= int(_core.FEATURE_PCIE)
                self._arm_watchdog(hv)
                if program.traps != (0, 0):
                    hv.set_traps(hcr_el2=program.traps[0], mdcr_el2=program.traps[1])
                hv.load(Guest.from_binary(self._padded(program), ENTRY, name=program.ident))
                if self.reuse:
                    hv.snapshot.request()
            except (ArmvcpuError, OSError):
                hv.close()
                if attempt == 2:
                    raise
                continue
            break
        self.hv = hv
        self.sessions += 1
        self._traps = program.traps
        self._in_session = 0
        self._digest = None

    def _arm_watchdog(self, hv: Any) -> None:
        """Ask the firmware for the watchdog before it boots (its control
        block is in .data, which the boot does not clear)."""
        if self.watchdog is None or self._facts is None or self._facts.watchdog is None:
            return
        ms = max(1, round(self.watchdog * 1000))
        hv._write_phys(self._facts.watchdog[0], ms.to_bytes(8, "little"))

    @property
    def _watchdog_on(self) -> bool:
        return self.watchdog is not None and self._facts is not None and (
            self._facts.watchdog is not None)  # fmt: skip

    def _padded(self, program: Program) -> bytes:
        """The program, padded over everything an earlier program of the
        session wrote there (the snapshot's bytes are the first program's)."""
        image = program.image
        size = max(len(image), PROGRAM_AREA, self._written)
        self._written = size
        return image + bytes(size - len(image))

    def _reload(self, program: Program) -> None:
        """Answer the waiting exit by restoring the snapshot, with this
        program in the program area and its traps."""
        hv, exit = self.hv, self._pending
        assert hv is not None and exit is not None
        self._pending = None
        traps = program.traps if program.traps != self._traps else None
        self._el2 = (self.el2_answers and self.on_exit is None and self._facts is not None
                     and self._facts.answers is not None)  # fmt: skip
        if self._el2:
            assert self._facts is not None and self._facts.answers is not None
            block = _ANSWERS_FIELDS.pack(1, VECTORS, REPORT_NR, 4 * REPORT_HVC_INDEX, BODY,
                                         program.epilogue, self.budget, *ABORT_WINDOW,
                                         0, 0)  # fmt: skip
            hv._write_phys(self._facts.answers, block + bytes(_ANSWERS_SKIPPED.size))
        hv.snapshot.restore(exit, load=(ENTRY, self._padded(program)), traps=traps)
        self._traps = program.traps

    def _can_reuse(self) -> bool:
        return (self.reuse and self.hv is not None and self._pending is not None
                and (self.max_per_session is None or self._in_session < self.max_per_session)
                and self.hv.snapshot.status().state == "taken")  # fmt: skip

    # -- one program --------------------------------------------------------------------

    def run(self, program: Program) -> Outcome:
        if program.its and not self.its:
            return self._run_its(program)
        if program.gic != self.gic:
            program = dataclasses.replace(program, gic=self.gic)  # its prologue for this GIC
        t0 = time.monotonic()
        fresh = not self._can_reuse()
        self._el2, self._host_exits = False, 0
        result = Outcome(program.ident, "", flavor=program.flavor, fresh_session=fresh)
        keep = False
        try:
            try:
                if not fresh:
                    try:
                        # Cleared before the restore: the guest runs on from it.
                        self._coverage_begin()
                        self._reload(program)
                        self.reused_programs += 1
                    except SnapshotError:
                        # The firmware could not keep the snapshot (e.g. the last
                        # program wrote more pages than it saves): a fresh session.
                        fresh = result.fresh_session = True
                if fresh:
                    self._start(program)
            except (ArmvcpuError, OSError) as exc:
                raise _ProgramEnd(START_FAILED if fresh else PROTOCOL,
                                  f"{'starting' if fresh else 'reloading'} the session: {exc}",
                                  False) from exc  # fmt: skip
            self._in_session += 1
            self._drive(program, result, time.monotonic())
        except _ProgramEnd as end:
            result.outcome, result.detail, keep = end.outcome, end.detail, end.keep
        except GuestTimeout:
            detail, halted = self._where_stuck()
            if halted and program.interrupt_pending:
                # A pending interrupt is a wake-up event (DEN0022 5.4.2 for
                # CPU_SUSPEND's standby; WFI wake-up in the Arm ARM): the
                # firmware should have let the vCPU go on.
                result.outcome = NOT_WOKEN
                result.detail = "halted in EL2 with its virtual timer interrupt pending"
            else:
                result.outcome, result.detail = TIMEOUT, detail
                keep = self._recover()
        except QemuError as exc:
            result.outcome, result.detail = HV_DIED, str(exc).splitlines()[0]
        except (GdbProtocolError, TargetConnectionError) as exc:
            result.outcome, result.detail = PROTOCOL, str(exc).splitlines()[0]
        except Exception as exc:  # the host library itself failed
            result.outcome, result.detail = HOST_ERROR, f"{type(exc).__name__}: {exc}"
            result.log = traceback.format_exc()
        self._el2_end(result)
        self._lpis_end(result)
        result.seconds = time.monotonic() - t0
        self._coverage_end(result)
        self._after(program, result, keep)
        return result

    def _run_its(self, program: Program) -> Outcome:
        """An ITS program, in the inner Runner's fresh session."""
        if self.gic != 3:
            raise ValueError(f"{program.ident} is an ITS program: the ITS needs a GICv3 (gic=3)")
        if self._its_runner is None:
            self._its_runner = Runner(timeout=self.timeout, budget=self.budget, reuse=False,
                                      on_exit=self.on_exit, coverage=self.coverage,
                                      watchdog=self.watchdog, el2_answers=self.el2_answers,
                                      its=True)  # fmt: skip
            self._its_runner._facts = self._facts
        result = self._its_runner.run(program)
        self.sessions += 1
        return result

    def _lpis_end(self, result: Outcome) -> None:
        """An ITS session: the LPIs the firmware delivered (its only program's)."""
        hv, facts = self.hv, self._facts
        if not self.its or hv is None or hv.ram is None or hv.ram.closed:
            return
        if facts is not None and facts.lpis is not None:
            result.lpis = int.from_bytes(hv._read_phys(facts.lpis, 8), "little")

    def _drive(self, program: Program, result: Outcome, started: float) -> None:
        hv = self.hv
        deadline = started + self.timeout
        # With the watchdog a hang ends at an exit; the host waits a little
        # longer than it (a hang it cannot end, e.g. CPU_OFF, costs this wait).
        wait = max(0.05, deadline - time.monotonic())
        if self._watchdog_on:
            assert self.watchdog is not None
            wait = max(wait, 2 * self.watchdog + 0.25)
        exits = hv.exits(timeout=wait)
        try:
            for exit in exits:
                self._host_exits += 1
                result.exits = self._host_exits + self._el2_answered()
                if self._digest is None:  # the firmware's tables are built by now
                    self._digest = self._firmware_digest()
                self._check(exit)
                skip = self._classify_end(program, exit)
                if result.exits >= self.budget:
                    raise _ProgramEnd(BUDGET, f"{self.budget} exits", True)
                if time.monotonic() > deadline:
                    raise _ProgramEnd(TIMEOUT, "still making exits", True)
                if skip is not None:
                    pc, spsr, label = skip
                    result.el1_skipped[label] = result.el1_skipped.get(label, 0) + 1
                    exit.resume(pc=pc, spsr=spsr)
                    answer = f"EL1 {label}: back to pc={pc:#x}"
                else:
                    answer = self._answer(exit)
                if self.on_exit is not None:
                    self.on_exit(exit, answer)
            # The iteration only ends when the VM does, and no answer here stops it.
            raise QemuError(f"the VM ended without a reason; last exit: {hv.last_exit!r}")
        except _ProgramEnd as end:
            if end.keep:
                self._pending = hv.last_exit
            if self.on_exit is not None and hv.last_exit is not None:
                self.on_exit(hv.last_exit, f"ends the program: {end.outcome}")
            raise
        finally:
            exits.close()

    def _el2_answered(self) -> int:
        """Exits of this program the firmware has answered so far; tells it
        how many the host has seen (its budget is what both leave)."""
        if not self._el2:
            return 0
        assert self._facts is not None and self._facts.answers is not None
        hv, base = self.hv, self._facts.answers
        hv._write_phys(base + _ANSWERS_HOST_EXITS, self._host_exits.to_bytes(8, "little"))
        return int.from_bytes(hv._read_phys(base + _ANSWERS_ANSWERED, 8), "little")

    def _el2_end(self, result: Outcome) -> None:
        """The program is over: the firmware's answers join its outcome."""
        if not self._el2:
            return
        self._el2 = False
        assert self._facts is not None and self._facts.answers is not None
        hv = self.hv
        if hv is None or hv.ram is None or hv.ram.closed:
            return
        base = self._facts.answers
        answered = int.from_bytes(hv._read_phys(base + _ANSWERS_ANSWERED, 8), "little")
        result.exits = self._host_exits + answered
        result.answered_in_el2 = answered
        counts = _ANSWERS_SKIPPED.unpack(
            hv._read_phys(base + _ANSWERS_FIELDS.size, _ANSWERS_SKIPPED.size)
        )
        for i, n in enumerate(counts):
            if n:
                group, ec = divmod(i, 64)
                label = f"EC {ec:#04x} {_ec_name(ec)}" + (
                    f" (from {_VECTOR_FROM[group]})" if group == 2 else "")  # fmt: skip
                result.el1_skipped[label] = result.el1_skipped.get(label, 0) + n

    def _classify_end(self, program: Program, exit: Exit) -> tuple[int, int, str] | None:
        """Raise _ProgramEnd when this exit ends the program; for an EL1
        exception the program goes on from, return (pc, spsr, label)."""
        kind = exit.kind
        if kind == ExitKind.Hypercall:
            nr = int(exit.reason.nr)
            if nr == DONE_NR and exit.pc == program.done_pc:
                raise _ProgramEnd(COMPLETED, "", True)
            k = nr - REPORT_NR
            hvc_at = VECTORS + 0x80 * k + 4 * REPORT_HVC_INDEX
            if 0 <= k < 16 and exit.pc == hvc_at:
                return self._el1_exception(program, exit, k)
        elif kind == ExitKind.SystemDown:
            how = "(reset)" if exit.reason.reset else "(off)"
            raise _ProgramEnd(STOPPED, f"SystemDown {how}",
                              True)  # fmt: skip
        elif kind == ExitKind.GuestException:
            ec = int(exit.reason.ec)
            if ec != 0x17:  # an SMC the core does not know is answered below
                raise _ProgramEnd(STOPPED, f"GuestException EC {ec:#04x} {_ec_name(ec)}", True)
        elif kind == ExitKind.NestedPageFault and exit.reason.access_flags & 4:
            raise _ProgramEnd(STOPPED, "NestedPageFault (instruction fetch)", True)
        elif (kind == ExitKind.ExternalInterrupt and self._watchdog_on
              and int(exit.reason.vector) == WATCHDOG_PPI):  # fmt: skip
            self._watchdog_fired(program, exit)
        return None

    def _watchdog_fired(self, program: Program, exit: Exit) -> None:
        """The watchdog ended the run: a hang, told apart by where the CPU was
        (the firmware says whether it woke a vCPU halted in EL2)."""
        assert self._facts is not None and self._facts.watchdog is not None
        hv = self.hv
        halted = int.from_bytes(hv._read_phys(self._facts.watchdog[1] + 8, 8), "little")
        if halted == 2:  # it waited for the watchdog instead of leaving the CPU
            raise _ProgramEnd(TIMEOUT, "vCPU off (PSCI CPU_OFF), its CPU waits in EL2", True)
        if halted:
            if program.interrupt_pending:
                # A pending interrupt is a wake-up event (see run()).
                raise _ProgramEnd(NOT_WOKEN, "halted in EL2 with its virtual timer interrupt "
                                  "pending", False)  # fmt: skip
            raise _ProgramEnd(TIMEOUT, "vCPU halted in EL2 (PSCI CPU_SUSPEND), no interrupt "
                              "wakes it", True)  # fmt: skip
        spsr, pc = exit.regs.spsr, exit.pc
        if spsr & 0x10:
            raise _ProgramEnd(TIMEOUT, "no exit in time, guest looping in AArch32", True)
        el = (spsr >> 2) & 3
        # QEMU takes the interrupt past a WFI it was halted in.
        before = pc - 4 - GUEST_RAM[0]
        ram = hv.ram
        if (ram is not None and 0 <= before < len(ram) - 4
                and int.from_bytes(ram[before : before + 4], "little") == WFI):  # fmt: skip
            raise _ProgramEnd(TIMEOUT, f"no exit in time, guest at EL{el} in a WFI nothing wakes",
                              True)  # fmt: skip
        raise _ProgramEnd(TIMEOUT, f"no exit in time, guest looping at EL{el}", True)

    def _el1_exception(self, program: Program, exit: Exit, k: int) -> tuple[int, int, str]:
        """The vector table reported exception ``k``: x1 = ESR_EL1, x2 =
        ELR_EL1, x4 = SPSR_EL1. A synchronous exception inside the body is
        returned from past the instruction (the host does the vector's ERET;
        x0..x4 stay clobbered); anything else ends the program."""
        regs = exit.regs
        ec, elr, spsr = (regs.x1 >> 26) & 0x3F, regs.x2, regs.x4
        source = _VECTOR_FROM[k // 4]
        if k % 4:
            raise _ProgramEnd(EL1_EXCEPTION, f"{_VECTOR_TYPE[k % 4]} (from {source})", True)
        detail = f"EC {ec:#04x} {_ec_name(ec)}" + (f" (from {source})" if k >= 8 else "")
        if ec in _ENDS_PROGRAM or k >= 12:
            raise _ProgramEnd(EL1_EXCEPTION, detail, True)
        if not BODY <= elr < program.epilogue:
            raise _ProgramEnd(EL1_EXCEPTION, f"{detail} outside the body", True)
        return elr + (0 if ec in _RETURNS_PAST else 4), spsr, detail

    def _check(self, exit: Exit) -> None:
        """Raise _ProgramEnd(UNCLASSIFIED) for an exit the firmware should never hand over."""
        kind_name = str(getattr(exit.kind, "name", exit.kind))
        if exit.vm_id != 1 or exit.vcpu_id != 0:
            raise _ProgramEnd(UNCLASSIFIED, f"exit from VM {exit.vm_id} vCPU {exit.vcpu_id}", False)
        if kind_name in _NEVER_REPORTED:
            raise _ProgramEnd(UNCLASSIFIED, f"{kind_name} reached the host", False)
        if kind_name not in ExitKind.__members__:
            raise _ProgramEnd(UNCLASSIFIED, f"unknown exit kind {exit.kind!r}", False)
        if exit.record.exception_type == _core.ExceptionType.Synchronous:
            host = exit.reclassify()
            if repr(host) != repr(exit.reason) and not _marks_injected_vector(exit.reason, host):
                raise _ProgramEnd(UNCLASSIFIED, f"firmware says {exit.reason!r}, the host's core "
                                  f"says {host!r}", False)  # fmt: skip
        if exit.kind == ExitKind.GuestException and int(exit.reason.ec) in (0x21, 0x25):
            raise _ProgramEnd(UNCLASSIFIED, f"an abort taken from EL2 itself: {exit.reason!r}",
                              False)  # fmt: skip

    def _answer(self, exit: Exit) -> str:
        """Answer the exit the plain way; returns what was answered. Values
        go through ``Policy.answer()``, the path every policy handler's
        result takes, so a bug there is a finding too (host library error)."""
        from ...policy.policy import Policy

        kind = exit.kind
        if kind == ExitKind.Hypercall and exit.esr.exception_class == _core.ExceptionClass.Smc64:
            # An SMC nobody implements (the core returns past it): SMCCC's answer.
            Policy.answer(exit, SMCCC_NOT_SUPPORTED)
            return "x0=NOT_SUPPORTED"
        data_access = (ExitKind.MmioRead, ExitKind.MmioWrite, ExitKind.NestedPageFault)
        if kind in data_access and ABORT_WINDOW[0] <= int(exit.reason.addr) < ABORT_WINDOW[1]:
            exit.inject_abort("data")  # nothing there (a fetch ended the program already)
            return "external abort"
        if kind in (ExitKind.Hypercall, ExitKind.MmioRead, ExitKind.SysRegRead):
            Policy.answer(exit, 0)  # x0 = 0, the read returns 0, Rt = 0
            return "0"
        if kind in (ExitKind.MmioWrite, ExitKind.SysRegWrite):
            Policy.answer(exit, None)  # resume: the write is ignored
            return "ignored"
        if kind == ExitKind.NestedPageFault:  # a data access nobody emulates: skip it
            exit.resume(pc=exit.pc + 4)
            return "skipped"
        if kind == ExitKind.GuestException:  # an SMC nobody implements (SMCCC)
            exit.resume(x0=SMCCC_NOT_SUPPORTED, pc=exit.pc + 4)
            return "x0=NOT_SUPPORTED, skipped"
        exit.resume_default()
        return "default"

    def _firmware_digest(self) -> bytes:
        from ...session.hypervisor import RAM_BASE

        h = hashlib.blake2b(digest_size=16)
        ram = self.hv.ram
        assert ram is not None and self._facts is not None
        for lo, hi in self._facts.protected:
            h.update(ram[lo - RAM_BASE : hi - RAM_BASE])
        return h.digest()

    def _where_stuck(self, samples: int = 5) -> tuple[str, bool]:
        """After a timeout (the CPU has been interrupted): where it is, and
        whether it is the firmware waiting for a halted vCPU's interrupt.
        The CPU is sampled a few times: a guest looping through calls that
        EL2 answers itself is in EL2 much of the time, but not always."""
        try:
            gdb = self.hv.gdb
            seen: list[tuple[int, int]] = []
            for i in range(4 * samples):
                if len(seen) == samples:
                    break
                if i:
                    gdb.cont()
                    time.sleep(0.01)
                    gdb.interrupt()
                    gdb.wait_stop(2.0)
                el, pc = (gdb.read_register("cpsr") >> 2) & 3, gdb.read_register("pc")
                # The coverage build's callback runs from every block of
                # EL2: a sample there says nothing of where the CPU waits.
                if el == 2 and self._facts and self._facts.function_at(pc) == _COVERAGE_CALLBACK:
                    continue
                seen.append((el, pc))
        except (ArmvcpuError, OSError, TimeoutError):
            return "no exit in time", False
        guest = sorted({el for el, _ in seen if el < 2})
        if guest:
            via = " (and in EL2)" if any(el == 2 for el, _ in seen) else ""
            return f"no exit in time, guest looping at EL{guest[-1]}{via}", False
        places = {self._el2_place(pc) for _, pc in seen}
        if places == {"halt"}:
            return "vCPU halted in EL2 (PSCI CPU_SUSPEND), no interrupt wakes it", True
        if places == {"off"}:
            return "vCPU off (PSCI CPU_OFF), its CPU waits in EL2", False
        return f"no exit in time, CPU in EL2 ({', '.join(sorted(places))})", False

    def _recover(self) -> bool:
        """After a hang, with the CPU stopped by the gdbstub: make the guest
        leave an exit for the next program's restore to answer, instead of
        a new QEMU. A guest looping at EL1 (AArch64) is sent to the vector
        table's HVC with x0 = :data:`RECOVER_NR`; a CPU the host caught in
        the firmware's hand-off has an exit waiting already. Anything else
        is left to a fresh session: a vCPU halted or off in EL2, EL0,
        AArch32, and a guest in a WFI nothing wakes (QEMU keeps the CPU
        halted however its PC is changed, and the host has no interrupt
        to send it)."""
        hv = self.hv
        if hv is None or not self.reuse or self._facts is None or hv.ram is None:
            return False
        try:
            gdb = hv.gdb
            cpsr, pc = gdb.read_register("cpsr"), gdb.read_register("pc")
            el = (cpsr >> 2) & 3
            if el == 1 and not cpsr & 0x10:
                if GUEST_RAM[0] + 4 <= pc < GUEST_RAM[1]:
                    before = pc - 4 - GUEST_RAM[0]  # QEMU halts past the WFI
                    if int.from_bytes(hv.ram[before : before + 4], "little") == WFI:
                        return False
                gdb.write_register("x0", RECOVER_NR)
                gdb.write_register("pc", VECTORS + 4 * REPORT_HVC_INDEX)
            elif el != 2 or self._facts.function_at(pc) != "fw::report_exit":
                return False
            gdb.cont()
            exits = hv.exits(timeout=self.timeout)
            try:
                exit = next(exits)
            finally:
                exits.close()
        except (ArmvcpuError, OSError, TimeoutError, StopIteration):
            return False
        self._pending = exit
        return True

    def _el2_place(self, pc: int) -> str:
        """The Halt wait ("halt": a short loop around a WFI in run_vcpu that
        calls fw::gic::pending()), CPU_OFF's wait ("off"), or the function."""
        from ...session.hypervisor import RAM_BASE

        assert self._facts is not None
        function = self._facts.function_at(pc)
        ram = self.hv.ram
        near_wfi = ram is not None and any(
            int.from_bytes(ram[a - RAM_BASE : a - RAM_BASE + 4], "little") == WFI
            for a in range(pc - 16, pc + 20, 4)
            if RAM_BASE <= a < RAM_BASE + len(ram) - 4
        )
        if (function == "run_vcpu" and near_wfi) or function == "fw::gic::pending":
            return "halt"
        if function == "wait_for_vcpu":
            return "off"
        return function

    def _coverage_begin(self) -> None:
        """Before a program in a kept session: forget what the last one reached
        (a fresh session's map starts zeroed, and its start-up is the program's)."""
        if self.coverage is not None and self.hv is not None and self.hv.ram is not None:
            self.coverage.clear(self.hv)

    def _coverage_end(self, result: Outcome) -> None:
        if self.coverage is not None and self.hv is not None and self.hv.ram is not None:
            result.coverage = tuple(sorted(self.coverage.read(self.hv)))

    def _after(self, program: Program, result: Outcome, keep: bool) -> None:
        """Check the hypervisor after the program; keep or close the session."""
        hv = self.hv
        if hv is not None:
            console = hv.console
            if "FATAL" in console:
                line = next(x for x in console.splitlines() if "FATAL" in x)
                result.outcome, result.detail = FW_FATAL, line.strip()
            elif (
                self._digest is not None
                and hv.ram is not None
                and not result.failure
                and self._firmware_digest() != self._digest
            ):
                result.outcome, result.detail = ISOLATION, "the firmware's image or tables changed"
            if result.failure:
                recent = "\n".join(repr(e) for e in list(hv.recent_exits)[-8:])
                result.log = (f"firmware log:\n{console.strip()}\n\nlast exits:\n{recent}\n"
                              + result.log)  # fmt: skip
        if not (keep and not result.failure and self.reuse):
            self.close()
