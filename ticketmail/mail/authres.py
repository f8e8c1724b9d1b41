"""Sender trust from Authentication-Results (RFC 8601): only our own MTA's verdict counts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ticketmail.mail.parse import ParsedMail

__all__ = ["AuthVerdict", "verify_sender"]

_COMMENT = re.compile(r"\([^()]*\)")
_RESULT = re.compile(r"^\s*([a-z0-9_-]+)\s*=\s*([a-z]+)\b(.*)$", re.IGNORECASE | re.DOTALL)
_PROPERTY = re.compile(r"\b([a-z]+\.[a-z-]+)\s*=\s*\"?([^\s\";]+)\"?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class AuthVerdict:
    trusted: bool
    reason: str


def _strip_comments(value: str) -> str:
    previous = None
    while previous != value:  # nested comments unwrap from the inside
        previous = value
        value = _COMMENT.sub(" ", value)
    return value


def _domain(value: str) -> str:
    return value.rsplit("@", 1)[-1].strip().strip(".").casefold()


def _aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment (RFC 7489), approximated without a public-suffix list: the same
    domain, or one a subdomain of the other."""
    if not domain or not from_domain:
        return False
    return (
        domain == from_domain
        or domain.endswith("." + from_domain)
        or from_domain.endswith("." + domain)
    )


def _ours(header: str, authserv_id: str) -> str | None:
    """The results part of a header written by `authserv_id`, else None."""
    text = _strip_comments(header)
    head, _, rest = text.partition(";")
    tokens = head.split()
    if tokens and tokens[0].casefold() == authserv_id.casefold():
        return rest
    return None


def verify_sender(mail: ParsedMail, *, authserv_id: str) -> AuthVerdict:
    """Trusted when our MTA's topmost result says DMARC pass, or an aligned DKIM/SPF pass."""
    results: str | None = None
    for header in mail.header("authentication-results"):
        results = _ours(header, authserv_id)
        if results is not None:
            break  # the topmost header of our own MTA; any below it may be forged
    if results is None:
        return AuthVerdict(False, "no Authentication-Results from " + authserv_id)
    from_domain = _domain(mail.from_addr)
    seen: list[str] = []
    for item in results.split(";"):
        match = _RESULT.match(item)
        if not match:
            continue
        method, result, props = match.group(1).lower(), match.group(2).lower(), match.group(3)
        properties = {k.lower(): v for k, v in _PROPERTY.findall(props)}
        seen.append(f"{method}={result}")
        if result != "pass":
            continue
        if method == "dmarc":
            return AuthVerdict(True, "dmarc=pass")
        if method == "dkim":
            signer = properties.get("header.d") or _domain(properties.get("header.i", ""))
            if _aligned(signer.casefold(), from_domain):
                return AuthVerdict(True, f"dkim=pass aligned ({signer})")
        if method == "spf":
            envelope = properties.get("smtp.mailfrom", "")
            if _aligned(_domain(envelope), from_domain):
                return AuthVerdict(True, f"spf=pass aligned ({_domain(envelope)})")
    return AuthVerdict(False, ", ".join(seen) or "no usable result")
