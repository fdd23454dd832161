"""Which failures are worth retrying: a pure decision over an exception and its causes.

Transient: the network and the services behind it (MLflow, the object store, the Prefect API) failing to
answer, timing out, throttling or answering 5xx. Everything else is permanent and retrying it only delays
the error: a user's config or data (AdapterflowError), programming errors, running out of memory and
numerical faults. Unknown exceptions count as permanent: a retry must be earned, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
TRANSIENT_MLFLOW_CODES = {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
TRANSIENT_S3_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
                      "ServiceUnavailable", "RequestTimeTooSkewed"}
# exception classes of the HTTP and AWS clients, matched by name along the class hierarchy (so httpx's
# ConnectError counts as a TransportError) without importing those clients here
TRANSIENT_TYPES = {
    "ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "ChunkedEncodingError",  # requests
    "TransportError", "TimeoutException", "NetworkError", "RemoteProtocolError", "PoolTimeout",  # httpx
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",  # botocore
    "ProtocolError", "NewConnectionError", "MaxRetryError",  # urllib3
}


@dataclass(frozen=True)
class FaultVerdict:
    transient: bool
    reason: str


def classify_failure(error: BaseException) -> FaultVerdict:
    """Whether `error` (or what caused it) is a transient service or network failure, and why."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        verdict = _classify_one(current)
        if verdict is not None:
            return verdict
        current = current.__cause__ or current.__context__
    return FaultVerdict(False, f"{type(error).__name__} is not a network or service failure: retrying won't fix it")


def _classify_one(error: BaseException) -> FaultVerdict | None:
    from adapterflow.core.errors import AdapterflowError, NumericalFault

    name = type(error).__name__
    if isinstance(error, NumericalFault):
        return FaultVerdict(False, "a numerical fault (NaN or Inf): the same inputs give the same fault")
    if isinstance(error, AdapterflowError):
        return FaultVerdict(False, "a problem with the config, the data or the setup: fix it and run again")
    if isinstance(error, MemoryError) or "OutOfMemoryError" in name or "out of memory" in str(error).lower():
        return FaultVerdict(False, "out of memory: the same step needs the same memory on a retry")
    if isinstance(error, FloatingPointError | ArithmeticError):
        return FaultVerdict(False, "a numerical fault: the same inputs give the same fault")
    if isinstance(error, ConnectionError | TimeoutError) or any(
        cls.__name__ in TRANSIENT_TYPES for cls in type(error).__mro__
    ):
        return FaultVerdict(True, f"network failure ({name})")
    status = _http_status(error)
    if status in TRANSIENT_HTTP:
        return FaultVerdict(True, f"the service answered HTTP {status}")
    code = getattr(error, "error_code", None)
    if isinstance(code, str) and code in TRANSIENT_MLFLOW_CODES:
        return FaultVerdict(True, f"the MLflow server answered {code}")
    s3_code = (getattr(error, "response", None) or {}).get("Error", {}).get("Code") if name == "ClientError" else None
    if s3_code in TRANSIENT_S3_CODES:
        return FaultVerdict(True, f"the object store answered {s3_code}")
    return None


def _http_status(error: BaseException) -> int | None:
    """The HTTP status an exception carries (httpx, requests, MLflow, botocore), if any."""
    for holder in (getattr(error, "response", None), error):
        for attribute in ("status_code", "get_http_status_code"):
            value = getattr(holder, attribute, None)
            value = value() if callable(value) else value
            if isinstance(value, int):
                return value
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None
