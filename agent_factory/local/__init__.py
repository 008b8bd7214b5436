"""Local providers: real PostgreSQL servers on 127.0.0.1 standing in for Neon, Supabase and Railway."""

from .binaries import PgInstall, find_installs, find_tool
from .cluster import LocalProvider, LocalProviders
from .pooler import LocalPooler, local_env

__all__ = ["LocalPooler", "LocalProvider", "LocalProviders", "PgInstall", "find_installs", "find_tool", "local_env"]
