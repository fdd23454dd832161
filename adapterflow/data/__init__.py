"""Reading and checking user data: formats, line-numbered readers, builtin sources, dedup, PII, leakage,
expectations. May import: core, schemas, storage."""
