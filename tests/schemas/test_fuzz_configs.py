"""Fuzzing configs: whatever a user writes wrong (wrong types, unknown keys, out-of-range values, broken YAML,
wrong nesting), `adapterflow validate` exits with code 2 and a readable list of problems, never a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from typer.testing import CliRunner

from adapterflow.cli.main import app
from benchmarks.reliability_configs import OUT_OF_RANGE, broken_config

assert len(OUT_OF_RANGE) > 20, OUT_OF_RANGE  # the walk really finds the bounded fields


runner = CliRunner()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken=broken_config())
def test_every_broken_config_exits_2_with_a_readable_list_of_problems(broken: tuple[str, list[str]]) -> None:
    text, done = broken
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(text)
        result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, (done, result.output, text)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    first = result.output.strip().splitlines()[0]
    assert "problem" in first and str(path) in first, result.output
    assert any(line.lstrip().startswith("- ") for line in result.output.splitlines()), result.output
