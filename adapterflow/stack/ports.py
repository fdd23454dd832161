"""TCP ports on 127.0.0.1: pick free ones, check fixed ones before a server tries to bind them."""

from __future__ import annotations

import socket
from contextlib import ExitStack

from adapterflow.core.errors import AdapterflowError

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that nothing listens on now (all held open together, so they differ)."""
    with ExitStack() as held:
        sockets = [held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def resolve_ports(requested: dict[str, int]) -> dict[str, int]:
    """Replace each 0 with a free port; a fixed port that is taken is a user error."""
    taken = [f"{name} port {port}" for name, port in requested.items() if port and not port_is_free(port)]
    if taken:
        raise AdapterflowError(
            f"already in use on {HOST}: {', '.join(taken)}",
            hint="stop what uses it (`adapterflow stack status`), or choose other ports (0 picks free ones)",
        )
    fixed = {port for port in requested.values() if port}
    wanted = sum(1 for port in requested.values() if not port)
    picked = iter([port for port in free_ports(wanted + len(fixed)) if port not in fixed][:wanted])
    return {name: port or next(picked) for name, port in requested.items()}
