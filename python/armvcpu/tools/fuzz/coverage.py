"""Coverage of the firmware: the coverage build's map, and what it means in source lines.

The coverage build (``armvcpu-firmware-cov.elf``, built beside the normal
image) is compiled with GCC's ``-fsanitize-coverage=trace-pc``: every basic
block starts with ``bl __sanitizer_cov_trace_pc``, and the runtime
(``firmware/coverage.cpp``) sets the byte of ``armvcpu_cov_map`` that stands
for the call's return address, one byte per instruction word from
``__image_start``. A *coverage point* (an "edge" in the fuzzing sense: GCC
instruments blocks, so a point is a block entered) is therefore a map offset;
``image_start + 4 * offset - 4`` is the address of its call, which the image's
DWARF line table turns into a source line.

The host reads and clears the map through the shared guest RAM file the
``shm`` transport maps (the firmware image lies in it), so reading costs no
gdbstub round trip.
"""

from __future__ import annotations

import bisect
import html
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ...errors import ArmvcpuError

#: The coverage build's file name, installed beside the normal firmware.
COVERAGE_FIRMWARE = "armvcpu-firmware-cov.elf"
_MAP_SYMBOL = "armvcpu_cov_map"
_CALLBACK = "__sanitizer_cov_trace_pc"


def coverage_firmware_path() -> Path:
    """The coverage build this package carries (raises when it was not built)."""
    from ...assets import firmware_path

    path = firmware_path().with_name(COVERAGE_FIRMWARE)
    if not path.is_file():
        raise ArmvcpuError(
            f"the coverage build of the firmware is missing ({path}); "
            "reinstall armvcpu (its build makes both images)"
        )
    return path


@dataclass
class CoverageMap:
    """Where the coverage map is in an image, and every point it can record.

    ``points`` are the map offsets that have a ``bl __sanitizer_cov_trace_pc``
    before them: the blocks a run could reach (found by decoding the image's
    BL instructions, so it needs no disassembler).
    """

    path: Path
    image_start: int
    map_address: int
    map_size: int
    points: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def load(cls, path: str | Path | None = None) -> CoverageMap:
        """Read an image's symbols (default: the coverage build)."""
        from elftools.elf.elffile import ELFFile
        from elftools.elf.sections import SymbolTableSection

        path = Path(path) if path is not None else coverage_firmware_path()
        with path.open("rb") as f:
            elf = ELFFile(f)
            symtab = elf.get_section_by_name(".symtab")
            if not isinstance(symtab, SymbolTableSection):
                raise ArmvcpuError(f"{path} has no symbol table")

            def symbol(name: str) -> Any:
                found = symtab.get_symbol_by_name(name)
                if not found:
                    raise ArmvcpuError(f"{path} is not a coverage build of the firmware "
                                       f"(no {name})")  # fmt: skip
                return found[0]

            start = int(symbol("__image_start")["st_value"])
            cov = symbol(_MAP_SYMBOL)
            callback = int(symbol(_CALLBACK)["st_value"])
            text = elf.get_section_by_name(".text")
            if text is None:
                raise ArmvcpuError(f"{path} has no .text")
            points = _call_sites(text.data(), int(text["sh_addr"]), callback, start)
        size = int(cov["st_size"])
        if points and max(points) >= size:
            raise ArmvcpuError(f"{path}: the coverage map ({size} bytes) is smaller than .text")
        return cls(path, start, int(cov["st_value"]), size, frozenset(points))

    # -- the map in a running session ---------------------------------------------------------

    def _window(self, hv: Any) -> memoryview:
        from ...session.hypervisor import RAM_BASE

        ram = hv.ram
        if ram is None:
            raise ArmvcpuError("reading coverage needs the shm transport (guest RAM mapped)")
        lo = self.map_address - RAM_BASE
        return memoryview(ram)[lo : lo + self.map_size]

    def read(self, hv: Any) -> frozenset[int]:
        """The points hit since the map was last cleared."""
        import numpy as np

        raw = np.frombuffer(self._window(hv), dtype=np.uint8)
        return frozenset(int(i) for i in np.flatnonzero(raw))

    def clear(self, hv: Any) -> None:
        """Zero the map (the firmware only ever stores 1 into it)."""
        window = self._window(hv)
        window[:] = bytes(len(window))

    # -- what the points are ------------------------------------------------------------------

    def address(self, point: int) -> int:
        """The address of the point's ``bl`` (the return address is one word on)."""
        return self.image_start + 4 * point - 4

    @cached_property
    def lines(self) -> LineTable:
        return LineTable.load(self.path)

    def report(self, covered: Iterable[int], *, timeline: list[dict[str, Any]] | None = None,
               title: str = "firmware coverage") -> CoverageReport:  # fmt: skip
        """Points grouped by source file, function and line."""
        return CoverageReport.build(self, frozenset(covered) & self.points, title, timeline or [])


