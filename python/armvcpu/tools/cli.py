"""The ``armvcpu`` command line.

armvcpu demo                          the example guest and its exits
armvcpu run GUEST [--policy P.py[:NAME]] [--trace OUT] [--timeout S] ...
armvcpu run --kernel Image [--initrd F] [--append ARGS] [--dtb F] [--smp N] [-m MiB]
armvcpu trace show|summary|export FILE
armvcpu decode esr VALUE              every field of a syndrome, named
armvcpu bench NAME                    benchmarks (figures, never asserted)
armvcpu bench boot [--pairs N] -- QEMU_ARGS   bare QEMU against armvcpu run, alternately
armvcpu doctor                        what is installed, and what to install
armvcpu fuzz [--seed S] [--programs N] [--workers W] | --replay SEED:INDEX
armvcpu firmware                      the packaged firmware ELF's path
armvcpu gdb SOCKET [-- GDB_ARGS]      gdb-multiarch on a live session

Every command that prints data takes ``--json`` (one document on stdout,
printed by :mod:`armvcpu.tools.jsonout`; ``run --json`` prints it as the
last line, after the guest's console).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import math
import os
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from .. import _core
from ..errors import ArmvcpuError, GuestTimeout, QemuError
from .console_echo import ConsoleEcho
from .jsonout import add_json_option, plain, print_json
from .policy_file import UsageError, apply_policy, load_policy

# Exit statuses of `armvcpu run`.
EXIT_OK = 0  # the guest powered off (PSCI SYSTEM_OFF) or reset
EXIT_GUEST_STOPPED = 1  # the VM was stopped at an exit nobody could answer
EXIT_USAGE = 2  # bad arguments or files
EXIT_TIMEOUT = 3  # no exit within --timeout
EXIT_QEMU = 4  # QEMU failed or died


_MAX_U64 = (1 << 64) - 1


def parse_u64(text: str) -> int | None:
    """A register value as a user types it (``0x5a00002a``, ``1509949482``,
    ``0b...``), or None when it is not one: negative, over 64 bits, or not a
    number."""
    try:
        value = int(text.replace("_", ""), 0)
    except ValueError:
        return None
    return value if 0 <= value <= _MAX_U64 else None


def esr_report(value: int) -> dict[str, Any]:
    """Every field of an ESR_EL2 value, named (the ``decode esr --json`` document)."""
    esr = _core.Esr(value)
    report: dict[str, Any] = {
        "register": "ESR_EL2",
        "value": esr.value,
        "ec": esr.ec,
        "ec_name": _core.exception_class_name(esr.ec) or "reserved",
        "il": int(esr.il),
        "instruction_bits": esr.instruction_length * 8,
        "iss": esr.iss,
        "iss_fields": [
            {"name": name, "hi": hi, "lo": lo, "value": field_value}
            for name, hi, lo, field_value in esr.fields()
        ],
        "sysreg": None,
    }
    if esr.exception_class == _core.ExceptionClass.SysReg64:
        report["sysreg"] = {
            "name": _core.sysreg_name(esr.iss),
            "access": "read" if esr.iss & 1 else "write",
            "rt": (esr.iss >> 5) & 0x1F,
        }
    return report


def _decode_esr(text: str, as_json: bool) -> int:
    value = parse_u64(text)
    if value is None:
        raise UsageError(
            f"armvcpu decode esr: {text!r} is not a 64-bit value "
            "(give hex like 0x5a00002a or decimal)"
        )
    report = esr_report(value)
    if as_json:
        print_json(report)
        return 0
    print(f"ESR_EL2 {report['value']:#x}")
    print(f"  EC  [31:26] {report['ec']:#04x}  {report['ec_name']}")
    print(f"  IL  [25]    {report['il']}     {report['instruction_bits']}-bit instruction")
    print(f"  ISS [24:0]  {report['iss']:#x}")
    for f in report["iss_fields"]:
        bits = f"[{f['hi']}]" if f["hi"] == f["lo"] else f"[{f['hi']}:{f['lo']}]"
        print(f"    {f['name']:<11} {bits:<8} {f['value']:#x}")
    if report["sysreg"] is not None:
        reg = report["sysreg"]
        direction = "MRS (read)" if reg["access"] == "read" else "MSR (write)"
        print(f"  {direction} of {reg['name'] or 'an unnamed register'}, Rt = x{reg['rt']}")
    return 0


def _bench(name: str, runs: int, quick: bool, as_json: bool, **options: Any) -> int:
    from rich.console import Console
    from rich.table import Table

    from .bench import BENCHMARKS

    console = Console(stderr=True)
    with console.status(f"running benchmark {name!r} ({runs} runs per figure)..."):
        figures = BENCHMARKS[name](runs=runs, quick=quick, **options)
    if as_json:
        print_json(figures)
        return 0
    table = Table(title=f"armvcpu bench {name} (median of {runs})")
    for col in ("figure", "median", "unit", "runs", "note"):
        table.add_column(col, justify="right" if col in ("median",) else "left")
    for f in figures:
        table.add_row(f.name, f"{f.value:,.3f}" if f.value < 100 else f"{f.value:,.0f}", f.unit,
                      ", ".join(f"{r:,.3g}" for r in f.runs), f.note)  # fmt: skip
    Console().print(table)
    return 0


# -- run ---------------------------------------------------------------------------------


def _load_guest(path: str) -> Any:
    from ..guests.guest import Guest

    data = Path(path).read_bytes()
    return Guest.from_elf(data) if data[:4] == b"\x7fELF" else Guest.from_binary(data)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..analysis.trace import Trace
    from ..exits import ExitKind
    from ..policy.devices import Pl011
    from ..policy.policy import Policy
    from ..session.hypervisor import Hypervisor

    err = Console(stderr=True)
    image = args.guest or args.kernel
    _check_run_arguments(args, image)
    if _is_linux_image(image):
        return _run_linux(args, image)
    if args.initrd or args.dtb or args.append:
        raise ArmvcpuError(
            f"{image} is not an arm64 Linux Image: --initrd, --append and --dtb are for "
            "Images booted per the arm64 boot protocol (an ELF or raw binary runs as a "
            "bare-metal guest at IPA 0x4000_0000)"
        )
    if args.memory is None:
        args.memory = 256
    guest = _load_guest(image)
    user_policy = load_policy(args.policy) if args.policy else None

    # The guest's PL011 output goes to stdout as it is written (characters,
    # not lines: a prompt without a newline shows at once).
    uart = Pl011()
    shown = 0

    def echo_uart() -> None:
        nonlocal shown
        if len(uart.chars) > shown:
            sys.stdout.write("".join(uart.chars[shown:]))
            sys.stdout.flush()
            shown = len(uart.chars)

    def echo_text(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    policy: Any = uart.policy() if user_policy is None else _chain(user_policy, uart.policy())
    trace = Trace(meta={"guest": str(args.guest or args.kernel)}) if args.trace else None
    last = None
    count = 0
    try:
        with Hypervisor(transport=args.transport, cpu=args.cpu, memory_mb=args.memory,
                        timeout=_session_timeout(args), uart=args.uart, smp=args.smp,
                        host_cpus=args.host_cpus,
                        extra_args=shlex.split(args.qemu_args)) as hv:  # fmt: skip
            hv.load(guest)
            if isinstance(policy, Policy):
                policy.install(hv)
            try:
                for exit in hv.exits(**_run_exits_options(args)):
                    last = exit
                    count += 1
                    if args.uart == "emulate":
                        echo_text(hv.read_guest_console())
                    policy(exit)
                    echo_uart()
                    if trace is not None:
                        if not exit.resolved:
                            exit.resume_default()
                        trace.add(exit)
            finally:
                if isinstance(policy, Policy):
                    policy.close()
    except GuestTimeout as exc:
        err.print(f"armvcpu: timeout: {exc}", markup=False, highlight=False)
        return _finish(trace, args, EXIT_TIMEOUT, count, last)
    except QemuError as exc:
        err.print(f"armvcpu: QEMU failed: {str(exc).splitlines()[0]}", markup=False)
        return _finish(trace, args, EXIT_QEMU, count, last)
    status = EXIT_OK
    if last is None or last.kind != ExitKind.SystemDown:
        what = repr(last.reason) if last is not None else "no exit"
        pc = f" at pc {last.pc:#x}" if last is not None else ""
        err.print(f"armvcpu: the VM stopped at {what}{pc}", markup=False, highlight=False)
        status = EXIT_GUEST_STOPPED
    return _finish(trace, args, status, count, last)


def _session_timeout(args: argparse.Namespace) -> float:
    """The session's own waits (QEMU's gdbstub, ...): --timeout, or 10 s."""
    return 10.0 if args.timeout is None else float(args.timeout)


def _run_exits_options(args: argparse.Namespace) -> dict[str, Any]:
    """How `run` waits for exits: with no --timeout for ever (a guest that
    computes for minutes without an exit or output is not hung); with one,
    the guest's registers changing counts as progress too. Hypercalls: as
    ``hv.exits()`` claims them (all, unless the policy names its IDs)."""
    timeout = math.inf if args.timeout is None else float(args.timeout)
    return {"timeout": timeout, "guest_progress": True}


def _check_run_arguments(args: argparse.Namespace, image: str) -> None:
    """Refuse what ``run`` cannot do before QEMU starts, naming the reason."""
    if args.guest and args.kernel:
        raise UsageError("armvcpu run: give the guest image once (GUEST or --kernel, not both)")
    for option, path in (("guest image", image), ("--initrd", args.initrd), ("--dtb", args.dtb)):
        if path is not None and not Path(path).is_file():
            raise UsageError(f"armvcpu run: {option} {path} not found")
    if args.gic not in (2, 3):
        raise UsageError(f"armvcpu run: --gic {args.gic}: QEMU's virt has a GICv2 (2) or GICv3 (3)")
    if (
        args.smp < 1
        or (args.memory is not None and args.memory < 1)
        or (args.timeout is not None and args.timeout <= 0)
    ):
        raise UsageError("armvcpu run: --smp and --memory must be at least 1, --timeout positive")


def _is_linux_image(path: str) -> bool:
    from ..guests.linux import LinuxImage

    p = Path(path)
    if not p.is_file():
        return False
    with p.open("rb") as f:
        return LinuxImage.is_image(f.read(64))


def _run_linux(args: argparse.Namespace, image: str) -> int:
    """Boot a Linux Image: console to stdout, exits the firmware answers
    (the vGIC, PSCI, SGIs, ...) in the exit log, the rest to the policy."""
    from rich.console import Console

    from ..analysis.trace import Trace
    from ..exits import ExitKind
    from ..policy.policy import Policy
    from ..session.hypervisor import Hypervisor

    err = Console(stderr=True)
    user_policy = load_policy(args.policy) if args.policy else None
    trace = Trace(meta={"kernel": image, "append": args.append}) if args.trace else None
    memory = args.memory if args.memory is not None else 512
    last = None
    count = 0
    with Hypervisor(transport=args.transport, cpu=args.cpu, memory_mb=memory, smp=args.smp,
                    host_cpus=args.host_cpus, timeout=_session_timeout(args),
                    uart="passthrough", gic=args.gic,
                    extra_args=shlex.split(args.qemu_args)) as hv:  # fmt: skip
        show_console = ConsoleEcho(hv)

        hv.watchers.append(show_console)
        if hv.ram is not None:
            hv.enable_exit_log()
        hv.load_linux(image, initrd=args.initrd, append=args.append, dtb=args.dtb,
                      devices=args.device or ["uart"])  # fmt: skip
        if isinstance(user_policy, Policy):
            user_policy.install(hv)
        try:
            for exit in hv.exits(**_run_exits_options(args)):
                last = exit
                count += 1
                if user_policy is not None:
                    apply_policy(user_policy, exit)
                if trace is not None:
                    if not exit.resolved:
                        exit.resume_default()
                    trace.add(exit)
        except GuestTimeout as exc:
            show_console()
            err.print(f"armvcpu: timeout: {exc}", markup=False, highlight=False)
            return _finish_linux(hv, trace, args, EXIT_TIMEOUT, count, last)
        except QemuError as exc:
            show_console()
            err.print(f"armvcpu: QEMU failed: {str(exc).splitlines()[0]}", markup=False)
            return _finish_linux(hv, trace, args, EXIT_QEMU, count, last)
        show_console()
        if last is None or last.kind != ExitKind.SystemDown:
            what = repr(last.reason) if last is not None else "no exit"
            err.print(f"armvcpu: the VM stopped at {what}", markup=False, highlight=False)
            return _finish_linux(hv, trace, args, EXIT_GUEST_STOPPED, count, last)
        if last.reason.reset:
            err.print("armvcpu: the guest asked for a reset (SYSTEM_RESET); the VM ended",
                      markup=False)  # fmt: skip
        return _finish_linux(hv, trace, args, EXIT_OK, count, last)


def _finish_linux(hv: Any, trace: Any, args: argparse.Namespace, status: int, count: int,
                  last: Any) -> int:  # fmt: skip
    if trace is not None and hv.ram is not None:
        trace.add_firmware_log(hv.firmware_exits())
        trace.add_world_switches(hv.world_switches())
    return _finish(trace, args, status, count, last)


def _chain(first: Any, second: Any) -> Any:
    from ..policy.policy import Policy

    if isinstance(first, Policy):
        return first + second

    def both(exit: Any) -> Any:
        value = first(exit)
        if value is not None and not exit.resolved:
            Policy.answer(exit, value)  # as hv.run would: x0, or the loaded value
        if not exit.resolved:
            second(exit)

    return both


_OUTCOMES = {EXIT_OK: "powered-off", EXIT_GUEST_STOPPED: "stopped", EXIT_TIMEOUT: "timeout",
             EXIT_QEMU: "qemu-failed"}  # fmt: skip


def _count(n: int, noun: str) -> str:
    """``1 exit``, ``2 exits``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _finish(trace: Any, args: argparse.Namespace, status: int, count: int, last: Any) -> int:
    path = None
    if trace is not None:
        path = trace.save(args.trace)
        what = _count(len(trace), "exit")
        if len(trace.firmware_log):
            logged = len(trace.firmware_log)
            what = f"{_count(len(trace), 'host exit')} and {logged} logged by the firmware"
        print(f"armvcpu: trace of {what} saved to {path}", file=sys.stderr)
    if args.json:
        # The guest's console may have ended mid-line: the summary gets its own line.
        print(flush=True)
        print_json({"status": status, "outcome": _OUTCOMES[status], "exits": count,
                    "last_exit": repr(last.reason) if last is not None else None,
                    "last_kind": last.kind.name if last is not None else None,
                    "trace": path}, one_line=True)  # fmt: skip
    return status


