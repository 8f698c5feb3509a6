"""Shared helpers: real QEMU, real cross toolchain, and leak checks (processes,
/dev/shm files, and temporary files: the run fails if tests leave any of
armvcpu's ``armvcpu-*`` entries in its own TMPDIR, see ``leftovers``)."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import armvcpu
import pytest

# Every process this test process starts (QEMU, the CLI, gdb, fuzz workers and
# the QEMUs they start) inherits this mark, so leak checks count only this
# process's own QEMUs and stay right under pytest-xdist or beside another run.
_OWNER_VAR = "ARMVCPU_TEST_OWNER"
os.environ[_OWNER_VAR] = str(os.getpid())
_OWNER_MARK = f"{_OWNER_VAR}={os.getpid()}".encode() + b"\0"
# ... and makes its sessions' RAM files in a directory of its own, so that a
# leak check sees this process's files only (a tmpfs, like /dev/shm itself).
SHM_DIR = Path("/dev/shm") / f"armvcpu-tests-{os.getpid()}"
SHM_DIR.mkdir(exist_ok=True)
os.environ["ARMVCPU_SHM_DIR"] = str(SHM_DIR)


@atexit.register
def _remove_shm_dir() -> None:
    shutil.rmtree(SHM_DIR, ignore_errors=True)


def pid_gone(pid: int, timeout: float = 5.0) -> bool:
    """True once no live process has this pid (a zombie counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.05)
    return False


def _ours(pid: int) -> bool:
    try:
        return _OWNER_MARK in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def live_pids(comm: str) -> set[int]:
    """Live (not zombie) processes that this test process started, directly or
    through its children, whose name (comm, at most 15 characters) is ``comm``."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == comm:
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z" and _ours(int(entry.name)):
                    pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def qemu_pids() -> set[int]:
    """The live qemu-system-aarch64 processes this test process started."""
    return live_pids("qemu-system-aar")


def shm_files() -> set[str]:
    """armvcpu's shared guest-RAM files that this test process's sessions (and
    its children's) made and have not removed."""
    return {p.name for p in SHM_DIR.glob("armvcpu-*")}


class Leftovers:
    """armvcpu's entries (``armvcpu-*``) in this test process's own TMPDIR and
    /dev/shm directory, and which test made each one."""

    def __init__(self, tmpdir: Path) -> None:
        self.dirs = (tmpdir, SHM_DIR)
        self.made_by: dict[Path, str] = {}

    def listing(self) -> set[Path]:
        return {p for d in self.dirs for p in d.glob("armvcpu-*")}

    def report(self) -> str:
        return "\n".join(f"  {p}  (made by {self.made_by.get(p, 'a module or session fixture')})"
                         for p in sorted(self.listing()))  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def leftovers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Leftovers]:
    """Every temporary file of this test process, and of the processes it
    starts (QEMU's session directories, the CLI's, notebooks', gdb's), goes to
    a TMPDIR of its own under pytest's base temp, and the run fails if armvcpu
    left anything there or in the process's /dev/shm directory.

    A session's directory goes when the session closes, so one left behind
    means a process was killed without its TMPDIR in the test's tmp_path, or a
    session was never closed. Under pytest-xdist each worker has its own base
    temp (``popen-gwN``), so a worker counts only what its own tests left,
    never a session the other worker is still running, nor anyone else's
    QEMU in /tmp. What is left stays there to look at (pytest keeps the last
    three base temps)."""
    tmpdir = tmp_path_factory.mktemp("tmp", numbered=False)
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = str(tmpdir)
    tempfile.tempdir = str(tmpdir)  # gettempdir() may have cached /tmp already
    try:
        found = Leftovers(tmpdir)
        yield found
        if found.listing():
            pytest.fail("the tests left armvcpu's temporary files behind (a process killed "
                        "without its TMPDIR in the test's tmp_path, or a session never "
                        "closed):\n" + found.report(), pytrace=False)  # fmt: skip
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env


@pytest.fixture(autouse=True)
def _name_leftovers(request: pytest.FixtureRequest, leftovers: Leftovers) -> Iterator[None]:
    """Remember which test made each new entry, for the report above."""
    before = leftovers.listing()
    yield
    for path in leftovers.listing() - before:
        leftovers.made_by.setdefault(path, request.node.nodeid)


@pytest.fixture
def no_leaked_qemu():
    """Fails the test if it leaves a QEMU process or a /dev/shm file behind."""
    before, files_before = qemu_pids(), shm_files()
    yield
    deadline = time.monotonic() + 5
    while (leaked := qemu_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not leaked, f"leaked QEMU processes: {sorted(leaked)}"
    assert not shm_files() - files_before, "leaked /dev/shm files"


@pytest.fixture(params=["shm", "gdb"])
def transport(request: pytest.FixtureRequest) -> str:
    """Run the test over each exit transport."""
    return str(request.param)


@pytest.fixture
def hypercalls_guest() -> armvcpu.Guest:
    return armvcpu.Guest.from_elf(armvcpu.example_guest_path("hypercalls"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def remote_target():
    """A QEMU running the firmware, halted, with its gdbstub on TCP."""
    port = free_port()
    qemu = subprocess.Popen(
        ["qemu-system-aarch64", "-machine", "virt,virtualization=on,gic-version=3",
         "-cpu", "max", "-nodefaults", "-no-user-config", "-display", "none", "-m", "8G",
         "-kernel", str(armvcpu.firmware_path()), "-serial", "null",
         "-gdb", f"tcp:127.0.0.1:{port},server=on,wait=off", "-S"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    # That probe connection came and went; QEMU accepts the next client.
    yield f"127.0.0.1:{port}", qemu
    qemu.kill()
    qemu.wait()


pytest_plugins = ["pytester"]
