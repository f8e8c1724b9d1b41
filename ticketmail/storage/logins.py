"""Every SQL statement of the portal's limits (SPEC 8.2): failed logins and locks per device
cookie, address and source, the device cookies' signing key, and requests for mail.

Plain functions on a `Conn`, like `accounts`: writes inside `Store.write(fn)`,
reads on any connection. A device is the hash of a valid device cookie's nonce (None for a
browser without one); a source is an IPv4 address or an IPv6 /64, as the web names it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from ticketmail.storage._rows import iso
from ticketmail.storage.dialect import Conn

__all__ = [
    "DEVICE_KEY",
    "LOCK_MINUTES",
    "MAIL_WINDOW",
    "MAX_FAILURES",
    "MAX_MAILS_PER_ADDRESS",
    "LoginLimits",
    "device_key",
    "lift_locks",
    "login_blocked",
    "login_succeeded",
    "mail_request",
    "record_login_failure",
]

# Five failures within 15 minutes lock a device (or, for browsers without a device cookie,
# the address) for 15 minutes.
MAX_FAILURES = 5
LOCK_MINUTES = 15
FAILURE_WINDOW = timedelta(minutes=LOCK_MINUTES)
DAY = timedelta(days=1)  # the per-address cap's window; failures are kept this long
# At most this many reset or confirmation mails per address within MAIL_WINDOW.
MAX_MAILS_PER_ADDRESS = 3
MAIL_WINDOW = timedelta(hours=1)
# The meta row holding the device cookies' HMAC key (hex). Deleting the row rotates it: every
# device cookie issued so far stops counting, and the next successful login makes a new key.
DEVICE_KEY = "device_cookie_key"
_NO_DEVICE = ""  # a lock's device for every browser without a device cookie


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """The configured limits: failures per address per day (browsers without a device
    cookie), failures per source per 15 minutes (across addresses)."""

    address_per_day: int
    source_per_window: int


def device_key(conn: Conn, *, create: bool = False) -> bytes | None:
    """The device cookies' signing key; made at random on first use when `create` (in a
    write job), else None while there is none."""
    if create:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING",
            (DEVICE_KEY, secrets.token_hex(32)),
        )
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (DEVICE_KEY,)).fetchone()
    return bytes.fromhex(row[0]) if row is not None else None


def _locked_until(conn: Conn, email: str, device: str) -> datetime | None:
    row = conn.execute(
        "SELECT until FROM login_locks WHERE email = ? AND device = ?", (email, device)
    ).fetchone()
    return datetime.fromisoformat(row[0]) if row is not None else None


def login_blocked(
    conn: Conn,
    email: str,
    *,
    source: str,
    device: str | None,
    now: datetime,
    limits: LoginLimits,
) -> str | None:
    """Why an attempt at `email` is refused before its password is checked, or None.

    A browser with a valid device cookie for the address: 'device' while its own failures
    lock it, nothing else. Any other: 'address' while the address is locked for them,
    'address_day' at the address's daily cap, 'source' at the source's limit.
    """
    if device is not None:
        until = _locked_until(conn, email, device)
        return "device" if until is not None and until > now else None
    until = _locked_until(conn, email, _NO_DEVICE)
    if until is not None and until > now:
        return "address"
    row = conn.execute(
        "SELECT (SELECT COUNT(*) FROM login_failures WHERE email = :e AND device IS NULL "
        "        AND cleared = 0 AND at > :day), "
        "(SELECT COUNT(*) FROM login_failures WHERE ip = :s AND at > :window)",
        {"e": email, "s": source, "day": iso(now - DAY), "window": iso(now - FAILURE_WINDOW)},
    ).fetchone()
    if row[0] >= limits.address_per_day:
        return "address_day"
    return "source" if row[1] >= limits.source_per_window else None


def record_login_failure(
    conn: Conn, email: str, *, source: str, device: str | None, now: datetime
) -> bool:
    """Count a failed attempt (a login, a confirmation, a current password); True when it
    locks the device, or the address for browsers without one. Nothing is deleted by a
    lock: the source's count stays."""
    conn.execute("DELETE FROM login_failures WHERE at < ?", (iso(now - DAY),))
    conn.execute("DELETE FROM login_locks WHERE until < ?", (iso(now - DAY),))
    conn.execute(
        "INSERT INTO login_failures(email, ip, device, at) VALUES (?, ?, ?, ?)",
        (email, source, device, iso(now)),
    )
    lock = device if device is not None else _NO_DEVICE
    since = now - FAILURE_WINDOW
    previous = _locked_until(conn, email, lock)
    if previous is not None and previous > since:
        since = previous  # failures before the last lock ended counted for that one
    # `device IS ?` is SQLite's alone: the NULL test spelled out, as both dialects take it.
    if device is None:
        sql = "SELECT COUNT(*) FROM login_failures WHERE email = ? AND device IS NULL "
        params: tuple[str, ...] = (email, iso(since))
    else:
        sql = "SELECT COUNT(*) FROM login_failures WHERE email = ? AND device = ? "
        params = (email, device, iso(since))
    (count,) = conn.execute(sql + "AND cleared = 0 AND at > ?", params).fetchone()
    if count < MAX_FAILURES:
        return False
    conn.execute(
        "INSERT INTO login_locks(email, device, until) VALUES (?, ?, ?) "
        "ON CONFLICT(email, device) DO UPDATE SET until = excluded.until",
        (email, lock, iso(now + FAILURE_WINDOW)),
    )
    return True


def login_succeeded(conn: Conn, email: str, *, device: str | None) -> None:
    """A browser with a device cookie got in: its own count starts again. (A browser
    without one changes nothing: the address's count is every stranger's.)"""
    if device is None:
        return
    conn.execute(
        "UPDATE login_failures SET cleared = 1 WHERE email = ? AND device = ?", (email, device)
    )
    conn.execute("DELETE FROM login_locks WHERE email = ? AND device = ?", (email, device))


def lift_locks(conn: Conn, email: str) -> None:
    """A new password: every lock on the address ends and its failures stop counting for
    it (they still count for their sources)."""
    conn.execute("UPDATE login_failures SET cleared = 1 WHERE email = ?", (email,))
    conn.execute("DELETE FROM login_locks WHERE email = ?", (email,))


def mail_request(conn: Conn, email: str, *, source: str, per_source: int, now: datetime) -> bool:
    """Note a request for a reset or confirmation mail to `email`; True when it may be
    sent: fewer than MAX_MAILS_PER_ADDRESS granted to the address, and fewer than
    `per_source` requests from the source, within the last hour."""
    conn.execute("DELETE FROM mail_requests WHERE at < ?", (iso(now - DAY),))
    row = conn.execute(
        "SELECT (SELECT COUNT(*) FROM mail_requests WHERE email = :e AND granted = 1 "
        "        AND at > :since), "
        "(SELECT COUNT(*) FROM mail_requests WHERE source = :s AND at > :since)",
        {"e": email, "s": source, "since": iso(now - MAIL_WINDOW)},
    ).fetchone()
    granted = bool(row[0] < MAX_MAILS_PER_ADDRESS and row[1] < per_source)
    conn.execute(
        "INSERT INTO mail_requests(email, source, at, granted) VALUES (?, ?, ?, ?)",
        (email, source, iso(now), int(granted)),
    )
    return granted