# -- trace -------------------------------------------------------------------------------


def _trace(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..analysis.trace import Trace

    trace = Trace.load(args.file)
    out = Console()
    if args.action == "summary":
        rows = trace.summary()
        if args.json:
            # Host-answered exits, then (source "firmware") the firmware's log.
            out_rows = [{**plain(r), "source": "host"} for r in rows]
            out_rows += [{**plain(r), "source": "firmware"} for r in trace.firmware_summary()]
            print_json(out_rows)
            return 0
        table = Table(title=f"{args.file}: {_count(len(trace), 'exit')}")
        for col in ("kind", "count", "share", "median handling", "p99 handling"):
            table.add_column(col, justify="left" if col == "kind" else "right")
        for r in rows:
            table.add_row(r.kind, str(r.count), f"{r.share:.1%}", f"{r.median_us:.1f} µs",
                          f"{r.p99_us:.1f} µs")  # fmt: skip
        out.print(table)
        if len(trace.firmware_log):
            fw = Table(title=f"the firmware's exit log: {_count(len(trace.firmware_log), 'exit')}")
            for col in ("kind", "answered by", "count", "per second"):
                fw.add_column(col, justify="left" if col in ("kind", "answered by") else "right")
            for s in trace.firmware_summary():
                fw.add_row(s.kind, s.handler, str(s.count), f"{s.per_second:.0f}")
            out.print(fw)
    elif args.action == "show" and args.firmware:
        return _show_firmware_log(out, trace, args)
    elif args.action == "show":
        t_ns = trace.columns["t_ns"]
        if args.json:
            shown = []
            for i, record in enumerate(trace.exits()):
                if i >= args.limit:
                    break
                shown.append({"seq": record.seq, "t_ns": t_ns[i], "vcpu": record.vcpu_id,
                              "kind": record.reason.kind.name,
                              "exit": repr(record.reason), "pc": record.elr})  # fmt: skip
            print_json(shown)
            return 0
        table = Table(title=f"{args.file}: first {min(args.limit, len(trace))} of {len(trace)}")
        for col in ("#", "t (ms)", "vcpu", "exit", "pc"):
            table.add_column(col, justify="left" if col == "exit" else "right")
        for i, record in enumerate(trace.exits()):
            if i >= args.limit:
                break
            table.add_row(str(record.seq), f"{t_ns[i] / 1e6:.3f}", str(record.vcpu_id),
                          repr(record.reason), f"{record.instruction_address:#x}")  # fmt: skip
        out.print(table)
    else:
        import json

        Path(args.out).write_text(json.dumps(trace.to_chrome_trace()))
        print(f"wrote {args.out}: open it at https://ui.perfetto.dev or chrome://tracing")
    return 0


def _show_firmware_log(out: Any, trace: Any, args: argparse.Namespace) -> int:
    """The firmware's exit log in order, the EL2 scheduler's world switches
    among the exits."""
    from rich.table import Table

    from ..analysis import exitlog

    log = trace.firmware_log
    rows: list[dict[str, Any]] = []
    for row in log[: max(args.limit, 0)]:
        kind = int(row["kind"])
        if kind == exitlog.WORLD_SWITCH:
            esr = int(row["esr"])
            why = esr >> 24
            reason = exitlog.SWITCH_REASONS[why] if why < len(exitlog.SWITCH_REASONS) else "?"
            detail = (f"to VM {(esr >> 8) & 0xFF} vCPU {(esr >> 16) & 0xFF} after "
                      f"{int(row['arg']) / 1e6:.3f} ms ({reason})")  # fmt: skip
        else:
            detail = f"arg={int(row['arg']):#x} esr={int(row['esr']):#x}"
        rows.append({"time_s": float(row["time_s"]), "cpu": int(row["cpu"]), "vm": int(row["vm"]),
                     "vcpu": int(row["vcpu"]), "entry": exitlog.kind_name(kind),
                     "by": exitlog.HANDLERS.get(int(row["handler"]), "?"),
                     "detail": detail})  # fmt: skip
    if args.json:
        print_json(rows)
        return 0
    table = Table(title=f"{args.file}: the firmware's exit log, first {len(rows)} of {len(log)}")
    for col in ("t (ms)", "cpu", "vCPU", "entry", "by", "detail"):
        table.add_column(col, justify="right" if col in ("t (ms)", "cpu") else "left")
    t0 = rows[0]["time_s"] if rows else 0.0
    for r in rows:
        table.add_row(f"{(r['time_s'] - t0) * 1e3:.3f}", str(r["cpu"]), f"{r['vm']}.{r['vcpu']}",
                      r["entry"], r["by"], r["detail"])  # fmt: skip
    out.print(table)
    return 0


# -- doctor ------------------------------------------------------------------------------

_TOOLS = [
    # (program, version flag, Debian package, needed for)
    ("qemu-system-aarch64", "--version", "qemu-system-arm", "running the firmware"),
    ("gdb-multiarch", "--version", "gdb-multiarch", "interactive debugging (armvcpu.tools.gdb)"),
    ("aarch64-linux-gnu-gcc", "--version", "gcc-aarch64-linux-gnu", "building the firmware"),
    ("aarch64-linux-gnu-g++", "--version", "g++-aarch64-linux-gnu", "building the firmware"),
    ("aarch64-linux-gnu-as", "--version", "binutils-aarch64-linux-gnu", "Guest.from_asm"),
    ("aarch64-linux-gnu-ld", "--version", "binutils-aarch64-linux-gnu", "Guest.from_asm"),
    ("dtc", "--version", "device-tree-compiler", "the device-tree tests (decompiling trees)"),
]


def _doctor(as_json: bool) -> int:
    from ..assets import firmware_path

    found: list[dict[str, Any]] = []
    for program, flag, package, purpose in _TOOLS:
        path = shutil.which(program)
        version = None
        if path is not None:
            try:
                text = subprocess.run([path, flag], capture_output=True, text=True,
                                      timeout=20).stdout  # fmt: skip
                version = text.splitlines()[0].strip() if text else "?"
            except (OSError, subprocess.SubprocessError):
                version = "?"
        found.append({"program": program, "path": path, "version": version,
                      "package": package, "for": purpose})  # fmt: skip
    try:
        fw: str | None = str(firmware_path())
    except ArmvcpuError:
        fw = None
    missing = sorted({t["package"] for t in found if t["path"] is None})
    report = {"armvcpu": _core.__version__, "python": sys.version.split()[0],
              "firmware": fw, "tools": found, "missing_packages": missing}  # fmt: skip
    if as_json:
        print_json(report)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"armvcpu {_core.__version__} doctor")
        for col in ("tool", "status", "version", "needed for"):
            table.add_column(col)
        for t in found:
            status = "[green]ok[/green]" if t["path"] else f"[red]missing[/red] ({t['package']})"
            table.add_row(t["program"], status, t["version"] or "", t["for"])
        table.add_row("firmware", "[green]ok[/green]" if fw else "[red]missing[/red]", fw or "",
                      "everything")  # fmt: skip
        console = Console()
        console.print(table)
        if missing:
            console.print(f"Install with: sudo apt-get install {' '.join(missing)}")
        else:
            console.print("Everything armvcpu uses is installed.")
    return 0 if not missing and fw else 1


