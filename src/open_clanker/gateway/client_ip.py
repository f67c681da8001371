"""The client's address: the peer, or X-Forwarded-For when the peer is a trusted proxy."""

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
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in _networks(trusted))


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[str]) -> str:
    """Walk X-Forwarded-For from the right, skipping trusted proxies; never trust it otherwise."""
    peer = peer or "unknown"
    key = tuple(trusted)
    if not forwarded_for or not key or not _is_trusted(peer, key):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, key):
            return hop
    return hops[0] if hops else peer
