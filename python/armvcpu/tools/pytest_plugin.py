"""pytest plugin for hardware-in-the-loop tests of guests under armvcpu.

Installed with armvcpu (entry point ``pytest11``), it provides:

* ``hypervisor`` — a started :class:`~armvcpu.Hypervisor`, closed after the test;
* ``guest_factory`` — ``guest_factory.asm(src)``, ``.elf(path)``, ``.binary(data)``,
  ``.example(name)``;
* ``trace`` — a fresh :class:`~armvcpu.Trace` (``hypervisor.run(policy, trace=trace)``);
* options ``--armvcpu-qemu``, ``--armvcpu-cpu``, ``--armvcpu-transport``, and
  ``--armvcpu-remote HOST:PORT`` to run the same tests against a GDB remote
  target (a real board behind OpenOCD's gdbserver) already running the firmware;
* a marker for per-test machines: ``@pytest.mark.armvcpu(cpu="cortex-a57",
  transport="gdb", memory_mb=512, uart="emulate", timeout=5)``.

A failing test's report gets sections with the last exits the hypervisor saw,
the firmware log and the guest console. Every session has its own socket
directory and shared-memory file, so tests run in parallel under
pytest-xdist (``-n 2``); see docs/pytest.md.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..analysis.trace import Trace
from ..assets import example_guest_path
from ..guests.guest import DEFAULT_GUEST_BASE, Guest
from ..session.hypervisor import Hypervisor

_KEY = pytest.StashKey[Hypervisor]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("armvcpu", "armvcpu hardware-in-the-loop")
    group.addoption("--armvcpu-qemu", default="qemu-system-aarch64",
                    help="the QEMU binary for the hypervisor fixture")  # fmt: skip
    group.addoption("--armvcpu-cpu", default="max", help="QEMU CPU model (max, cortex-a57, ...)")
    group.addoption("--armvcpu-transport", default="shm", choices=["shm", "gdb"],
                    help="how exits reach the host")  # fmt: skip
    group.addoption("--armvcpu-remote", default=None, metavar="HOST:PORT",
                    help="run against a GDB remote target already running the firmware "
                    "(a board behind OpenOCD) instead of a QEMU of our own")  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "armvcpu(**options): machine options for the hypervisor fixture "
        "(cpu, transport, memory_mb, uart, timeout, extra_args)",
    )


class GuestFactory:
    """Builds guests for a test (assembly is assembled with the cross toolchain)."""

    def asm(self, source: str, addr: int = DEFAULT_GUEST_BASE) -> Guest:
        return Guest.from_asm(source, addr)

    def elf(self, path: str | Path) -> Guest:
        return Guest.from_elf(path)

    def binary(self, data: bytes, addr: int = DEFAULT_GUEST_BASE) -> Guest:
        return Guest.from_binary(data, addr)

    def example(self, name: str) -> Guest:
        return Guest.from_elf(example_guest_path(name))


@pytest.fixture
def guest_factory() -> GuestFactory:
    return GuestFactory()


@pytest.fixture
def trace() -> Trace:
    return Trace()


@pytest.fixture
def hypervisor(request: pytest.FixtureRequest) -> Iterator[Hypervisor]:
    """A started Hypervisor configured from the command line and the test's
    ``armvcpu`` marker; it is closed (QEMU stopped) when the test ends."""
    config = request.config
    options: dict[str, Any] = {
        "qemu": config.getoption("--armvcpu-qemu"),
        "cpu": config.getoption("--armvcpu-cpu"),
        "transport": config.getoption("--armvcpu-transport"),
    }
    marker = request.node.get_closest_marker("armvcpu")
    if marker is not None:
        options.update(marker.kwargs)
    remote = config.getoption("--armvcpu-remote")
    if remote:
        keep = ("timeout", "uart", "firmware")
        hv = Hypervisor.attach(remote, **{k: v for k, v in options.items() if k in keep})
    else:
        hv = Hypervisor(**options)
    request.node.stash[_KEY] = hv
    with hv:
        yield hv


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[Any, Any, None]:
    outcome = yield
    report = outcome.get_result()
    hv = item.stash.get(_KEY, None)
    if hv is None or not report.failed or report.when != "call":
        return
    exits = "\n".join(f"#{e.seq} vcpu {e.vcpu_id} pc={e.pc:#x} {e.reason!r}"
                      for e in hv.recent_exits) or "(no exit)"  # fmt: skip
    report.sections.append(("armvcpu: last exits", exits))
    report.sections.append(("armvcpu: firmware log", hv.console or "(empty)"))
    if hv.uart == "emulate":
        report.sections.append(("armvcpu: guest console", hv.guest_console or "(empty)"))