# -- fuzz ------------------------------------------------------------------------------


def _fuzz(args: argparse.Namespace) -> int:
    from .fuzz.cli import main as fuzz_main

    if (args.workers < 1 or args.programs < 0 or args.length < 0 or args.timeout <= 0
            or not 0 <= args.watchdog <= 3_600_000):  # fmt: skip
        raise ValueError("--workers must be at least 1, --timeout positive, --watchdog 0 to "
                         "3600000 ms, the rest >= 0")  # fmt: skip
    if args.its and args.gic != 3:
        raise ValueError("--its needs a GICv3: QEMU's virt has no ITS with --gic 2")
    return fuzz_main(args)


# -- main --------------------------------------------------------------------------------


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except the ones that say nothing (None,
    False, an empty string): "(default: None)" helps nobody."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, "") or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


#: `armvcpu bench NAME`: what each benchmark measures (bench.py has the details).
BENCH_KINDS = {
    "exits": "exits per second: to Python over each transport, to a C++ hypercall server, "
    "and answered in EL2",
    "startup": "seconds from Hypervisor() to the first exit",
    "trace": "trace summary time over a recorded trace",
    "transports": "round trips per second, shm against gdb",
    "el2": "EL2 instructions per exit (QEMU -icount), to the host and by a fast rule",
    "linux-boot": "a Linux boot to userspace under armvcpu against bare QEMU",
    "boot": "a QEMU command line, whole process, bare QEMU against armvcpu run, alternately "
    "(armvcpu bench boot --help)",
}


