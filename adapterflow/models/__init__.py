"""Base models: resolving, materialising and loading them. May import: core, schemas, storage."""
