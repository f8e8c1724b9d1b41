"""The one line that confirms a form's action on the page it lands on (issue 24): the 303
after a POST sets a short-lived cookie naming what was done, signed for this visitor's
session; the next page shows the line in its language and clears the cookie. Only a key
named here shows a line, and only from a cookie signed for this very browser, so neither a
link nor a cookie planted from elsewhere puts words, or a false "done", on a page."""

from __future__ import annotations

import hmac

__all__ = ["DONE", "FLASH_COOKIE", "FLASH_SECONDS", "flash_cookie", "flash_line"]

FLASH_COOKIE = "tm_done"
FLASH_SECONDS = 60  # the 303 is followed at once; a cookie left over never shows a day later

# What was done: the catalogue key of its line. Desk actions, then portal actions. (The
# text modules' page keeps its own `?done=` lines, the queue its bulk counts.)
DONE = {
    "reply": "desk.done_reply",
    "note": "desk.done_note",
    "status": "desk.done_status",
    "waiting": "desk.done_waiting",
    "assign": "desk.done_assign",
    "merge": "desk.done_merge",
    "settings": "desk.done_settings",
    "approved": "desk.done_approved",
    "rejected": "desk.done_rejected",
    "institution": "desk.done_institution",
    "taken": "desk.done_taken",
    "created": "done.created",
    "answered": "done.answered",
    "closed": "done.closed",
    "reopened": "done.reopened",
    "account": "done.account",
}


def _mac(key: bytes, basis: str, done: str) -> str:
    message = f"done\0{basis}\0{done}".encode("utf-8", "surrogateescape")
    return hmac.new(key, message, "sha256").hexdigest()[:32]


def flash_cookie(key: bytes, basis: str, done: str) -> str:
    """The cookie's value saying `done` (a key of DONE) to the browser of `basis`."""
    assert done in DONE, done
    return f"{done}.{_mac(key, basis, done)}"


def flash_line(key: bytes, basis: str, value: str | None) -> str | None:
    """The catalogue key of the line a flash cookie asks for; None for no cookie, an unknown
    key, or one not signed for this browser's `basis`."""
    done, _, mac = (value or "").partition(".")
    if done not in DONE or not hmac.compare_digest(_mac(key, basis, done), mac):
        return None
    return DONE[done]