def _sub(sub: Any, name: str, help: str, description: str, **kw: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=description, formatter_class=_HelpFormatter, **kw
    )
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="armvcpu",
        description="See and script every VM exit of an AArch64 guest.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"armvcpu {_core.__version__}",
                        help="print armvcpu's version and exit")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="what to do (armvcpu COMMAND --help says more)")  # fmt: skip
    demo = _sub(sub, "demo", "boot the firmware, run the example guest, show its exits",
                "Boot the firmware under QEMU, run the packaged 'hypercalls' guest, answer its "
                "hypercalls and show every exit, then check the checksum the guest computed "
                "from the answers. Exit status 0 if it matches.")  # fmt: skip
    add_json_option(demo, "the exits and the checksum")
    firmware = _sub(sub, "firmware", "print the path of the packaged firmware ELF",
                    "Print the path of the firmware ELF installed with the package (for "
                    "QEMU's -kernel, or gdb-multiarch's symbols).")  # fmt: skip
    add_json_option(firmware, "the path")

    run = _sub(sub, "run", "run a guest under the firmware",
               "Run a guest (an AArch64 ELF, or a raw binary loaded at the start of guest RAM, "
               "or an arm64 Linux Image). Its PL011 output goes to stdout. Exit status: "
               "0 powered off, 1 stopped at an unanswered exit, 2 usage, 3 timeout, "
               "4 QEMU failed.")  # fmt: skip
    run.add_argument("guest", nargs="?", help="the guest image (or give it as --kernel)")
    run.add_argument("--kernel", help="the guest image (as QEMU's -kernel): an ELF, a raw binary, "
                     "or an arm64 Linux Image (booted per the arm64 boot protocol)")  # fmt: skip
    run.add_argument("--initrd", help="an initramfs for the Linux Image")
    run.add_argument("--append", default="", help="the Linux kernel command line")
    run.add_argument("--dtb", help="a device tree to derive a Linux guest's from (default: "
                     "QEMU's own)")  # fmt: skip
    run.add_argument("--device", action="append",
                     choices=["uart", "rtc", "virtio", "fwcfg", "gpio", "pcie"],
                     help="devices passed through to a Linux guest (default: uart); repeat "
                     "for several")  # fmt: skip
    run.add_argument("--gic", type=int, default=3, help="the GIC version QEMU's machine gets "
                     "(2 or 3); the guest gets the same version")  # fmt: skip
    run.add_argument("--qemu-args", default="", help="more QEMU arguments, as one "
                     'shell-quoted string (e.g. a disk: "-drive if=none,id=d0,file=disk.img '
                     '-device virtio-blk-device,drive=d0")')  # fmt: skip
    run.add_argument("--policy", metavar="FILE[:NAME]", help="a Python file defining the "
                     "policy: its `policy` (a Policy or a callable taking an exit) or its one "
                     "Policy subclass; FILE:NAME picks a class or object by name")  # fmt: skip
    run.add_argument("--trace", metavar="OUT", help="record every exit to OUT (.npz)")
    run.add_argument("--timeout", type=float, default=None, help="seconds without progress "
                     "(an exit, console output, or the guest's registers changing) before "
                     "the guest counts as hung; default: no limit")  # fmt: skip
    run.add_argument("--cpu", default="max", help="QEMU CPU model (max, cortex-a57, ...)")
    run.add_argument("--smp", type=int, default=1, help="CPUs, and vCPUs of the VM (the guest "
                     "starts them with PSCI CPU_ON)")  # fmt: skip
    run.add_argument("--host-cpus", type=int, default=None, metavar="M",
                     help="the machine's CPUs (default: --smp); the vCPUs time-share "
                     "them")  # fmt: skip
    run.add_argument("-m", "--memory", type=int, default=None,
                     help="machine RAM in MiB (default: 256; 512 for a Linux Image)")  # fmt: skip
    run.add_argument("--transport", choices=["shm", "gdb"], default="shm",
                     help="how exits reach Python: shm (guest RAM shared with the host, "
                     "fastest) or gdb (QEMU's gdbstub, as a real board would)")  # fmt: skip
    run.add_argument("--uart", choices=["host", "emulate", "passthrough"], default="host",
                     help="the guest's PL011: a Python model over exits (host), emulated in "
                     "EL2, or the real one")  # fmt: skip
    run.add_argument("--json", action="store_true", help="after the guest's console output, "
                     "print a JSON summary of the run (status, exits, last exit) on stdout "
                     "as its last line")  # fmt: skip

    trace = _sub(
        sub,
        "trace",
        "inspect a recorded trace",
        "Inspect a trace recorded with `armvcpu run --trace OUT` or Trace.save().",
    )
    tsub = trace.add_subparsers(dest="action", required=True, metavar="ACTION",
                                help="show, summary or export")  # fmt: skip
    show = _sub(
        tsub,
        "show",
        "the exits, one per line",
        "The trace's exits in order: sequence number, time, vCPU, exit and pc.",
    )
    show.add_argument("file", help="the trace (.npz)")
    show.add_argument("--limit", type=int, default=50, help="show at most this many exits")
    show.add_argument("--firmware", action="store_true",
                      help="the firmware's exit log instead (a run with it: every exit, and the "
                      "world switches of vCPUs time-sharing CPUs, in order)")  # fmt: skip
    add_json_option(show, "the exits")
    summary = _sub(tsub, "summary", "exits per kind and handling times",
                   "Exits per kind with their share and handling times; with the firmware's "
                   "exit log (a Linux run), the exits it answered by itself too.")  # fmt: skip
    summary.add_argument("file", help="the trace (.npz)")
    add_json_option(summary, "the rows (host rows, then the firmware's)")
    export = _sub(tsub, "export", "Chrome/Perfetto trace-event JSON",
                  "Write the trace as Chrome trace-event JSON, for ui.perfetto.dev or "
                  "chrome://tracing.")  # fmt: skip
    export.add_argument("file", help="the trace (.npz)")
    export.add_argument("out", help="the JSON file to write")

    decode = _sub(
        sub,
        "decode",
        "decode a syndrome value",
        "Name every field of a syndrome value per the Arm ARM: ESR_EL2's exception "
        "class, IL and the class's ISS fields; for a trapped MRS/MSR, the register.",
    )
    decode.add_argument("register", choices=["esr"], help="which register the value is from")
    decode.add_argument("value", help="the value, hex (0x5a00002a) or decimal; 64 bits at most")
    add_json_option(decode, "the fields")

    bench = _sub(
        sub,
        "bench",
        "run a benchmark and print its figures",
        "Run a benchmark and print its figures (medians; measured, never asserted). "
        "Benchmarks: " + "; ".join(f"{k}: {v}" for k, v in BENCH_KINDS.items()) + ".",
    )
    bench.add_argument("name", choices=list(BENCH_KINDS), metavar="NAME",
                       help="the benchmark: " + ", ".join(BENCH_KINDS))  # fmt: skip
    bench.add_argument("--kernel", help="linux-boot: the kernel Image (default: Debian's)")
    bench.add_argument("--initrd", help="linux-boot: an initramfs that prints ARMVCPU-MARKER "
                       "(default: a busybox one)")  # fmt: skip
    bench.add_argument("--cpu", default="cortex-a57", help="linux-boot: QEMU CPU model")
    bench.add_argument("--smp", type=int, default=1, help="linux-boot: CPUs")
    bench.add_argument("--append", default="console=ttyAMA0", help="linux-boot: command line")
    add_json_option(bench, "the figures")
    bench.add_argument("--runs", type=int, default=3, help="runs per figure (median reported)")
    bench.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run)")

    gdb = _sub(sub, "gdb", "attach gdb-multiarch (with armvcpu.tools.gdb) to a session",
               "Attach gdb-multiarch to a running Hypervisor's gdbstub socket (from "
               "hv.release_gdbstub()); see docs/gdb.md. gdb-multiarch's own options go after "
               "`--`, e.g. armvcpu gdb SOCKET -- -batch -ex 'armvcpu vcpus'.")  # fmt: skip
    gdb.add_argument("socket", help="the gdbstub socket path")
    gdb.add_argument("gdb_args", nargs="*", metavar="-- GDB_ARGS",
                     help="more gdb-multiarch arguments, after `--`")  # fmt: skip

    doctor = _sub(sub, "doctor", "check the tools armvcpu needs",
                  "Check the programs armvcpu uses (QEMU, the cross toolchain, gdb-multiarch, "
                  "dtc) and the packaged firmware; name the Debian packages to install. Exit "
                  "status 0 when everything is there, 1 otherwise.")  # fmt: skip
    add_json_option(doctor, "the report")

    fuzz = _sub(sub, "fuzz", "run random guest programs; find hypervisor failures",
                "Run random EL1 programs under the firmware and classify how each ends "
                "(docs/fuzzing.md). Exit status: 0 no hypervisor failure, 1 failures found, "
                "2 usage, 130 interrupted.")  # fmt: skip
    fuzz.add_argument("--seed", type=int, help="campaign seed (default: random, printed)")
    fuzz.add_argument("--programs", type=int, default=1000, help="how many programs")
    fuzz.add_argument("--workers", type=int, default=2, help="QEMU instances at once")
    fuzz.add_argument("--length", type=int, default=32, help="items per program body")
    fuzz.add_argument("--timeout", type=float, default=0.5,
                      help="wall seconds per program (one still making exits, or a hang the "
                      "watchdog cannot end)")  # fmt: skip
    fuzz.add_argument("--watchdog", type=float, default=100, metavar="MS",
                      help="milliseconds of guest time without an exit that make a hang, ended "
                      "by the firmware (0: off, the host's --timeout alone)")  # fmt: skip
    fuzz.add_argument("--budget", type=int, default=200, help="exits per program")
    fuzz.add_argument("--no-reuse", action="store_true", help="a fresh QEMU for every program")
    fuzz.add_argument("--gic", type=int, choices=(2, 3), default=3,
                      help="the machine's GIC version (2: a GICv2; each program in a fresh "
                      "QEMU)")  # fmt: skip
    fuzz.add_argument("--its", action="store_true",
                      help="the ITS surface: some programs drive the GICv3 ITS (LPI tables, "
                      "ITS commands, LPIs), each in a fresh QEMU")  # fmt: skip
    fuzz.add_argument("--host-answers", action="store_true",
                      help="answer and check every exit in the host (by default the firmware "
                      "answers those that do not end a program, in a reused session)")  # fmt: skip
    add_json_option(fuzz, "the campaign summary")
    fuzz.add_argument("--save-failures", metavar="DIR", help="write each failure's program here")
    fuzz.add_argument("--replay", metavar="SEED:INDEX", help="rerun one program, verbosely")
    fuzz.add_argument("--coverage", action="store_true",
                      help="run the firmware's coverage build; keep and mutate programs that "
                      "reach new code (coverage-guided)")  # fmt: skip
    fuzz.add_argument(
        "--corpus",
        metavar="DIR",
        help="keep the guided campaign's corpus here (reloaded if it exists)",
    )
    fuzz.add_argument("--coverage-report", metavar="DIR",
                      help="write the firmware's coverage by source line (HTML and text); "
                      "implies --coverage")  # fmt: skip
    fuzz.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="run on a Dask cluster (pip install 'armvcpu[cluster]')",
    )
    return parser


