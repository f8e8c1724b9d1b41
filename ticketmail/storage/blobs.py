"""Content-addressed blobs: raw messages and attachments, stored once by SHA-256.

On SQLite they are files under the data directory (`BlobStore`); on PostgreSQL rows of the
`blobs` table (`pg_blobs.PgBlobStore`). Both are a `Blobs`; `open_blobs` picks the one the
database target says.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ticketmail.storage.paths import DatabaseTarget

__all__ = [
    "BlobStore",
    "Blobs",
    "StoredBlob",
    "check_digest",
    "fsync_dir",
    "open_blobs",
    "write_file_durably",
]


def _find_syncfs() -> Callable[[int], int] | None:
    """The C library's syncfs(2) (Linux): all of one file system's writes to disk at once."""
    try:
        syncfs: Callable[[int], int] = ctypes.CDLL(
            ctypes.util.find_library("c"), use_errno=True
        ).syncfs
    except (OSError, AttributeError):
        return None
    return syncfs


_SYNCFS = _find_syncfs()


@dataclass(frozen=True, slots=True)
class StoredBlob:
    sha256: str
    size: int


class Blobs(Protocol):
    """What intake, the web and the commands need of a blob store, on either backend."""

    def put(self, data: bytes) -> StoredBlob:
        """Store `data` durably unless an identical blob is already there."""
        ...

    def put_all(self, items: Iterable[bytes], *, defer_sync: bool = False) -> list[StoredBlob]:
        """Store several blobs as one batch; with `defer_sync`, durable once `sync` ran."""
        ...

    def sync(self) -> None:
        """Make every blob `put_all(defer_sync=True)` wrote durable (a write job's flush)."""
        ...

    def get(self, sha256: str) -> bytes:
        """The blob's bytes; FileNotFoundError when there is none by that digest."""
        ...

    def file_of(self, sha256: str) -> Path | None:
        """The file holding the blob where blobs are files (served as it is), else None."""
        ...

    def sweep_temporary(self, *, older_than: float = 600.0) -> int:
        """Remove what a crash left half-written; how many."""
        ...

    def close(self) -> None:
        """Let go of what the store holds open (connections)."""
        ...


def check_digest(sha256: str) -> str:
    """`sha256` when it is a SHA-256 hex digest (a blob's name), else ValueError."""
    if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
        raise ValueError("not a SHA-256 hex digest")
    return sha256


def open_blobs(root: Path, database: DatabaseTarget) -> Blobs:
    """The blob store beside `database`: files under `root` (the data directory's blobs/)
    for SQLite, the `blobs` table for PostgreSQL."""
    if database.postgres:
        from ticketmail.storage.pg_blobs import PgBlobStore

        return PgBlobStore(database.url)
    return BlobStore(root)


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in a directory durable."""
    _fsync(path, os.O_RDONLY | os.O_DIRECTORY)


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


def _holds(path: Path, data: bytes) -> bool:
    """Exactly these bytes are at `path` (not a blob torn by a crash before its sync)."""
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except FileNotFoundError:
        return False


class BlobStore:
    """Files named by the SHA-256 of their content under `<root>/ab/cd/<sha256>`.

    The name a user gave a file is never part of its path.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        return self.root / check_digest(sha256)[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> StoredBlob:
        """Store `data` durably (fsync'd) unless an identical blob is already there."""
        return self.put_all([data])[0]

    @property
    def defers_sync(self) -> bool:
        """`put_all(..., defer_sync=True)` leaves the fsync to `sync` (where syncfs exists)."""
        return _SYNCFS is not None

    def put_all(self, items: Iterable[bytes], *, defer_sync: bool = False) -> list[StoredBlob]:
        """Store several blobs durably, as one batch.

        All new files are written first, then fsync'd (the first fsync carries most of the
        others' data with it), then renamed into place; each directory is fsync'd once.
        A crash leaves whole blobs or only hidden `.tmp-` files, never a torn blob.

        `defer_sync` (where `defers_sync`): written and renamed into place, not fsync'd;
        the caller calls `sync` before anything that refers to them is committed. A crash
        before that may leave a torn blob, so a blob already there is kept only when its
        bytes are the same (else written again), and fsync'd unless `defer_sync`.
        """
        deferred = defer_sync and self.defers_sync
        stored: list[StoredBlob] = []
        pending: list[tuple[int, str, Path]] = []
        dirs: set[Path] = set()
        try:
            for data in items:
                digest = hashlib.sha256(data).hexdigest()
                stored.append(StoredBlob(digest, len(data)))
                path = self.path_for(digest)
                if any(p == path for _, _, p in pending):
                    continue
                if _holds(path, data):  # stored before (maybe by a put not yet synced)
                    if not deferred:
                        _fsync(path)
                        dirs.add(path.parent)
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
            if not deferred:
                for fd, _, _ in pending:
                    os.fsync(fd)
            for _, tmp_name, path in pending:
                os.replace(tmp_name, path)
        finally:
            for fd, tmp_name, _ in pending:
                os.close(fd)
                Path(tmp_name).unlink(missing_ok=True)
        if not deferred:
            for directory in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
                fsync_dir(directory)
        return stored

    def sync(self) -> None:
        """Make every blob written with `defer_sync` durable: one syncfs(2) of the file
        system they are on, for all of them (their data, their names). Raises OSError."""
        if _SYNCFS is None:
            return  # put_all fsync'd them itself
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return  # nothing was ever written here
        try:
            if _SYNCFS(fd) != 0:
                err = ctypes.get_errno()
                if err not in (errno.ENOSYS, errno.EPERM):
                    raise OSError(err, f"syncfs of {self.root}: {os.strerror(err)}")
                os.sync()  # syncfs refused (a seccomp filter, an old kernel): all of them
        finally:
            os.close(fd)

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

    def file_of(self, sha256: str) -> Path:
        return self.path_for(sha256)

    def close(self) -> None:
        """Nothing held open."""
