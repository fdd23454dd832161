"""Prefect mechanics: the `@stage` task wrapper, work pools, deployed runs on a pool, one retrain per model at a
time. May import: core, schemas, storage."""
