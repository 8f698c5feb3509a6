"""Every code block in README.md and docs/ that a user can run is run here, as shown.

Blocks are read from the Markdown itself, so a snippet cannot drift from what
runs. Per page, in order, in one scratch directory:

* ``python`` blocks run in one namespace (a later block may use an earlier one's
  names, as a reader would in one interpreter);
* ``sh`` blocks run line by line through bash (``\\`` continues a line);
* ``console`` blocks: ``$ `` lines are commands, the lines after them the output
  the page shows, which must appear in the real output, in order;
* a ``text`` block is checked against a command's output when the page says so
  with ``<!-- doc-test: output-of="COMMAND" -->`` just before it.

What may differ from the page is declared here and nowhere else: PLACEHOLDERS
(paths that depend on the machine) and FILES (the inputs a snippet names, such
as ``guest.S``). A block the suite cannot run says why on the page, with
``<!-- doc-test: skip="REASON" -->``; ``test_every_skip_says_why`` lists them.
Shown output is compared line by line after NORMALIZE: decimal fractions
(timings, kernel timestamps) and decimal numbers of three or more digits (counts
that vary from boot to boot) match any number; everything else, hex included,
must be exactly what the page shows.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"python", "sh", "console"}

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_DIRECTIVE = re.compile(r"<!--\s*doc-test:\s*(.*?)\s*-->\s*\n\s*$", re.S)
_ARG = re.compile(r'(\w[\w-]*)(?:="([^"]*)")?')


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()]
        directive = _DIRECTIVE.search(before[-400:])
        args = {k: v for k, v in _ARG.findall(directive.group(1))} if directive else {}
        found.append(Block(page, before.count("\n") + 1, match.group(1), match.group(2), args))
    return found


def _linux_kernel() -> str:
    from armvcpu.guests.debian import fetch_linux_assets

    return str(fetch_linux_assets().kernel)


_REMOTE: list[str] = []


def _linux_release() -> str:
    from armvcpu.guests.debian import fetch_linux_assets

    return str(fetch_linux_assets().release)


#: Text a page shows in output that depends on the machine: Debian's archive
#: moves on, and the kernel release the pages show is the one of their day.
SHOWN_PLACEHOLDERS: dict[str, Any] = {"6.1.0-56-arm64": _linux_release}

#: Text a page shows that stands for something on this machine: the page's
#: string -> a function giving what to put there.
PLACEHOLDERS: dict[str, Any] = {
    # Where docs/linux.md's fetch puts Debian's kernel (its release in the name).
    "~/.cache/armvcpu/debian/vmlinuz-6.1.0-56-arm64": _linux_kernel,
    "vmlinuz-6.1.0-56-arm64 --initrd": lambda: _linux_kernel() + " --initrd",
    # docs/hil.md's board behind a gdbserver: a QEMU running the firmware,
    # halted, on a free loopback port (tests/conftest.py's remote_target).
    "localhost:3333": lambda: _REMOTE[0],
    # The two commands. The suite runs after their set-up (scripts/bootstrap.sh),
    # and re-running it here would reinstall the package under the running
    # tests; `make test` inside `make test` would recurse. So make checks that
    # each target exists and what it runs (-n), and the demo itself runs.
    "make demo": lambda: f"make -s -n -C {ROOT} demo >/dev/null && armvcpu demo",
    "make test": lambda: f"make -s -n -C {ROOT} test >/dev/null",
    # The pages' virtualenv is the one running this suite.
    ".venv/bin/": lambda: f"{BIN}/",
}


def _write_initrd(path: Path) -> None:
    from armvcpu.guests.debian import build_initramfs, fetch_linux_assets

    path.write_bytes(build_initramfs(fetch_linux_assets().busybox))


def _write_guest_s(path: Path) -> None:
    shutil.copy(ROOT / "examples" / "guests" / "hypercalls.S", path)


def _write_guest_elf(path: Path) -> None:
    from armvcpu import example_guest_path

    shutil.copy(example_guest_path("hypercalls"), path)


#: A driver for docs/pytest.md and docs/hil.md: says it is ready on its UART,
#: then powers off (PSCI SYSTEM_OFF).
_DRIVER = """
    ldr x1, =0x09000000
    adr x2, message
