"""The content-addressed store (a folder or an S3 bucket) and the small records stages pass to each other. May
import: core, schemas."""
