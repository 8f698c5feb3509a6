"""Every command examples/README.md lists runs, and says what the README says.

The commands are the lines of the README's ``sh`` blocks. EXAMPLES below holds
the same commands with what each must print; the first test fails when the two
lists drift apart. Commands run from the repository root through bash (they use
``"$(...)"``), with ``.venv/bin/`` replaced by the directory of the Python running
the tests, so they also work with a virtualenv somewhere else.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "examples" / "README.md"
BIN = Path(sys.executable).parent

GUEST = '"$(.venv/bin/python examples/guest_path.py {})"'
RUN = ".venv/bin/armvcpu run " + GUEST + " --policy examples/policies/{}"
TRACE = "build/examples/retry.npz"

# -- what each example must print, worked out from the guest's source and the
# policy's rules (examples/guests/*.S, examples/policies/*.py), not copied
# from a run: a change in behaviour shows up as a wrong count, not a new pin.

MASK64 = (1 << 64) - 1
COUNT = 8  # every example guest asks for, or reads, eight values (.equ COUNT, 8)


def fold(values: list[int]) -> int:
    """The guests' checksum: checksum * 31 + value, mod 2^64."""
    checksum = 0
    for v in values:
        checksum = (checksum * 31 + v) & MASK64
    return checksum


def xorshift32(x: int) -> int:
    """Marsaglia's xorshift32 (shifts 13, 17, 5), the RNG device's generator."""
    x ^= (x << 13) & 0xFFFF_FFFF
    x ^= x >> 17
    return x ^ ((x << 5) & 0xFFFF_FFFF)


def putc_exits(chars: int) -> tuple[int, int]:
    """(reads, writes) the guests' putc makes on the PL011 for ``chars``
    characters: one UARTFR read (the model is never full) and one write each."""
    return chars, chars


VALUES = [1000 + 7 * i for i in range(COUNT)]  # answer_hypercalls / fault_injection's answer
CHECKSUM = fold(VALUES)

# rng_device: the guest seeds 0x2545f491 and reads eight values.
RNG = []
_state = 0x2545F491
for _ in range(COUNT):
    _state = xorshift32(_state)
    RNG.append(_state)
RNG_XOR = 0
for _v in RNG:
    RNG_XOR ^= _v

# exit_census: every RNG read answers 1, so STATUS is ready at once: per
# value one STATUS and one DATA read, then one COUNT read; two writes (SEED,
# CTRL); and each line "rng[i] = 0x00000001\n" goes out through putc.
_uart_reads, _uart_writes = putc_exits(COUNT * len("rng[0] = 0x00000001\n"))
CENSUS = (2 * COUNT + 1 + _uart_reads, 2 + _uart_writes)


def _retry_run(seed: int = 7, rate: float = 0.3, max_tries: int = 8) -> tuple[int, list[int]]:
    """fault_injection's decisions (random.Random(seed), an error below
    ``rate``) as retry.S meets them: (errors injected, retries per value)."""
    import random

    rng = random.Random(seed)
    injected, retries = 0, []
    for _ in range(COUNT):
        tries = 0
        while rng.random() < rate:
            injected += 1
            tries += 1
            assert tries < max_tries, "this seed makes the guest give up: the pins below assume not"
        retries.append(tries)
    return injected, retries


INJECTED, RETRIES = _retry_run()
# retry.S prints "value i = 0x%08x after r retries\n" per value and asks
# COUNT + INJECTED times, then reports: every exit of the run.
_retry_reads, _retry_writes = putc_exits(COUNT * len("value 0 = 0x00000000 after 0 retries\n"))
RETRY_HYPERCALLS = COUNT + INJECTED + 1
RETRY_EXITS = RETRY_HYPERCALLS + _retry_reads + _retry_writes + 1  # + SystemDown

