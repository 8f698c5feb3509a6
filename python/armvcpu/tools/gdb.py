"""armvcpu inside gdb-multiarch: pretty-printers and ``armvcpu`` commands.

Load it in gdb-multiarch's embedded Python, with the firmware ELF's symbols
loaded and connected to a session's gdbstub (``Hypervisor.release_gdbstub()``)::

    (gdb) python import armvcpu.tools.gdb
    (gdb) file /path/to/armvcpu-firmware.elf        # the path `armvcpu firmware` prints
    (gdb) target remote /tmp/armvcpu-.../gdb.sock
    (gdb) armvcpu vcpus
    (gdb) armvcpu exit
    (gdb) print armvcpu_exit_records[0]

(``armvcpu.tools.gdb_launch.gdb_command()`` builds exactly that command line.)

Every value is read through ``gdb.Value`` from the firmware's own symbols and
DWARF types: no offset or size of the exit record, the trap frame or the rule
table is written here. Names (exception classes, system registers, flag bits)
come from ``armvcpu._core`` when gdb's Python can import it, otherwise from the
enumerators in the firmware's DWARF, otherwise numbers are shown.

The commands:

``armvcpu exit [VCPU]``
    the vCPU's current exit record, decoded (default vCPU 0)
``armvcpu frame [VCPU]``
    the guest registers saved in that record (the TrapFrame)
``armvcpu vcpus``
    one line per vCPU that has reported an exit
``armvcpu rules``
    the fast-rule table (``armvcpu_fast_rules``)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gdb  # type: ignore[import-untyped]  # only inside gdb; typeshed has types-gdb
import gdb.printing  # type: ignore[import-untyped]

_core: Any
try:
    from armvcpu import _core as _imported_core

    _core = _imported_core
except Exception:  # gdb's Python cannot load the extension: fall back to DWARF/numbers
    _core = None

if _core is not None:
    _SYMBOLS: dict[str, str] = dict(_core.FIRMWARE_SYMBOLS)
else:  # the extern "C" names host_interface.hpp gives them
    _SYMBOLS = {"exit_records": "armvcpu_exit_records", "fast_rules": "armvcpu_fast_rules",
                "host_attached": "armvcpu_host_attached"}  # fmt: skip

# SPSR_ELx.M[3:0] for an AArch64 exception (Arm ARM C5.2.19), as armvcpu.exits shows it.
_SPSR_MODES = {0b0000: "EL0t", 0b0100: "EL1t", 0b0101: "EL1h", 0b1000: "EL2t", 0b1001: "EL2h"}
_SPSR_DAIF = (("D", 9), ("A", 8), ("I", 7), ("F", 6))
_SPSR_NZCV = (("N", 31), ("Z", 30), ("C", 29), ("V", 28))
_GPRS_PER_ROW = 4


# -- reading the firmware's objects -------------------------------------------------


def _firmware_hint() -> str:
    hint = "load the firmware ELF with `file $(armvcpu firmware)`"
    try:
        from armvcpu import firmware_path

        return f"{hint}, here: file {firmware_path()}"
    except Exception:
        return f"{hint} (`armvcpu firmware` prints its path)"


def _symbol(key: str) -> Any:
    """The firmware object named by FIRMWARE_SYMBOLS[key], as a gdb.Value."""
    name = _SYMBOLS[key]
    symbol = gdb.lookup_global_symbol(name)
    if symbol is None:
        raise gdb.GdbError(
            f"no armvcpu firmware symbols are loaded ({name} is unknown): {_firmware_hint()}"
        )
    return symbol.value()


def _array_length(value: Any) -> int:
    low, high = value.type.strip_typedefs().range()
    return int(high) - int(low) + 1


def _fetched(value: Any) -> Any:
    """The value (a reference's target) with its bytes read in one go: one
    memory read, not one per field."""
    if value.type.strip_typedefs().code in (gdb.TYPE_CODE_REF, gdb.TYPE_CODE_RVALUE_REF):
        value = value.referenced_value()
    value.fetch_lazy()
    return value


def _short(name: str) -> str:
    return name.rsplit("::", 1)[-1]


def _enumerator(value: Any) -> str:
    """An enum value's name as the DWARF spells it (ExitKind::Hypercall -> Hypercall)."""
    number = int(value)
    for field in value.type.strip_typedefs().fields():
        if field.enumval == number:
            return _short(field.name)
    return str(number)


def _enumerator_of(type_name: str, number: int) -> str | None:
    """The name of ``number`` in the firmware's enum ``type_name``, if both exist."""
    try:
        fields = gdb.lookup_type(type_name).strip_typedefs().fields()
    except gdb.error:
        return None
    return next((_short(f.name) for f in fields if f.enumval == number), None)


def _hex_list(array: Any) -> str:
    return "[" + ", ".join(f"{int(array[i]):#x}" for i in range(_array_length(array))) + "]"


# -- decoding ------------------------------------------------------------------------


def _exception_class(ec: int) -> str:
    """The Arm ARM name of an ESR_EL2.EC value, or the firmware's enumerator name."""
    name = _core.exception_class_name(ec) if _core is not None else None
    if name is None:
        name = _enumerator_of("armvcpu::ExceptionClass", ec)
    return name or "reserved"


def _esr_text(esr: int) -> str:
    if _core is not None:
        decoded = _core.Esr(esr)
        ec, il, iss = int(decoded.ec), int(decoded.il), int(decoded.iss)
        fields = decoded.fields()
    else:  # ESR_ELx: EC [31:26], IL [25], ISS [24:0] (Arm ARM D17.2.37)
        ec, il, iss, fields = (esr >> 26) & 0x3F, (esr >> 25) & 1, esr & 0x1FFFFFF, []
    text = f"{esr:#x} (EC {ec:#04x} {_exception_class(ec)}, IL {il}, ISS {iss:#x})"
    named = [f"{name}={value:#x}" for name, _hi, _lo, value in fields if value]
    return text + (" " + " ".join(named) if named else "")


def _sysreg_text(key: int) -> str:
    """A SysRegRead/SysRegWrite key as the register's Arm name."""
    if _core is None:
        return f"{key:#x}"
    name = _core.sysreg_name(key)
    if name is None:
        enc = _core.SysRegEncoding.from_key(key)
        name = f"S{enc.op0}_{enc.op1}_C{enc.crn}_C{enc.crm}_{enc.op2}"
    return f"{name} ({key:#x})"


def _flag_names(value: int, names: list[tuple[str, str]]) -> str:
    """Set bits of ``value`` by the names of _core constants; raw hex without _core."""
    if _core is None:
        return f"{value:#x}"
    found = [label for attr, label in names if value & int(getattr(_core, attr))]
    return f"{value:#x}" + (f" ({', '.join(found)})" if found else "")


# (name of the _core constant, what the bit means)
_ACCESS_FLAGS = [
    ("ACCESS_READ", "read"),
    ("ACCESS_WRITE", "write"),
    ("ACCESS_EXECUTE", "execute"),
    ("ACCESS_NO_SYNDROME", "no syndrome"),
    ("ACCESS_STAGE1_WALK", "stage-1 walk"),
    ("ACCESS_PAGE_ONLY", "page only"),
    ("ACCESS_AT_INJECTED_VECTOR", "at injected vector"),
]
_RULE_FLAGS = [
    ("RULE_READS", "reads"),
    ("RULE_WRITES", "writes"),
    ("RULE_COUNT_ONLY", "count only"),
]


def _register_name(index: int) -> str:
    return "xzr" if index == 31 else f"x{index}"


def _field_text(kind: str, name: str, value: Any) -> str:
    """One field of an exit variant, with what it means where that helps."""
    if value.type.strip_typedefs().code == gdb.TYPE_CODE_ARRAY:
        return _hex_list(value) + (" (x1..x6)" if kind == "Hypercall" and name == "args" else "")
    number = int(value)
    if kind in ("SysRegRead", "SysRegWrite") and name == "addr":
        return _sysreg_text(number)
    if name == "reg":
        return f"{number} ({_register_name(number)})"
    if kind == "GuestException" and name == "ec":
        return f"{number:#x} ({_exception_class(number)})"
    if kind == "NestedPageFault" and name == "access_flags":
        return _flag_names(number, _ACCESS_FLAGS)
    if kind == "SystemDown" and name == "reset":
        return f"{number} ({'reset' if number else 'off'})"
    return f"{number:#x}"


def _variant(reason: Any) -> tuple[str, Any]:
    """The ExitReason's kind name and the union member that kind selects (or None).

    ARMVCPU_EXIT_VARIANTS gives each ExitKind enumerator a struct of the same
    name in armvcpu::exit, so the member is the one whose type is
    ``armvcpu::exit::<kind>``; the union's layout comes from DWARF.
    """
    kind = _enumerator(reason["kind"])
    wanted = f"armvcpu::exit::{kind}"
    for outer in reason.type.strip_typedefs().fields():
        if outer.name:  # kind, reserved: the variants live in the anonymous union
            continue
        for member in outer.type.strip_typedefs().fields():
            if member.type.strip_typedefs().tag == wanted:
                return kind, reason[outer][member.name]
    return kind, None


def reason_fields(reason: Any) -> tuple[str, list[tuple[str, str]]]:
    """An ExitReason gdb.Value as its kind and the (field, text) pairs of its variant."""
    reason = _fetched(reason)
    kind, variant = _variant(reason)
    if variant is None:
        return kind, [("raw", _hex_list(reason["raw"]))]
    return kind, [
        (field.name, _field_text(kind, field.name, variant[field.name]))
        for field in variant.type.strip_typedefs().fields()
        if field.name != "reserved" and not field.artificial
    ]


def _spsr_text(spsr: int) -> str:
    mode = "AArch32" if spsr & 0x10 else _SPSR_MODES.get(spsr & 0xF, f"M={spsr & 0xF:#x}")
    masked = " ".join(name for name, bit in _SPSR_DAIF if spsr >> bit & 1) or "none"
    nzcv = "".join(n if spsr >> bit & 1 else n.lower() for n, bit in _SPSR_NZCV)
    return f"{spsr:#x} ({mode}, DAIF masked: {masked}, {nzcv})"


def frame_summary(frame: Any) -> str:
    """A TrapFrame gdb.Value in one line: where it resumes and in which mode."""
    return (
        f"pc {int(frame['elr']):#x}, sp_el0 {int(frame['sp_el0']):#x}, "
        f"spsr {_spsr_text(int(frame['spsr']))}"
    )


def frame_rows(frame: Any) -> list[tuple[str, str]]:
    """x0..x30 of a TrapFrame gdb.Value, ``_GPRS_PER_ROW`` to a row:
    (the row's first register, the row with that register's value first)."""
    gprs = frame["gpr_"]
    count = _array_length(gprs)
    rows = []
    for first in range(0, count, _GPRS_PER_ROW):
        cells = [
            f"{'x' + str(i):<3} = {int(gprs[i]):#018x}"
            for i in range(first, min(first + _GPRS_PER_ROW, count))
        ]
        label, _, value = "  ".join(cells).partition(" = ")
        rows.append((label, value))
    return rows


def frame_lines(frame: Any) -> list[str]:
    """A TrapFrame gdb.Value as text: the summary line, then x0..x30 in rows."""
    frame = _fetched(frame)
    return [frame_summary(frame)] + [f"{label} = {row}" for label, row in frame_rows(frame)]


class RecordView:
    """One ExitRecord gdb.Value, read once and decoded."""

    def __init__(self, record: Any) -> None:
        self.record = _fetched(record)

    def field(self, name: str) -> int:
        return int(self.record[name])

    @property
    def valid(self) -> bool:
        """The firmware has written this record (its magic is right)."""
        magic = self.field("magic")
        if _core is not None:
            return bool(magic == int(_core.EXIT_RECORD_MAGIC))
        return magic != 0 and self.field("size") == self.record.type.strip_typedefs().sizeof

    def magic_text(self) -> str:
        magic, version, size = self.field("magic"), self.field("version"), self.field("size")
        if not self.valid:
            return f"{magic:#x} (not an exit record: this vCPU has reported no exit)"
        notes = [f"version {version}", f"{size} bytes"]
        if _core is not None and version != int(_core.EXIT_RECORD_VERSION):
            notes.append(f"armvcpu._core expects version {int(_core.EXIT_RECORD_VERSION)}")
        return f"{magic:#x} (valid, {', '.join(notes)})"

    def kind(self) -> str:
        return _enumerator(self.record["reason"]["kind"])

    def return_address(self) -> int:
        """Where the guest resumes (the frame's ELR_EL2), as Exit.return_address
        in Python (Exit.pc is the instruction that made the exit)."""
        return int(self.record["frame"]["elr"])

    def answer_state(self) -> str:
        """``ack`` and, with the shared-memory transport, whether the host has answered."""
        seq, ack = self.field("seq"), self.field("ack")
        try:
            transport = int(_symbol("host_attached"))
        except gdb.GdbError:
            return str(ack)
        if _enumerator_of("armvcpu::HostTransport", transport) != "SharedMemory":
            return str(ack)
        return f"{ack} ({'answered' if ack == seq else 'waiting for the host'})"

    def lines(self) -> list[str]:
        """The record for ``armvcpu exit``: a header, the reason's fields, the syndrome."""
        _, fields = reason_fields(self.record["reason"])
        header = (
            f"vCPU {self.field('vcpu_id')}, vm {self.field('vm_id')}: exit #{self.field('seq')} "
            f"{self.kind()} ({_enumerator(self.record['exception_type'])} exception)"
        )
        return [
            header,
            *(f"  {name} = {text}" for name, text in fields),
            f"  ESR_EL2 = {_esr_text(self.field('esr'))}",
            f"  FAR_EL2 = {self.field('far'):#x}  HPFAR_EL2 = {self.field('hpfar'):#x}",
            f"  ELR_EL2 = {self.field('elr'):#x} (at the exception)  "
            f"resumes at {self.return_address():#x}",
            f"  action = {_enumerator(self.record['action'])}  ack = {self.answer_state()}",
        ]


# -- pretty-printers ------------------------------------------------------------------
#
# Each printer's to_string() is one line, so that backtraces and frame lines
# (which print arguments in summary form) stay short; the detail is in the
# children, named as the C++ members are. `set print pretty on` puts one
# child on each line.


class TrapFramePrinter:
    """``print`` of an armvcpu::TrapFrame: pc/sp_el0/spsr decoded, x0..x30 in rows."""

    def __init__(self, value: Any) -> None:
        self.value = _fetched(value)

    def to_string(self) -> str:
        return frame_summary(self.value)

    def children(self) -> Iterator[tuple[str, Any]]:
        yield from frame_rows(self.value)
        yield "sp_el0", f"{int(self.value['sp_el0']):#x}"
        yield "elr", f"{int(self.value['elr']):#x}"
        yield "spsr", _spsr_text(int(self.value["spsr"]))


class ExitReasonPrinter:
    """``print`` of an armvcpu::ExitReason: its kind and that variant's fields only."""

    def __init__(self, value: Any) -> None:
        self.kind, self.fields = reason_fields(value)

    def to_string(self) -> str:
        return self.kind

    def children(self) -> Iterator[tuple[str, Any]]:
        yield from self.fields


class ExitRecordPrinter:
    """``print`` of an armvcpu::ExitRecord: the record decoded, with its reason and frame."""

    def __init__(self, value: Any) -> None:
        self.view = RecordView(value)

    def to_string(self) -> str:
        view = self.view
        if not view.valid:
            return f"empty exit record (magic = {view.field('magic'):#x})"
        return f"vCPU {view.field('vcpu_id')} exit #{view.field('seq')}: {view.kind()}"

    def children(self) -> Iterator[tuple[str, Any]]:
        view, record = self.view, self.view.record
        if not view.valid:
            return
        yield "magic", view.magic_text()
        for name in ("vm_id", "vcpu_id", "seq"):
            yield name, str(view.field(name))
        yield "ack", view.answer_state()
        yield "exception_type", _enumerator(record["exception_type"])
        yield "action", _enumerator(record["action"])
        yield "esr", _esr_text(view.field("esr"))
        for name in ("far", "hpfar", "elr"):
            yield name, f"{view.field(name):#x}"
        yield "reason", record["reason"]
        yield "frame", record["frame"]


def build_pretty_printer() -> Any:
    """The printers for the firmware's types, as one gdb.printing collection."""
    printer = gdb.printing.RegexpCollectionPrettyPrinter("armvcpu")
    printer.add_printer("TrapFrame", "^armvcpu::TrapFrame$", TrapFramePrinter)
    printer.add_printer("ExitReason", "^armvcpu::ExitReason$", ExitReasonPrinter)
    printer.add_printer("ExitRecord", "^armvcpu::ExitRecord$", ExitRecordPrinter)
    return printer


# -- commands ----------------------------------------------------------------------------


def _records() -> Any:
    return _symbol("exit_records")


def _vcpu_argument(argument: str) -> int:
    """The VCPU argument (any gdb expression), checked against the firmware's records."""
    argv = gdb.string_to_argv(argument)
    if len(argv) > 1:
        raise gdb.GdbError(f"expected at most one VCPU argument, got {len(argv)}")
    records = _records()
    count = _array_length(records)
    if not argv:
        return 0
    try:
        vcpu = int(gdb.parse_and_eval(argv[0]))
    except (gdb.error, ValueError) as exc:
        raise gdb.GdbError(f"not a vCPU number: {argv[0]!r} ({exc})") from None
    if not 0 <= vcpu < count:
        raise gdb.GdbError(
            f"vCPU {vcpu} is out of range: the firmware has exit records for vCPUs 0..{count - 1}"
        )
    return vcpu


def _valid_record(vcpu: int) -> RecordView:
    view = RecordView(_records()[vcpu])
    if not view.valid:
        raise gdb.GdbError(
            f"vCPU {vcpu} has reported no exit yet (magic = {view.field('magic'):#x})"
        )
    return view


class ArmvcpuPrefix(gdb.Command):  # type: ignore[misc]  # gdb has no type stubs
    """armvcpu: VM exits of the armvcpu firmware (see `help armvcpu exit` etc.)."""

    def __init__(self) -> None:
        super().__init__("armvcpu", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, True)

    def invoke(self, argument: str, from_tty: bool) -> None:
        gdb.execute("help armvcpu", from_tty)


class ExitCommand(gdb.Command):  # type: ignore[misc]
    """Show a vCPU's current exit record, decoded: armvcpu exit [VCPU]

    The exit kind and its fields (system registers by their Arm names), the
    syndrome (ESR_EL2 with its exception class, FAR_EL2, HPFAR_EL2) and where
    the guest resumes. VCPU defaults to 0."""

    def __init__(self) -> None:
        super().__init__("armvcpu exit", gdb.COMMAND_DATA)

    def invoke(self, argument: str, from_tty: bool) -> None:
        view = _valid_record(_vcpu_argument(argument))
        gdb.write("\n".join(view.lines()) + "\n")


class FrameCommand(gdb.Command):  # type: ignore[misc]
    """Show the guest registers of a vCPU's exit record: armvcpu frame [VCPU]

    x0..x30, sp_el0, the PC the guest resumes at and SPSR_EL2 with its mode
    and DAIF mask, as the firmware saved them (and the host may edit them)."""

    def __init__(self) -> None:
        super().__init__("armvcpu frame", gdb.COMMAND_DATA)

    def invoke(self, argument: str, from_tty: bool) -> None:
        vcpu = _vcpu_argument(argument)
        view = _valid_record(vcpu)
        lines = [f"vCPU {vcpu}: exit #{view.field('seq')} {view.kind()}"]
        lines += [f"  {line}" for line in frame_lines(view.record["frame"])]
        gdb.write("\n".join(lines) + "\n")


class VcpusCommand(gdb.Command):  # type: ignore[misc]
    """List the vCPUs that have reported an exit: armvcpu vcpus

    One line each: vCPU id, the last exit's sequence number and kind, and
    the address the guest resumes at."""

    def __init__(self) -> None:
        super().__init__("armvcpu vcpus", gdb.COMMAND_DATA)

    def invoke(self, argument: str, from_tty: bool) -> None:
        records = _records()
        rows = []
        for index in range(_array_length(records)):
            view = RecordView(records[index])
            if view.valid:
                rows.append(
                    f"{view.field('vcpu_id'):<5} {view.field('seq'):<6} {view.kind():<18} "
                    f"{view.return_address():#018x}  {view.answer_state()}"
                )
        if not rows:
            gdb.write("no vCPU has reported an exit yet\n")
            return
        gdb.write(f"{'vCPU':<5} {'seq':<6} {'last exit':<18} {'resumes at':<18}  answer\n")
        gdb.write("\n".join(rows) + "\n")


def _rule_match(kind: str, rule: Any) -> str:
    lo, hi = int(rule["lo"]), int(rule["hi"])
    if kind == "Mmio":
        return f"[{lo:#x}, {hi:#x})"
    if kind == "Hypercall":
        return f"nr {lo:#x}"
    if kind == "SysReg":
        return _sysreg_text(lo)
    return f"lo {lo:#x} hi {hi:#x}"


class RulesCommand(gdb.Command):  # type: ignore[misc]
    """List the fast rules in the firmware (armvcpu_fast_rules): armvcpu rules

    Each non-empty slot: its kind, what it matches (MMIO range, hypercall
    number, system register), the value it answers with, its flags and hits."""

    def __init__(self) -> None:
        super().__init__("armvcpu rules", gdb.COMMAND_DATA)

    def invoke(self, argument: str, from_tty: bool) -> None:
        table = _fetched(_symbol("fast_rules"))
        rules = table["rules"]
        slots = _array_length(rules)
        magic = int(table["magic"])
        note = ""
        if _core is not None and magic != int(_core.FAST_RULE_MAGIC):
            note = " (not the fast-rule magic: the firmware ignores this table)"
        rows = []
        for index in range(slots):
            rule = rules[index]
            kind = _enumerator(rule["kind"])
            if kind == "Empty":
                continue
            rows.append(
                f"{index:<4} {kind:<10} {_rule_match(kind, rule):<36} "
                f"{int(rule['value']):<#12x} {int(rule['hits']):<8} "
                f"{_flag_names(int(rule['flags']), _RULE_FLAGS)}"
            )
        gdb.write(
            f"armvcpu_fast_rules: {len(rows)} of {slots} slots in use, "
            f"capacity {int(table['capacity'])}, magic {magic:#x}{note}\n"
        )
        if rows:
            gdb.write(f"{'slot':<4} {'kind':<10} {'match':<36} {'value':<12} {'hits':<8} flags\n")
            gdb.write("\n".join(rows) + "\n")


def register() -> None:
    """Register the pretty-printers and the ``armvcpu`` commands (done on import)."""
    gdb.printing.register_pretty_printer(None, build_pretty_printer(), replace=True)
    ArmvcpuPrefix()
    ExitCommand()
    FrameCommand()
    VcpusCommand()
    RulesCommand()


register()
