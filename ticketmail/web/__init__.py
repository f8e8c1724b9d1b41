"""The customer portal (SPEC 8): an ASGI app served by the daemon beside the SMTP intake."""

from __future__ import annotations

from .app import build_app
from .base import Web
from .server import WebServer
from .setup import start_web

__all__ = ["Web", "WebServer", "build_app", "start_web"]
