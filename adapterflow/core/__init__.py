"""Foundations every other package stands on: errors, hashing, ADAPTERFLOW_HOME, secrets, device and precision,
failure classes, console logging. Imports nothing of ours."""
