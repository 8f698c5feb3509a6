"""The ``armvcpu`` command line.

armvcpu demo                          the example guest and its exits
armvcpu run GUEST [--policy P.py] [--trace OUT] [--timeout S] ...
armvcpu run --kernel Image [--initrd F] [--append ARGS] [--dtb F] [--smp N] [-m MiB]
armvcpu trace show|summary|export FILE
armvcpu decode esr VALUE              every field of a syndrome, named
armvcpu bench exits|startup [--json]  benchmarks (figures, never asserted)
armvcpu doctor [--json]               what is installed, and what to install
armvcpu fuzz [--seed S] [--programs N] [--workers W] [--json] | --replay SEED:INDEX
armvcpu firmware                      the packaged firmware ELF's path
"""

from __future__ import annotations

import argparse
import json
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .. import _core
from ..errors import ArmvcpuError, GuestTimeout, QemuError

# Exit statuses of `armvcpu run`.
EXIT_OK = 0  # the guest powered off (PSCI SYSTEM_OFF) or reset
EXIT_GUEST_STOPPED = 1  # the VM was stopped at an exit nobody could answer
EXIT_USAGE = 2  # bad arguments or files
EXIT_TIMEOUT = 3  # no exit within --timeout
EXIT_QEMU = 4  # QEMU failed or died


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


def _bench(name: str, runs: int, quick: bool, as_json: bool, **options: Any) -> int:
    from rich.console import Console
    from rich.table import Table

    from .bench import BENCHMARKS, as_dicts

    console = Console(stderr=True)
    with console.status(f"running benchmark {name!r} ({runs} runs per figure)..."):
        figures = BENCHMARKS[name](runs=runs, quick=quick, **options)
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


# -- run ---------------------------------------------------------------------------------


def _load_policy(path: str) -> Any:
    """A policy file defines `policy` (a Policy or any callable taking an exit)."""
    from ..policy.policy import Policy

    try:
        namespace = runpy.run_path(path)
    except FileNotFoundError:
        raise ArmvcpuError(f"policy file {path} not found") from None
    except Exception as exc:
        raise ArmvcpuError(f"policy file {path} failed to load: {exc!r}") from exc
    policy = namespace.get("policy")
    if policy is None:
        policies = [
            v for v in namespace.values()
            if isinstance(v, type) and issubclass(v, Policy) and v is not Policy
        ]  # fmt: skip
        if len(policies) == 1:
            policy = policies[0]()
    if policy is None or not callable(policy):
        raise ArmvcpuError(f"{path} defines no `policy` (a Policy or a callable taking an exit)")
    return policy


