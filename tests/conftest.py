"""Shared helpers: real QEMU, real cross toolchain, and process-leak checks."""

from __future__ import annotations

import os
import time
from pathlib import Path

import armvcpu
import pytest


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


def qemu_pids() -> set[int]:
    """Every qemu-system-aarch64 process started by this user."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "qemu-system-aar":
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z" and entry.stat().st_uid == os.getuid():
                    pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def shm_files() -> set[str]:
    """armvcpu's shared guest-RAM files in /dev/shm."""
    return {p.name for p in Path("/dev/shm").glob("armvcpu-*")}


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


pytest_plugins = ["pytester"]
