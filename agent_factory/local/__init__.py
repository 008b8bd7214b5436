"""Local providers: real PostgreSQL servers on 127.0.0.1 standing in for Neon, Supabase and Railway."""

from .binaries import PgInstall, find_installs, find_tool
from .cluster import LocalProvider, LocalProviders

__all__ = ["LocalProvider", "LocalProviders", "PgInstall", "find_installs", "find_tool"]
