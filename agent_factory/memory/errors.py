"""Errors of the memory API, rooted in `AgentFactoryError`."""

from __future__ import annotations

from ..errors import AgentFactoryError


class InvalidInputError(AgentFactoryError, ValueError):
    """An argument of the memory API is invalid; raised before any SQL runs, nothing was written."""


class SessionNotFoundError(AgentFactoryError, LookupError):
    """The session does not exist or was deleted."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} does not exist (never saved, or deleted); save it first")
        self.session_id = session_id