def _subcommand(argv: list[str]) -> str | None:
    """The subcommand argv names (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def program() -> NoReturn:
    """The ``armvcpu`` command (and ``python -m armvcpu``): :func:`main`, then
    the process ends.

    After ``armvcpu run``, a drop-in for a QEMU command whose user pays for the
    whole process, it ends without the interpreter's teardown of its ~160
    modules (15-28 ms after every run, measured). What that teardown must do
    is done first: the exit handlers run (weakref finalizers run from one, and
    every open session closes there), stdio is flushed; if a thread that is
    not a daemon is still running, the ordinary exit waits for it instead."""
    status = main()
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if _subcommand(sys.argv[1:]) == "run" and all(t.daemon for t in others):
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # closed, or a closed pipe
                stream.flush()
        os._exit(status)
    raise SystemExit(status)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if _subcommand(argv) == "run":
        from . import run_qemu

        rest = argv[argv.index("run") + 1 :]
        if run_qemu.is_qemu_command_line(rest):
            try:
                return run_qemu.main(rest)
            except (ArmvcpuError, ValueError, FileNotFoundError) as exc:
                print(f"armvcpu run: {exc}", file=sys.stderr)
                return EXIT_USAGE
            except KeyboardInterrupt:
                print("armvcpu: interrupted", file=sys.stderr)
                return 130
    if _subcommand(argv) == "bench" and argv[argv.index("bench") + 1 :][:1] == ["boot"]:
        # QEMU's options follow: they are not ours for argparse to read.
        from . import bench_boot

        return bench_boot.main(argv[argv.index("bench") + 2 :])
    # Built only now: the drop-in run above needs none of it (20 ms a start).
    parser = _parser()
    if _subcommand(argv) == "gdb":
        # gdb's own options (-batch, -ex ...) look like ours to argparse: they
        # must follow `--`, and the error says so rather than "unrecognized".
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            print(f"armvcpu gdb: {' '.join(unknown)}: gdb-multiarch's options go after `--`: "
                  f"armvcpu gdb SOCKET -- {' '.join(unknown)}", file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
    else:
        args = parser.parse_args(argv)
    try:
        return _dispatch(parser, args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except (ArmvcpuError, ValueError, FileNotFoundError) as exc:
        print(f"armvcpu: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("armvcpu: interrupted", file=sys.stderr)
        return 130


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import main as demo_main

        return demo_main(as_json=args.json)
    if args.command == "firmware":
        from ..assets import firmware_path

        path = firmware_path()
        if args.json:
            print_json({"firmware": path})
        else:
            print(path)
        return 0
    if args.command == "run":
        if not (args.guest or args.kernel):
            parser.error("run needs a guest image (GUEST or --kernel)")
        return _run(args)
    if args.command == "trace":
        return _trace(args)
    if args.command == "bench":
        options: dict[str, Any] = {}
        if args.name == "linux-boot":
            options = {"kernel": args.kernel, "initrd": args.initrd, "cpu": args.cpu,
                       "smp": args.smp, "append": args.append}  # fmt: skip
        elif args.kernel or args.initrd:
            parser.error("--kernel/--initrd are for the linux-boot benchmark")
        return _bench(args.name, args.runs, args.quick, args.json, **options)
    if args.command == "gdb":
        from .gdb_launch import launch

        return launch(args.socket, extra=args.gdb_args)
    if args.command == "doctor":
        return _doctor(args.json)
    if args.command == "fuzz":
        return _fuzz(args)
    if args.command == "decode":
        return _decode_esr(args.value, args.json)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse checked it
