"""Cut pgvector-only columns out of a plain dump, for a target without pgvector.

A table that holds an optional vector column (`agent_factory.vector.OPTIONAL_COLUMNS`,
such as `knowledge_atoms.embedding`) is restored without it on a target that
neither has nor can create the `vector` extension: the column leaves the
`CREATE TABLE`, its field leaves every row of the table's `COPY`, and indexes
using pgvector's access methods (hnsw, ivfflat) are skipped. The sync refills
the column from a provider that has it (`reindex()` recomputes embeddings).
The dump's other lines pass through unchanged, streamed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from ..vector import OPTIONAL_COLUMNS

_CREATE_TABLE = re.compile(rb'^CREATE TABLE (?:[\w"]+\.)?"?(\w+)"? \($')
_COPY = re.compile(rb'^COPY (?:[\w"]+\.)?"?(\w+)"? \((.*)\) FROM stdin;\r?\n?$')
_VECTOR_INDEX = re.compile(rb"^CREATE (?:UNIQUE )?INDEX .* USING (?:hnsw|ivfflat) ")
_END_OF_DATA = (b"\\.\n", b"\\.\r\n", b"\\.")
SKIPPED = "pgvector-only columns (no pgvector on the target)"


def cut_vector_columns(lines: Iterable[bytes], skipped: list[str]) -> Iterator[bytes]:
    """Yield a plain dump's lines without the optional vector columns, their data and pgvector indexes."""
    table_columns: frozenset[bytes] = frozenset()  # optional columns of the CREATE TABLE being read
    held: bytes | None = None  # the previous column line: its comma goes if the last column is cut
    drop: list[int] = []  # positions of the fields to cut in the COPY being read
    in_copy = False
    for line in lines:
        if in_copy:
            if line in _END_OF_DATA:
                in_copy = False
                yield line
            else:
                yield _cut_fields(line, drop)
            continue
        if table_columns:
            column = line.strip().split(b" ", 1)[0]
            if line.startswith(b")"):
                table_columns = frozenset()
                if held is not None:
                    yield held
                held = None
                yield line
            elif column in table_columns:
                _note(skipped)
                if not line.rstrip().endswith(b",") and held is not None:  # the last column: drop the comma
                    held = held.rstrip()[:-1] + b"\n"
            else:
                if held is not None:
                    yield held
                held = line
            continue
        match = _CREATE_TABLE.match(line.rstrip())
        if match and match.group(1).decode() in OPTIONAL_COLUMNS:
            table_columns = frozenset(c.encode() for c in OPTIONAL_COLUMNS[match.group(1).decode()])
            yield line
            continue
        match = _COPY.match(line)
        if match and match.group(1).decode() in OPTIONAL_COLUMNS:
            optional = {c.encode() for c in OPTIONAL_COLUMNS[match.group(1).decode()]}
            names = [n.strip() for n in match.group(2).split(b",")]
            drop = [i for i, n in enumerate(names) if n.strip(b'"') in optional]
            kept = b", ".join(n for i, n in enumerate(names) if i not in drop)
            in_copy = True
            yield line[:match.start(2)] + kept + line[match.end(2):]
            continue
        if _VECTOR_INDEX.match(line):
            _note(skipped)
            yield b"-- skipped by agent-factory: " + line.rstrip()[:200] + b"\n"
            continue
        yield line


def _cut_fields(row: bytes, drop: list[int]) -> bytes:
    if not drop:
        return row
    ending = b"\r\n" if row.endswith(b"\r\n") else b"\n" if row.endswith(b"\n") else b""
    fields = row[:len(row) - len(ending)].split(b"\t")
    return b"\t".join(f for i, f in enumerate(fields) if i not in drop) + ending


def _note(skipped: list[str]) -> None:
    if SKIPPED not in skipped:
        skipped.append(SKIPPED)
