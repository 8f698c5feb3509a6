"""The documentation site builds, strictly (no broken link or reference)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not (ROOT / "mkdocs.yml").is_file(), reason="needs the source tree")
def test_docs_build_strictly(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    for name in ("Hypervisor", "complete_read", "Trace", "FastRules"):
        assert name in reference
    assert (tmp_path / "site" / "concepts" / "index.html").is_file()
