"""great-expectations, run in an ephemeral context over a pandas frame, with Data Docs to a chosen folder."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from adapterflow.errors import DataError
from adapterflow.logs import cap_logger_levels

MAX_REPORTED_ROWS = 20  # failing rows listed per expectation in messages


def load_suite(path: Path) -> list[dict[str, Any]]:
    """The `expectations:` list of a suite YAML file."""
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, dict) or not isinstance(spec.get("expectations"), list):
        raise DataError(f"{path}: a suite needs an `expectations:` list", hint="see adapterflow/suites/chat.yaml")
    return spec["expectations"]


def check_expectation_types(expectations: list[dict[str, Any]], source: str) -> None:
    """great-expectations silently drops unknown expectation types: name them instead."""
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import get_expectation_impl

    unknown = []
    for index, item in enumerate(expectations):
        try:
            get_expectation_impl(item.get("type", "<missing type>"))
        except ExpectationNotFoundError:
            unknown.append(f"expectations[{index}].type={item.get('type')!r}")
    if unknown:
        raise DataError(f"{source}: unknown expectation types: {', '.join(unknown)}",
                        hint="see https://greatexpectations.io/expectations for the names")


def run_suites(frames: dict[str, pd.DataFrame], suites: dict[str, list[dict]], docs_dir: Path | None) -> dict[str, Any]:
    """Run each named suite on its frame in one ephemeral context; {name: JSON description of the result}."""
    import great_expectations as gx

    cap_logger_levels("great_expectations", logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    actions = []
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name="adapterflow",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["adapterflow"]))
    source = context.data_sources.add_pandas("adapterflow")
    results = {}
    for name, frame in frames.items():
        definition = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=suites[name]))
        validation = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=definition, suite=suite))
        index_columns = [column for column in ("source", "line") if column in frame.columns]
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=name, validation_definitions=[validation], actions=actions,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_columns},
        ))
        results[name] = checkpoint.run(batch_parameters={"dataframe": frame}).describe_dict()
    _remove_default_site(context)
    return results


def _remove_default_site(context: Any) -> None:
    # The ephemeral context registers a temporary `local_site`; don't leave it behind in /tmp.
    site = context.variables.data_docs_sites.get("local_site", {})
    folder = site.get("store_backend", {}).get("base_directory")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def failed_expectations(name: str, result: dict[str, Any]) -> list[str]:
    """One line per failed expectation: suite, type, column and a few offending rows."""
    lines = []
    for validation in result["validation_results"]:
        for item in validation["expectations"]:
            if item["success"]:
                continue
            column = item["kwargs"].get("column", "table")
            outcome = item.get("result", {})
            where = [f"{row.get('source', '')}:{row.get('line')}" for row in outcome.get("unexpected_index_list") or []
                     if isinstance(row, dict) and "line" in row]
            if "unexpected_count" in outcome:
                detail = f"{outcome['unexpected_count']} unexpected"
            else:
                detail = f"observed {outcome.get('observed_value')}"
            rows = f" at {', '.join(where[:MAX_REPORTED_ROWS])}" if where else ""
            lines.append(f"[{name}] {item['expectation_type']}({column}): {detail}{rows}")
    return lines


def evaluated_count(results: dict[str, Any]) -> int:
    return sum(len(v["expectations"]) for result in results.values() for v in result["validation_results"])