1:  ldrb w3, [x2], #1
    cbz w3, 2f
    str w3, [x1]
    b 1b
2:  ldr x0, =0x84000008
    hvc #0
    b .
message: .asciz "driver ready\\n"
"""


def _write_driver(path: Path) -> None:
    from armvcpu.guests.guest import DEFAULT_GUEST_BASE
    from armvcpu.guests.toolchain import assemble

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(assemble(_DRIVER, DEFAULT_GUEST_BASE))


def _write_raw_guest(path: Path) -> None:
    """A raw image the firmware runs with no host: PSCI SYSTEM_OFF at once."""
    words = (0xD2800100, 0xF2B08000, 0xD4000002)  # mov x0, #8; movk x0, #0x8400, lsl #16; hvc #0
    path.write_bytes(b"".join(w.to_bytes(4, "little") for w in words))


_MINE = """from armvcpu import Policy, on


class Mine(Policy):
    @on.hypercall(nr=1)
    def get_value(self, exit):
        return 1000 + exit.reason.args[0]
"""

#: Inputs a page names without making them: file name -> how to make it.
FILES: dict[str, Any] = {
    "initrd.gz": _write_initrd,
    "guest.S": _write_guest_s,
    "guest.elf": _write_guest_elf,
    "guest.bin": _write_raw_guest,
    "mine.py": lambda p: p.write_text(_MINE),
    "driver.elf": _write_driver,
}

#: Names a page's Python uses without defining them: page -> code run first.
PRELUDES: dict[str, str] = {
    "docs/pytest.md": "from armvcpu import Policy\nmy_policy = Policy()\n",
    "docs/hil.md": "from armvcpu import Policy\nmy_policy = Policy()\n",
}


def substitute(code: str) -> str:
    for shown, real in PLACEHOLDERS.items():
        if shown in code:
            code = code.replace(shown, real())
    return code


_FRACTION = re.compile(r"(?<![\w.])\d+\.\d+")
_BIG_DECIMAL = re.compile(r"(?<![\w.])\d{3,}(?![\w.])")


_ANY_DECIMAL = re.compile(r"(?<![\w.])\d+(?![\w])")


def normalize(line: str, numbers_vary: bool = False) -> str:
    line = _FRACTION.sub("#.#", line.strip())
    line = (_ANY_DECIMAL if numbers_vary else _BIG_DECIMAL).sub("#", line)
    return " ".join(line.split())


def assert_shown(expected: str, actual: str, where: str, numbers_vary: bool = False) -> None:
    """Each line the page shows (but ``...``) is a line of the real output, in
    order. With ``numbers_vary`` (statistics of a Linux boot, which differ from
    run to run in value and so in row order), every decimal number matches any
    other and the order is free: the rows' names must still all be there."""
    for shown_text, real_text in SHOWN_PLACEHOLDERS.items():
        if shown_text in expected:
            expected = expected.replace(shown_text, real_text())
    real = [normalize(x, numbers_vary) for x in actual.splitlines()]
    at = 0
    for shown in expected.splitlines():
        want = normalize(shown, numbers_vary)
        if not want or want == "...":
            continue
        try:
            if numbers_vary:
                real.index(want)  # anywhere
            else:
                at = real.index(want, at) + 1
        except ValueError:
            pytest.fail(
                f"{where}: the page shows {shown.strip()!r}, which the real output does not "
                f"have (after the lines matched so far). Real output:\n{actual[-4000:]}"
            )


def commands(code: str) -> list[str]:
    """A shell block's commands: one per line, ``\\`` joining continued lines."""
    out, current = [], ""
    for raw in code.splitlines():
        current += raw[:-1] + " " if raw.rstrip().endswith("\\") else raw
        if raw.rstrip().endswith("\\"):
            continue
        if current.strip() and not current.strip().startswith("#"):
            out.append(current.strip())
        current = ""
    return out


def run_shell(command: str, cwd: Path, timeout: float) -> str:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "MPLBACKEND": "Agg"}
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 0, (
        f"`{command}` exited with {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
        f"stderr:\n{proc.stderr[-3000:]}"
    )
    return proc.stdout + proc.stderr


