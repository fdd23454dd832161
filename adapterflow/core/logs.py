"""Console hygiene: keep the run's own progress readable, never show a traceback for a user error, never a secret."""

from __future__ import annotations

import logging
import os
import warnings

from adapterflow.core.errors import AdapterflowError
from adapterflow.core.secrets import scrub_secrets

NOISY_LOGGERS = {
    "bitsandbytes": logging.ERROR,  # "Failed to load CPU gemm_4bit_forward": harmless, it falls back to its own kernels
    "great_expectations": logging.WARNING,
    "mlflow.pyfunc": logging.ERROR,
    "mlflow.models.model": logging.ERROR,
    "mlflow.store.db.utils": logging.WARNING,
    "mlflow.system_metrics": logging.WARNING,  # "Started/Stopping system metrics monitoring" around every training
    "alembic": logging.WARNING,
}


def stage_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run (its lines reach the Prefect UI), a plain logger outside."""
    from prefect import get_run_logger  # lazily: the CLI's start-up and its help stay free of Prefect's import
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("adapterflow")


class HideUserErrorTracebacks(logging.Filter):
    """Drop the traceback from log records about AdapterflowError: the message says all a user needs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], AdapterflowError):
            record.exc_info = None
            record.exc_text = None
        return True


class ScrubSecrets(logging.Filter):
    """Replace secrets (adapterflow/core/secrets.py) in a record's message and traceback before any handler writes it.

    The record itself is changed, so every handler after this one (console, Prefect's API, files) gets the
    scrubbed text too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # arguments that don't fit the message: the handler reports the broken record itself
        scrubbed = scrub_secrets(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub_secrets(record.exc_text)
        return True


def quiet_third_party() -> None:
    """Silence progress bars and warnings of libraries that would bury adapterflow's own messages."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name, level in NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=".*input example was not provided.*")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def cap_logger_levels(prefix: str, level: int) -> None:
    """Raise every existing logger under `prefix` to at least `level` (some libraries set children to INFO)."""
    for name in [prefix, *logging.root.manager.loggerDict]:
        if name == prefix or name.startswith(prefix + "."):
            logger = logging.getLogger(name)
            if logger.level < level:
                logger.setLevel(level)


def install_on_handlers(log_filter: logging.Filter) -> None:
    """Add the filter to every handler that exists now (Prefect's console and API handlers among them)."""
    for logger in [logging.getLogger(), *[logging.getLogger(name) for name in logging.root.manager.loggerDict]]:
        for handler in getattr(logger, "handlers", []):
            if not any(isinstance(existing, type(log_filter)) for existing in handler.filters):
                handler.addFilter(log_filter)


def hide_user_error_tracebacks() -> None:
    install_on_handlers(HideUserErrorTracebacks())


def scrub_secrets_from_logs() -> None:
    install_on_handlers(ScrubSecrets())
