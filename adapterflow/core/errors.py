"""Errors a user can act on: each says what was wrong, where, and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass


class AdapterflowError(Exception):
    """A problem in the user's config, data or environment (never a bug in adapterflow)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"

    # Prefect and MLflow pickle exceptions across process boundaries; keep both fields.
    def __reduce__(self):  # type: ignore[override]
        return (self.__class__, (self.message, self.hint))


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a config: where it is, what was found and what to do."""

    path: str
    message: str
    value: object = None
    hint: str | None = None

    def render(self) -> str:
        text = f"{self.path}: {self.message}"
        if self.value is not None:
            text += f" (got {self.value!r})"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class ConfigError(AdapterflowError):
    """All the problems found in one config, reported together."""

    exit_code = 2

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        count = len(problems)
        lines = [f"{source}: {count} problem{'s' if count != 1 else ''} found"]
        lines += [f"  - {problem.render()}" for problem in problems]
        super().__init__("\n".join(lines))

    def __reduce__(self):  # type: ignore[override]
        return (self.__class__, (self.source, self.problems))


class UsageError(AdapterflowError):
    """A command-line argument that can't be used (exit code 2, like a config error)."""

    exit_code = 2


class DataError(AdapterflowError):
    """The input data can't be used as it is (too many bad rows, unknown format, ...)."""


class ValidationGateFailed(AdapterflowError):
    """The data validation suite failed: the run stops before any training."""


class NumericalFault(AdapterflowError):
    """Training produced a NaN or Inf loss or gradient: nothing trained from here on can be trusted."""
