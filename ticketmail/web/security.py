"""The portal's secrets: Argon2id password hashes, single-use tokens, session ids, CSRF tokens,
device cookies."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = [
    "MIN_PASSWORD_CHARS",
    "csrf_token",
    "csrf_valid",
    "device_cookie",
    "device_of",
    "hash_password",
    "hashed",
    "new_secret",
    "password_problem",
    "verify_password",
]

MIN_PASSWORD_CHARS = 10
_HASHER = PasswordHasher()  # Argon2id with argon2-cffi's RFC 9106 low-memory profile
# Checked when the address has no password, so that a login takes as long either way.
_DUMMY_HASH = _HASHER.hash("no account has this password")


def new_secret() -> tuple[str, str]:
    """A random 256-bit value for a cookie or a link, and the hash the database keeps."""
    value = secrets.token_urlsafe(32)
    return value, hashed(value)


def hashed(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def hash_password(password: str) -> str:
    """Blocking (tens of milliseconds): run it in a thread."""
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Blocking; a missing hash is checked against a dummy one (the same time either way)."""
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def password_problem(password: str, email: str) -> str | None:
    """The catalogue key of what is wrong with a new password (SPEC 8.2), or None."""
    if len(password) < MIN_PASSWORD_CHARS:
        return "error.password_short"
    if password.strip().casefold() == email.strip().casefold():
        return "error.password_email"
    return None


def csrf_token(key: bytes, basis: str) -> str:
    """The token forms carry: bound to the visitor's session (or pre-login) cookie."""
    return hmac.new(key, b"csrf\0" + basis.encode("utf-8", "surrogateescape"), "sha256").hexdigest()


def csrf_valid(key: bytes, basis: str | None, token: object) -> bool:
    if not basis or not isinstance(token, str):
        return False
    return hmac.compare_digest(csrf_token(key, basis), token)


def _device_mac(key: bytes, email: str, issued: int, nonce: str) -> str:
    message = f"device\0{email}\0{issued}\0{nonce}".encode("utf-8", "surrogateescape")
    return hmac.new(key, message, "sha256").hexdigest()


def device_cookie(key: bytes, email: str, *, now: float) -> str:
    """A new device cookie's value for `email` (SPEC 8.2): when it was issued, a random
    nonce, and their HMAC with the address under the database's key."""
    issued = int(now)
    nonce = secrets.token_urlsafe(16)
    return f"{issued}.{nonce}.{_device_mac(key, email, issued, nonce)}"


def device_of(key: bytes, email: str, value: str, *, now: float, max_age: float) -> str | None:
    """The device (the hash of its nonce) a cookie names, when it is one of ours for this
    very address and younger than `max_age` seconds; else None."""
    issued_text, _, rest = value.partition(".")
    nonce, _, mac = rest.partition(".")
    if not (issued_text.isascii() and issued_text.isdigit() and len(issued_text) < 16):
        return None
    if not nonce or not mac:
        return None
    issued = int(issued_text)
    if not now - max_age < issued <= now + 60:
        return None
    if not hmac.compare_digest(_device_mac(key, email, issued, nonce), mac):
        return None
    return hashed(nonce)
