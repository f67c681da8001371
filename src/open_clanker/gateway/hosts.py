"""Which Host headers the gateway answers (SPEC §5): loopback names always, plus
`allowed_hosts`; on other binds any name unless `allowed_hosts` is set.

Loopback names stay accepted on a public bind: a DNS-rebinding page reaches us under its own
name, never as `localhost`, and `docker exec … open-clanker status` must keep working."""

from __future__ import annotations

from dataclasses import dataclass

from open_clanker.core.loopback import is_loopback_name

__all__ = ["HostPolicy", "host_name", "is_loopback_name"]


def host_name(host_header: str) -> str:
    """`example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@dataclass(frozen=True)
class HostPolicy:
    loopback_bind: bool
    allowed: frozenset[str]

    @classmethod
    def build(cls, bind_host: str, allowed_hosts: list[str]) -> HostPolicy:
        return cls(is_loopback_name(bind_host), frozenset(host_name(h) for h in allowed_hosts))

    def allows(self, host_header: str) -> bool:
        name = host_name(host_header)
        if name in self.allowed:
            return True
        if is_loopback_name(name):
            return True
        if self.loopback_bind:
            return False
        return not self.allowed  # other binds: checked only when allowed_hosts is set
