"""Metrics to an MLflow server in one short try, so an outage reaches the metric buffer in seconds.

MLflow's client retries a failed request 7 times with backoff of up to 2 minutes a wait (MLFLOW_HTTP_REQUEST_*,
read from the environment at every request): inside the training loop's log_batch a 30 s outage stalled
training for 254 s (the reliability benchmark). Metrics have the buffer (adapterflow/tracking/metric_buffer.py)
to wait in and go out again at the next step, so they are posted with no retry and a short timeout, given per
request: the environment, and every other MLflow call of the process, keep MLflow's defaults.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import urlparse

from mlflow.entities import Metric
from mlflow.protos.service_pb2 import LogBatch
from mlflow.tracking import MlflowClient
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.proto_json_utils import message_to_json
from mlflow.utils.rest_utils import http_request, verify_rest_response

LOG_BATCH_ENDPOINT = "/api/2.0/mlflow/runs/log-batch"  # MLflow's REST API
METRIC_RETRIES = 0  # the buffer retries, at the next step
# seconds a metric request may wait to connect, and then for each read: a server that never answers costs a
# step this much; one that answers later has stored the batch, and the second sending is the same point
METRIC_TIMEOUT_S = 5


def send_metric_batch(client: MlflowClient, run_id: str, metrics: Sequence[Metric]) -> None:
    """Log `metrics` into run `run_id` through `client`'s tracking URI: to an MLflow server (http, https) in
    one try of at most METRIC_TIMEOUT_S per connect and read; into any other store through the client."""
    if urlparse(client.tracking_uri).scheme not in ("http", "https"):
        client.log_batch(run_id, metrics=metrics, synchronous=True)
        return
    body = json.loads(message_to_json(LogBatch(run_id=run_id, metrics=[metric.to_proto() for metric in metrics])))
    response = http_request(get_default_host_creds(client.tracking_uri), LOG_BATCH_ENDPOINT, "POST",
                            max_retries=METRIC_RETRIES, backoff_factor=0, timeout=METRIC_TIMEOUT_S, json=body)
    verify_rest_response(response, LOG_BATCH_ENDPOINT)
