"""Prefect flows: the fine-tuning pipeline as a DAG of stage tasks."""
