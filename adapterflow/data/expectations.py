"""great-expectations, run in an ephemeral context over a pandas frame, with Data Docs to a chosen folder,
and its results translated into sentences a person can act on."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from adapterflow.core.errors import DataError
from adapterflow.core.logs import cap_logger_levels

MAX_EXAMPLE_ROWS = 5  # offending rows named per failed expectation; the JSON report lists them all
STATISTIC = re.compile(r"expect_column_(mean|median|min|max|sum|stdev|proportion_of_unique_values)_to_be_between")


def load_suite(path: Path) -> list[dict[str, Any]]:
    """The `expectations:` list of a suite YAML file."""
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, dict) or not isinstance(spec.get("expectations"), list):
        raise DataError(f"{path}: a suite needs an `expectations:` list", hint="see adapterflow/data/suites/chat.yaml")
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
        outcome = checkpoint.run(batch_parameters={"dataframe": frame})
        results[name] = _with_meta_and_examples(outcome, frame)
    _remove_default_site(context)
    return results


def _with_meta_and_examples(outcome: Any, frame: pd.DataFrame) -> dict[str, Any]:
    """The result as JSON, each expectation with the `meta` it was declared with (great-expectations' own
    description drops it) and, for a failed aggregate expectation, the rows beyond its limit."""
    described = outcome.describe_dict()
    for validation, checked in zip(described["validation_results"], outcome.run_results.values(), strict=True):
        for item, evaluated in zip(validation["expectations"], checked.results, strict=True):
            meta = evaluated.expectation_config.meta if evaluated.expectation_config else None
            if meta:
                item["meta"] = dict(meta)
            rows, count = ([], 0) if item["success"] else aggregate_offenders(frame, item)
            if rows:
                item["example_rows"], item["offending_rows"] = rows, count
    return described


def aggregate_offenders(frame: pd.DataFrame, item: Mapping[str, Any]) -> tuple[list[str], int]:
    """For a column statistic above (below) its limit: the rows whose value is above (below) it, largest
    (smallest) first and in file order among equals, as file:line (at most MAX_EXAMPLE_ROWS), and how many
    there are. For a true/false column those are the rows where it is true (false)."""
    kwargs = item.get("kwargs") or {}
    column, observed = kwargs.get("column"), (item.get("result") or {}).get("observed_value")
    if not STATISTIC.match(item.get("expectation_type", "")) or column not in frame or "line" not in frame:
        return [], 0
    values = frame[column]
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)) or observed is None:
        return [], 0
    values = values.astype(float)
    high, low = kwargs.get("max_value"), kwargs.get("min_value")
    if high is not None and observed > high:
        offending = values[values > high].sort_values(ascending=False, kind="stable")
    elif low is not None and observed < low:
        offending = values[values < low].sort_values(ascending=True, kind="stable")
    else:
        return [], 0
    sources = frame["source"] if "source" in frame else pd.Series("", index=frame.index)
    return [f"{sources[row]}:{frame['line'][row]}" for row in offending.index[:MAX_EXAMPLE_ROWS]], len(offending)


def _remove_default_site(context: Any) -> None:
    # The ephemeral context registers a temporary `local_site`; don't leave it behind in /tmp.
    site = context.variables.data_docs_sites.get("local_site", {})
    folder = site.get("store_backend", {}).get("base_directory")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def expectation_sentence(item: Mapping[str, Any], suite: str | None = None) -> str:
    """One failed great-expectations result as a sentence a person can act on.

    `item` is one entry of a result's `expectations` list as `run_suites` returns it: expectation type,
    kwargs, result (observed value or unexpected rows), the expectation's `meta`, and `example_rows` found
    for aggregate expectations. The sentence says what was measured in words and numbers, the limit, up to
    MAX_EXAMPLE_ROWS offending rows as file:line, and the fix, then names the expectation in brackets so it
    can be found in the JSON report. Optional `meta` keys, set where a suite is declared:
    `what` (how a failing row is described, e.g. "are longer than 512 tokens"; a mean expectation with
    `what` is read as the share of such rows), `rows` (the noun for rows, default "rows"), `detail` (more
    numbers, e.g. "p95 1,210"), `fix` (what to do, naming the config key).

    Example: "56.3% of examples are longer than 512 tokens (p95 1,210; limit 20%), e.g. a.jsonl:4: set
    tokenize.max_length [tokens: expect_column_mean_to_be_between(truncated)]".
    """
    kind = item.get("expectation_type", "expectation")
    kwargs = {key: value for key, value in (item.get("kwargs") or {}).items() if key != "batch_id"}
    outcome = item.get("result") or {}
    meta = item.get("meta") or {}
    column = kwargs.get("column")
    found = ""
    if "unexpected_count" in outcome:
        measured, limit = _rows_failing(kind, kwargs, outcome, meta)
        if not meta.get("what") and "null" not in kind:
            found = _distinct(outcome.get("partial_unexpected_list") or [])
    else:
        measured, limit = _observed(kind, kwargs, outcome.get("observed_value"), meta)
    numbers = "; ".join(part for part in (found and f"found {found}", meta.get("detail"), limit) if part)
    fix = f": {meta['fix']}" if meta.get("fix") else ""
    name = f"{kind}({column})" if column else kind
    return (f"{measured}{f' ({numbers})' if numbers else ''}{_where(item, outcome)}{fix} "
            f"[{suite + ': ' if suite else ''}{name}]")


def failed_expectations(name: str, result: dict[str, Any]) -> list[str]:
    """`expectation_sentence` for every failed expectation of one suite's result."""
    return [expectation_sentence(item, name) for validation in result["validation_results"]
            for item in validation["expectations"] if not item["success"]]