# command -> regular expressions its stdout must match
EXAMPLES: dict[str, list[str]] = {
    RUN.format("hypercalls", "answer_hypercalls.py"): [
        *(rf"GET_VALUE\({i}\) -> {v}\n" for i, v in enumerate(VALUES)),
        rf"REPORT: {COUNT} values, checksum {CHECKSUM:#x}, expected {CHECKSUM:#x}: match",
    ],
    RUN.format("rng_driver", "rng_device.py"): [
        *(rf"rng\[{i}\] = {v:#010x}\n" for i, v in enumerate(RNG)),
        rf"the guest read {COUNT} values, xor {RNG_XOR:#x}; "
        rf"the device produced {COUNT}, xor {RNG_XOR:#x}: match",
    ],
    RUN.format("retry", "fault_injection.py"): [
        *(
            rf"value {i} = {v:#010x} after {r} retries\n"
            for i, (v, r) in enumerate(zip(VALUES, RETRIES, strict=True))
        ),
        rf"faults: injected {INJECTED} errors; the guest saw {INJECTED}, gave up on 0 values, "
        rf"checksum {CHECKSUM:#x} \(as expected\)",
    ],
    RUN.format("rng_driver", "exit_census.py"): [
        *(rf"rng\[{i}\] = 0x00000001\n" for i in range(COUNT)),
        rf"census: MmioRead {CENSUS[0]}, MmioWrite {CENSUS[1]}, Hypercall 1, SystemDown 1",
    ],
    RUN.format("retry", "fault_injection.py") + f" --trace {TRACE}"
    f" && .venv/bin/armvcpu trace summary {TRACE}": [
        rf"injected {INJECTED} errors; the guest saw {INJECTED}",
        rf"{TRACE}: {RETRY_EXITS} exits",
        rf"MmioRead\s*│\s*{_retry_reads}\b",
        rf"MmioWrite\s*│\s*{_retry_writes}\b",
        rf"Hypercall\s*│\s*{RETRY_HYPERCALLS}\b",
        r"SystemDown\s*│\s*1\b",
    ],
    '.venv/bin/armvcpu run "$(.venv/bin/python examples/guest_path.py primes)" --uart emulate': [
        r"primes below 50: 2 3 5 7 11 13 17 19 23 29 31 37 41 43 47\n",
    ],
    ".venv/bin/armvcpu demo": [
        rf"guest checksum {CHECKSUM:#x}, expected {CHECKSUM:#x}: match",
        # COUNT GET_VALUE hypercalls, the report, SYSTEM_OFF (hypercalls.S)
        rf"VM 1 stopped after {COUNT + 2} exits",
    ],
}


def readme_commands() -> list[str]:
    """The lines of every ```sh block in examples/README.md."""
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), flags=re.M | re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_lists_exactly_these_examples():
    listed = readme_commands()
    assert len(listed) == len(set(listed)), "a command is listed twice"
    assert sorted(listed) == sorted(EXAMPLES), (
        "examples/README.md and tests/test_examples.py disagree; update EXAMPLES"
    )


def test_every_policy_file_is_listed():
    policies = {p.name for p in (ROOT / "examples" / "policies").glob("*.py")}
    mentioned = {name for name in policies if any(name in cmd for cmd in readme_commands())}
    assert mentioned == policies


def run(command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAULT_")}
    return subprocess.run(["bash", "-c", command.replace(".venv/bin/", f"{BIN}/")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.mark.timeout(240)
@pytest.mark.parametrize("command", list(EXAMPLES), ids=lambda c: c.split("/")[-1][:50])
def test_example_command(command: str, no_leaked_qemu):
    if "--trace" in command:
        (ROOT / TRACE).unlink(missing_ok=True)
    result = run(command)
    assert result.returncode == 0, f"exit status {result.returncode}\n{result.stderr}"
    for pattern in EXAMPLES[command]:
        assert re.search(pattern, result.stdout), f"{pattern!r} not in:\n{result.stdout}"


def test_guest_path_names_what_exists():
    result = run(".venv/bin/python examples/guest_path.py no_such_guest")
    assert result.returncode == 2
    assert "no example guest 'no_such_guest'" in result.stderr
    assert "hypercalls" in result.stderr
