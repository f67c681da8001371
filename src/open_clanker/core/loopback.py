"""Which names mean "this machine" (pure): exact ones only, never a prefix."""

from __future__ import annotations

import ipaddress

_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")


def is_loopback_name(name: str) -> bool:
    """Exactly `localhost`, an IPv4 literal in 127.0.0.0/8, or `::1` (bracketed or not), with
    any port already removed. `127.evil.com` is a name anyone can point anywhere: not loopback."""
    name = name.strip().lower()
    if name == "localhost":
        return True
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        return ip == _LOOPBACK_V6
    return ip in _LOOPBACK_V4
