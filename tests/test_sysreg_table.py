"""Every row of the core's system-register table against the GNU assembler.

For each name in ``_core.sysreg_table()`` the cross assembler encodes
``mrs x0, <name>`` (``msr <name>, x0`` for the registers it knows as
write-only); the (op0, op1, CRn, CRm, op2) read back from each word must be
the row's. The assembler, not our own table, is the reference here.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from armvcpu import _core
from armvcpu.guests.toolchain import tool

# The architecture the table's header names: every register in the table is
# known to gas 2.40 under it (the ECV counters need v8.6, ZCR/ID_AA64ZFR0
# SVE, ID_AA64SMFR0 SME, GCR/RGSR MTE).
MARCH = "armv9.1-a+sve+sme+memtag"

# Names gas does not know under MARCH (none at binutils 2.40): pinned, so a
# row added with a misspelt or invented name fails here.
UNKNOWN_TO_GAS: list[str] = []

# What gas refuses to read (Arm ARM: write-only), assembled as MSR instead.
WRITE_ONLY = {
    "OSLAR_EL1", "PMSWINC_EL0", "ICC_EOIR0_EL1", "ICC_EOIR1_EL1", "ICC_DIR_EL1",
    "ICC_SGI0R_EL1", "ICC_SGI1R_EL1", "ICC_ASGI1R_EL1",
}  # fmt: skip


def assemble(lines: list[str], tmp_path: Path) -> tuple[bytes, str]:
    """The .text bytes of the lines (empty if gas failed) and gas's messages."""
    source, obj, text = tmp_path / "regs.s", tmp_path / "regs.o", tmp_path / "regs.bin"
    source.write_text("".join(f"{line}\n" for line in lines))
    run = subprocess.run([tool("as"), f"-march={MARCH}", str(source), "-o", str(obj)],
                         capture_output=True, text=True)  # fmt: skip
    if run.returncode != 0:
        return b"", run.stderr
    subprocess.run([tool("objcopy"), "-O", "binary", "-j", ".text", str(obj), str(text)],
                   check=True)  # fmt: skip
    return text.read_bytes(), run.stderr


def decode(word: int) -> tuple[str, tuple[int, int, int, int, int], int]:
    """An MRS/MSR (register) word (Arm ARM C6.2 "MRS", "MSR (register)"):
    1101010100 L 1 o0 op1 CRn CRm op2 Rt, with op0 = 2 + o0 = bits [20:19]."""
    assert word >> 22 == 0b1101010100 and (word >> 20) & 1, f"{word:#010x} is no MRS/MSR"
    kind = "mrs" if (word >> 21) & 1 else "msr"
    fields = ((word >> 19) & 3, (word >> 16) & 7, (word >> 12) & 15, (word >> 8) & 15,
              (word >> 5) & 7)  # fmt: skip
    return kind, fields, word & 31


@pytest.fixture(scope="module")
def gas_encodings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, tuple]]:
    """Each table name as gas encodes it: (instruction, fields)."""
    tmp = tmp_path_factory.mktemp("sysregs")
    names = [name for name, _ in _core.sysreg_table()]
    # First pass, one line each: which names gas does not know, which it will not read.
    _, messages = assemble([f"mrs x0, {n}" for n in names], tmp)
    line_of = {i + 1: n for i, n in enumerate(names)}
    unknown, unreadable = set(), set()
    for line, text in re.findall(r"regs\.s:(\d+): (.*)", messages):
        if "cannot be read from" in text:
            unreadable.add(line_of[int(line)])
        else:
            unknown.add(line_of[int(line)])
    assert sorted(unknown) == sorted(UNKNOWN_TO_GAS), messages
    assert unreadable == WRITE_ONLY, messages
    known = [n for n in names if n not in unknown]
    lines = [f"msr {n}, x0" if n in WRITE_ONLY else f"mrs x0, {n}" for n in known]
    blob, messages = assemble(lines, tmp)
    assert messages == "" and len(blob) == 4 * len(known), messages
    out = {}
    for i, name in enumerate(known):
        kind, fields, rt = decode(int.from_bytes(blob[4 * i : 4 * i + 4], "little"))
        assert rt == 0
        out[name] = (kind, fields)
    return out


def test_the_table_has_every_row_the_header_promises():
    table = _core.sysreg_table()
    assert len(table) == 267
    names = [name for name, _ in table]
    assert len(set(names)) == len(names)  # no name twice
    assert len({e.key for _, e in table}) == len(table)  # no encoding twice


def test_every_row_matches_the_assemblers_encoding(gas_encodings):
    # The decoder itself, on two encodings from the manuals: CNTV_CTL_EL0
    # (Arm ARM D19.12) and ICC_SGI1R_EL1 (GICv3, IHI 0069, 12.2.22).
    assert gas_encodings["CNTV_CTL_EL0"] == ("mrs", (3, 3, 14, 3, 1))
    assert gas_encodings["ICC_SGI1R_EL1"] == ("msr", (3, 0, 12, 11, 5))
    wrong = []
    for name, enc in _core.sysreg_table():
        if name in UNKNOWN_TO_GAS:
            continue
        kind, fields = gas_encodings[name]
        assert kind == ("msr" if name in WRITE_ONLY else "mrs")
        if (enc.op0, enc.op1, enc.crn, enc.crm, enc.op2) != fields:
            wrong.append(f"{name}: table {enc!r}, gas {fields}")
    assert wrong == []
    assert len(gas_encodings) == 267 - len(UNKNOWN_TO_GAS)


def test_lookups_by_name_and_by_key_agree_with_the_assembler(gas_encodings):
    for name, (_, fields) in gas_encodings.items():
        by_name = _core.sysreg_encoding(name.lower())
        assert (by_name.op0, by_name.op1, by_name.crn, by_name.crm, by_name.op2) == fields
        # The key an exit carries: the fields at their ESR_EL2 ISS positions (D17.2.37).
        op0, op1, crn, crm, op2 = fields
        key = (op0 << 20) | (op2 << 17) | (op1 << 14) | (crn << 10) | (crm << 1)
        assert by_name.key == key
        assert _core.sysreg_name(key) == name
