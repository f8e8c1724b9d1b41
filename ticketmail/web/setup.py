"""The portal put together from a running daemon's parts, and started."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime

from ticketmail.config import Config
from ticketmail.intake.process import Intake
from ticketmail.web.app import build_app
from ticketmail.web.base import Web
from ticketmail.web.presence import Board, presence_for
from ticketmail.web.reader import Reader
from ticketmail.web.render import page_environment
from ticketmail.web.server import WebServer

__all__ = ["WebConnections", "start_web"]


class WebConnections:
    """What the portal reads and notes through besides the writer: the readers, and presence
    (on PostgreSQL a connection of its own); closed together when the portal stops."""

    def __init__(self, reader: Reader, presence: Board) -> None:
        self.reader = reader
        self.presence = presence

    async def close(self) -> None:
        await self.presence.close()
        await self.reader.close()


async def start_web(
    config: Config,
    intake: Intake,
    *,
    clock: Callable[[], datetime],
    on_queued: Callable[[], None] | None,
) -> tuple[WebServer, WebConnections]:
    """Bind `web.host`:`web.port` and serve the portal on the intake's store, blobs and
    templates (the ones current at each request: SIGHUP reloads them). The key of the CSRF
    tokens (and of the flash cookies) comes from the secret every node shares: the
    environment's TICKETMAIL_SECRET, else the one kept in the database (SPEC 10)."""
    ids = await intake.message_ids()
    secret = config.mail.secret or await intake.store.message_id_secret()
    key = hmac.new(secret.encode("utf-8"), b"ticketmail web csrf", hashlib.sha256).digest()
    reader = Reader(intake.store.target, intake.store.db.availability)
    connections = WebConnections(reader, presence_for(intake.store.target))
    web = Web(
        config=config,
        store=intake.store,
        blobs=intake.blobs,
        mail_templates=lambda: intake.templates,
        clock=clock,
        reader=reader,
        ids=ids,
        csrf_key=key,
        pages=page_environment(zone=config.web.timezone),
        on_queued=on_queued,
        presence=connections.presence,
    )
    server = WebServer(build_app(web, intake.metrics), config.web)
    try:
        await server.start()
    except BaseException:
        await server.stop()
        await connections.close()
        raise
    return server, connections