def _rows_failing(kind: str, kwargs: dict, outcome: dict, meta: Mapping) -> tuple[str, str]:
    """"3 of 40 rows (7.5%) have x above 8" and the limit, for a per-row expectation."""
    count, total = outcome["unexpected_count"], outcome.get("element_count", 0)
    rows = meta.get("rows", "rows")
    condition = _condition(kwargs)
    scope = f"{count:,} of {total:,} {rows}" + (f" where {condition}" if condition else "")
    share = f" ({count / total:.1%})" if total else ""
    measured = f"{scope}{share} {meta.get('what') or _row_problem(kind, kwargs)}"
    mostly = kwargs.get("mostly")
    allowed = _percent(1 - mostly) if mostly is not None and mostly < 1 else ""
    return measured, f"at most {allowed} allowed" if allowed else "none allowed"


def _row_problem(kind: str, kwargs: dict) -> str:
    """What is wrong with a failing row, from the expectation's type and kwargs."""
    column = kwargs.get("column", "the row")
    bounds = _outside(kwargs)
    problems = {
        "expect_column_values_to_be_between": f"have {column} {bounds}",
        "expect_column_value_lengths_to_be_between": f"have a {column} length {bounds}",
        "expect_column_values_to_be_in_set": f"have {column} not in {_set(kwargs.get('value_set'))}",
        "expect_column_values_to_not_be_in_set": f"have {column} in {_set(kwargs.get('value_set'))}",
        "expect_column_values_to_not_be_null": f"have no {column}",
        "expect_column_values_to_be_null": f"have a {column}",
        "expect_column_values_to_be_unique": f"repeat a {column} value",
        "expect_column_values_to_match_regex": f"have {column} not matching {kwargs.get('regex')!r}",
        "expect_column_values_to_not_match_regex": f"have {column} matching {kwargs.get('regex')!r}",
    }
    return problems.get(kind, f"fail {kind} on {column}")


def _observed(kind: str, kwargs: dict, observed: Any, meta: Mapping) -> tuple[str, str]:
    """The measured statistic and its limit, for an aggregate expectation."""
    column = kwargs.get("column")
    rows = meta.get("rows", "rows")
    statistic = STATISTIC.match(kind)
    if statistic and statistic.group(1) == "mean" and meta.get("what") and isinstance(observed, int | float):
        # the mean of a true/false column is the share of rows where it holds
        return f"{_percent(observed)} of {rows} {meta['what']}", _limit(kwargs, percent=True)
    limit = _limit(kwargs)
    if kind == "expect_table_row_count_to_be_between":
        return f"{_number(observed)} {rows}", limit
    if kind == "expect_column_unique_value_count_to_be_between":
        return f"{column} has {_number(observed)} distinct value{'s' if observed != 1 else ''}", limit
    if statistic and column:
        return f"the {statistic.group(1).replace('_', ' ')} of {column} is {_number(observed)}", limit
    subject = f"{column}: " if column else ""
    return f"{subject}{kind} observed {_number(observed)}", limit


def _limit(kwargs: dict, percent: bool = False) -> str:
    """"limit 20%" for an upper bound (the usual case), else "limit: at least 2" or "limit: 2-8"."""
    show = _percent if percent else _number
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is None and high is None:
        return ""
    if low is None:
        return f"limit {show(high)}"
    return f"limit: at least {show(low)}" if high is None else f"limit: {show(low)}-{show(high)}"


def _where(item: Mapping[str, Any], outcome: dict) -> str:
    """", e.g. a.jsonl:4, a.jsonl:9 (+12 more)": the first offending rows as file:line."""
    if item.get("example_rows"):
        rows, total = item["example_rows"], item.get("offending_rows", len(item["example_rows"]))
    else:
        unexpected = outcome.get("unexpected_index_list") or []
        rows = [f"{row.get('source', '')}:{row['line']}" for row in unexpected if isinstance(row, dict) and "line" in row]
        total = outcome.get("unexpected_count", len(rows))
    if not rows:
        return ""
    more = f" (+{total - MAX_EXAMPLE_ROWS:,} more)" if total > MAX_EXAMPLE_ROWS else ""
    return f", e.g. {', '.join(rows[:MAX_EXAMPLE_ROWS])}{more}"


def _outside(kwargs: dict) -> str:
    """Where failing values lie: "outside 1-8", "other than 2", "below 1" or "above 8"."""
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None and high is not None:
        return f"other than {_number(low)}" if low == high else f"outside {_number(low)}-{_number(high)}"
    return f"below {_number(low)}" if low is not None else f"above {_number(high)}"


def _condition(kwargs: dict) -> str:
    condition = kwargs.get("row_condition")
    if isinstance(condition, dict):  # great-expectations wraps a pandas condition in a dict
        condition = condition.get("pass_through_filter")
    return str(condition) if condition else ""


def _set(values: Any) -> str:
    return "{" + ", ".join(_value(value) for value in values or []) + "}"


def _distinct(values: list) -> str:
    seen: list[str] = []
    for value in values:
        text = _value(value)
        if text not in seen:
            seen.append(text)
    return ", ".join(seen[:MAX_EXAMPLE_ROWS]) + (", ..." if len(seen) > MAX_EXAMPLE_ROWS else "")


def _value(value: Any) -> str:
    return repr(value) if isinstance(value, str) else _number(value)


def _number(value: Any) -> str:
    """1,210 for whole numbers, three significant digits otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _percent(share: float) -> str:
    """0.2 -> "20%", 0.5633 -> "56.3%"."""
    return f"{share * 100:.1f}".removesuffix(".0") + "%"


def evaluated_count(results: dict[str, Any]) -> int:
    return sum(len(v["expectations"]) for result in results.values() for v in result["validation_results"])
