"""Open web connections counted in total and per source; beyond a cap one is refused."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["ConnectionCaps", "Trusted"]


class Trusted:
    """The peers whose X-Forwarded-For is believed (web.forwarded_allow_ips): addresses,
    networks, or "*" for every peer."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.everyone = False
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.names: set[str] = set()
        for entry in entries:
            entry = entry.strip()
            if entry == "*":
                self.everyone = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.names.add(entry)

    def __contains__(self, host: str) -> bool:
        if self.everyone or host in self.names:
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
        mine = self.by_source.get(host, 0)
        if host not in self.proxies and mine >= self.per_source:
            return "per_source"
        self.open += 1
        self.by_source[host] = mine + 1
        return None

    def give_back(self, host: str) -> None:
        self.open -= 1
        left = self.by_source.get(host, 0) - 1
        if left > 0:
            self.by_source[host] = left
        else:
            self.by_source.pop(host, None)