def _call_sites(code: bytes, base: int, callback: int, image_start: int) -> list[int]:
    """Map offsets of every ``bl callback`` in ``code`` (loaded at ``base``)."""
    out = []
    for off in range(0, len(code) - 3, 4):
        word = int.from_bytes(code[off : off + 4], "little")
        if word & 0xFC00_0000 != 0x9400_0000:  # BL imm26
            continue
        imm = word & 0x03FF_FFFF
        if imm & 0x0200_0000:
            imm -= 1 << 26
        addr = base + off
        if addr + 4 * imm == callback:
            out.append((addr + 4 - image_start) >> 2)
    return out


@dataclass
class LineTable:
    """Addresses to (file, line) and to functions, from an image's DWARF."""

    starts: list[int]
    rows: list[tuple[str, int]]
    functions: list[tuple[int, int, str]]

    @classmethod
    def load(cls, path: Path) -> LineTable:
        from elftools.elf.elffile import ELFFile
        from elftools.elf.sections import SymbolTableSection

        entries: list[tuple[int, str, int]] = []
        with path.open("rb") as f:
            elf = ELFFile(f)
            if not elf.has_dwarf_info():
                raise ArmvcpuError(f"{path} has no DWARF (it was built without -g)")
            dwarf = elf.get_dwarf_info()
            for cu in dwarf.iter_CUs():
                program = dwarf.line_program_for_CU(cu)
                if program is None:
                    continue
                header = program.header
                names = _file_names(header, cu)
                for entry in program.get_entries():
                    state = entry.state
                    if state is None or state.end_sequence:
                        continue
                    name = names.get(state.file, "?")
                    entries.append((int(state.address), name, int(state.line)))
            functions = []
            symtab = elf.get_section_by_name(".symtab")
            if isinstance(symtab, SymbolTableSection):
                for sym in symtab.iter_symbols():
                    if sym["st_info"]["type"] == "STT_FUNC" and sym["st_size"]:
                        functions.append((int(sym["st_value"]), int(sym["st_size"]), sym.name))
        entries.sort(key=lambda e: e[0])
        return cls([e[0] for e in entries], [(e[1], e[2]) for e in entries], sorted(functions))

    def line_at(self, address: int) -> tuple[str, int]:
        """The row in force at ``address`` (the last row at or before it)."""
        i = bisect.bisect_right(self.starts, address) - 1
        return self.rows[i] if i >= 0 else ("?", 0)

    def function_at(self, address: int) -> str:
        from .runner import _demangle

        i = bisect.bisect_right(self.functions, (address, 1 << 64, "")) - 1
        if i >= 0:
            start, size, name = self.functions[i]
            if start <= address < start + size:
                return _demangle(name)
        return "?"


def _file_names(header: Any, cu: Any) -> dict[int, str]:
    """The line program's file numbers -> paths (DWARF 4 counts from 1, 5 from 0)."""
    version = int(header["version"])
    dirs = [d.decode() if isinstance(d, bytes) else str(d) for d in header["include_directory"]]
    if version < 5:
        top = cu.get_top_DIE().attributes.get("DW_AT_comp_dir")
        comp_dir = top.value.decode() if top is not None else ""
        dirs = [comp_dir, *dirs]
    out = {}
    first = 0 if version >= 5 else 1
    for i, entry in enumerate(header["file_entry"]):
        name = entry.name.decode() if isinstance(entry.name, bytes) else str(entry.name)
        d = int(entry.dir_index)
        directory = dirs[d] if d < len(dirs) else ""
        out[i + first] = str(Path(directory) / name) if directory else name
    return out


