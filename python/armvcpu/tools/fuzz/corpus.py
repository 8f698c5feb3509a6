"""Coverage-guided programs: lineages, mutation and the corpus.

A guided campaign keeps the programs that reached new coverage points of the
firmware and builds later programs by mutating them. Every program is still a
function of numbers alone, so it replays on any machine: its *lineage* is the
program indices it descends from, ``(i0, i1, ..., ik)``: program ``i0`` of the
seed as :func:`generate` makes it, mutated with the random numbers of ``i1``,
then ``i2``, ... up to its own index ``ik``. Its ident is ``SEED:i0/i1/.../ik``
(``SEED:INDEX`` when it is not a mutation), which ``armvcpu fuzz --replay``
takes.

>>> build_program(1, (0, 5)).ident
'1:0/5'
>>> build_program(1, (0, 5)) == build_program(1, (0, 5))
True
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .generator import _FLAVORS, TRAPS_HCR, TRAPS_MDCR, Program, _Builder, generate, tagged_rng
from .generator import word_leaves_state as _leaves_state

#: How many programs a guided campaign runs between corpus updates. The
#: corpus a program is mutated from is the one at the end of the previous
#: generation, updated in index order, so the programs do not depend on which
#: worker finished first (nor on how many workers there are).
GENERATION = 32
#: Share of a guided campaign's programs that mutate a corpus entry (the rest
#: are new programs, as an unguided campaign's).
MUTATE_SHARE = 0.6
#: Lineages stop growing here (a longer one starts from a new program).
MAX_DEPTH = 16


_rng = tagged_rng


def ident_of(seed: int, lineage: tuple[int, ...]) -> str:
    return f"{seed}:{'/'.join(str(i) for i in lineage)}"


def parse_ident(text: str) -> tuple[int, tuple[int, ...]]:
    """``"SEED:INDEX"`` or ``"SEED:I0/I1/.../IK"`` -> (seed, lineage)."""
    seed, sep, rest = text.partition(":")
    parts = rest.split("/")
    if not sep or not seed.strip().isdigit() or not all(p.strip().isdigit() for p in parts):
        raise ValueError(
            f"--replay takes SEED:INDEX (two non-negative integers) or a mutated program's "
            f"SEED:I0/I1/.../IK, not {text!r}"
        )
    return int(seed), tuple(int(p) for p in parts)


def _items(program: Program) -> list[tuple[str, tuple[int, ...]]]:
    """The body cut back into the generator's items (its notes mark their starts)."""
    starts = [i for i, _ in program.notes] or [0]
    notes = dict(program.notes)
    bounds = [*starts, len(program.body)]
    return [(notes.get(a, "?"), program.body[a:b]) for a, b in itertools.pairwise(bounds)
            if b > a]  # fmt: skip


def mutate(parent: Program, seed: int, index: int, length: int) -> Program:
    """``parent`` changed with the random numbers of ``(seed, index)``: items
    replaced by new ones, inserted, deleted, duplicated or swapped, and now
    and then the extra traps switched. A mutated program counts as clean only
    if no word of it may leave state (the generator's finer rule needs the
    items' own knowledge)."""
    rng = _rng("mutate", seed, index)
    items = _items(parent)
    kinds = _FLAVORS["mixed"]
    limit = max(1, 2 * length)

    def new_item() -> tuple[str, tuple[int, ...]]:
        if parent.its:  # an ITS program's new items are ITS items
            from .its import its_item

            return its_item(rng)
        b = _Builder(rng)
        getattr(b, rng.weighted(kinds))()
        return (b.notes[0][1] if b.notes else "?"), tuple(b.words)

    for _ in range(1 + rng.below(4)):
        op = rng.weighted((("replace", 4), ("insert", 3), ("delete", 2), ("duplicate", 1),
                           ("swap", 1)))  # fmt: skip
        if op == "insert" or not items:
            if len(items) < limit:
                items.insert(rng.below(len(items) + 1), new_item())
        elif op == "replace":
            items[rng.below(len(items))] = new_item()
        elif op == "delete" and len(items) > 1:
            del items[rng.below(len(items))]
        elif op == "duplicate" and len(items) < limit:
            i = rng.below(len(items))
            items.insert(i, items[i])
        elif op == "swap" and len(items) > 1:
            i, j = rng.below(len(items)), rng.below(len(items))
            items[i], items[j] = items[j], items[i]
    traps = parent.traps
    if rng.chance(0.05):
        traps = (0, 0) if traps != (0, 0) else (TRAPS_HCR, TRAPS_MDCR)
    body: list[int] = []
    notes: list[tuple[int, str]] = []
    for note, words in items:
        notes.append((len(body), note))
        body += words
    return Program(
        tuple(body),
        flavor=f"{parent.flavor}+mutated" if "mutated" not in parent.flavor else parent.flavor,
        clean=not any(_leaves_state(w) for w in body),
        traps=traps,
        notes=tuple(notes),
        name="",
        its=parent.its,
    )


