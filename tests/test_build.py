"""The build itself: a missing cross compiler is a clear error naming the fix."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not (ROOT / "CMakeLists.txt").is_file(), reason="needs the source tree")
def test_missing_cross_compiler_names_the_debian_packages(tmp_path):
    cmake = shutil.which("cmake", path=str(Path(sys.executable).parent)) or shutil.which("cmake")
    assert cmake is not None
    result = subprocess.run(
        [cmake, "-S", str(ROOT), "-B", str(tmp_path / "build"),
         "-DARMVCPU_CROSS_PREFIX=no-such-cross-", "-DARMVCPU_BUILD_PYTHON=OFF"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    message = " ".join(result.stderr.split())
    assert "aarch64 cross compiler was not found" in message
    assert "apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu" in message
