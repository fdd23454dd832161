"""Pipeline stages: one file each, a plain function doing the work and a thin Prefect task around it."""
