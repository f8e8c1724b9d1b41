"""Content-addressed blobs: stored once by SHA-256, whole or not at all, never named by users."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from ticketmail.storage.blobs import BlobStore


def test_blobs_are_stored_once_under_their_hash(tmp_path: Path) -> None:
    """Identical content is stored once; every blob sits at ab/cd/<sha256> with its bytes."""
    store = BlobStore(tmp_path / "blobs")
    items = [b"eins", b"zwei", b"eins", b""]
    stored = store.put_all(items)
    assert [s.sha256 for s in stored] == [hashlib.sha256(i).hexdigest() for i in items]
    assert [s.size for s in stored] == [4, 4, 4, 0]
    files = sorted(p for p in (tmp_path / "blobs").rglob("*") if p.is_file())
    assert len(files) == 3
    for item in items:
        digest = hashlib.sha256(item).hexdigest()
        assert store.get(digest) == item
        assert store.path_for(digest) == tmp_path / "blobs" / digest[:2] / digest[2:4] / digest
    again = store.put(b"zwei")
    assert again == stored[1]
    assert not list((tmp_path / "blobs").rglob(".tmp-*"))


def test_failed_batch_leaves_no_temporary_files(tmp_path: Path) -> None:
    """When a write fails midway, no hidden temporary file and no torn blob remains."""
    root = tmp_path / "blobs"
    store = BlobStore(root)
    store.put(b"first")
    blocked = hashlib.sha256(b"second").hexdigest()
    (root / blocked[:2]).write_bytes(b"a file where a directory must go")
    with pytest.raises((FileExistsError, NotADirectoryError)):
        store.put_all([b"third", b"second"])
    leftovers = [p.name for p in root.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []
    third = hashlib.sha256(b"third").hexdigest()
    assert not store.path_for(third).exists()


@pytest.mark.parametrize("name", ["../etc/passwd", "abc", "A" * 64, "/" + "a" * 63])
def test_only_hex_digests_name_files(tmp_path: Path, name: str) -> None:
    """A blob's path comes from its SHA-256 alone; anything else is refused."""
    with pytest.raises(ValueError, match="SHA-256"):
        BlobStore(tmp_path).path_for(name)


def test_sweep_removes_only_old_temporary_files(tmp_path: Path) -> None:
    """Start-up removes `.tmp-` files left by a crash, but no blob and no fresh temp file."""
    import os
    import time

    store = BlobStore(tmp_path / "blobs")
    blob = store.put(b"kept")
    folder = store.path_for(blob.sha256).parent
    old, fresh = folder / ".tmp-old", folder / ".tmp-fresh"
    old.write_bytes(b"half")
    fresh.write_bytes(b"being written")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert store.sweep_temporary() == 1
    assert not old.exists()
    assert fresh.exists()
    assert store.get(blob.sha256) == b"kept"


@pytest.mark.parametrize("defer_sync", [False, True], ids=["fsync", "deferred"])
def test_a_torn_blob_left_by_a_crash_is_written_again(tmp_path: Path, defer_sync: bool) -> None:
    """A crash before a deferred sync can leave a blob of the right size with other bytes:
    the next put of that content replaces it instead of trusting its name."""
    store = BlobStore(tmp_path / "blobs")
    data = b"Rohdaten einer Mail\r\n" * 50
    digest = hashlib.sha256(data).hexdigest()
    path = store.path_for(digest)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\0" * len(data))

    assert store.put_all([data], defer_sync=defer_sync)[0].sha256 == digest

    assert path.read_bytes() == data
    assert not list((tmp_path / "blobs").rglob(".tmp-*"))


def test_deferred_blobs_are_whole_at_once_and_sync_reaches_the_disk(tmp_path: Path) -> None:
    """defer_sync: each blob is at its final name, whole, as soon as put_all returns (what
    the database will refer to); sync() then flushes the file system (syncfs on Linux)."""
    store = BlobStore(tmp_path / "blobs")
    assert store.defers_sync == sys.platform.startswith("linux")
    items = [b"Mail " * 2000, b"Anhang " * 30000]
    stored = store.put_all(items, defer_sync=True)
    for item, blob in zip(items, stored, strict=True):
        assert store.get(blob.sha256) == item
    assert not list((tmp_path / "blobs").rglob(".tmp-*"))
    store.sync()
    BlobStore(tmp_path / "elsewhere").sync()  # a store with nothing written yet syncs too
