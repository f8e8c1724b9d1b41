"""The map of docs/architecture.md: no package imports one that stands above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ticketmail"

# (importer, imported): arrows the map does not have.
FORBIDDEN = (
    ("web", "cli"),
    ("outbound", "intake"),
    ("outbound", "cli"),
    ("outbound", "web"),
    ("storage", "web"),
    ("storage", "cli"),
    ("storage", "intake"),
    ("storage", "outbound"),
    ("mail", "intake"),
    ("mail", "storage"),
    ("intake", "web"),
    ("intake", "cli"),
)


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN)
def test_no_import_runs_back_up_the_map(importer: str, imported: str) -> None:
    """No module of `importer` imports anything of `imported` (the map shows no such arrow)."""
    offenders = sorted(
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in (PACKAGE / importer).rglob("*.py")
        for name in _imported(path)
        if name == f"ticketmail.{imported}" or name.startswith(f"ticketmail.{imported}.")
    )
    assert offenders == []
