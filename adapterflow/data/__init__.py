"""Reading and checking user data: formats, line-numbered readers, builtin sources, dedup, PII, the train/eval split
and its leakage checks, expectations. May import: core, schemas, storage."""
