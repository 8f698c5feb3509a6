"""The demo: boot the firmware, run the hypercalls guest, show every exit.

Run it with ``armvcpu demo`` or ``python -m armvcpu.tools.demo``.
"""

from __future__ import annotations

import time

from rich import box
from rich.console import Console
from rich.table import Table

from .. import _core
from ..assets import example_guest_path
from ..exits import Exit
from ..guests.guest import Guest
from ..session.hypervisor import Hypervisor
from .jsonout import print_json

HC_GET_VALUE = 1
HC_REPORT = 2


def answer(index: int) -> int:
    """The value the demo hands the guest for its index-th GET_VALUE hypercall."""
    return 1000 + 7 * index


def expected_checksum(values: list[int]) -> int:
    """What the guest computes: checksum = checksum * 31 + value, modulo 2**64."""
    checksum = 0
    for v in values:
        checksum = (checksum * 31 + v) & 0xFFFF_FFFF_FFFF_FFFF
    return checksum


def _describe(exit: Exit) -> str:
    reason = exit.reason
    if isinstance(reason, _core.Hypercall):
        name = {HC_GET_VALUE: "GET_VALUE", HC_REPORT: "REPORT"}.get(int(reason.nr), str(reason.nr))
        return f"Hypercall {name}"
    if isinstance(reason, _core.SystemDown):
        return "SystemDown (PSCI)"
    return type(reason).__name__


def main(console: Console | None = None, *, as_json: bool = False) -> int:
    """Run the demo; print a table (or with ``as_json`` one JSON document:
    ``exits``, ``checksum``, ``expected``, ``match``, ``seconds``). Exit
    status 0 when the guest's checksum matches."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or in CI: don't squeeze into 80 columns
            console = Console(width=max(console.width, 100))
    guest = Guest.from_elf(example_guest_path("hypercalls"))
    table = Table(title="VM exits of the 'hypercalls' guest", box=box.SIMPLE_HEAD)
    for col in ("#", "exit", "EC", "pc", "x0", "x1", "x2", "answer"):
        table.add_column(col, justify="left" if col in ("exit", "EC") else "right", no_wrap=True)
    given: list[int] = []
    rows: list[dict[str, object]] = []
    reported = None
    start = time.perf_counter()
    with Hypervisor() as hv:
        hv.load(guest)
        for exit in hv.exits():
            r = exit.regs
            row = [str(exit.seq), _describe(exit), exit.esr.exception_class.name,
                   f"{exit.pc:#x}", f"{r.x0:#x}", f"{r.x1:#x}", f"{r.x2:#x}"]  # fmt: skip
            reply = ""
            if isinstance(exit.reason, _core.Hypercall) and exit.reason.nr == HC_GET_VALUE:
                value = answer(len(given))
                given.append(value)
                exit.resume(x0=value)
                reply = f"x0={value}"
            elif isinstance(exit.reason, _core.Hypercall) and exit.reason.nr == HC_REPORT:
                reported = r.x1
                exit.resume(x0=0)
                reply = "x0=0"
            table.add_row(*row, reply)
            rows.append({"seq": exit.seq, "exit": row[1], "ec": row[2], "pc": exit.pc,
                         "x0": r.x0, "x1": r.x1, "x2": r.x2, "answer": reply or None})  # fmt: skip
        elapsed = time.perf_counter() - start
        firmware_log = hv.console
    want = expected_checksum(given)
    ok = reported == want
    if as_json:
        print_json({"exits": rows, "checksum": reported, "expected": want, "match": ok,
                    "seconds": elapsed})  # fmt: skip
        return 0 if ok else 1
    console.print(table)
    console.print(
        f"guest checksum {reported:#x}, expected {want:#x}: "
        + ("[green]match[/green]" if ok else "[red]MISMATCH[/red]")
    )
    console.print(f"{len(given) + 2} exits in {elapsed:.2f} s (QEMU start to power-off)")
    console.print("[dim]firmware log:[/dim]")
    console.print(firmware_log.rstrip(), markup=False, highlight=False, soft_wrap=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
