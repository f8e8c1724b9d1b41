"""Content-addressed blobs: stored once by SHA-256, whole or not at all, never named by users."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ticketmail.files import BlobStore


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
