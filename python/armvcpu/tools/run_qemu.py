"""``armvcpu run`` with QEMU's own command line: the drop-in for ``qemu-system-aarch64``.

Replace ``qemu-system-aarch64`` by ``armvcpu run`` in a command line for ``-M
virt`` and the guest runs under the firmware, with the machine's memory map,
QEMU's boot paths and QEMU's device tree, and every exit visible::

    armvcpu run -M virt -cpu max -m 512M -smp 2 -nographic \\
        -kernel Image -initrd initrd.gz -append "console=ttyAMA0"

armvcpu's own options (``--policy``, ``--trace``, ``--timeout``, ``--transport``,
``--json``, ``--device uart|rtc|virtio|fwcfg|gpio`` to pass through fewer, and
``--host-cpus M``: the machine gets M CPUs, which the guest's ``-smp N`` vCPUs
time-share) may stand anywhere among QEMU's. When QEMU ends the run itself (PSCI SYSTEM_OFF, a
device that exits QEMU with a code), the exit status is QEMU's.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from ..errors import ArmvcpuError, GuestTimeout, QemuError
from ..session.qemu_cmdline import CommandLineError, VirtCommandLine, parse_qemu_args
from .console_echo import ConsoleEcho

if TYPE_CHECKING:
    from ..analysis.trace import Trace

#: armvcpu's options in this mode, and whether each takes a value.
OWN_OPTIONS = {"--policy": True, "--trace": True, "--timeout": True, "--transport": True,
               "--json": False, "--host-cpus": True}  # fmt: skip
PASSTHROUGH = ("uart", "rtc", "virtio", "fwcfg", "gpio", "pcie")
EXIT_TIMEOUT = 3
_NO_LIMIT = 365 * 24 * 3600.0
EXIT_GUEST_STOPPED = 1


def is_qemu_command_line(argv: list[str]) -> bool:
    """A ``run`` command line in QEMU's spelling: it names the machine, as every
    QEMU command line for ``virt`` must (``-M``, ``-machine``, ``--machine``)."""
    return any(a.split("=", 1)[0] in ("-M", "-machine", "--machine", "--M") for a in argv)


def split(argv: list[str]) -> tuple[list[str], list[str]]:
    """armvcpu's options and QEMU's, in their order. ``--device`` is armvcpu's
    when its value is one of PASSTHROUGH (fewer passed-through devices), else
    QEMU's ``-device``."""
    own: list[str] = []
    qemu: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, _ = arg.partition("=")
        if name in OWN_OPTIONS:
            takes = OWN_OPTIONS[name] and not eq
            own += argv[i : i + 1 + takes]
            i += 1 + takes
        elif name == "--device" and (argv[i + 1 : i + 2] or [""])[0] in PASSTHROUGH and not eq:
            own += argv[i : i + 2]
            i += 2
        else:
            qemu.append(arg)
            i += 1
    return own, qemu


def _own_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="armvcpu run", add_help=False)
    parser.add_argument("--policy")
    parser.add_argument("--trace")
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--transport", choices=["shm", "gdb"], default="shm")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--device", action="append", choices=list(PASSTHROUGH))
    # The machine's CPUs; the guest's -smp N vCPUs time-share them.
    parser.add_argument("--host-cpus", type=int, default=None)
    return parser


def main(argv: list[str]) -> int:
    """``armvcpu run`` with a QEMU command line; returns the exit status."""
    own, qemu = split(argv)
    try:
        config = parse_qemu_args(qemu)
    except CommandLineError as exc:
        print(f"armvcpu run: {exc}", file=sys.stderr)
        return 2
    args = _own_parser().parse_args(own)
    return run(config, args)


def _type_stdin_into(hv: Any) -> None:
    """What arrives on stdin goes to the guest's console, as with QEMU's
    ``-nographic``/``-serial stdio`` (a thread: reading stdin blocks)."""

    def copy() -> None:
        # The file descriptor, not sys.stdin: a daemon thread blocked inside
        # the buffered reader holds its lock, and Python's exit would abort.
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, ValueError, OSError):
            return
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            if not data:
                return
            try:
                hv.type_console(data)
            except ArmvcpuError:  # the session has ended: nothing to type into
                return

    threading.Thread(target=copy, name="armvcpu-stdin", daemon=True).start()


