"""The statements of knowledge search: full text, semantic (pgvector) and hybrid (reciprocal rank fusion).

Each returns the atom's columns (`COLUMNS`), its rank and which search found it.
Placeholders: `{type_filter}` (empty or ` AND atom_type = %(atom_type)s`) and,
for the vector searches, `{dims}`, an int literal: the expression and the
predicate must be those of the HNSW index of that size (migration 0006) for it
to serve. Parameters: query, embedding, limit, candidates, atom_type.
"""

from __future__ import annotations

COLUMNS = "atom_id, atom_type, title, content, summary, manufacturer, keywords, source_url, quality_score, " \
          "created_at, updated_at"
_PREFIXED = ", ".join("k." + c.strip() for c in COLUMNS.split(","))

SEARCH_SQL = f"""
SELECT {COLUMNS}, ts_rank(search_vector, q) AS rank, 'text'
FROM knowledge_atoms, websearch_to_tsquery('english', %(query)s) AS q
WHERE deleted_at IS NULL AND search_vector @@ q{{type_filter}}
ORDER BY rank DESC, atom_id
LIMIT %(limit)s
"""

# The nearest atoms by cosine distance.
_NEAREST = """SELECT id, atom_id, embedding::vector({dims}) <=> %(embedding)s::vector({dims}) AS distance
    FROM knowledge_atoms
    WHERE deleted_at IS NULL AND vector_dims(embedding) = {dims}{type_filter}
    ORDER BY embedding::vector({dims}) <=> %(embedding)s::vector({dims})
    LIMIT %(candidates)s"""

SEMANTIC_SQL = f"""
SELECT {_PREFIXED}, 1 - n.distance AS rank, 'semantic'
FROM ({_NEAREST}) AS n JOIN knowledge_atoms AS k ON k.id = n.id
ORDER BY n.distance, n.atom_id
LIMIT %(limit)s
"""

RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al., 2009): score = sum of 1 / (60 + rank)

# Reciprocal rank fusion of the full-text ranking (ts_rank, weighted A/B/C) and the
# semantic one (cosine distance), each over its best `candidates` atoms: one statement.
HYBRID_SQL = f"""
WITH text_hits AS (
    SELECT id, row_number() OVER (ORDER BY rank DESC, atom_id) AS position
    FROM (SELECT id, atom_id, ts_rank(search_vector, q) AS rank
          FROM knowledge_atoms, websearch_to_tsquery('english', %(query)s) AS q
          WHERE deleted_at IS NULL AND search_vector @@ q{{type_filter}}
          ORDER BY rank DESC, atom_id
          LIMIT %(candidates)s) AS ranked
), vector_hits AS (
    SELECT id, row_number() OVER (ORDER BY distance, atom_id) AS position
    FROM ({_NEAREST}) AS nearest
), fused AS (
    SELECT coalesce(t.id, v.id) AS id,
           coalesce(1.0 / ({RRF_K} + t.position), 0) + coalesce(1.0 / ({RRF_K} + v.position), 0) AS score,
           CASE WHEN t.id IS NULL THEN 'semantic' WHEN v.id IS NULL THEN 'text' ELSE 'both' END AS matched_by
    FROM text_hits AS t FULL JOIN vector_hits AS v ON v.id = t.id
)
SELECT {_PREFIXED}, f.score::real, f.matched_by
FROM fused AS f JOIN knowledge_atoms AS k ON k.id = f.id
ORDER BY f.score DESC, k.atom_id
LIMIT %(limit)s
"""
