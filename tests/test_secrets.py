"""Secrets from the environment and passwords in URLs are replaced in text and in log lines."""

from __future__ import annotations

import io
import logging

import pytest

from adapterflow.core.logs import scrub_secrets_from_logs
from adapterflow.core.secrets import looks_secret, scrub_secrets, secret_values

ENV = {
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "HF_TOKEN": "hf_Q7bX2mLpR9sT4vW8yZ1aC3dE5fG6hJ0kNq",
    "MLFLOW_TRACKING_PASSWORD": "tracking-pw-77",
    "DATABASE_URL": "postgresql://trainer:Pg-Pass-4821@db.internal:5432/tickets",
    "TOKENIZERS_PARALLELISM": "false-ish-long",
    "GITHUB_TOKEN": "short",
    "DESK_CODE": "desk-code-991",
    "ADAPTERFLOW_SECRETS": "DESK_CODE, NOT_SET",
}


@pytest.mark.parametrize(("name", "secret"), [
    ("AWS_SECRET_ACCESS_KEY", True), ("HF_TOKEN", True), ("MLFLOW_TRACKING_PASSWORD", True), ("OPENAI_API_KEY", True),
    ("GITHUB_AUTH", True), ("aws.credentials", True), ("TOKENIZERS_PARALLELISM", False), ("GIT_AUTHOR_EMAIL", False),
    ("HOME", False), ("DATABASE_URL", False), ("MONKEY", False),
])
def test_secret_names_are_judged_by_whole_words(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


def test_secret_values_come_from_secret_names_marks_and_url_passwords() -> None:
    assert secret_values(ENV) == {
        ENV["AWS_SECRET_ACCESS_KEY"]: "AWS_SECRET_ACCESS_KEY",
        ENV["HF_TOKEN"]: "HF_TOKEN",
        ENV["MLFLOW_TRACKING_PASSWORD"]: "MLFLOW_TRACKING_PASSWORD",
        "Pg-Pass-4821": "DATABASE_URL",
        ENV["DESK_CODE"]: "DESK_CODE",
    }  # GITHUB_TOKEN is too short to replace, TOKENIZERS_PARALLELISM not secret


def test_scrub_names_each_secret_and_hides_any_url_password() -> None:
    secrets = secret_values(ENV)
    text = (f"token {ENV['HF_TOKEN']} key={ENV['AWS_SECRET_ACCESS_KEY']} db {ENV['DATABASE_URL']} "
            f"pw Pg-Pass-4821 other https://bob:hunter2@example.org/x code desk-code-991")
    assert scrub_secrets(text, secrets) == (
        "token <SECRET:HF_TOKEN> key=<SECRET:AWS_SECRET_ACCESS_KEY> "
        "db postgresql://trainer:<SECRET:DATABASE_URL>@db.internal:5432/tickets pw <SECRET:DATABASE_URL> "
        "other https://bob:<SECRET:URL_PASSWORD>@example.org/x code <SECRET:DESK_CODE>"
    )
    assert scrub_secrets("nothing secret: s3://bucket/prefix, user@example.org", secrets) == (
        "nothing secret: s3://bucket/prefix, user@example.org")


def test_a_longer_secret_that_contains_another_is_replaced_whole() -> None:
    secrets = {"abcdef": "SHORT_TOKEN", "abcdef-123456": "LONG_TOKEN"}
    assert scrub_secrets("x abcdef-123456 y abcdef", secrets) == "x <SECRET:LONG_TOKEN> y <SECRET:SHORT_TOKEN>"


def test_log_lines_and_tracebacks_are_scrubbed_on_every_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", ENV["HF_TOKEN"])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("adapterflow.tests.secrets")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        scrub_secrets_from_logs()
        scrub_secrets_from_logs()  # installed once per handler however often it is called
        logger.warning("downloading with %s from %s", ENV["HF_TOKEN"], "https://me:hunter22@hub.example/x")
        try:
            raise RuntimeError(f"401 for token {ENV['HF_TOKEN']}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert ENV["HF_TOKEN"] not in output and "hunter22" not in output
    assert "downloading with <SECRET:HF_TOKEN> from https://me:<SECRET:URL_PASSWORD>@hub.example/x" in output
    assert "RuntimeError: 401 for token <SECRET:HF_TOKEN>" in output
    assert sum(type(f).__name__ == "ScrubSecrets" for f in handler.filters) == 1
