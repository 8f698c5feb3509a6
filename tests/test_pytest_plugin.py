"""The pytest plugin, exercised by running pytest on small test files."""

from __future__ import annotations

import pytest

INNER = """
import pytest
from armvcpu import ExitKind


@pytest.mark.armvcpu(cpu="cortex-a57", transport="gdb")
def test_marker_configures_the_machine(hypervisor, guest_factory):
    assert hypervisor.config.cpu == "cortex-a57" and hypervisor.transport_name == "gdb"
    source = "mrs x1, midr_el1\\nmov x0, #3\\nhvc #0\\nldr x0, =0x84000008\\nhvc #0"
    hypervisor.load(guest_factory.asm(source))
    exits = hypervisor.run()
    assert exits[0].reason.args[0] == 0x411FD070


def test_trace_fixture(hypervisor, guest_factory, trace):
    hypervisor.load(guest_factory.example("hypercalls"))
    hypervisor.run(lambda e: 1 if e.kind == ExitKind.Hypercall else None, trace=trace)
    assert len(trace) == 10


@pytest.mark.parametrize("n", range(4))
def test_parallel_sessions(hypervisor, guest_factory, n):
    hypervisor.load(guest_factory.asm(f"mov x0, #{n}\\nhvc #0\\nldr x0, =0x84000008\\nhvc #0"))
    assert hypervisor.run()[0].reason.nr == n
"""

FAILING = """
from armvcpu import ExitKind

def test_fails_after_some_exits(hypervisor, guest_factory):
    hypervisor.load(guest_factory.example("hypercalls"))
    for exit in hypervisor.exits():
        if exit.seq == 3:
            assert False, "the guest misbehaved"
"""


def test_fixtures_and_marker(pytester: pytest.Pytester, no_leaked_qemu):
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=6)


def test_parallel_under_xdist(pytester: pytest.Pytester, no_leaked_qemu):
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-q", "-n", "2")
    result.assert_outcomes(passed=6)


def test_failure_report_shows_exits_and_logs(pytester: pytest.Pytester, no_leaked_qemu):
    pytester.makepyfile(test_failing=FAILING)
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "armvcpu: last exits" in out
    assert "#3 vcpu 0" in out and "Hypercall(nr=0x1" in out
    assert "armvcpu: firmware log" in out and "armvcpu EL2 firmware" in out


# The docs/pytest.md example's shape: the guest prints, powers off, then the
# test fails. The report's console section must show what it printed, and
# read_guest_console() must work after run(), on both transports (with gdb,
# QEMU has exited when run() returns).
PRINTING_THEN_FAILING = r"""
import pytest
from armvcpu import ExitKind

GUEST = '''
    movz x10, #0x0900, lsl #16
    adr x11, msg
1:  ldrb w12, [x11], #1
    cbz w12, 2f
    str w12, [x10]
    b 1b
2:  ldr x0, =0x84000008
    hvc #0
msg: .asciz "driver ready\\n"
'''

@pytest.mark.armvcpu(uart="emulate", transport=TRANSPORT)
def test_fails_after_printing(hypervisor, guest_factory):
    hypervisor.load(guest_factory.asm(GUEST))
    exits = hypervisor.run()
    assert exits[-1].kind == ExitKind.SystemDown
    assert "driver ready" in hypervisor.read_guest_console()
    assert False, "failing on purpose after the guest printed"
"""


def test_failure_report_shows_the_guest_console(pytester: pytest.Pytester, transport,
                                                no_leaked_qemu):  # fmt: skip
    pytester.makepyfile(test_printing=PRINTING_THEN_FAILING.replace("TRANSPORT", repr(transport)))
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "failing on purpose" in out  # not a SessionClosedError before it
    section = out.split("armvcpu: guest console", 1)[1]
    assert section.splitlines()[1] == "driver ready"


def test_command_line_options(pytester: pytest.Pytester, no_leaked_qemu):
    pytester.makepyfile(
        test_opts="def test_opts(hypervisor):\n    assert hypervisor.transport_name == 'gdb'\n"
    )
    result = pytester.runpytest_subprocess("-q", "--armvcpu-transport", "gdb")
    result.assert_outcomes(passed=1)


def test_remote_option_runs_against_a_gdb_target(pytester: pytest.Pytester, remote_target):
    address, _qemu = remote_target
    pytester.makepyfile(
        test_remote="""
from armvcpu import ExitKind

def test_on_the_target(hypervisor, guest_factory):
    assert hypervisor.remote is not None and hypervisor.qemu_pid is None
    hypervisor.load(guest_factory.example("hypercalls"))
    assert hypervisor.run()[-1].kind == ExitKind.SystemDown
"""
    )
    result = pytester.runpytest_subprocess("-q", "--armvcpu-remote", address)
    result.assert_outcomes(passed=1)
