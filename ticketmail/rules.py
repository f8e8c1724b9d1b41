"""Rules that intake and outbound both keep: how a ticket is tagged in a subject, and when an
automatic mail may go out. Pure functions; both packages import them from here."""

from __future__ import annotations

__all__ = ["auto_mail_allowed", "format_tag"]


def format_tag(tag: str, number: int) -> str:
    """The subject tag of one ticket, as find_ticket_numbers reads it back."""
    return f"[{tag}#{number}]"


def auto_mail_allowed(
    *,
    suppressed: bool,
    to_address: int,
    for_ticket: int | None,
    max_per_address: int,
    max_per_ticket: int,
) -> str | None:
    """None when an automatic mail may go out, else the reason it is suppressed.

    `to_address` and `for_ticket`: automatic mails sent in the last hour to the recipient
    and about the ticket (None: no ticket); `suppressed`: the address bounced recently.
    """
    if suppressed:
        return "bounce_block"
    if to_address >= max_per_address:
        return "rate_limit_address"
    if for_ticket is not None and for_ticket >= max_per_ticket:
        return "rate_limit_ticket"
    return None
