"""Content-addressed blobs on disk: raw messages and attachments, stored once by SHA-256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BlobStore", "StoredBlob", "fsync_dir", "write_file_durably"]


@dataclass(frozen=True, slots=True)
class StoredBlob:
    sha256: str
    size: int


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in a directory durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durably(path: Path, data: bytes) -> None:
    """Write via a temporary file, fsync it, rename into place, fsync the directory.

    A crash at any instant leaves either no file or the whole file at `path`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class BlobStore:
    """Files named by the SHA-256 of their content under `<root>/ab/cd/<sha256>`.

    The name a user gave a file is never part of its path.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> StoredBlob:
        """Store `data` durably (fsync'd) unless an identical blob is already there."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.path_for(digest)
        if not (path.exists() and path.stat().st_size == len(data)):
            write_file_durably(path, data)
        return StoredBlob(digest, len(data))

    def get(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()
