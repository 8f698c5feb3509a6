"""VM exits as Python objects: the decoded reason, the registers, the answer."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any, Literal

from . import _core
from .errors import ArmvcpuError

ExitKind = _core.ExitKind

_SPSR_MODES = {0b0000: "EL0t", 0b0100: "EL1t", 0b0101: "EL1h", 0b1000: "EL2t", 0b1001: "EL2h"}


class Registers:
    """Named access to a TrapFrame: ``regs.x0``, ``regs["x5"]``, ``regs.pc``.

    Writes go to the frame, which the guest sees when the exit is resumed.

    >>> from armvcpu._core import TrapFrame
    >>> r = Registers(TrapFrame())
    >>> r.x3 = 7; r["x3"], r.pc
    (7, 0)
    """

    __slots__ = ("_frame",)
    _SPECIAL = ("sp_el0", "elr", "spsr")
    _frame: _core.TrapFrame

    def __init__(self, frame: _core.TrapFrame) -> None:
        object.__setattr__(self, "_frame", frame)

    @staticmethod
    def _index(name: str) -> int | None:
        if len(name) > 1 and name[0] == "x" and name[1:].isdigit() and int(name[1:]) <= 30:
            return int(name[1:])
        return None

    def __getitem__(self, name: str) -> int:
        index = self._index(name)
        if index is not None:
            return int(self._frame.gpr(index))
        if name == "pc":
            return int(self._frame.elr)
        if name in self._SPECIAL:
            return int(getattr(self._frame, name))
        raise KeyError(f"no register {name!r}; use x0..x30, pc, sp_el0, elr or spsr")

    def __setitem__(self, name: str, value: int) -> None:
        index = self._index(name)
        if index is not None:
            self._frame.set_gpr(index, value)
        elif name == "pc":
            self._frame.elr = value
        elif name in self._SPECIAL:
            setattr(self._frame, name, value)
        else:
            raise KeyError(f"no register {name!r}; use x0..x30, pc, sp_el0, elr or spsr")

    def __getattr__(self, name: str) -> int:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(exc.args[0]) from None  # str() of a KeyError adds quotes

    def __setattr__(self, name: str, value: int) -> None:
        try:
            self[name] = value
        except KeyError as exc:
            raise AttributeError(exc.args[0]) from None  # str() of a KeyError adds quotes

    @property
    def mode(self) -> str:
        """The exception level and stack the guest was in (from SPSR.M)."""
        spsr = int(self._frame.spsr)
        if spsr & 0x10:
            return "AArch32"
        return _SPSR_MODES.get(spsr & 0xF, f"M={spsr & 0xF:#x}")

    def as_dict(self) -> dict[str, int]:
        out = {f"x{i}": int(self._frame.gpr(i)) for i in range(31)}
        out.update(sp_el0=int(self._frame.sp_el0), pc=int(self._frame.elr),
                   spsr=int(self._frame.spsr))  # fmt: skip
        return out

    def __repr__(self) -> str:
        return f"Registers(pc={self.pc:#x}, x0={self.x0:#x}, x1={self.x1:#x}, ...)"


class Exit:
    """One VM exit, as the firmware reported it.

    ``reason`` is the decoded variant (``_core.Hypercall``, ``_core.SystemDown``,
    ...), ``frame``/``regs`` the guest's registers (editable). Answer it with
    ``resume()``, ``complete_read()``, ``resume_default()`` or ``stop()``; an
    exit left unanswered gets ``resume_default()`` when iteration moves on.

    Addresses: ``pc`` is the instruction that made the exit (for HVC and SVC
    the call itself, one instruction before ELR_EL2), ``return_address`` is
    where the guest resumes, ``elr`` is ELR_EL2 as the exception left it.
    """

    __slots__ = (
        "_frame", "_injector", "_reader", "_resolver", "answered_ns", "delivered_ns", "raw",
        "record", "resolved", "slot", "vm",
    )  # fmt: skip

    def __init__(self, record: Any, resolver: Callable[[Exit, bool], None],
                 raw: bytes | None = None) -> None:  # fmt: skip
        self.record = record
        self.slot = 0  # which exit record (physical CPU) it came through
        # The record's bytes as the firmware wrote them (record itself carries
        # the answer once the exit is answered).
        self.raw = raw if raw is not None else record.to_bytes()
        self.delivered_ns = time.perf_counter_ns()  # when the host got it
        self.answered_ns = 0
        self._injector: Callable[[int, int], None] | None = None
        self._reader: Callable[[int, int], bytes] | None = None  # guest memory, by IPA
        self._frame: Any = None  # the editable copy, made on first use
        self._resolver = resolver
        self.resolved = False
        #: The VM that made the exit (an :class:`armvcpu.session.vm.VM`, set by
        #: the session; None for an exit made from a record alone).
        self.vm: Any = None

    @property
    def frame(self) -> Any:
        """The guest's registers (a copy: edits reach the guest on resume())."""
        if self._frame is None:
            self._frame = copy.copy(self.record.frame)
        return self._frame

    @frame.setter
    def frame(self, value: Any) -> None:
        self._frame = value

    def _frame_changed(self) -> bool:
        return self._frame is not None and self._frame != self.record.frame

    @property
    def seq(self) -> int:
        return int(self.record.seq)

    @property
    def vm_id(self) -> int:
        return int(self.record.vm_id)

    @property
    def vcpu_id(self) -> int:
        return int(self.record.vcpu_id)

    @property
    def kind(self) -> Any:
        return self.record.reason.kind

    @property
    def reason(self) -> Any:
        return self.record.reason.value

    @property
    def esr(self) -> Any:
        """ESR_EL2 decoded (``.exception_class``, ``.il``, ``.iss``, ``.imm16``)."""
        return _core.Esr(self.record.esr)

    @property
    def syndrome(self) -> Any:
        return self.record.syndrome

    @property
    def regs(self) -> Registers:
        return Registers(self.frame)

    @property
    def pc(self) -> int:
        """The address of the instruction that made the exit, for every
        exception class: the HVC or SVC itself (ELR_EL2 points past it), the
        trapped, faulting or BRK instruction (ELR_EL2). For an interrupt, the
        instruction that had not run yet. Decided by the core
        (``ExitRecord.instruction_address``)."""
        return int(self.record.instruction_address)

    @property
    def return_address(self) -> int:
        """Where the guest resumes: the frame's ELR, past an instruction the
        core emulated, and with the host's edits (``exit.regs.pc = ...``)."""
        return int(self.frame.elr)

    @property
    def elr(self) -> int:
        """ELR_EL2 as the exception left it (the preferred exception return
        address: past the call for HVC/SVC, the instruction itself otherwise)."""
        return int(self.record.elr)

    @property
    def instruction(self) -> str:
        """The instruction at :attr:`pc`, disassembled (capstone), e.g.
        ``"hvc #0"`` or ``"ldrb w2, [x1]"``. Needs the VM's memory to be
        readable (the session open)."""
        if self._reader is None:
            raise RuntimeError("this exit is not attached to a running VM")
        try:
            word = self._reader(self.pc, 4)
        except ArmvcpuError as exc:
            return f"<unreadable: {exc}>"
        return disassemble(word, self.pc)

    def reclassify(self) -> Any:
        """The host core's classification of this exit's syndrome and registers,
        to compare with the firmware's (``reason``): they must always agree."""
        original = _core.ExitRecord.from_bytes(self.raw)
        before = original.frame
        before.elr = original.elr
        reason, _ = _core.classify_sync(before, original.syndrome)
        return reason

    def resume(self, x0: int | None = None, **regs: int) -> None:
        """Let the guest continue, optionally with registers changed.

        ``exit.resume(x0=5)`` returns 5 from a hypercall; ``exit.resume()``
        continues with the registers as they are (including edits made to
        ``exit.frame`` / ``exit.regs``). For emulated instructions (MMIO,
        MSR/MRS, WFx, SMC) the return address is already past the instruction.

        An exit that says the VM is down (``SystemDown``: the guest powered
        off or reset; ``FailEntry``: it could not be entered) has no next
        instruction to go on at: ``resume()`` ends the VM as the firmware's
        default does, so a loop that resumes every exit ends when the guest
        powers off. Only an answer that sets the PC (``resume(pc=entry)``,
        or ``exit.regs.pc`` edited) restarts the guest there, as a host that
        emulates a reset would.
        """
        self._check_open()
        if x0 is not None:
            regs = {"x0": x0, **regs}
        if regs:
            # Edit a fresh copy (of the user's edits, or of the record's frame).
            edited = copy.copy(self._frame if self._frame is not None else self.record.frame)
            view = Registers(edited)
            for name, value in regs.items():  # all or nothing: a bad name changes none
                view[name] = value
            self._frame = edited
        if self.kind in _VM_IS_DOWN and self.return_address == int(self.record.frame.elr):
            self._frame = None  # the edits die with the VM
            self.resume_default()
            return
        changed = self._frame_changed()
        if changed:
            self.record.frame = self._frame
        self.record.action = _core.HostAction.Resume
        self._answer(frame_changed=changed)

    def complete_read(self, value: int) -> None:
        """Answer an MMIO read: ``value`` goes into Rt as the load would put it
        there (truncated to the access width, sign-extended when the load was
        signed, 32 bits for a W register), then the guest resumes.
        """
        if not isinstance(self.reason, _core.MmioRead):
            raise TypeError(f"complete_read() answers MmioRead exits, not {self.reason!r}")
        self._check_open()
        self.frame = _core.complete_mmio_read(self.frame, self.reason, value)
        self.resume()

    def complete_sysreg_read(self, value: int) -> None:
        """Answer a trapped MRS: ``value`` goes into Rt, then the guest
        resumes. An MRS into XZR (Rt = 31) discards the value, as the
        instruction would.
        """
        if not isinstance(self.reason, _core.SysRegRead):
            raise TypeError(f"complete_sysreg_read() answers SysRegRead exits, not {self.reason!r}")
        if self.reason.reg == 31:
            self.resume()
        else:
            self.resume(**{f"x{self.reason.reg}": value})

    def resume_default(self) -> None:
        """Let the firmware answer as it would with no host attached: what QEMU's
        ``virt`` machine does without a hypervisor.

        A hypercall returns SMCCC NOT_SUPPORTED (-1 in x0); an access to an
        address with neither RAM nor a device (MMIO, a stage-2 fault) becomes
        a synchronous external abort taken to the guest's EL1 (see
        :meth:`inject_abort`), except an instruction fetch at the very
        vector the previous injected exception sent this vCPU to (a guest
        without vectors; ``ACCESS_AT_INJECTED_VECTOR`` in its access flags),
        which stops the VM there rather than abort again for ever; halts and
        interrupts resume; every other exit nobody emulated (system
        registers, guest exceptions, ...) stops the VM (see
        ``_core.default_stops_vm``). An exit the loop moves past without an
        answer gets this.
        """
        self._check_open()
        self.record.action = _core.HostAction.Default
        self._answer(frame_changed=False)

    def inject_abort(self, kind: Literal["data", "instruction"] | None = None,
                     address: int | None = None) -> None:  # fmt: skip
        """Answer with a synchronous external abort taken to the guest's EL1, as
        the machine gives for an access to an address with nothing behind it:
        ESR_EL1 EC 0x25 (0x24 from EL0) with DFSC 0b010000 for a data access,
        EC 0x21 (0x20) with IFSC 0b010000 for an instruction fetch; FAR_EL1 the
        faulting virtual address, ELR_EL1 the instruction (``exit.pc``); the
        guest continues at its VBAR_EL1 vector.

        ``kind`` defaults to the access the exit was (an instruction fetch
        for a ``NestedPageFault`` with ACCESS_EXECUTE, a data access
        otherwise); ``address`` (FAR_EL1) defaults to the exit's FAR_EL2.
        """
        if kind not in (None, "data", "instruction"):
            raise ValueError(f"kind must be 'data' or 'instruction', not {kind!r}")
        self._check_open()
        if kind is None:
            fetch = self.kind == ExitKind.NestedPageFault and bool(
                self.reason.access_flags & _core.ACCESS_EXECUTE
            )
            kind = "instruction" if fetch else "data"
        if address is not None:
            if not 0 <= address < 1 << 64:
                raise ValueError(f"address {address:#x} is not a 64-bit virtual address")
            self.record.far = address
        self.record.action = (
            _core.HostAction.InjectInstructionAbort
            if kind == "instruction"
            else _core.HostAction.InjectDataAbort
        )
        self._answer(frame_changed=False)

    def inject_undef(self) -> None:
        """Answer with an Undefined Instruction exception taken to the guest's
        EL1 at the exit's instruction (ESR_EL1 EC 0x00 "Unknown reason",
        ELR_EL1 = ``exit.pc``), as the machine does for an instruction it
        does not implement."""
        self._check_open()
        self.record.action = _core.HostAction.InjectUndef
        self._answer(frame_changed=False)

    def step(self, **regs: int) -> None:
        """Resume for exactly one guest instruction (optionally with registers
        changed), then exit again: the next exit is a ``GuestException`` with
        EC 0x32 (software step) and its PC after that instruction. The guest's
        own debug state is restored after the step."""
        self._check_open()
        if regs:
            edited = copy.copy(self._frame if self._frame is not None else self.record.frame)
            view = Registers(edited)
            for name, value in regs.items():
                view[name] = value
            self._frame = edited
        changed = self._frame_changed()
        if changed:
            self.record.frame = self._frame
        self.record.action = _core.HostAction.Step
        self._answer(frame_changed=changed)

    def inject_interrupt(self, intid: int) -> None:
        """Make virtual interrupt ``intid`` pending for this vCPU: the firmware
        puts it in a GICv3 list register before the guest runs again (answer
        the exit as usual afterwards). The guest takes it once it has enabled
        its CPU interface and unmasked IRQs."""
        if not 0 <= intid < 1020:
            raise ValueError(f"INTID {intid} is not an SGI, PPI or SPI (0..1019)")
        if self._injector is None:
            raise RuntimeError("this exit is not attached to a running VM")
        self._check_open()
        self._injector(self.slot, intid)

    def stop(self) -> None:
        """Stop the VM at this exit."""
        self._check_open()
        self.record.action = _core.HostAction.Stop
        self._answer(frame_changed=False)

    def _check_open(self) -> None:
        if self.resolved:
            raise RuntimeError(f"exit #{self.seq} was already answered")

    def _answer(self, *, frame_changed: bool) -> None:
        self.resolved = True
        self.answered_ns = time.perf_counter_ns()
        self._resolver(self, frame_changed)

    def __repr__(self) -> str:
        return (
            f"<Exit #{self.seq} vm {self.vm_id} vcpu {self.vcpu_id} {self.reason!r} "
            f"pc={self.pc:#x}>"
        )


# Exits after which the guest has no next instruction to resume at (their
# default, per _core.default_stops_vm, ends the VM).
_VM_IS_DOWN = frozenset({ExitKind.SystemDown, ExitKind.FailEntry})

_DISASSEMBLER: Any = None


def disassemble(code: bytes, address: int = 0) -> str:
    """AArch64 instructions as text (capstone), one per line.

    >>> disassemble(bytes.fromhex("020000d4"))
    'hvc #0'
    """
    global _DISASSEMBLER
    if _DISASSEMBLER is None:
        import capstone

        _DISASSEMBLER = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    lines = [f"{i.mnemonic} {i.op_str}".strip() for i in _DISASSEMBLER.disasm(code, address)]
    return "\n".join(lines) if lines else f".inst {int.from_bytes(code[:4], 'little'):#010x}"
