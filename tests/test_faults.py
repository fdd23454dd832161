"""Retry what is transient, only that: the classification of failures, and stages retried (or not) by it."""

from __future__ import annotations

import pytest

from adapterflow.core.errors import AdapterflowError, DataError
from adapterflow.core.faults import classify_failure
from adapterflow.orchestration.stage import stage
from adapterflow.storage.records import StageRecord


def wrapped(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


def test_network_and_service_failures_are_transient_and_everything_else_is_not() -> None:
    import botocore.exceptions
    import httpx
    import requests
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

    transient = [
        ConnectionRefusedError("refused"),
        TimeoutError("timed out"),
        requests.exceptions.ConnectionError("down"),
        httpx.ConnectError("down"),
        httpx.HTTPStatusError("503", request=httpx.Request("GET", "http://x"),
                              response=httpx.Response(503, request=httpx.Request("GET", "http://x"))),
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3"),
        botocore.exceptions.ClientError({"Error": {"Code": "SlowDown"}}, "PutObject"),
        MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE),
        wrapped(RuntimeError("logging failed"), requests.exceptions.ConnectionError("down")),
    ]
    permanent = [
        DataError("12% of rows are malformed"),
        AdapterflowError("bad config"),
        ValueError("a bug"),
        KeyError("missing"),
        MemoryError(),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        FloatingPointError("nan"),
        botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied"}}, "PutObject"),
        MlflowException("no such run", error_code=RESOURCE_DOES_NOT_EXIST),
        httpx.HTTPStatusError("404", request=httpx.Request("GET", "http://x"),
                              response=httpx.Response(404, request=httpx.Request("GET", "http://x"))),
    ]
    assert [classify_failure(error).transient for error in transient] == [True] * len(transient)
    assert [classify_failure(error).transient for error in permanent] == [False] * len(permanent)
    assert "out of memory" in classify_failure(permanent[5]).reason


class Counted(StageRecord):
    attempts: int


@pytest.mark.usefixtures("prefect_server")
def test_a_stage_retries_a_dropped_connection_but_not_a_bug(caplog: pytest.LogCaptureFixture) -> None:
    from prefect import flow

    attempts = {"flaky": 0, "buggy": 0}

    @stage("flaky", retries=2, retry_delay_seconds=0)
    def flaky() -> Counted:
        attempts["flaky"] += 1
        if attempts["flaky"] < 3:
            raise ConnectionResetError("connection reset by peer")
        return Counted(attempts=attempts["flaky"])

    @stage("buggy", retries=2, retry_delay_seconds=0)
    def buggy() -> Counted:
        attempts["buggy"] += 1
        raise TypeError("unsupported operand")

    @flow
    def pipeline() -> int:
        return flaky().attempts

    @flow
    def broken() -> None:
        buggy()

    assert pipeline() == 3
    with pytest.raises(TypeError):
        broken()
    assert attempts["buggy"] == 1
    assert "buggy failed, not retrying: TypeError is not a network or service failure" in caplog.text
