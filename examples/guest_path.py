"""Print the path of an example guest's ELF, for `armvcpu run "$(... NAME)"`.

    python examples/guest_path.py hypercalls     # a guest the package ships
    python examples/guest_path.py rng_driver     # examples/guests/rng_driver.S

A name with a source in examples/guests/ that the CMake build does not list
(``NAME.S`` assembled with plain ``as``, no preprocessor, or ``NAME.c``
compiled like ``Guest.from_c``) is built with the cross toolchain into
build/examples/; any other name is looked up among the guests the installed
package ships.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from armvcpu import example_guest_path
from armvcpu.guests.guest import DEFAULT_GUEST_BASE
from armvcpu.guests.toolchain import assemble, compile_c

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "build" / "examples"


def guest_path(name: str) -> Path:
    source = HERE / "guests" / f"{name}.S"
    c_source = HERE / "guests" / f"{name}.c"
    try:
        return example_guest_path(name)  # built by the package (hypercalls, exit_loop)
    except FileNotFoundError:
        if not source.is_file() and not c_source.is_file():
            raise
    if c_source.is_file():
        elf = compile_c(c_source.read_text(), DEFAULT_GUEST_BASE)  # cached by content
    else:
        elf = assemble(source.read_text(), DEFAULT_GUEST_BASE)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.elf"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(elf)
    tmp.replace(path)
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(guest_path(argv[0]))
    except FileNotFoundError as exc:
        print(f"guest_path: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
