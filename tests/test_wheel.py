"""The wheel: built from this tree, it carries _core and the firmware, and an
installation from it runs the demo and a notebook on a PATH without the
cross compiler (what a user who only pip-installs armvcpu has)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not (ROOT / "pyproject.toml").is_file(), reason="needs the source tree"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)],
        check=True, timeout=900,
    )  # fmt: skip
    (path,) = out.glob("armvcpu-*.whl")
    return path


def test_wheel_carries_the_module_and_the_firmware(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("armvcpu/_core") and n.endswith(".so") for n in names)
    assert "armvcpu/data/armvcpu-firmware.elf" in names
    assert "armvcpu/data/guests/hypercalls.elf" in names
    assert "armvcpu/guests/guest_runtime/armvcpu_guest.h" in names
    metadata = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "MIT License" in text and "Classifier: Programming Language :: C++" in text


@pytest.mark.timeout(900)  # a fresh venv and pip install: minutes on a busy machine
def test_installed_wheel_runs_without_the_cross_toolchain(wheel, tmp_path, no_leaked_qemu):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel),
         "nbclient", "nbformat", "ipykernel", "pandas", "matplotlib"],
        check=True, timeout=900,
    )  # fmt: skip
    # A PATH with QEMU and the venv, and no aarch64 cross tools.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("qemu-system-aarch64", "sh", "bash", "env"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{bin_dir}", "MPLBACKEND": "Agg"}
    assert shutil.which("aarch64-linux-gnu-gcc", path=env["PATH"]) is None

    demo = subprocess.run([str(venv / "bin" / "armvcpu"), "demo"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    assert "match" in demo.stdout and "MISMATCH" not in demo.stdout
    assert str(venv) in subprocess.run(
        [str(py), "-c", "import armvcpu; print(armvcpu.firmware_path())"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip

    notebook = ROOT / "notebooks" / "01-first-exits.ipynb"
    run = subprocess.run(
        [str(py), "-c",
         "import sys, nbformat; from nbclient import NotebookClient;"
         "nb = nbformat.read(sys.argv[1], as_version=4);"
         "NotebookClient(nb, timeout=300, kernel_name='python3').execute();"
         "print('notebook ok')", str(notebook)],
        env={**env, "JUPYTER_PATH": str(venv / "share" / "jupyter")}, cwd=tmp_path,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "notebook ok" in run.stdout
