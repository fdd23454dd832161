"""The environment a client of the stack exports, named once for the stack, its CLI and infra/."""

from __future__ import annotations

import shlex

from adapterflow.stack.settings import REGION

# MLflow's clients send these as basic-auth credentials; only a stack whose server runs the basic-auth app sets them.
MLFLOW_LOGIN_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
CLIENT_ENV_VARS = (
    "MLFLOW_TRACKING_URI",
    *MLFLOW_LOGIN_VARS,
    "PREFECT_API_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "ADAPTERFLOW_STORAGE",
)


def s3_env(endpoint: str, access_key: str, secret_key: str) -> dict[str, str]:
    """What boto3 and MLflow's S3 artifact store need to reach the stack's bucket."""
    return {
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_ENDPOINT_URL": endpoint,
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": REGION,
    }


def client_env(
    *, mlflow_url: str, mlflow_login: tuple[str, str] | None, prefect_api_url: str, s3_endpoint: str, access_key: str,
    secret_key: str, bucket: str,
) -> dict[str, str]:
    """The variables of CLIENT_ENV_VARS, in that order; MLFLOW_LOGIN_VARS only with an `mlflow_login`."""
    login = dict(zip(MLFLOW_LOGIN_VARS, mlflow_login, strict=True)) if mlflow_login else {}
    env = {
        "MLFLOW_TRACKING_URI": mlflow_url,
        **login,
        "PREFECT_API_URL": prefect_api_url,
        **s3_env(s3_endpoint, access_key, secret_key),
        "ADAPTERFLOW_STORAGE": f"s3://{bucket}/cache",
    }
    return {name: env[name] for name in CLIENT_ENV_VARS if name in env}


def export_lines(env: dict[str, str]) -> str:
    """`export KEY=value` lines a shell can `eval`."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())
