"""The client's address: the peer, or X-Forwarded-For when the peer is a trusted proxy.

Every `X-Forwarded-For` line counts, in order: a proxy may add its own line instead of
appending to the client's, and a client must not hide behind a line it wrote itself."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache


@lru_cache(maxsize=64)
def _networks(
    trusted: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for entry in trusted:
        try:
            nets.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue
    return tuple(nets)


def _is_trusted(addr: str, trusted: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(_normalized(addr))
    except ValueError:
        return False
    return any(ip in net for net in _networks(trusted))


def client_ip(
    peer: str | None, forwarded_for: str | Sequence[str] | None, trusted: Sequence[str]
) -> str:
    """Walk X-Forwarded-For (all its lines) from the right, skipping trusted proxies; the first
    address that is not one is the client. Never trusted unless the peer is a trusted proxy."""
    peer = peer or "unknown"
    key = tuple(trusted)
    lines = [forwarded_for] if isinstance(forwarded_for, str) else list(forwarded_for or ())
    if not lines or not key or not _is_trusted(peer, key):
        return peer
    hops = [h.strip() for line in lines for h in line.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, key):
            return _normalized(hop)
    return _normalized(hops[0]) if hops else peer


def _normalized(hop: str) -> str:
    """`1.2.3.4:5678` and `[::1]:80` (some proxies add the port) -> the address; anything that is
    not an address is kept, cut short: it is a key in the lockout table."""
    candidates = [hop]
    if hop.startswith("[") and "]" in hop:
        candidates.append(hop[1 : hop.index("]")])
    elif hop.count(":") == 1:
        candidates.append(hop.split(":", 1)[0])
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return hop[:64]
