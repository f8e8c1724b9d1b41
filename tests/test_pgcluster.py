"""The tests' throwaway PostgreSQL cluster (tests/pgcluster.py): a socket only, fsync on, a
separate database per test from a template, data kept across a stop, nothing left behind."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pgcluster
import pytest
from conftest import eventually_sync
from pgcluster import OS_USER, PgCluster, PgError

TESTS = Path(__file__).resolve().parent


def one(cluster: PgCluster, sql: str, dbname: str = "postgres") -> str:
    return cluster.psql(sql, dbname).strip()


def test_socket_only(pg_cluster: PgCluster) -> None:
    """The server listens on its Unix socket in its own directory and on no TCP address."""
    assert one(pg_cluster, "SHOW listen_addresses") == ""
    assert one(pg_cluster, "SHOW unix_socket_directories") == str(pg_cluster.socket_dir)
    assert (pg_cluster.socket_dir / f".s.PGSQL.{pgcluster.PORT}").is_socket()
    assert one(pg_cluster, "SELECT inet_server_addr() IS NULL") == "t"


def test_fsync_on(pg_cluster: PgCluster) -> None:
    """fsync is on (the crash tests need what a commit promises to be on disk)."""
    assert one(pg_cluster, "SHOW fsync") == "on"


def test_case_folding_beyond_ascii(pg_cluster: PgCluster) -> None:
    """The cluster's ctype is C.UTF-8, so lower() folds German letters as well as ASCII."""
    assert one(pg_cluster, "SELECT lower('ÄÖÜ Straße')") == "äöü straße"


def test_directory_postgres_may_enter(pg_cluster: PgCluster) -> None:
    """The cluster lives in /tmp in a directory of mode 0755; as root, the server's files are
    the postgres user's (pytest's 0700 temporary root would shut that user out)."""
    assert pg_cluster.socket_dir.parent == Path("/tmp")
    assert stat.S_IMODE(pg_cluster.socket_dir.stat().st_mode) == 0o755
    if os.geteuid() == 0:
        assert pg_cluster.data_dir.stat().st_uid == pwd.getpwnam(OS_USER).pw_uid


def test_fresh_databases_separate(pg_cluster: PgCluster, pg_template: str) -> None:
    """Two fresh databases are separate: a table made in one is not in the other."""
    first = pg_cluster.new_database(pg_template)
    second = pg_cluster.new_database(pg_template)
    assert first != second
    pg_cluster.psql("CREATE TABLE only_here (x int)", first)
    ask = "SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'"
    assert (one(pg_cluster, ask, first), one(pg_cluster, ask, second)) == ("1", "0")
    pg_cluster.drop_database(first)
    pg_cluster.drop_database(second)


def test_template_carries_setup(pg_cluster: PgCluster) -> None:
    """A database made from the template holds what the setup hook created in the template."""
    seen: list[str] = []

    def setup(url: str) -> None:
        seen.append(url)
        subprocess.run(
            [str(pg_cluster.bin / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-d", url,
             "-c", "CREATE TABLE tickets (n int); INSERT INTO tickets VALUES (42)"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    template = pg_cluster.create_template("tm_check_template", setup)
    assert seen == [pg_cluster.url("tm_check_template")]
    name = pg_cluster.new_database(template)
    assert one(pg_cluster, "SELECT n FROM tickets", name) == "42"
    pg_cluster.drop_database(name)


def test_template_setup_must_close_connections(pg_cluster: PgCluster) -> None:
    """A setup hook that leaves a connection open to the template is a clear error (copying a
    template somebody is connected to would fail in every test instead)."""
    holders: list[subprocess.Popen[bytes]] = []

    def leaves_one_open(url: str) -> None:
        holders.append(
            subprocess.Popen(
                [str(pg_cluster.bin / "psql"), "-X", "-d", url, "-c", "SELECT pg_sleep(30)"],
                stdout=subprocess.DEVNULL,
            )
        )
        ask = "SELECT count(*) FROM pg_stat_activity WHERE datname = 'tm_open_template'"
        eventually_sync(lambda: one(pg_cluster, ask) == "1", what="the hook's connection")

    try:
        with pytest.raises(PgError, match="left 1 connections open to tm_open_template"):
            pg_cluster.create_template("tm_open_template", leaves_one_open)
    finally:
        for holder in holders:
            holder.kill()
            holder.wait(timeout=10)


def test_pg_url_is_a_copy_of_the_template(pg_cluster: PgCluster, pg_url: str) -> None:
    """pg_url names a database of this test's own on the cluster's socket, copied from
    tm_template."""
    name = one(pg_cluster, "SELECT current_database()", urlsplit(pg_url).path[1:])
    assert name.startswith("t_")
    assert pg_url == pg_cluster.url(name)
    ask = "SELECT datistemplate FROM pg_database WHERE datname = 'tm_template'"
    assert one(pg_cluster, ask) == "t"
    assert pg_cluster.url(name).endswith(f"?host={pg_cluster.socket_dir}&port={pgcluster.PORT}")


def test_drop_database(pg_cluster: PgCluster, pg_template: str) -> None:
    """drop_database removes the database, even with a connection still open to it."""
    name = pg_cluster.new_database(pg_template)
    holder = subprocess.Popen(
        [str(pg_cluster.bin / "psql"), "-X", "-d", pg_cluster.url(name), "-c",
         "SELECT pg_sleep(30)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        ask = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'"  # noqa: S608
        eventually_sync(lambda: one(pg_cluster, ask) == "1", what="the open connection")
        pg_cluster.drop_database(name)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    ask = f"SELECT count(*) FROM pg_database WHERE datname = '{name}'"  # noqa: S608
    assert one(pg_cluster, ask) == "0"


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_stop_start_keeps_data(pg_cluster: PgCluster, pg_url: str, mode: str) -> None:
    """Stopping the server (cleanly, or as a crash) and starting it again keeps committed data;
    while it is stopped nobody can connect."""
    name = one(pg_cluster, "SELECT current_database()", urlsplit(pg_url).path[1:])
    pg_cluster.psql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)", name)
    pg_cluster.stop_server(mode)
    try:
        with pytest.raises(PgError, match=r"No such file or directory|Connection refused"):
            pg_cluster.psql("SELECT 1", name)
    finally:
        pg_cluster.start_server()
    assert one(pg_cluster, "SELECT n FROM kept", name) == "7"


def test_missing_postgresql_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without Debian's postgresql the cluster refuses with the command that installs it."""
    monkeypatch.setattr(pgcluster, "PG_ROOT", tmp_path)
    with pytest.raises(PgError, match="Debian's postgresql is not installed: run make postgres"):
        PgCluster()


def test_stale_cluster_reaped(pg_cluster: PgCluster) -> None:
    """A cluster whose test session was killed is stopped and removed by the next one; a
    live session's cluster is left alone."""
    program = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); from pgcluster import PgCluster; "
        "c = PgCluster().start(); print(c.dir, flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", program],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as session:  # fmt: skip
        try:
            assert session.stdout is not None
            stale = Path(session.stdout.readline().strip())
        finally:
            session.kill()
    pid = int((stale / "data" / "postmaster.pid").read_text().splitlines()[0])
    assert stale.name.startswith(pgcluster.PREFIX)
    os.kill(pid, 0)  # its server outlived the killed session

    PgCluster().start().stop()  # the next session

    assert not stale.exists()
    eventually_sync(lambda: not Path(f"/proc/{pid}").exists(), what="the stale postmaster gone")
    assert one(pg_cluster, "SELECT 1") == "1"
