"""Pages from jinja2 templates (autoescaped), and a mail's text as safe HTML."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

__all__ = ["INLINE_IMAGE_TYPES", "human_size", "page_environment", "text_html"]

# The only types shown inline (as <img>); every file downloads as an attachment.
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_URL = re.compile(r"\bhttps?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""


def text_html(text: str) -> Markup:
    """Plain text as HTML: everything escaped; http(s) links clickable, and nothing else."""
    parts: list[str] = []
    pos = 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING)
        end = match.start() + len(url)
        parts.append(str(escape(text[pos : match.start()])))
        parts.append(
            f'<a href="{escape(url)}" rel="noopener noreferrer nofollow">{escape(url)}</a>'
        )
        pos = end
    parts.append(str(escape(text[pos:])))
    return Markup("".join(parts))  # noqa: S704 - every piece escaped above


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024 or unit == "MB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} MB"  # pragma: no cover


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def page_environment() -> jinja2.Environment:
    """One environment for every page: autoescape on, undefined variables fail loudly."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["text_html"] = text_html
    env.filters["size"] = human_size
    env.filters["when"] = _when
    return env
