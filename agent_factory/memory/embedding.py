"""`Embedder`: a text-embedding model, given as a callable or as a LangChain-style object, checked on every call.

The core package imports no framework: an embedder is either a callable
`texts -> vectors` (`Callable[[list[str]], list[list[float]]]`) or any object
with `embed_documents(texts)` and `embed_query(text)` (a LangChain
`Embeddings`, duck-typed). Each vector it returns is checked: a list of finite
numbers of the expected size (`dims`, or the size of the first vector seen).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from ..errors import InvalidInputError

MAX_DIMS = 16000  # pgvector's limit for the vector type


@runtime_checkable
class EmbeddingsLike(Protocol):
    """An object that embeds documents and queries (LangChain's `Embeddings` has this shape)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


EmbedFunction = Callable[[list[str]], Sequence[Sequence[float]]]


class Embedder:
    """Wrap an embedding model; return checked vectors of one size.

    Raises `InvalidInputError` at construction when `model` is neither callable
    nor has `embed_documents`/`embed_query`, or `dims` is not 1..16000.
    """

    def __init__(self, model: EmbeddingsLike | EmbedFunction, dims: int | None = None) -> None:
        if not isinstance(model, EmbeddingsLike) and not callable(model):
            raise InvalidInputError("embed must be a callable on a list of strings or an object with "
                                    f"embed_documents and embed_query, not {type(model).__name__}")
        if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or not 0 < dims <= MAX_DIMS):
            raise InvalidInputError(f"dims must be an integer from 1 to {MAX_DIMS}; got {dims!r}")
        self._model = model
        self._dims = dims
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Embedder({type(self._model).__name__}, dims={self._dims})"

    @property
    def dims(self) -> int | None:
        """The vector size: the one given, else the size of the first vector returned (None before)."""
        return self._dims

    def documents(self, texts: list[str]) -> list[list[float]]:
        """Return one checked vector per text. Raises `InvalidInputError` for a wrong count, size or value."""
        if not texts:
            return []
        if isinstance(self._model, EmbeddingsLike):
            vectors: Any = self._model.embed_documents(texts)
        else:
            vectors = self._model(texts)
        if not isinstance(vectors, Sequence) or len(vectors) != len(texts):
            got = len(vectors) if isinstance(vectors, Sequence) else type(vectors).__name__
            raise InvalidInputError(f"the embedder returned {got} vectors for {len(texts)} texts")
        return [self._check(v, i) for i, v in enumerate(vectors)]

    def query(self, text: str) -> list[float]:
        """Return the checked vector of a search query."""
        if isinstance(self._model, EmbeddingsLike):
            return self._check(self._model.embed_query(text), 0)
        return self.documents([text])[0]

    def _check(self, vector: object, index: int) -> list[float]:
        if hasattr(vector, "tolist") and not isinstance(vector, (str, bytes)):
            values = list(vector.tolist())
        elif isinstance(vector, Sequence) and not isinstance(vector, (str, bytes)):
            values = list(vector)
        else:
            raise InvalidInputError(
                f"the embedder's vector {index} is a {type(vector).__name__}, not a list of numbers")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in values):
            raise InvalidInputError(f"the embedder's vector {index} holds a value that is not a finite number")
        with self._lock:
            if self._dims is None and 0 < len(values) <= MAX_DIMS:
                self._dims = len(values)
            expected = self._dims
        if len(values) != expected:
            raise InvalidInputError(f"the embedder's vector {index} has {len(values)} dimensions; "
                                    f"expected {expected if expected is not None else f'1 to {MAX_DIMS}'}")
        return [float(x) for x in values]
