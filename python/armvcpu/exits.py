"""VM exits as Python objects: the decoded reason, the registers, the answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

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


class Exit(_core.ExitView):
    """One VM exit, as the firmware reported it.

    ``reason`` is the decoded variant (``_core.Hypercall``, ``_core.SystemDown``,
    ...), ``frame``/``regs`` the guest's registers (editable). Answer it with
    ``resume()``, ``complete_read()``, ``resume_default()`` or ``stop()``; an
    exit left unanswered gets ``resume_default()`` when iteration moves on.

    Addresses: ``pc`` is the instruction that made the exit (for HVC and SVC
    the call itself, one instruction before ELR_EL2), ``return_address`` is
    where the guest resumes, ``elr`` is ELR_EL2 as the exception left it.

    The object is a view kept by the C++ core (``_core.ExitView``): the
    record is copied into it once when the exit arrives, its fields are read
    from that copy and its reason decoded on first use, and an answer goes
    straight back into the shared record. Made by the session from the
    shared mapping, or from a record: ``Exit(record, resolver, raw=None)``
    (``resolver(exit, frame_changed)`` takes the answer; ``raw``, the bytes as
    delivered, defaults to the record's).

    Fields: ``seq``, ``vm_id``, ``vcpu_id``, ``kind``, ``slot`` (the exit
    record, i.e. physical CPU, it came through), ``esr`` (ESR_EL2 decoded:
    ``.exception_class``, ``.il``, ``.iss``, ``.imm16``), ``syndrome``,
    ``raw`` (the record's bytes as delivered), ``record`` (a copy of the
    record as answered so far), ``resolved``, ``delivered_ns`` and
    ``answered_ns`` (``time.perf_counter_ns()`` clock).

    ``resume(x0=None, **regs)`` lets the guest continue, optionally with
    registers changed: ``exit.resume(x0=5)`` returns 5 from a hypercall;
    ``exit.resume()`` continues with the registers as they are (including
    edits made to ``exit.frame`` / ``exit.regs``). For emulated instructions
    (MMIO, MSR/MRS, WFx, SMC) the return address is already past the
    instruction. An exit that says the VM is down (``SystemDown``: the guest
    powered off or reset; ``FailEntry``: it could not be entered) has no
    next instruction to go on at: ``resume()`` ends the VM as the firmware's
    default does, so a loop that resumes every exit ends when the guest
    powers off. Only an answer that sets the PC (``resume(pc=entry)``, or
    ``exit.regs.pc`` edited) restarts the guest there, as a host that
    emulates a reset would.

    ``resume_default()`` lets the firmware answer as it would with no host
    attached: what QEMU's ``virt`` machine does without a hypervisor. A
    hypercall returns SMCCC NOT_SUPPORTED (-1 in x0); an access to an address
    with neither RAM nor a device (MMIO, a stage-2 fault) becomes a
    synchronous external abort taken to the guest's EL1 (see
    :meth:`inject_abort`), except an instruction fetch at the very vector the
    previous injected exception sent this vCPU to (a guest without vectors;
    ``ACCESS_AT_INJECTED_VECTOR`` in its access flags), which stops the VM
    there rather than abort again for ever; halts and interrupts resume;
    every other exit nobody emulated (system registers, guest exceptions,
    ...) stops the VM (see ``_core.default_stops_vm``). An exit the loop
    moves past without an answer gets this.

    ``inject_undef()`` answers with an Undefined Instruction exception taken
    to the guest's EL1 at the exit's instruction (ESR_EL1 EC 0x00 "Unknown
    reason", ELR_EL1 = ``exit.pc``), as the machine does for an instruction
    it does not implement. ``stop()`` stops the VM at this exit.
    """

    __slots__ = ()

    if TYPE_CHECKING:  # resume() is the core's (a vectorcall method, untyped in the stubs)

        def resume(self, x0: int | None = None, **regs: int) -> None: ...  # type: ignore[override]

    @property
    def vm(self) -> Any:
        """The VM that made the exit (an :class:`armvcpu.session.vm.VM`; None
        for an exit made from a record alone)."""
        session = self.session
        return None if session is None else session._vms.get(self.vm_id)

    @property
    def regs(self) -> Registers:
        return Registers(self.frame)

    @property
    def instruction(self) -> str:
        """The instruction at :attr:`pc`, disassembled (capstone), e.g.
        ``"hvc #0"`` or ``"ldrb w2, [x1]"``. Needs the VM's memory to be
        readable (the session open)."""
        vm = self.vm
        if vm is None:
            raise RuntimeError("this exit is not attached to a running VM")
        try:
            word = vm.read(self.pc, 4)
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
        if address is not None and not 0 <= address < 1 << 64:
            raise ValueError(f"address {address:#x} is not a 64-bit virtual address")
        self._answer_abort(kind == "instruction", address)

    def step(self, **regs: int) -> None:
        """Resume for exactly one guest instruction (optionally with registers
        changed), then exit again: the next exit is a ``GuestException`` with
        EC 0x32 (software step) and its PC after that instruction. The guest's
        own debug state is restored after the step."""
        self._answer_step(**regs)

    def inject_interrupt(self, intid: int) -> None:
        """Make virtual interrupt ``intid`` pending for this vCPU: the firmware
        puts it in a GICv3 list register before the guest runs again (answer
        the exit as usual afterwards). The guest takes it once it has enabled
        its CPU interface and unmasked IRQs."""
        if not 0 <= intid < 1020:
            raise ValueError(f"INTID {intid} is not an SGI, PPI or SPI (0..1019)")
        session = self.session
        if session is None:
            raise RuntimeError("this exit is not attached to a running VM")
        self._check_open()
        session._inject(self.slot, intid)

    def __repr__(self) -> str:
        return (
            f"<Exit #{self.seq} vm {self.vm_id} vcpu {self.vcpu_id} {self.reason!r} "
            f"pc={self.pc:#x}>"
        )


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
