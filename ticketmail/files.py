"""Content-addressed blobs on disk: raw messages and attachments, stored once by SHA-256."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterable
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


def write_file_durably(path: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Write via a temporary file, fsync it, rename into place, fsync the directory.

    A crash at any instant leaves either no file or the whole file at `path`. With
    `sync_dir=False` the caller fsyncs the directory itself (once for many files).
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
    if sync_dir:
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
        return self.put_all([data])[0]

    def put_all(self, items: Iterable[bytes]) -> list[StoredBlob]:
        """Store several blobs durably, as one batch.

        All new files are written first, then fsync'd (the first fsync carries most of the
        others' data with it), then renamed into place; each directory is fsync'd once.
        A crash leaves whole blobs or only hidden `.tmp-` files, never a torn blob.
        """
        stored: list[StoredBlob] = []
        pending: list[tuple[int, str, Path]] = []
        dirs: set[Path] = set()
        try:
            for data in items:
                digest = hashlib.sha256(data).hexdigest()
                stored.append(StoredBlob(digest, len(data)))
                path = self.path_for(digest)
                if any(p == path for _, _, p in pending) or (
                    path.exists() and path.stat().st_size == len(data)
                ):
                    continue
                if not path.parent.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    dirs.update((path.parent.parent, self.root))
                fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
                pending.append((fd, tmp_name, path))
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                dirs.add(path.parent)
            for fd, _, _ in pending:
                os.fsync(fd)
            for _, tmp_name, path in pending:
                os.replace(tmp_name, path)
        finally:
            for fd, tmp_name, _ in pending:
                os.close(fd)
                Path(tmp_name).unlink(missing_ok=True)
        for directory in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
            fsync_dir(directory)
        return stored

    def copy_to(self, dest: BlobStore) -> int:
        """Copy every blob not yet in `dest` (blobs never change); return how many."""
        copied = 0
        for path in sorted(self.root.glob("??/??/*")):
            if path.name.startswith(".tmp-") or len(path.name) != 64:
                continue
            target = dest.path_for(path.name)
            if not target.exists():
                write_file_durably(target, path.read_bytes())
                copied += 1
        return copied

    def sweep_temporary(self, *, older_than: float = 600.0) -> int:
        """Remove `.tmp-` files a crash left behind (never a blob); return how many."""
        cutoff = time.time() - older_than
        removed = 0
        for path in self.root.glob("??/??/.tmp-*"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def get(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()
