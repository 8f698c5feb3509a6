"""The notebooks in notebooks/ run from top to bottom without an error.

Each notebook is executed by nbclient in a fresh IPython kernel, with the
notebooks directory as its working directory; an exception in any cell fails
the test (nbclient raises CellExecutionError, which names the cell).

The kernel must be *this* Python (the one with armvcpu installed), whatever
kernels the machine has registered: a ``python3`` kernel spec in
~/.local/share/jupyter may point at another interpreter. So the test writes a
kernel spec of its own, with a name no one else uses, whose argv starts with
``sys.executable``, into a temporary directory, and hands nbclient a kernel
manager that looks only there. Nothing is installed (no ``ipykernel install``)
and no environment variable has to be set outside the test; only the
ipykernel package has to be importable (the ``test`` extra has it, with
nbclient, nbformat, matplotlib and pandas, which the notebooks use).

Set ARMVCPU_NOTEBOOK_OUT=DIR to keep the executed notebooks (with outputs).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL_NAME = "armvcpu-test-python"
CELL_TIMEOUT = 300  # seconds for one cell


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


@pytest.fixture
def kernel_tmpdir() -> Iterator[Path]:
    """The kernel's TMPDIR, where test_notebook_runs looks for what a notebook
    left behind. Not in tmp_path: the notebooks' sessions make QEMU's sockets
    in it, and a Unix socket's path must fit in 107 bytes."""
    with tempfile.TemporaryDirectory() as tmpdir:
        yield Path(tmpdir)


@pytest.fixture
def kernel_manager(tmp_path: Path, kernel_tmpdir: Path,
                   monkeypatch: pytest.MonkeyPatch) -> AsyncKernelManager:  # fmt: skip
    """A kernel manager that starts sys.executable's ipykernel, and only that."""
    # Connection files go to a private directory, not ~/.local/share/jupyter/runtime.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    kernels = tmp_path / "kernels"
    spec_dir = kernels / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"armvcpu tests ({sys.executable})",
        "language": "python",
        "env": {
            "MPLBACKEND": "Agg",  # no display; figures are drawn into PNGs
            "IPYTHONDIR": str(tmp_path / "ipython"),  # no user profile, no history file
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "TMPDIR": str(kernel_tmpdir),
        },
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(kernels)])
    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def execute(nb, km: AsyncKernelManager):
    client = nbclient.NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT,
        startup_timeout=120,
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    return client.execute()


def test_there_are_notebooks():
    names = [p.name for p in notebook_paths()]
    assert names[:4] == [
        "01-first-exits.ipynb",
        "02-device-in-python.ipynb",
        "03-anatomy-of-exits.ipynb",
        "04-fault-injection.ipynb",
    ]


def test_the_kernel_is_this_python(kernel_manager):
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("import sys, os, armvcpu\nprint(sys.executable)")]
    )
    execute(nb, kernel_manager)
    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs).strip()
    assert os.path.realpath(printed) == os.path.realpath(sys.executable)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_runs(path: Path, kernel_tmpdir: Path, kernel_manager, no_leaked_qemu):
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        f"{path.name} is stored with outputs; clear them before committing"
    )
    execute(nb, kernel_manager)  # raises CellExecutionError if a cell fails
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]  # fmt: skip
    assert not errors
    # A reader runs these notebooks too: whatever one writes, it cleans up
    # (the kernel has shut down by now, so its sessions have closed).
    left = sorted(p.name for p in kernel_tmpdir.glob("armvcpu-*"))
    assert not left, f"{path.name} left {left} in its TMPDIR"
    out = os.environ.get("ARMVCPU_NOTEBOOK_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, Path(out) / path.name)
