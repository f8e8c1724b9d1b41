"""Open web connections counted in total and per source; beyond a cap one is refused."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["ConnectionCaps", "Trusted", "source_of"]


class Trusted:
    """The peers whose X-Forwarded-For is believed (web.forwarded_allow_ips, checked by the
    config): addresses, networks, or "*" for every peer."""

    def __init__(self, entries: Iterable[str]) -> None:
        stripped = [entry.strip() for entry in entries]
        self.everyone = "*" in stripped
        self.networks = [ipaddress.ip_network(e, strict=False) for e in stripped if e != "*"]

    def __contains__(self, host: str) -> bool:
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


class ConnectionCaps:
    """`take(host)` counts a new connection, or names the cap it would cross ("total",
    "per_source"); `give_back(host)` when it ends. A trusted proxy speaks for many clients:
    its connections count in the total only."""

    def __init__(self, *, total: int, per_source: int, proxies: Trusted) -> None:
        self.total = total
        self.per_source = per_source
        self.proxies = proxies
        self.open = 0
        self.by_source: dict[str, int] = {}

    def take(self, host: str) -> str | None:
        if self.open >= self.total:
            return "total"
        source = source_of(host)
        mine = self.by_source.get(source, 0)
        if mine >= self.per_source and host not in self.proxies:
            return "per_source"
        self.open += 1
        self.by_source[source] = mine + 1
        return None

    def give_back(self, host: str) -> None:
        self.open -= 1
        source = source_of(host)
        left = self.by_source.get(source, 0) - 1
        if left > 0:
            self.by_source[source] = left
        else:
            self.by_source.pop(source, None)


def source_of(host: str) -> str:
    """What counts as one source: an IPv4 address (also IPv4-mapped), an IPv6 /64 (one
    client's network: it has addresses enough to take a new one for every connection)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return host
