"""structlog set-up: JSON lines off a TTY, console on a TTY; stdlib loggers in the same stream;
every line names the node (`node.name`, SPEC 10) when one is given."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["configure_logging"]


def configure_logging(
    *, level: str = "info", fmt: str = "auto", stream: Any = None, node: str = ""
) -> None:
    """Route structlog and the stdlib loggers (aiosmtpd's `mail.log`, aiosqlite) to `stream`;
    each line with `node` (from whatever thread it comes) unless `node` is empty."""
    out = stream if stream is not None else sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[Any] = [*([_naming(node)] if node else [])]
    shared += [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    # Our own events are rendered and written directly (a third of the cost of passing
    # them through the stdlib's logging); the stdlib loggers' records join the same stream.
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        logger_factory=structlog.WriteLoggerFactory(file=out),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # aiosmtpd logs every address and line at INFO/DEBUG; our own events say what matters.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    logging.getLogger("asyncio").setLevel(logging.WARNING)


def _naming(node: str) -> Any:
    """A processor that names the node in every event (an event's own `node` wins)."""

    def add_node(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        del logger, method
        event.setdefault("node", node)
        return event

    return add_node
