"""What `armvcpu run` imports to start: numpy (about a fifth of a second of
CPU, a tenth of a whole Linux boot's budget) only comes with a trace or an
exit log, and the facade still names everything it did."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    code += "\nimport sys\nprint(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    return set(out.stdout.split())


def test_a_session_without_a_trace_starts_without_numpy():
    modules = _modules_after("import armvcpu, armvcpu.tools.cli, armvcpu.tools.run_qemu, "
                             "armvcpu.session.hypervisor")  # fmt: skip
    assert "armvcpu.session.hypervisor" in modules
    assert "numpy" not in modules


def test_the_facade_still_gives_trace():
    import armvcpu
    from armvcpu import Trace
    from armvcpu.analysis.trace import Trace as Defined

    assert Trace is Defined and armvcpu.Trace is Defined
    assert "Trace" in armvcpu.__all__


def test_a_name_the_facade_lacks_is_an_attribute_error():
    import armvcpu

    with pytest.raises(AttributeError, match="module 'armvcpu' has no attribute 'Nonesuch'"):
        armvcpu.Nonesuch  # noqa: B018
