"""armvcpu._core: the C++ core as Python sees it.

Golden ESR values follow Arm ARM D17.2.37 (EC [31:26], IL [25], ISS [24:0]);
0x5a000000 is also exactly what QEMU reports for a guest's ``HVC #0``.
"""

from __future__ import annotations

import armvcpu
import pytest
from armvcpu import _core
from elftools.elf.elffile import ELFFile


def test_esr_fields_of_hvc_with_immediate():
    e = _core.Esr(0x5A00BEEF)
    assert e.ec == 0x16
    assert e.exception_class == _core.ExceptionClass.Hvc64
    assert e.il is True
    assert e.imm16 == 0xBEEF
    assert e.iss == 0xBEEF


@pytest.mark.parametrize(
    ("esr", "name"),
    [(0x5E000000, "Smc64"), (0xF2000000, "Brk64"), (0x92000000, "DataAbortLower"),
     (0x62000000, "SysReg64"), (0x06000000, "WfxTrap"), (0xBE000000, "SError")],
)  # fmt: skip
def test_exception_classes(esr, name):
    assert _core.Esr(esr).exception_class.name == name


def test_exception_class_name_rejects_out_of_range_ec():
    with pytest.raises(ValueError, match="6-bit"):
        _core.exception_class_name(0x40)
    assert _core.exception_class_name(0x02) is None  # reserved in the Arm ARM


def test_trap_frame_accessors_and_bytes_round_trip():
    f = _core.TrapFrame()
    for i in range(31):
        f.set_gpr(i, 0x1000 + i)
    f.elr, f.spsr, f.sp_el0 = 0x40000000, 0x3C5, 0x1234
    g = _core.TrapFrame.from_bytes(f.to_bytes())
    assert g == f
    assert g.gpr(30) == 0x101E
    assert len(f.to_bytes()) == _core.TrapFrame.SIZE == 34 * 8


@pytest.mark.parametrize("index", [-1, 31, 32, 1000])
def test_trap_frame_rejects_bad_register_index(index):
    f = _core.TrapFrame()
    with pytest.raises(IndexError, match=r"x0\.\.x30"):
        f.gpr(index)
    with pytest.raises(IndexError, match=r"x0\.\.x30"):
        f.set_gpr(index, 1)


def test_trap_frame_from_bytes_needs_exact_size():
    with pytest.raises(ValueError, match="exactly 272 bytes"):
        _core.TrapFrame.from_bytes(b"\0" * 10)


def test_classify_hypercall_uses_x0_and_x1_to_x6():
    f = _core.TrapFrame()
    for i in range(7):
        f.set_gpr(i, 10 * i + 1)
    f.elr = 0x40000034
    reason, after = _core.classify_sync(f, _core.Syndrome(esr=0x5A000000))
    assert reason.kind == _core.ExitKind.Hypercall
    assert reason.value.nr == 1
    assert reason.value.args == (11, 21, 31, 41, 51, 61)
    assert after.elr == 0x40000034  # HVC: ELR_EL2 already past the instruction


def test_classify_psci_system_off():
    f = _core.TrapFrame()
    f.set_gpr(0, 0x84000008)  # DEN0022 SYSTEM_OFF
    reason, _ = _core.classify_sync(f, _core.Syndrome(esr=0x5A000000))
    assert reason.kind == _core.ExitKind.SystemDown
    assert isinstance(reason.value, _core.SystemDown)


def test_classify_unhandled_class_is_reported_not_fatal():
    f = _core.TrapFrame()
    f.elr = 0x40000100
    reason, _ = _core.classify_sync(f, _core.Syndrome(esr=0xF2000007))  # BRK #7
    assert reason.kind == _core.ExitKind.GuestException
    assert (reason.value.ec, reason.value.iss, reason.value.pc) == (0x3C, 7, 0x40000100)


def _record_bytes(**changes: int) -> bytes:
    raw = bytearray(_core.ExitRecord().to_bytes())
    offsets = {"magic": (0, 4), "version": (4, 2), "kind": (_core.ExitRecord.OFFSETS["reason"], 4)}
    for field, value in changes.items():
        off, size = offsets[field]
        raw[off : off + size] = value.to_bytes(size, "little")
    return bytes(raw)


def test_exit_record_validation():
    assert _core.ExitRecord.from_bytes(_record_bytes()).reason.kind == _core.ExitKind.Nothing
    with pytest.raises(ValueError, match="not an exit record"):
        _core.ExitRecord.from_bytes(_record_bytes(magic=0x12345678))
    with pytest.raises(ValueError, match="version 9"):
        _core.ExitRecord.from_bytes(_record_bytes(version=9))
    with pytest.raises(ValueError, match="unknown exit kind 99"):
        _core.ExitRecord.from_bytes(_record_bytes(kind=99))
    with pytest.raises(ValueError, match="exactly"):
        _core.ExitRecord.from_bytes(b"AVEX")


def test_firmware_exports_records_with_the_core_layout():
    """The firmware's own symbol sizes agree with what _core says."""
    with armvcpu.firmware_path().open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        records = symtab.get_symbol_by_name("armvcpu_exit_records")[0]
        config = symtab.get_symbol_by_name("armvcpu_guest_config")[0]
    assert records["st_size"] % _core.ExitRecord.SIZE == 0
    assert config["st_size"] % _core.GuestConfig.SIZE == 0  # one per VM


def test_every_exit_kind_has_a_python_class():
    for kind in _core.ExitKind.__members__:
        assert hasattr(_core, kind), kind


def test_rsp_checksum_is_the_byte_sum_mod_256():
    assert _core.rsp_checksum(b"OK") == 0x9A
    assert _core.rsp_checksum(b"") == 0
    data = bytes(range(256)) * 5
    assert _core.rsp_checksum(data) == sum(data) & 0xFF