@dataclass
class CoverageReport:
    """Coverage by file, function and line, as a person reads it."""

    title: str
    total: int
    covered: int
    #: file -> line -> (points on the line, points covered)
    files: dict[str, dict[int, tuple[int, int]]]
    #: (function, file, points, covered)
    functions: list[tuple[str, str, int, int]]
    timeline: list[dict[str, Any]]

    @classmethod
    def build(cls, cmap: CoverageMap, covered: frozenset[int], title: str,
              timeline: list[dict[str, Any]]) -> CoverageReport:  # fmt: skip
        table = cmap.lines
        files: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        funcs: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        homes: dict[str, str] = {}  # function -> the file its first point is in
        for point in sorted(cmap.points):
            addr = cmap.address(point)
            name, line = table.line_at(addr)
            hit = point in covered
            cell = files[name][line]
            cell[0] += 1
            cell[1] += hit
            function = table.function_at(addr)
            homes.setdefault(function, name)
            fcell = funcs[function]  # inlined code counts for the function it is in
            fcell[0] += 1
            fcell[1] += hit
        return cls(
            title,
            len(cmap.points),
            len(covered),
            {
                f: {ln: (c[0], c[1]) for ln, c in sorted(lines.items())}
                for f, lines in files.items()
            },
            sorted(
                ((fn, homes[fn], c[0], c[1]) for fn, c in funcs.items()), key=lambda r: (r[1], r[0])
            ),
            timeline,
        )

    def _file_rows(self) -> list[tuple[str, int, int]]:
        rows = []
        for name, lines in sorted(self.files.items()):
            rows.append(
                (name, sum(t for t, _ in lines.values()), sum(c for _, c in lines.values()))
            )
        return rows

    def text(self) -> str:
        """A plain-text report: totals, then files and functions, then each
        source line with points, marked ``+`` covered, ``-`` not, ``~`` partly."""
        pct = 100.0 * self.covered / max(1, self.total)
        out = [
            self.title,
            "=" * len(self.title),
            f"{self.covered} of {self.total} coverage points (basic blocks) reached ({pct:.1f}%)",
            "",
        ]
        if self.timeline:
            out.append("points covered over time:")
            for t in self.timeline:
                out.append(f"  {t['seconds']:>8.1f} s  {t['programs']:>7} programs  "
                           f"{t['points']:>6} points")  # fmt: skip
            out.append("")
        out.append("by file:")
        for name, total, hit in self._file_rows():
            out.append(f"  {hit:>5}/{total:<5} {100.0 * hit / max(1, total):5.1f}%  {name}")
        out += ["", "by function:"]
        for fn, name, total, hit in self.functions:
            out.append(f"  {hit:>5}/{total:<5} {fn}  ({Path(name).name})")
        for name, lines in sorted(self.files.items()):
            out += ["", f"-- {name}"]
            source = _source_lines(name)
            for line, (total, hit) in lines.items():
                mark = "+" if hit == total else "-" if hit == 0 else "~"
                text = source[line - 1].rstrip() if 0 < line <= len(source) else ""
                out.append(f"{mark} {line:>5} {hit}/{total}  {text}")
        return "\n".join(out) + "\n"

    def html(self) -> str:
        """One HTML page: totals, a table per file and function, and each
        source file with its lines coloured (green covered, red not)."""
        e = html.escape
        pct = 100.0 * self.covered / max(1, self.total)
        parts = [
            "<!doctype html><meta charset='utf-8'>",
            f"<title>{e(self.title)}</title>",
            "<style>body{font-family:sans-serif} pre{margin:0} .y{background:#cfc}"
            ".n{background:#fcc} .p{background:#ffc} td{padding:0 .5em}"
            " table{border-collapse:collapse}</style>",
            f"<h1>{e(self.title)}</h1>",
            f"<p>{self.covered} of {self.total} coverage points (basic blocks) reached "
            f"({pct:.1f}%).</p>",
        ]
        if self.timeline:
            parts.append("<h2>Points covered over time</h2><table><tr><th>seconds</th>"
                         "<th>programs</th><th>points</th></tr>")  # fmt: skip
            parts += [f"<tr><td>{t['seconds']:.1f}</td><td>{t['programs']}</td>"
                      f"<td>{t['points']}</td></tr>" for t in self.timeline]  # fmt: skip
            parts.append("</table>")
        parts.append("<h2>Files</h2><table><tr><th>covered</th><th>points</th><th></th>"
                     "<th>file</th></tr>")  # fmt: skip
        for i, (name, total, hit) in enumerate(self._file_rows()):
            parts.append(f"<tr><td>{hit}</td><td>{total}</td>"
                         f"<td>{100.0 * hit / max(1, total):.1f}%</td>"
                         f"<td><a href='#f{i}'>{e(name)}</a></td></tr>")  # fmt: skip
        parts.append("</table><h2>Functions</h2><table><tr><th>covered</th><th>points</th>"
                     "<th>function</th><th>file</th></tr>")  # fmt: skip
        for fn, name, total, hit in self.functions:
            cls_ = "y" if hit == total else "n" if hit == 0 else "p"
            parts.append(f"<tr class='{cls_}'><td>{hit}</td><td>{total}</td><td>{e(fn)}</td>"
                         f"<td>{e(Path(name).name)}</td></tr>")  # fmt: skip
        parts.append("</table>")
        for i, (name, lines) in enumerate(sorted(self.files.items())):
            parts.append(f"<h2 id='f{i}'>{e(name)}</h2>")
            source = _source_lines(name)
            if not source:
                parts.append("<p>(source not found here; lines with points:)</p>")
                source = [""] * (max(lines, default=0))
            for n, text in enumerate(source, 1):
                cell = lines.get(n)
                cls_ = "" if cell is None else "y" if cell[1] == cell[0] else (
                    "n" if cell[1] == 0 else "p")  # fmt: skip
                count = f"{cell[1]}/{cell[0]}" if cell else ""
                parts.append(f"<pre class='{cls_}'>{n:>5} {count:>5}  {e(text.rstrip())}</pre>")
        return "\n".join(parts) + "\n"

    def write(self, directory: Path) -> list[Path]:
        """``index.html`` and ``coverage.txt`` in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        page, text = directory / "index.html", directory / "coverage.txt"
        page.write_text(self.html())
        text.write_text(self.text())
        return [page, text]


def _source_lines(name: str) -> list[str]:
    try:
        return Path(name).read_text(errors="replace").splitlines()
    except OSError:
        return []
