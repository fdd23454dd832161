"""MLflow's basic-auth app on the stack's tracking server: the admin login, the app's config file, a login check."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from adapterflow.core.errors import AdapterflowError
from adapterflow.stack.keyfiles import load_or_generate, write_private

APP_NAME = "basic-auth"
DATABASE = "mlflow_auth"  # the app's own database: it migrates its schema with alembic as the tracking store does
ADMIN_USERNAME = "admin"
# A logged-in user may read every experiment, run and model; changing what another user created needs a grant.
DEFAULT_PERMISSION = "READ"
# How long the server trusts a successful login: checking a password (scrypt) takes seconds on a busy machine,
# on every request otherwise. With the server's one worker a change made through MLflow's API applies at once.
LOGIN_CACHE_SECONDS = 300
# The caller's variables that MLflow would read instead of the config file; the server must not inherit them.
OVERRIDES = ("MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD")


@dataclass(frozen=True)
class AdminLogin:
    username: str
    password: str
    flask_secret_key: str  # the key MLflow signs its sign-up form's CSRF token with; fixed across restarts


def _new_login() -> dict[str, str]:
    return asdict(AdminLogin(ADMIN_USERNAME, secrets.token_urlsafe(24), secrets.token_hex(32)))


def load_or_create_login(path: Path) -> AdminLogin:
    """The admin login: generated on the first start, then reused (MLflow creates its admin user only once)."""
    return AdminLogin(**load_or_generate(path, _new_login))


def config_text(database_uri: str, login: AdminLogin) -> str:
    """The app's ini file (read by MLflow through MLFLOW_AUTH_CONFIG_PATH, with %-interpolation)."""
    values = {
        "database_uri": database_uri,
        "default_permission": DEFAULT_PERMISSION,
        "admin_username": login.username,
        "admin_password": login.password,
        "auth_cache_ttl_seconds": str(LOGIN_CACHE_SECONDS),
    }
    return "[mlflow]\n" + "".join(f"{key} = {value.replace('%', '%%')}\n" for key, value in values.items())


def write_config(path: Path, database_uri: str, login: AdminLogin) -> None:
    write_private(path, config_text(database_uri, login))


def server_env(config: Path, login: AdminLogin) -> dict[str, str]:
    """What `mlflow server --app-name basic-auth` needs besides its command line."""
    return {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": login.flask_secret_key}


def check_login(mlflow_url: str, login: AdminLogin, login_file: Path) -> None:
    """Fail with the way out when the server refuses the login the stack exports (an admin made on an earlier
    start with another password keeps it: MLflow reads the config's password only to create the admin)."""
    try:
        response = httpx.get(f"{mlflow_url}/api/2.0/mlflow/users/current", auth=(login.username, login.password),
                             timeout=60)
    except httpx.HTTPError as error:
        raise AdapterflowError(f"the MLflow server did not answer a login check: {error}",
                               hint="see the stack's logs/mlflow.log") from None
    if response.status_code == 200:
        return
    raise AdapterflowError(
        f"the MLflow server refuses the stack's admin login '{login.username}' from {login_file} "
        f"(HTTP {response.status_code})",
        hint=f"its users live in the Postgres database {DATABASE}, which keeps the admin password of its first "
             f"start: put back the {login_file.name} of that start, or drop the database {DATABASE} (its users "
             "and permissions are lost) and run `adapterflow stack up` again",
    )