def run_page(page: Path, work: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "__doc_snippet__"}
    prelude = PRELUDES.get(str(page.relative_to(ROOT)), "")
    exec(prelude, namespace)
    outputs: dict[str, str] = {}
    for block in blocks(page):
        if "skip" in block.directives:
            continue
        timeout = float(block.directives.get("timeout", 300))
        for name, make in FILES.items():
            for target in (work / name, work / "build" / name):  # as the page names it
                shown = str(target.relative_to(work))
                if shown in block.code and not target.exists():
                    make(target)
        if block.lang == "text" and "output-of" in block.directives:
            command = block.directives["output-of"]
            assert command in outputs, f"{block.where}: `{command}` has not run above this block"
            assert_shown(block.code, outputs[command], block.where)
        elif block.lang == "python" and block.directives.get("as") == "pytest":
            (work / "test_snippet.py").write_text(prelude + substitute(block.code))
            run_shell(f"{sys.executable} -m pytest -q -p no:cacheprovider test_snippet.py", work,
                      timeout)  # fmt: skip
        elif block.lang == "python":
            out = io.StringIO()
            code = compile(substitute(block.code), block.where, "exec")
            cwd = Path.cwd()
            os.chdir(work)
            try:
                with contextlib.redirect_stdout(out):
                    exec(code, namespace)
            finally:
                os.chdir(cwd)
        elif block.lang == "sh":
            for command in commands(block.code):
                outputs[command.split("  #")[0].strip()] = run_shell(
                    substitute(command), work, timeout
                )
        elif block.lang == "console":
            lines = block.code.splitlines()
            i = 0
            while i < len(lines):
                if not lines[i].startswith("$ "):
                    i += 1
                    continue
                command = lines[i][2:]
                i += 1
                while command.rstrip().endswith("\\") and i < len(lines):
                    command = command.rstrip()[:-1] + " " + lines[i].strip()
                    i += 1
                shown = []
                while i < len(lines) and not lines[i].startswith("$ "):
                    shown.append(lines[i])
                    i += 1
                output = run_shell(substitute(command), work, timeout)
                assert_shown("\n".join(shown), output, block.where,
                             numbers_vary="numbers-vary" in block.directives)  # fmt: skip


RUNNABLE_PAGES = [p for p in PAGES if any(b.lang in RUNNABLE for b in blocks(p))]


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("page", RUNNABLE_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_runs_as_shown(page, tmp_path, request, no_leaked_qemu):
    if "localhost:3333" in page.read_text():
        _REMOTE[:] = [request.getfixturevalue("remote_target")[0]]
    run_page(page, tmp_path)


def test_every_skip_says_why():
    """A block the suite does not run names its reason on the page; the list is
    pinned here so a new skip is a visible decision."""
    skipped = {b.where.split(":")[0]: [] for p in PAGES for b in blocks(p)}
    for page in PAGES:
        for b in blocks(page):
            if "skip" in b.directives:
                assert len(b.directives["skip"]) > 15, f"{b.where}: say why it cannot run"
                skipped[b.where.split(":")[0]].append(b.directives["skip"])
    total = sum(len(v) for v in skipped.values())
    runnable = sum(1 for p in PAGES for b in blocks(p) if b.lang in RUNNABLE)
    assert total <= 4, f"{total} of {runnable} runnable blocks are skipped: {skipped}"


def test_the_matcher_is_strict_where_it_should_be():
    """The comparison lets timings and counts vary, and nothing else."""
    shown = textwrap.dedent("""\
        10 exits in 0.07 s (QEMU start to power-off)
        ...
        armvcpu: trace of 2 host exits and 1328 logged by the firmware saved to boot.npz
        """)
    real = (
        "noise\n10 exits in 0.31 s (QEMU start to power-off)\nmore\n"
        "armvcpu: trace of 2 host exits and 1411 logged by the firmware saved to boot.npz\n"
    )
    assert_shown(shown, real, "here")
    with pytest.raises(pytest.fail.Exception):
        assert_shown("checksum 0x19dcd9a31c1c", "checksum 0x19dcd9a31c1d", "here")
    with pytest.raises(pytest.fail.Exception):
        assert_shown("VM 1 stopped after 2 exits", "VM 1 stopped after 3 exits", "here")
    with pytest.raises(pytest.fail.Exception):  # order matters
        assert_shown("b\na", "a\nb", "here")
