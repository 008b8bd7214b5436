"""A deterministic embedder for tests: hashed tokens, no model, no network."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping

from langchain_core.embeddings import Embeddings


class HashingEmbeddings(Embeddings):
    """Embed text as a bag of lowercased tokens hashed (sha256) into `dims` buckets, L2-normalised.

    `synonyms` maps a token to the token it counts as (e.g. {"car": "automobile"}):
    two texts that share no word can still be near, which is what a real model does
    and what full-text search cannot see.
    """

    def __init__(self, dims: int = 64, synonyms: Mapping[str, str] | None = None) -> None:
        self.dims = dims
        self.synonyms = dict(synonyms or {})

    def _embed(self, text: str) -> list[float]:
        vector = [0.0] * self.dims
        for token in re.findall(r"\w+", text.lower()):
            token = self.synonyms.get(token, token)
            bucket = int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "big") % self.dims
            vector[bucket] += 1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)