def run(config: VirtCommandLine, args: argparse.Namespace) -> int:
    from ..exits import ExitKind
    from ..policy.policy import Policy
    from ..session.hypervisor import Hypervisor
    from .policy_file import apply_policy, load_policy

    user_policy = load_policy(args.policy) if args.policy else None
    trace: Trace | None = None
    if args.trace:
        from ..analysis.trace import Trace  # with numpy: only when a trace is kept

        trace = Trace(meta={"kernel": config.kernel, "append": config.append})
    extra = [*config.default_devices(), *config.qemu_args]
    kernel = config.kernel
    if config.bios is not None and kernel is not None:
        # As QEMU does for -bios with -kernel: the kernel, initramfs and
        # command line go into fw_cfg (passed through) for the guest's
        # firmware to load; the guest starts in flash.
        extra += ["-kernel", os.path.abspath(kernel), "-append", config.append]
        extra += ["-initrd", os.path.abspath(config.initrd)] if config.initrd else []
        kernel = None
    # No progress timeout unless asked for: a guest may compute for minutes
    # (a year stands for "no limit" where a number of seconds is needed).
    timeout = args.timeout if args.timeout is not None else _NO_LIMIT
    last = None
    count = 0
    reported = 0  # DMA faults already printed
    status = 0
    with Hypervisor(transport=args.transport, cpu=config.cpu or "max", smp=config.smp,
                    host_cpus=args.host_cpus, memory_mb=config.memory_mb, uart="passthrough",
                    extra_args=extra,
                    quiet=True, bios=config.bios, console_input=True,
                    mte=config.mte, iommu=config.iommu, its=config.its,
                    gic=config.gic_version) as hv:  # fmt: skip
        show_console = ConsoleEcho(hv)

        hv.watchers.append(show_console)
        if trace is not None and hv.ram is not None:
            hv.enable_exit_log()
        hv.boot(kernel, initrd=config.initrd if kernel else None, append=config.append,
                dtb=config.dtb,
                devices=args.device or PASSTHROUGH)  # fmt: skip
        _type_stdin_into(hv)
        # As on bare QEMU, no hypercall reaches the host unless the policy
        # asks for it: a Policy claims the IDs it names (install), any other
        # callable sees every exit, so every ID; the rest get NOT_SUPPORTED
        # in EL2.
        if isinstance(user_policy, Policy):
            user_policy.install(hv)
        elif user_policy is not None:
            hv.claim_hypercalls(all=True)
        try:
            for exit in hv.exits(timeout=timeout, claim_hypercalls=False):
                last = exit
                count += 1
                if user_policy is not None:
                    apply_policy(user_policy, exit)
                if exit.kind == ExitKind.ExternalInterrupt and config.iommu:
                    faults = hv.dma_faults()  # read once: the firmware adds to it
                    for fault in faults[reported:]:
                        print(f"armvcpu: {fault}", file=sys.stderr, flush=True)
                    reported = len(faults)
                if not exit.resolved and exit.kind == ExitKind.Hypercall:
                    # Nobody claimed it: NOT_SUPPORTED, as SMCCC says and as
                    # QEMU answers on the bare machine.
                    exit.resume(x0=0xFFFF_FFFF_FFFF_FFFF)
                if trace is not None:
                    if not exit.resolved:
                        exit.resume_default()
                    trace.add(exit)
        except GuestTimeout as exc:
            show_console()
            print(f"armvcpu: timeout: {exc}", file=sys.stderr)
            status = EXIT_TIMEOUT
        except QemuError as exc:
            show_console()
            code = hv.qemu.proc.returncode if hv.qemu is not None else None
            if code is not None and code >= 0:
                status = code  # QEMU ended the run itself (e.g. a test device): its status
            else:
                print(f"armvcpu: QEMU failed: {str(exc).splitlines()[0]}", file=sys.stderr)
                status = 4
        if hv.qemu is not None:
            hv.qemu.wait(5.0)  # it powers off after the last exit, its output all written
        show_console()
        if status == 0 and (last is None or last.kind != ExitKind.SystemDown):
            what = repr(last.reason) if last is not None else "no exit"
            print(f"armvcpu: the VM stopped at {what}", file=sys.stderr)
            status = EXIT_GUEST_STOPPED
        if trace is not None:
            if hv.ram is not None:
                trace.add_firmware_log(hv.firmware_exits())
                trace.add_world_switches(hv.world_switches())
            path = trace.save(args.trace)
            print(f"armvcpu: trace saved to {path}", file=sys.stderr)
    if args.json:
        from .jsonout import print_json

        print(flush=True)  # the guest's console may have ended mid-line
        print_json({"status": status, "exits": count,
                    "last_kind": last.kind.name if last is not None else None},
                   one_line=True)  # fmt: skip
    return status
