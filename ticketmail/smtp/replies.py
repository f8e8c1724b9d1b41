"""The SMTP replies ticketmail gives, with their enhanced status codes (RFC 3463)."""

from __future__ import annotations

__all__ = [
    "REPLY_ACCEPTED",
    "REPLY_AGENT_BAD_STATUS",
    "REPLY_AGENT_EMPTY",
    "REPLY_AGENT_NO_TAG",
    "REPLY_AGENT_UNKNOWN_TICKET",
    "REPLY_BAD_RECIPIENT",
    "REPLY_DATA_TOO_LONG",
    "REPLY_DATA_TOO_SLOW",
    "REPLY_HELD",
    "REPLY_IDLE_BEFORE_MAIL",
    "REPLY_LINE_TOO_LONG",
    "REPLY_NOT_REGISTERED",
    "REPLY_NO_CONTRACT",
    "REPLY_NO_MEMORY",
    "REPLY_NO_SENDER",
    "REPLY_PENDING_APPROVAL",
    "REPLY_RECIPIENT_OK",
    "REPLY_SESSION_TOO_LONG",
    "REPLY_TEMPORARY_FAILURE",
    "REPLY_TICKET",
    "REPLY_TOO_BIG",
    "REPLY_TOO_MANY_FROM_SOURCE",
    "REPLY_TOO_MANY_SESSIONS",
    "REPLY_UNVERIFIED",
]

REPLY_ACCEPTED = "250 2.0.0 Ok"
REPLY_TICKET = "250 2.0.0 Ok: ticket {number}"
REPLY_HELD = "250 2.0.0 Ok: held for review ({entry})"
REPLY_RECIPIENT_OK = "250 2.1.5 Ok"
REPLY_BAD_RECIPIENT = "550 5.1.1 <{address}>: no such recipient here"
REPLY_NOT_REGISTERED = (
    "550 5.7.1 <{address}> is not registered for support; register at {url}"
    " / Absender nicht registriert, Registrierung unter {url}"
)
REPLY_PENDING_APPROVAL = (
    "550 5.7.1 <{address}> is registered, but its approval by the support team is pending;"
    " mail is accepted once approved / Registrierung wartet auf Freigabe durch den Support"
)
REPLY_NO_SENDER = (
    "550 5.7.1 The mail has no sender address in From:; register at {url}"
    " / Kein Absender im From:-Feld"
)
REPLY_NO_CONTRACT = (
    "550 5.7.1 No active support contract for <{address}>; ask {offer} for an offer"
    " / Kein aktiver Supportvertrag, Angebot unter {offer}"
)
REPLY_UNVERIFIED = (
    "550 5.7.1 Sender <{address}> could not be verified (DMARC/DKIM/SPF)"
    " / Absender konnte nicht verifiziert werden"
)
# An agent's mail is refused rather than answered by mail: the agent's own server returns it
# whole, with this line, so nothing is lost and no mail of ours goes out about it.
REPLY_AGENT_NO_TAG = (
    "550 5.7.1 Agent mail needs a ticket tag like [{tag}#100001] in the subject; agents"
    " answer tickets, they cannot open one by mail. Nothing was sent"
    " / Agenten-Mail ohne Ticketnummer im Betreff, nichts versendet"
)
REPLY_AGENT_UNKNOWN_TICKET = (
    "550 5.7.1 The ticket tagged in the subject does not exist. Nothing was sent"
    " / Das Ticket im Betreff existiert nicht, nichts versendet"
)
REPLY_AGENT_BAD_STATUS = (
    "550 5.7.1 Unknown status {word!r} in the #status line; use new, open, answered or"
    " closed. Nothing was sent / Unbekannter Status in der #status-Zeile, nichts versendet"
)
REPLY_AGENT_EMPTY = (
    "550 5.7.1 Nothing to send: no text, no attachment and no #status line"
    " / Keine Antwort, kein Anhang, keine #status-Zeile"
)
REPLY_LINE_TOO_LONG = "500 5.5.2 Line too long"
REPLY_TOO_BIG = "552 5.3.4 Message too big for this system"
REPLY_TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, please try again later"
REPLY_TOO_MANY_SESSIONS = "421 4.7.0 Too many connections, try again later"

REPLY_TOO_MANY_FROM_SOURCE = "421 4.7.0 Too many connections from your address, try again later"
# A session's clocks (RFC 5321 4.5.3.2): each one ends the session.
REPLY_IDLE_BEFORE_MAIL = "421 4.4.2 No mail within the time allowed, closing"
REPLY_SESSION_TOO_LONG = "421 4.4.2 Session lasted too long, closing"
REPLY_DATA_TOO_SLOW = "421 4.4.2 Data arrives too slowly, closing"
REPLY_DATA_TOO_LONG = "421 4.4.2 Data took too long, closing"
# Past smtp.memory_budget_bytes: the sender keeps the mail and tries again later.
REPLY_NO_MEMORY = "452 4.3.1 Insufficient system storage, try again later"
