"""The data directory's layout, defined once: the database, the blobs, the file relay's mails."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["DB_NAME", "DataPaths", "DatabaseTarget"]

DB_NAME = "ticketmail.sqlite3"


@dataclass(frozen=True, slots=True)
class DataPaths:
    """Where each part of one data directory (`storage.data_dir`, or a backup) lives."""

    root: Path

    @property
    def database(self) -> Path:
        """The SQLite database (its `-wal` and `-shm` files lie beside it)."""
        return self.root / DB_NAME

    @property
    def blobs(self) -> Path:
        """Raw mails and attachments, content-addressed (`BlobStore`)."""
        return self.root / "blobs"

    @property
    def spool(self) -> Path:
        """Mails being received over smtp.spool_threshold_bytes (unnamed temporary files)."""
        return self.root / "spool"

    @property
    def sent(self) -> Path:
        """Where `relay.transport = "file"` writes every outgoing mail as a `.eml` file."""
        return self.root / "sent"


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """Which database a data directory's ticketmail uses (SPEC 10): the SQLite file, or
    PostgreSQL at `url` (from the environment; never printed)."""

    backend: Literal["sqlite", "postgres"]
    path: Path
    url: str = field(default="", repr=False)

    @property
    def postgres(self) -> bool:
        return self.backend == "postgres"
