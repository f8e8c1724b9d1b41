"""The portal's login limits at the door (SPEC 8.2): who is trying (the source, the device
cookie), whether the attempt may go on, a failure counted, the device cookie after a success.

The pages that check a password (login, confirmation, the current password on /account) ask
`gate` first, call `failed` for a wrong password, and `succeeded` in the write job of a
success, then `remember` on the response.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from starlette.requests import Request
from starlette.responses import Response

from ticketmail.storage import logins
from ticketmail.storage.dialect import Conn
from ticketmail.web.base import Web
from ticketmail.web.security import device_cookie, device_of

__all__ = [
    "DEVICE_COOKIE",
    "DEVICE_MAX_AGE",
    "Attempt",
    "device_cookie_name",
    "failed",
    "gate",
    "locked_text",
    "remember",
    "source_of",
    "succeeded",
]

log = structlog.get_logger()

DEVICE_COOKIE = "tm_device_"  # + a short hash of the address: a cookie per address
DEVICE_MAX_AGE = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Attempt:
    """A try at an address's password: from which source, by which device (the hash of a
    valid device cookie's nonce for this address; None for any other browser)."""

    email: str
    source: str
    device: str | None


def source_of(request: Request) -> str:
    """The request's source as the limits count it: an IPv4 address, or an IPv6 /64."""
    host = request.client.host if request.client is not None else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def device_cookie_name(email: str) -> str:
    return DEVICE_COOKIE + hashlib.sha256(email.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _check(
    conn: Conn,
    email: str,
    cookie: str | None,
    *,
    source: str,
    now: datetime,
    limits: logins.LoginLimits,
) -> tuple[str | None, str | None]:
    key = logins.device_key(conn)
    device = None
    if key is not None and cookie:
        device = device_of(
            key, email, cookie, now=now.timestamp(), max_age=DEVICE_MAX_AGE.total_seconds()
        )
    blocked = logins.login_blocked(
        conn, email, source=source, device=device, now=now, limits=limits
    )
    return device, blocked


async def gate(
    request: Request, web: Web, email: str, *, now: datetime, where: str
) -> tuple[Attempt, str | None]:
    """The attempt, and why it is refused before its password is checked (None: go on)."""
    source = source_of(request)
    limits = logins.LoginLimits(
        address_per_day=web.config.web.address_login_failures,
        source_per_window=web.config.web.ip_login_failures,
    )
    cookie = request.cookies.get(device_cookie_name(email))
    device, blocked = await web.reader(_check, email, cookie, source=source, now=now, limits=limits)
    if blocked is not None:
        log.info("web_login_refused", where=where, reason=blocked, email=email, source=source,
                 device=device is not None)  # fmt: skip
    return Attempt(email, source, device), blocked


def locked_text(blocked: str) -> str:
    """The page's line for a refused attempt (the catalogue key)."""
    return "login.locked_day" if blocked == "address_day" else "login.locked"


async def failed(web: Web, attempt: Attempt, *, now: datetime, where: str) -> None:
    """A wrong password: counted for the device, or the address, and the source.

    Several nodes count at once, each failure holding its address (SPEC 10): two nodes'
    failures for one address are counted one after the other, so that neither misses the
    lock the other's would complete."""
    locked = await web.store.write(
        lambda conn: logins.record_login_failure(
            conn, attempt.email, source=attempt.source, device=attempt.device, now=now
        ),
        alongside=(f"login:{attempt.email.casefold()}",),
    )
    log.info("web_login_failed", where=where, email=attempt.email, source=attempt.source,
             device=attempt.device is not None, locked=locked)  # fmt: skip


def succeeded(conn: Conn, email: str, *, device: str | None = None) -> bytes:
    """In a success's write job (a login, a confirmation, a reset): the device's count
    starts again; the key for the new device cookie (made on first use)."""
    logins.login_succeeded(conn, email, device=device)
    key = logins.device_key(conn, create=True)
    assert key is not None
    return key


def remember(response: Response, web: Web, email: str, key: bytes, *, now: datetime) -> None:
    """Give the browser a new device cookie for `email` (logout keeps it)."""
    response.set_cookie(
        device_cookie_name(email), device_cookie(key, email, now=now.timestamp()),
        max_age=int(DEVICE_MAX_AGE.total_seconds()), httponly=True, samesite="lax",
        secure=web.secure_cookies,
    )  # fmt: skip
