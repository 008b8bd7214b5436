"""Input checks of `AgentFactoryStore`: every op is checked before anything is written."""

from __future__ import annotations

from langgraph.store.base import GetOp, ListNamespacesOp, Op, PutOp, SearchOp

from ...errors import InvalidInputError
from . import store_sql as q


def check_namespace(namespace: tuple[str, ...], *, allow_empty: bool = False) -> None:
    """Raise `InvalidInputError` for a namespace the store cannot keep (empty, empty or dotted label, reserved root)."""
    if not isinstance(namespace, tuple):
        raise InvalidInputError(f"namespace must be a tuple of strings, not {type(namespace).__name__}")
    if not namespace and not allow_empty:
        raise InvalidInputError("namespace must have at least one label")
    for label in namespace:
        if not isinstance(label, str) or not label:
            raise InvalidInputError(f"namespace {namespace!r} has an empty or non-string label")
        if "." in label:
            raise InvalidInputError(f"namespace label {label!r} contains a dot; labels are stored dot-joined")
    if namespace and namespace[0] == "langgraph":
        raise InvalidInputError(f"namespace {namespace!r} starts with the reserved label 'langgraph'")


def validate_op(op: Op) -> None:
    """Raise `InvalidInputError` naming what is wrong with one store operation (nothing is written then)."""
    if isinstance(op, PutOp):
        check_namespace(op.namespace)
        if not isinstance(op.key, str):
            raise InvalidInputError(f"key must be a string, not {type(op.key).__name__}")
        if op.value is not None:
            if not isinstance(op.value, dict):
                raise InvalidInputError(f"value must be a dict, not {type(op.value).__name__}")
            q.to_json(op.value, what=f"value of {op.key!r}")
        if op.ttl is not None and not (isinstance(op.ttl, (int, float)) and op.ttl > 0):
            raise InvalidInputError(f"ttl must be a positive number of minutes, not {op.ttl!r}")
    elif isinstance(op, GetOp):
        check_namespace(op.namespace)
    elif isinstance(op, SearchOp):
        check_namespace(op.namespace_prefix, allow_empty=True)
        check_page(op.limit, op.offset)
        q.filter_conditions(op.filter, {})
    elif isinstance(op, ListNamespacesOp):
        check_page(op.limit, op.offset)
        if op.max_depth is not None and op.max_depth < 1:
            raise InvalidInputError(f"max_depth must be at least 1, not {op.max_depth}")
    else:
        raise InvalidInputError(f"unknown store operation {type(op).__name__}")


def check_page(limit: int, offset: int) -> None:
    """Raise `InvalidInputError` unless `limit >= 1` and `offset >= 0`."""
    if not isinstance(limit, int) or limit < 1:
        raise InvalidInputError(f"limit must be at least 1, not {limit!r}")
    if not isinstance(offset, int) or offset < 0:
        raise InvalidInputError(f"offset must be at least 0, not {offset!r}")
