"""The firmware on its own: no host, the guest placed by QEMU's loader device."""

from __future__ import annotations

import subprocess

import armvcpu


def test_runs_the_example_guest_with_default_answers(tmp_path, hypercalls_guest):
    (segment,) = hypercalls_guest.segments
    image = tmp_path / "guest.bin"
    image.write_bytes(segment.data)
    result = subprocess.run(
        ["qemu-system-aarch64", "-machine", "virt,virtualization=on,gic-version=3",
         "-cpu", "max", "-nodefaults", "-no-user-config", "-display", "none", "-m", "256M",
         "-serial", "stdio", "-kernel", str(armvcpu.firmware_path()),
         # 0x48000000: the PA behind guest IPA 0x40000000 in the firmware's defaults
         "-device", f"loader,file={image},addr=0x48000000"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    log = result.stdout.replace("\r\n", "\n")
    assert result.returncode == 0, result.stderr
    assert "armvcpu EL2 firmware" in log and "(standalone)" in log
    hypercalls = [line for line in log.splitlines() if ": Hypercall nr=0x1 " in line]
    assert len(hypercalls) == 8
    # Every answer was the default 0, so the reported checksum is 0.
    assert "exit 9: Hypercall nr=0x2 x1=0x0" in log
    assert "exit 10: SystemDown" in log
    assert "VM 1 stopped after 10 exits (last: SystemDown)" in log