def _load_guest(path: str) -> Any:
    from ..guests.guest import Guest

    p = Path(path)
    if not p.is_file():
        raise ArmvcpuError(f"guest image {path} not found")
    data = p.read_bytes()
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
    if image is None:
        raise ArmvcpuError("name the guest image (armvcpu run GUEST, or --kernel IMAGE)")
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
    user_policy = _load_policy(args.policy) if args.policy else None

    # The guest's PL011 output goes to stdout as it is written.
    def echo(ch: str) -> None:
        sys.stdout.write(ch)
        sys.stdout.flush()

    def echo_text(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    uart = Pl011(on_output=echo)
    policy: Any = uart.policy() if user_policy is None else _chain(user_policy, uart.policy())
    trace = Trace(meta={"guest": str(args.guest or args.kernel)}) if args.trace else None
    last = None
    try:
        with Hypervisor(transport=args.transport, cpu=args.cpu, memory_mb=args.memory,
                        timeout=args.timeout, uart=args.uart, smp=args.smp,
                        extra_args=shlex.split(args.qemu_args)) as hv:  # fmt: skip
            hv.load(guest)
            if isinstance(policy, Policy):
                policy.install(hv)
            for exit in hv.exits():
                last = exit
                if args.uart == "emulate":
                    echo_text(hv.read_guest_console())
                policy(exit)
                if trace is not None:
                    if not exit.resolved:
                        exit.resume_default()
                    trace.add(exit)
    except GuestTimeout as exc:
        err.print(f"armvcpu: timeout: {exc}", markup=False, highlight=False)
        return _finish(trace, args, EXIT_TIMEOUT)
    except QemuError as exc:
        err.print(f"armvcpu: QEMU failed: {str(exc).splitlines()[0]}", markup=False)
        return _finish(trace, args, EXIT_QEMU)
    status = EXIT_OK
    if last is None or last.kind != ExitKind.SystemDown:
        what = repr(last.reason) if last is not None else "no exit"
        pc = f" at pc {last.pc:#x}" if last is not None else ""
        err.print(f"armvcpu: the VM stopped at {what}{pc}", markup=False, highlight=False)
        status = EXIT_GUEST_STOPPED
    return _finish(trace, args, status)


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
    user_policy = _load_policy(args.policy) if args.policy else None
    trace = Trace(meta={"kernel": image, "append": args.append}) if args.trace else None
    memory = args.memory if args.memory is not None else 512
    last = None
    with Hypervisor(transport=args.transport, cpu=args.cpu, memory_mb=memory, smp=args.smp,
                    timeout=args.timeout, uart="passthrough", gic=args.gic,
                    extra_args=shlex.split(args.qemu_args)) as hv:  # fmt: skip
        shown = 0

        def show_console() -> None:
            nonlocal shown
            text = hv.console
            if len(text) > shown:
                sys.stdout.write(text[shown:])
                sys.stdout.flush()
                shown = len(text)

        hv.watchers.append(show_console)
        if hv.ram is not None:
            hv.enable_exit_log()
        hv.load_linux(image, initrd=args.initrd, append=args.append, dtb=args.dtb,
                      devices=args.device or ["uart"])  # fmt: skip
        if isinstance(user_policy, Policy):
            user_policy.install(hv)
        try:
            for exit in hv.exits():
                last = exit
                if user_policy is not None:
                    value = user_policy(exit)
                    if value is not None and not exit.resolved:
                        Policy.answer(exit, value)
                if not exit.resolved and exit.kind == ExitKind.Hypercall and (exit.reason.nr >> 31):
                    # An SMCCC fast call nobody answered (e.g. a guest asking
                    # which hypervisor this is): NOT_SUPPORTED, as SMCCC says.
                    exit.resume(x0=0xFFFF_FFFF_FFFF_FFFF)
                if trace is not None:
                    if not exit.resolved:
                        exit.resume_default()
                    trace.add(exit)
        except GuestTimeout as exc:
            show_console()
            err.print(f"armvcpu: timeout: {exc}", markup=False, highlight=False)
            return _finish_linux(hv, trace, args, EXIT_TIMEOUT)
        except QemuError as exc:
            show_console()
            err.print(f"armvcpu: QEMU failed: {str(exc).splitlines()[0]}", markup=False)
            return _finish_linux(hv, trace, args, EXIT_QEMU)
        show_console()
        if last is None or last.kind != ExitKind.SystemDown:
            what = repr(last.reason) if last is not None else "no exit"
            err.print(f"armvcpu: the VM stopped at {what}", markup=False, highlight=False)
            return _finish_linux(hv, trace, args, EXIT_GUEST_STOPPED)
        if last.reason.reset:
            err.print("armvcpu: the guest asked for a reset (SYSTEM_RESET); the VM ended",
                      markup=False)  # fmt: skip
        return _finish_linux(hv, trace, args, EXIT_OK)


def _finish_linux(hv: Any, trace: Any, args: argparse.Namespace, status: int) -> int:
    if trace is not None and hv.ram is not None:
        trace.add_firmware_log(hv.firmware_exits())
    return _finish(trace, args, status)


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


def _finish(trace: Any, args: argparse.Namespace, status: int) -> int:
    if trace is not None:
        path = trace.save(args.trace)
        what = f"{len(trace)} exits"
        if len(trace.firmware_log):
            what = f"{len(trace)} host exits and {len(trace.firmware_log)} logged by the firmware"
        print(f"armvcpu: trace of {what} saved to {path}", file=sys.stderr)
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
            out_rows = [{**r.__dict__, "source": "host"} for r in rows]
            out_rows += [{**r.__dict__, "source": "firmware"} for r in trace.firmware_summary()]
            print(json.dumps(out_rows, indent=2))
            return 0
        table = Table(title=f"{args.file}: {len(trace)} exits")
        for col in ("kind", "count", "share", "median handling", "p99 handling"):
            table.add_column(col, justify="left" if col == "kind" else "right")
        for r in rows:
            table.add_row(r.kind, str(r.count), f"{r.share:.1%}", f"{r.median_us:.1f} µs",
                          f"{r.p99_us:.1f} µs")  # fmt: skip
        out.print(table)
        if len(trace.firmware_log):
            fw = Table(title=f"the firmware's exit log: {len(trace.firmware_log)} exits")
            for col in ("kind", "answered by", "count", "per second"):
                fw.add_column(col, justify="left" if col in ("kind", "answered by") else "right")
            for s in trace.firmware_summary():
                fw.add_row(s.kind, s.handler, str(s.count), f"{s.per_second:.0f}")
            out.print(fw)
    elif args.action == "show":
        t_ns = trace.columns["t_ns"]
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
        Path(args.out).write_text(json.dumps(trace.to_chrome_trace()))
        print(f"wrote {args.out}: open it at https://ui.perfetto.dev or chrome://tracing")
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
        print(json.dumps(report, indent=2))
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

    if args.workers < 1 or args.programs < 0 or args.length < 0 or args.timeout <= 0:
        raise ValueError("--workers must be at least 1, --timeout positive, the rest >= 0")
    return fuzz_main(args)


# -- main --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="armvcpu", description="See and script every VM exit "
                                     "of an AArch64 guest.")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"armvcpu {_core.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="boot the firmware, run the example guest, show its exits")
    sub.add_parser("firmware", help="print the path of the packaged firmware ELF")

    run = sub.add_parser("run", help="run a guest under the firmware",
                         description="Run a guest (an AArch64 ELF, or a raw binary loaded at "
                         "the start of guest RAM). Its PL011 output goes to stdout. Exit "
                         "status: 0 powered off, 1 stopped at an unanswered exit, 2 usage, "
                         "3 timeout, 4 QEMU failed.")  # fmt: skip
    run.add_argument("guest", nargs="?", help="the guest image")
    run.add_argument(
        "--kernel",
        help="the guest image (as QEMU's -kernel): an ELF, a raw "
        "binary, or an arm64 Linux Image (booted per the arm64 boot protocol)",
    )
    run.add_argument("--initrd", help="an initramfs for the Linux Image")
    run.add_argument("--append", default="", help="the Linux kernel command line")
    run.add_argument("--dtb", help="a device tree to derive the guest's from (default: QEMU's)")
    run.add_argument(
        "--device",
        action="append",
        choices=["uart", "rtc", "virtio"],
        help="devices passed through to a Linux guest (default: uart); repeat for several",
    )
    run.add_argument("--gic", type=int, default=3, help="GIC version (armvcpu drives GICv3)")
    run.add_argument(
        "--qemu-args",
        default="",
        help="more QEMU arguments, as one shell-quoted string (e.g. a disk: "
        '"-drive if=none,id=d0,file=disk.img -device virtio-blk-device,drive=d0")',
    )
    run.add_argument("--policy", help="a Python file defining `policy`")
    run.add_argument("--trace", metavar="OUT", help="record every exit to OUT (.npz)")
    run.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds without progress (an exit, or console output) before "
        "the guest counts as hung",
    )
    run.add_argument("--cpu", default="max", help="QEMU CPU model (max, cortex-a57, ...)")
    run.add_argument(
        "--smp", type=int, default=1,
        help="CPUs, and vCPUs of the VM (the guest starts them with PSCI CPU_ON)",
    )  # fmt: skip
    run.add_argument(
        "-m",
        "--memory",
        type=int,
        default=None,
        help="machine RAM in MiB (default 256; 512 for a Linux Image)",
    )
    run.add_argument("--transport", choices=["shm", "gdb"], default="shm")
    run.add_argument("--uart", choices=["host", "emulate", "passthrough"], default="host",
                     help="the guest's PL011: a Python model over exits (host), emulated in "
                     "EL2, or the real one")  # fmt: skip

    trace = sub.add_parser("trace", help="inspect a recorded trace")
    tsub = trace.add_subparsers(dest="action", required=True)
    show = tsub.add_parser("show", help="the exits, one per line")
    show.add_argument("file")
    show.add_argument("--limit", type=int, default=50)
    summary = tsub.add_parser("summary", help="exits per kind and handling times")
    summary.add_argument("file")
    summary.add_argument("--json", action="store_true")
    export = tsub.add_parser("export", help="Chrome/Perfetto trace-event JSON")
    export.add_argument("file")
    export.add_argument("out")

    decode = sub.add_parser("decode", help="decode a syndrome value")
    decode.add_argument("register", choices=["esr"])
    decode.add_argument("value", help="e.g. 0x5a000000")

    bench = sub.add_parser("bench", help="run a benchmark and print its figures")
    bench.add_argument(
        "name", choices=["exits", "startup", "trace", "transports", "el2", "linux-boot"]
    )
    bench.add_argument("--kernel", help="linux-boot: the kernel Image (default: Debian's)")
    bench.add_argument(
        "--initrd",
        help="linux-boot: an initramfs that prints ARMVCPU-MARKER (default: a busybox one)",
    )
    bench.add_argument("--cpu", default="cortex-a57", help="linux-boot: QEMU CPU model")
    bench.add_argument("--smp", type=int, default=1, help="linux-boot: CPUs")
    bench.add_argument("--append", default="console=ttyAMA0", help="linux-boot: command line")
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.add_argument("--runs", type=int, default=3, help="runs per figure (median reported)")
    bench.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run)")

    gdb = sub.add_parser("gdb", help="attach gdb-multiarch (with armvcpu.tools.gdb) to a session",
                         description="Attach gdb-multiarch to a running Hypervisor's gdbstub "
                         "socket (from hv.release_gdbstub()); see docs/gdb.md.")  # fmt: skip
    gdb.add_argument("socket", help="the gdbstub socket path")
    gdb.add_argument("gdb_args", nargs="*", help="more gdb-multiarch arguments")

    doctor = sub.add_parser("doctor", help="check the tools armvcpu needs")
    doctor.add_argument("--json", action="store_true")

    fuzz = sub.add_parser("fuzz", help="run random guest programs; find hypervisor failures",
                          description="Run random EL1 programs under the firmware and classify "
                          "how each ends (docs/fuzzing.md). Exit status: 0 no hypervisor "
                          "failure, 1 failures found, 2 usage, 130 interrupted.")  # fmt: skip
    fuzz.add_argument("--seed", type=int, help="campaign seed (default: random, printed)")
    fuzz.add_argument("--programs", type=int, default=1000, help="how many programs")
    fuzz.add_argument("--workers", type=int, default=2, help="QEMU instances at once")
    fuzz.add_argument("--length", type=int, default=32, help="items per program body")
    fuzz.add_argument("--timeout", type=float, default=0.5, help="seconds per program (a hang)")
    fuzz.add_argument("--budget", type=int, default=200, help="exits per program")
    fuzz.add_argument("--no-reuse", action="store_true", help="a fresh QEMU for every program")
    fuzz.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    fuzz.add_argument("--save-failures", metavar="DIR", help="write each failure's program here")
    fuzz.add_argument("--replay", metavar="SEED:INDEX", help="rerun one program, verbosely")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import main as demo_main

            return demo_main()
        if args.command == "firmware":
            from ..assets import firmware_path

            print(firmware_path())
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
            try:
                return _decode_esr(args.value)
            except ValueError:
                parser.error(f"not a number: {args.value!r}")
    except (ArmvcpuError, ValueError, FileNotFoundError) as exc:
        print(f"armvcpu: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("armvcpu: interrupted", file=sys.stderr)
        return 130
    return 0
