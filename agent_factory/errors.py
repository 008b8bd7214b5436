"""The one exception hierarchy of agent_factory.

Every error the project raises on purpose derives from `AgentFactoryError`,
grouped in families so callers can catch as broadly as they need.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone


class AgentFactoryError(Exception):
    """Root of every error raised on purpose by agent_factory."""


# --- configuration -------------------------------------------------------


class ConfigError(AgentFactoryError, ValueError):
    """The configuration is missing, malformed or inconsistent."""


class UnknownProviderError(ConfigError):
    """A provider name that is not configured; the message lists the configured ones."""

    def __init__(self, name: str, configured: Iterable[str]) -> None:
        self.name = name
        self.configured = tuple(configured)
        super().__init__(f"unknown provider {name!r}; configured providers: {', '.join(self.configured)}")

    def __reduce__(self) -> tuple[type[UnknownProviderError], tuple[str, tuple[str, ...]]]:
        return type(self), (self.name, self.configured)


class DirectUrlRequiredError(ConfigError):
    """An operation needs its own session, and the provider's URL is a transaction pooler without NAME_DIRECT_URL."""


# --- database and failover ----------------------------------------------


class DatabaseError(AgentFactoryError):
    """A database operation failed."""


class ProviderUnavailableError(DatabaseError):
    """One provider cannot serve: connection refused, timed out or shut down."""

    def __init__(self, provider: str, reason: str) -> None:
        super().__init__(f"provider {provider} is unavailable: {reason}")
        self.provider = provider
        self.reason = reason


class AllProvidersDownError(DatabaseError):
    """Every configured provider failed; the message lists each one's last error."""

    def __init__(self, errors: dict[str, str]) -> None:
        detail = "; ".join(f"{name}: {reason}" for name, reason in errors.items())
        super().__init__(
            f"All database providers failed: {detail}. "
            "Check each provider's status page and network, or run `agent-factory verify`."
        )
        self.errors = dict(errors)


class ManagerClosedError(DatabaseError):
    """The `DatabaseManager` was closed; it serves no more requests."""

    def __init__(self) -> None:
        super().__init__(
            "this DatabaseManager was closed and serves no more requests; create a new one, "
            "or use agent_factory.core.default_manager() for the process's shared manager"
        )


class PoolExhaustedError(DatabaseError):
    """The provider is up but every pooled connection stayed busy past the timeout."""


class CommitOutcomeUnknownError(DatabaseError):
    """The connection broke during COMMIT of a non-idempotent write; it may or may not have applied."""


AUTH_REFUSED = "refused the configured credentials"  # in every AuthenticationFailedError message


class AuthenticationFailedError(DatabaseError):
    """A provider refused the configured credentials (28P01/28000) even after the configuration was re-read.

    Never a failover: the provider is up, its password is wrong or was rotated.
    """

    def __init__(self, provider: str, variable: str, reason: str) -> None:
        super().__init__(
            f"provider {provider} {AUTH_REFUSED} ({reason}); the password in {variable} is "
            f"wrong or was rotated: put the current one in {variable} (.env or the vault), or run "
            f"`agent-factory credentials reload --provider {provider}`. This is not a failover."
        )
        self.provider = provider
        self.variable = variable
        self.reason = reason


class CredentialRotationError(DatabaseError):
    """A credential rotation could not be completed; the message says what state the role and `.env` are in."""


class QueryError(DatabaseError):
    """The server rejected a statement (data, constraint or syntax error); no failover was attempted."""


# --- memory API ------------------------------------------------------------


class InvalidInputError(AgentFactoryError, ValueError):
    """An argument of the memory API is invalid; raised before any SQL runs, nothing was written."""


class SessionOwnerError(InvalidInputError):
    """The session belongs to another user: its owner never changes, and nothing was written."""


class SessionNotFoundError(AgentFactoryError, LookupError):
    """The session does not exist or was deleted."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} does not exist (never saved, or deleted); save it first")
        self.session_id = session_id


class SessionNotOnProviderError(DatabaseError):
    """During a failover the serving provider has never seen the session (created on the primary since the last sync).

    Not a `SessionNotFoundError`: saving the session again as new would fork it.
    """

    def __init__(self, session_id: str, serving: str, primary: str, synced_through: datetime | None = None) -> None:
        when = "" if synced_through is None else f" (which covered {primary}'s changes up to " \
            f"{synced_through.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC)"
        super().__init__(
            f"session {session_id!r} is not on provider {serving}, which serves while the primary {primary} is "
            f"unavailable: it was most likely created on {primary} after the last sync into {serving}{when}. "
            f"Nothing was written on {serving}. If this call reached {primary} just as it failed, the write may "
            f"have landed there: after the fail-back to {primary}, load the session before writing it again; "
            "do not save it again as a new session (that would fork it)."
        )
        self.session_id = session_id
        self.serving = serving
        self.primary = primary
        self.synced_through = synced_through


# --- backup and restore --------------------------------------------------


class BackupError(AgentFactoryError):
    """A backup, verification or restore failed."""


class BackupVerificationError(BackupError):
    """A backup archive is corrupt, truncated, of unknown format or does not match its manifest."""


class UnsignedBackupError(BackupVerificationError):
    """A backup's manifest carries no signature and unsigned backups were not explicitly allowed."""


class OperationLockedError(BackupError):
    """Another backup or restore is already running on the same provider."""


class ToolNotFoundError(BackupError):
    """No suitable PostgreSQL client or server binary was found."""


class ConfirmationRequiredError(BackupError):
    """A destructive operation (restoring another provider's backup) needs explicit confirmation (`--yes`)."""


# --- schema ----------------------------------------------------------------


class SchemaError(AgentFactoryError):
    """The schema could not be applied or does not match the expected one."""


# --- local providers -------------------------------------------------------


class LocalProviderError(AgentFactoryError):
    """A local PostgreSQL provider could not be created, started or stopped."""


# --- alerting ----------------------------------------------------------------


class AlertError(AgentFactoryError):
    """An alert could not be delivered through a channel."""


# --- replication (sync between providers) -----------------------------------


class SyncError(DatabaseError):
    """A sync (the merge of one provider's changes into another) failed."""


class SyncConflictError(SyncError):
    """A row's natural key has different ids on the two providers, so the merge cannot pair them."""


class SyncBusyError(SyncError):
    """Another sync into the same target holds that target's sync lock."""

    def __init__(self, target: str, holder: str) -> None:
        super().__init__(f"provider {target} is busy: another sync into it is running ({holder}); "
                         "try again when it ends")
        self.target = target
        self.holder = holder


# --- streams (logical replication from the primary to each backup) ---------


class StreamError(DatabaseError):
    """A stream (publication on the primary, subscription on a backup) could not be set up, changed or read."""


class StreamPrivilegeError(StreamError):
    """A role lacks what a stream needs (REPLICATION on the publisher, the right to create a subscription)."""


class StreamPoolerUrlError(StreamError, ConfigError):
    """A stream was asked to go through a transaction pooler; logical replication needs a direct URL."""


# --- state store -------------------------------------------------------------


class StateStoreError(AgentFactoryError):
    """The local state store cannot be read or written."""


class StateDirError(StateStoreError, ConfigError):
    """The state directory (AGENT_FACTORY_STATE_DIR) is not a directory, or cannot be created or opened."""


class StateStoreMissingError(StateStoreError, FileNotFoundError):
    """There is no state store file where one was expected (nothing has written it yet)."""
