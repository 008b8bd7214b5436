"""Operations: verify, backup, restore, schema and monitoring, each a function returning a result."""