def build_program(seed: int, lineage: tuple[int, ...], length: int = 32, *,
                  its: bool = False) -> Program:  # fmt: skip
    """The program of a lineage (see the module's docstring). With ``its``
    (a campaign with the ITS surface) some roots are ITS programs
    (:func:`.its.is_its_program`); the other programs are the same as without."""
    if not lineage:
        raise ValueError("a lineage names at least one program index")
    from .its import generate_its, is_its_program

    if its and is_its_program(seed, lineage[0]):
        program = generate_its(seed, lineage[0], length)
    else:
        program = generate(seed, lineage[0], length)
    if len(lineage) == 1:
        return program
    for index in lineage[1:]:
        program = mutate(program, seed, index, length)
    return Program(program.body, flavor=program.flavor, clean=program.clean,
                   traps=program.traps, notes=program.notes,
                   name=ident_of(seed, lineage), its=program.its)  # fmt: skip


@dataclass
class CorpusEntry:
    ident: str
    lineage: tuple[int, ...]
    new_points: int  # points it reached first


@dataclass
class Corpus:
    """Programs that reached new coverage points, in the order they did.
    With a directory, each entry is also written there as ``ID.json`` (its
    lineage, the points it added, the image and listing) and ``ID.bin``."""

    seed: int
    length: int
    directory: Path | None = None
    entries: list[CorpusEntry] = field(default_factory=list)
    #: Coverage points the entries reloaded from ``directory`` reached.
    reloaded_points: set[int] = field(default_factory=set)
    #: Files in ``directory`` not reloaded, and why (another seed or length).
    skipped: list[str] = field(default_factory=list)
    #: The campaign has the ITS surface (its lineages name ITS programs too).
    its: bool = False

    def reload(self) -> int:
        """Take back the entries a campaign of this seed and length left in
        ``directory`` (a resumed campaign goes on from its corpus instead of
        rediscovering it), in the order they were found; returns how many.
        An entry of another seed or length is skipped (its lineage names
        programs of that seed and length) and listed in :attr:`skipped`; a
        file that is not a corpus entry is an error."""
        if self.directory is None or not self.directory.is_dir():
            return 0
        found: list[tuple[int, CorpusEntry, list[int]]] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                seed, lineage = parse_ident(str(record["ident"]))
                length, new_points = int(record["length"]), int(record["new_points"])
                order = int(record.get("order", len(found)))
                points = [int(x) for x in record.get("points", [])]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path} is not a corpus entry of armvcpu fuzz: {exc}") from exc
            if (seed, length) != (self.seed, self.length):
                self.skipped.append(f"{path.name}: seed {seed}, length {length}")
                continue
            found.append((order, CorpusEntry(ident_of(seed, lineage), lineage, new_points),
                          points))  # fmt: skip
        known = {e.lineage for e in self.entries}
        added = 0
        for _, entry, points in sorted(found, key=lambda f: (f[0], f[1].lineage)):
            self.reloaded_points.update(points)
            if entry.lineage not in known:
                known.add(entry.lineage)
                self.entries.append(entry)
                added += 1
        return added

    def pick_lineage(self, index: int) -> tuple[int, ...]:
        """Program ``index``'s lineage: a new program or a mutated entry."""
        rng = _rng("schedule", self.seed, index)
        if self.entries and rng.chance(MUTATE_SHARE):
            parent = self.entries[rng.below(len(self.entries))]
            if len(parent.lineage) < MAX_DEPTH:
                return (*parent.lineage, index)
        return (index,)

    def add(self, lineage: tuple[int, ...], new_points: int, outcome: dict[str, Any]) -> None:
        entry = CorpusEntry(ident_of(self.seed, lineage), lineage, new_points)
        self.entries.append(entry)
        order = len(self.entries) - 1
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        program = build_program(self.seed, lineage, self.length, its=self.its)
        stem = self.directory / f"{self.seed}-{'-'.join(str(i) for i in lineage)}"
        stem.with_suffix(".bin").write_bytes(program.image)
        record = {"ident": entry.ident, "lineage": list(lineage), "length": self.length,
                  "new_points": new_points, "order": order,
                  "points": sorted(outcome.get("coverage", ())),
                  "outcome": outcome.get("outcome", ""),
                  "detail": outcome.get("detail", ""),
                  "replay": f"armvcpu fuzz --replay {entry.ident} --length {self.length}"
                            + (" --its" if self.its else ""),
                  "flavor": program.flavor, "traps": list(program.traps),
                  "image": program.image.hex(), "body": program.listing().splitlines()}  # fmt: skip
        stem.with_suffix(".json").write_text(json.dumps(record, indent=2))
