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

# command -> regular expressions its stdout must match
EXAMPLES: dict[str, list[str]] = {
    RUN.format("hypercalls", "answer_hypercalls.py"): [
        *(rf"GET_VALUE\({i}\) -> {1000 + 7 * i}\n" for i in range(8)),
        r"REPORT: 8 values, checksum 0x19dcd9a31c1c, expected 0x19dcd9a31c1c: match",
    ],
    RUN.format("rng_driver", "rng_device.py"): [
        r"rng\[0\] = 0xe124b63a\n",
        r"rng\[7\] = 0x[0-9a-f]{8}\n",
        r"the guest read 8 values, xor 0x9ad397fc; the device produced 8, xor 0x9ad397fc: match",
    ],
    RUN.format("retry", "fault_injection.py"): [
        r"value 6 = 0x00000412 after 2 retries\n",
        r"faults: injected 6 errors; the guest saw 6, gave up on 0 values, "
        r"checksum 0x19dcd9a31c1c \(as expected\)",
    ],
    RUN.format("rng_driver", "exit_census.py"): [
        *(rf"rng\[{i}\] = 0x00000001\n" for i in range(8)),
        r"census: MmioRead 177, MmioWrite 162, Hypercall 1, SystemDown 1",
    ],
    RUN.format("retry", "fault_injection.py") + f" --trace {TRACE}"
    f" && .venv/bin/armvcpu trace summary {TRACE}": [
        r"injected 6 errors; the guest saw 6",
        rf"{TRACE}: 608 exits",
        r"MmioRead\s*│\s*296\b",
        r"Hypercall\s*│\s*15\b",
        r"SystemDown\s*│\s*1\b",
    ],
    '.venv/bin/armvcpu run "$(.venv/bin/python examples/guest_path.py primes)" --uart emulate': [
        r"primes below 50: 2 3 5 7 11 13 17 19 23 29 31 37 41 43 47\n",
    ],
    ".venv/bin/armvcpu demo": [
        r"guest checksum 0x19dcd9a31c1c, expected 0x19dcd9a31c1c: match",
        r"VM 1 stopped after 10 exits",
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
