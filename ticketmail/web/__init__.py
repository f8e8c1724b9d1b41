"""The customer portal (SPEC 8): an ASGI app served by the daemon beside the SMTP intake."""

from __future__ import annotations

from ticketmail.web.app import build_app
from ticketmail.web.base import Web
from ticketmail.web.server import WebServer
from ticketmail.web.setup import start_web

__all__ = ["Web", "WebServer", "build_app", "start_web"]
