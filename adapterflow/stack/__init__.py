"""`adapterflow stack`: a local shared-server stack (Postgres, S3, MLflow, Prefect, workers) without Docker. May
import: core, orchestration."""

from adapterflow.stack.environment import CLIENT_ENV_VARS, MLFLOW_LOGIN_VARS, export_lines
from adapterflow.stack.settings import PoolSettings, StackSettings
from adapterflow.stack.stack import ComponentStatus, Stack

__all__ = ["CLIENT_ENV_VARS", "MLFLOW_LOGIN_VARS", "ComponentStatus", "PoolSettings", "Stack", "StackSettings",
           "export_lines"]
