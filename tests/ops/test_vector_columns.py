"""cut_vector_columns: a plain dump loses its pgvector-only columns, their data and pgvector indexes, nothing else."""

from __future__ import annotations

from agent_factory.ops.vector_columns import SKIPPED, cut_vector_columns

DUMP = b"""CREATE TABLE public.knowledge_atoms (
    id uuid NOT NULL,
    title text NOT NULL,
    changed_at timestamp with time zone,
    embedding public.vector
);
CREATE TABLE public.settings (
    id uuid NOT NULL,
    embedding text
);
COPY public.knowledge_atoms (id, title, changed_at, embedding) FROM stdin;
1\tA\t2026-01-01\t[1,0]
2\tB\t2026-01-02\t\\N
\\.
COPY public.settings (id, embedding) FROM stdin;
3\tkept
\\.
CREATE INDEX knowledge_atoms_embedding_1536_idx ON public.knowledge_atoms USING hnsw (((embedding)::public.vector(1536)) public.vector_cosine_ops) WHERE (public.vector_dims(embedding) = 1536);
CREATE INDEX knowledge_atoms_search_idx ON public.knowledge_atoms USING gin (search_vector);
"""  # noqa: E501 - pg_dump's own lines

EXPECTED_TEMPLATE = b"""CREATE TABLE public.knowledge_atoms (
    id uuid NOT NULL,
    title text NOT NULL,
    changed_at timestamp with time zone
);
CREATE TABLE public.settings (
    id uuid NOT NULL,
    embedding text
);
COPY public.knowledge_atoms (id, title, changed_at) FROM stdin;
1\tA\t2026-01-01
2\tB\t2026-01-02
\\.
COPY public.settings (id, embedding) FROM stdin;
3\tkept
\\.
{SKIPPED_INDEX}
CREATE INDEX knowledge_atoms_search_idx ON public.knowledge_atoms USING gin (search_vector);
"""

INDEX_LINE = next(line for line in DUMP.splitlines() if b"USING hnsw" in line)
EXPECTED = EXPECTED_TEMPLATE.replace(b"{SKIPPED_INDEX}", b"-- skipped by agent-factory: " + INDEX_LINE[:200])


def test_the_optional_column_leaves_the_table_its_rows_and_its_index():
    skipped: list[str] = []
    out = b"".join(cut_vector_columns(DUMP.splitlines(keepends=True), skipped))
    assert out == EXPECTED
    assert skipped == [SKIPPED]


def test_a_column_in_the_middle_keeps_the_commas_right():
    dump = [b"CREATE TABLE knowledge_atoms (\n", b"    id uuid,\n", b"    embedding vector,\n", b"    title text\n",
            b");\n", b"COPY knowledge_atoms (id, embedding, title) FROM stdin;\n", b"1\t[1]\tT\n", b"\\.\n"]
    out = b"".join(cut_vector_columns(dump, []))
    assert out == (b"CREATE TABLE knowledge_atoms (\n    id uuid,\n    title text\n);\n"
                   b"COPY knowledge_atoms (id, title) FROM stdin;\n1\tT\n\\.\n")
