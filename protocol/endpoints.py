"""Endpoint conventions: defaults on loopback, control port = publish port + 1."""

from __future__ import annotations

import ipaddress
import re

from .errors import UserError

DEFAULT_PUB = "tcp://127.0.0.1:5555"
DEFAULT_CONTROL = "tcp://127.0.0.1:5556"

_TCP = re.compile(r"^tcp://(?P<host>\[[^\]]*\]|[^:/]+):(?P<port>\*|\d+)$")


def split_tcp(endpoint: str) -> tuple[str, str]:
    """(host, port) of a tcp:// endpoint; UserError naming the endpoint otherwise."""
    m = _TCP.match(endpoint)
    if not m:
        raise UserError(f"endpoint {endpoint!r} is not of the form tcp://HOST:PORT")
    return m.group("host"), m.group("port")


def control_endpoint_for(pub_endpoint: str) -> str:
    """The control endpoint of a trainer publishing on `pub_endpoint` (port + 1)."""
    host, port = split_tcp(pub_endpoint)
    if port == "*":
        raise UserError(f"endpoint {pub_endpoint!r} has no fixed port: give the control endpoint explicitly")
    if host in ("*", "0.0.0.0"):
        host = "127.0.0.1"  # a bind-anywhere address is reached locally through loopback
    return f"tcp://{host}:{int(port) + 1}"


def normalize_bind(endpoint: str) -> str:
    """ZeroMQ spells "any free port" as `*`; accept the socket-API spelling `:0` too."""
    if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
        return endpoint[:-2] + ":*"
    return endpoint


def is_loopback(endpoint: str) -> bool:
    """True for endpoints nobody else on the network can reach (loopback tcp, ipc, inproc)."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host, _ = split_tcp(endpoint)
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or a hostname: treat as reachable from outside
