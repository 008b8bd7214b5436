"""The versioned schema: migrations shipped in the package, applied idempotently per provider."""

from .migrations import EXPECTED_TABLES, Migration, SchemaResult, apply_schema, applied_versions, load_migrations

__all__ = ["EXPECTED_TABLES", "Migration", "SchemaResult", "applied_versions", "apply_schema", "load_migrations"]
