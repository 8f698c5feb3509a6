"""The aarch64 cross toolchain, for building guests from source at run time."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import GuestImageError, ToolNotFoundError

PREFIX = os.environ.get("ARMVCPU_CROSS_PREFIX", "aarch64-linux-gnu-")
_DEBIAN_HINT = "install Debian's gcc-aarch64-linux-gnu (sudo apt-get install gcc-aarch64-linux-gnu)"


def tool(name: str) -> str:
    """The path of a cross tool such as ``as`` or ``ld``."""
    path = shutil.which(PREFIX + name)
    if path is None:
        raise ToolNotFoundError(f"{PREFIX}{name} not found; {_DEBIAN_HINT}")
    return path


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "armvcpu" / "guests"
    path.mkdir(parents=True, exist_ok=True)
    return path


_RUNTIME = Path(__file__).resolve().parent / "guest_runtime"

C_FLAGS = [
    "-std=c11", "-O2", "-ffreestanding", "-fno-builtin", "-nostdlib", "-static", "-fno-pie",
    "-no-pie", "-mgeneral-regs-only", "-mstrict-align", "-mno-outline-atomics",
    "-fno-stack-protector", "-Wall", "-Wl,--build-id=none", "-Wl,-z,max-page-size=4096",
]  # fmt: skip


def _linker_script(addr: int, stack: int) -> str:
    return (
        f"ENTRY(_start)\nSECTIONS {{\n . = {addr:#x};\n .text : {{ *(.text.start) *(.text*) }}\n"
        " .rodata : { *(.rodata*) }\n .data : { *(.data*) }\n"
        " .bss : { __bss_start = .; *(.bss*) *(COMMON) __bss_end = .; }\n"
        f" . = ALIGN(16);\n . = . + {stack:#x};\n __stack_top = .;\n"
        " /DISCARD/ : { *(.note*) *(.comment) *(.eh_frame*) }\n}\n"
    )


def compile_c(
    source: str, addr: int, *, flags: tuple[str, ...] = (), stack: int = 0x10000
) -> bytes:
    """Compile a freestanding C guest (with armvcpu_guest.h and a crt0 that
    calls ``main``) for EL1 at ``addr``; returns the ELF bytes. Cached."""
    gcc = tool("gcc")
    runtime = (_RUNTIME / "crt0.S").read_text() + (_RUNTIME / "armvcpu_guest.h").read_text()
    key = hashlib.sha256(
        f"c1\0{addr:#x}\0{stack:#x}\0{gcc}\0{flags}\0{runtime}\0{source}".encode()
    ).hexdigest()[:24]
    cached = cache_dir() / f"{key}.elf"
    if cached.is_file():
        return cached.read_bytes()
    with tempfile.TemporaryDirectory(prefix="armvcpu-cc-") as tmp:
        src, elf, lds = Path(tmp) / "guest.c", Path(tmp) / "guest.elf", Path(tmp) / "guest.ld"
        src.write_text(source)
        lds.write_text(_linker_script(addr, stack))
        cmd = [gcc, *C_FLAGS, *flags, f"-I{_RUNTIME}", "-T", str(lds), "-o", str(elf),
               str(_RUNTIME / "crt0.S"), str(src)]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise GuestImageError(f"{Path(gcc).name} failed:\n{result.stderr.strip()}")
        data = elf.read_bytes()
    tmp_cached = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp_cached.write_bytes(data)
    tmp_cached.replace(cached)
    return data


def assemble(source: str, addr: int) -> bytes:
    """Assemble AArch64 source and link it at ``addr``; returns the ELF bytes.

    Results are cached by the hash of the source, the address and the tools.
    """
    as_, ld = tool("as"), tool("ld")
    key = hashlib.sha256(f"v3\0{addr:#x}\0{as_}\0{ld}\0{source}".encode()).hexdigest()[:24]
    cached = cache_dir() / f"{key}.elf"
    if cached.is_file():
        return cached.read_bytes()
    with tempfile.TemporaryDirectory(prefix="armvcpu-asm-") as tmp:
        src, obj, elf = Path(tmp) / "guest.S", Path(tmp) / "guest.o", Path(tmp) / "guest.elf"
        lds = Path(tmp) / "guest.ld"
        # A script rather than -Ttext: it keeps the ELF headers out of the
        # loaded segment, which must start exactly at addr.
        lds.write_text(
            f"ENTRY(_start)\nSECTIONS {{\n . = {addr:#x};\n .text : {{ *(.text*) }}\n"
            " .rodata : { *(.rodata*) }\n .data : { *(.data*) }\n .bss : { *(.bss*) }\n"
            " /DISCARD/ : { *(.note*) *(.comment) }\n}\n"
        )
        text = source if source.endswith("\n") else source + "\n"
        if "_start" not in text:
            # The entry label goes first; the line marker after it (as's
            # `# LINE "FILE"`, as cpp writes them) numbers the user's first
            # line 1 again, so errors point at the user's own lines.
            text = '.global _start\n_start:\n# 1 "guest.S"\n' + text
        src.write_text(text)
        for cmd in (
            [as_, "-o", str(obj), str(src)],
            [ld, "-nostdlib", "-static", "--build-id=none", "-z", "max-page-size=4096",
             "-T", str(lds), "-o", str(elf), str(obj)],
        ):  # fmt: skip
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise GuestImageError(f"{Path(cmd[0]).name} failed:\n{result.stderr.strip()}")
        data = elf.read_bytes()
    tmp_cached = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp_cached.write_bytes(data)
    tmp_cached.replace(cached)  # atomic: parallel test workers may race here
    return data
