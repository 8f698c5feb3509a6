"""The ``armvcpu`` command line."""

from __future__ import annotations

import argparse
import sys

from . import _core
from .errors import ArmvcpuError


def _decode_esr(value: str) -> int:
    esr = _core.Esr(int(value, 0))
    name = _core.exception_class_name(esr.ec) or "reserved"
    print(f"ESR_EL2 {esr.value:#x}")
    print(f"  EC  [31:26] {esr.ec:#04x}  {name}")
    print(f"  IL  [25]    {int(esr.il)}     {esr.instruction_length * 8}-bit instruction")
    print(f"  ISS [24:0]  {esr.iss:#x}")
    for field, hi, lo, field_value in esr.fields():
        bits = f"[{hi}]" if hi == lo else f"[{hi}:{lo}]"
        print(f"    {field:<11} {bits:<8} {field_value:#x}")
    if esr.exception_class == _core.ExceptionClass.SysReg64:
        reg = _core.sysreg_name(esr.iss) or "an unnamed register"
        direction = "MRS (read)" if esr.iss & 1 else "MSR (write)"
        print(f"  {direction} of {reg}, Rt = x{(esr.iss >> 5) & 0x1F}")
    return 0


def _bench(name: str, runs: int, quick: bool, as_json: bool) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from .benchmarks import BENCHMARKS, as_dicts

    console = Console(stderr=True)
    with console.status(f"running benchmark {name!r} ({runs} runs per figure)..."):
        figures = BENCHMARKS[name](runs=runs, quick=quick)
    if as_json:
        print(json.dumps(as_dicts(figures), indent=2))
        return 0
    table = Table(title=f"armvcpu bench {name} (median of {runs})")
    for col in ("figure", "median", "unit", "runs", "note"):
        table.add_column(col, justify="right" if col in ("median",) else "left")
    for f in figures:
        table.add_row(f.name, f"{f.value:,.3f}" if f.value < 100 else f"{f.value:,.0f}", f.unit,
                      ", ".join(f"{r:,.3g}" for r in f.runs), f.note)  # fmt: skip
    Console().print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="armvcpu", description=__doc__)
    parser.add_argument("--version", action="version", version=f"armvcpu {_core.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="boot the firmware, run the example guest, show its exits")
    sub.add_parser("firmware", help="print the path of the packaged firmware ELF")
    bench = sub.add_parser("bench", help="run a benchmark and print its figures")
    bench.add_argument("name", choices=["exits", "startup"])
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.add_argument("--runs", type=int, default=3, help="runs per figure (median reported)")
    bench.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run)")
    decode = sub.add_parser("decode", help="decode a syndrome value")
    decode.add_argument("register", choices=["esr"])
    decode.add_argument("value", help="e.g. 0x5a000000")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import main as demo_main

            return demo_main()
        if args.command == "bench":
            return _bench(args.name, args.runs, args.quick, args.json)
        if args.command == "firmware":
            from .firmware import firmware_path

            print(firmware_path())
            return 0
        if args.command == "decode":
            try:
                return _decode_esr(args.value)
            except ValueError:
                parser.error(f"not a number: {args.value!r}")
    except ArmvcpuError as exc:
        print(f"armvcpu: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("armvcpu: interrupted", file=sys.stderr)
        return 130
    return 0
