"""The one exception root of ticketmail and its subclasses."""

from __future__ import annotations

__all__ = ["ConfigError", "NotFoundError", "RefusedError", "TicketmailError", "UsageError"]


class TicketmailError(Exception):
    """Base of every error ticketmail raises on purpose; its message is for people."""

    exit_status = 1


class ConfigError(TicketmailError):
    """The configuration (file, key, value, templates, data dir) is unusable."""

    exit_status = 2


class UsageError(TicketmailError):
    """A command was called with input it cannot accept (bad CSV, bad date, ...)."""

    exit_status = 2


class NotFoundError(TicketmailError):
    """A ticket, user, customer or queue entry the caller named does not exist."""

    exit_status = 1


class RefusedError(TicketmailError):
    """The action is not possible in the current state (retrying a sent mail, ...)."""

    exit_status = 1
