"""Raw mails and attachments in the backend's own store, and the commands that move and back up
an installation (SPEC 10): `storage migrate`, `storage copy --to URL`, `backup` on PostgreSQL.
Real daemons, real CLI processes, a real PostgreSQL (the session's throwaway cluster)."""

from __future__ import annotations

import email.policy
import hashlib
import json
import re
import subprocess
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock, Env, Sink, make_mail, on_postgres, read_rows, run_cli
from conftest import write_config as write_test_config
from pgcluster import PgCluster
from test_desk import agent_client, agents
from web_support import ANNA, BEN, Client, logged_in

from ticketmail.config import load_config
from ticketmail.daemon import Daemon
from ticketmail.storage import postgres
from ticketmail.storage._schema import SCHEMA_VERSION
from ticketmail.storage.paths import DB_NAME, DatabaseTarget
from ticketmail.storage.pg_blobs import PgBlobStore
from ticketmail.storage.readers import open_reader

pytestmark = pytest.mark.web  # the portal and the desk serve the files

REPORT = "Bericht März.pdf"


def report(n: int) -> bytes:
    """An attachment of its own per mail (a PDF's worth of every byte value)."""
    return bytes(range(256)) * 200 + f"report {n}".encode()


SHARED = b"%PDF-1.4 the same terms of use in every mail\n" * 50


def mail_with_files(n: int) -> EmailMessage:
    mail = make_mail(f"Anna Müller <{ANNA}>", f"Drucker {n}", f"Siehe Anhang {n}.\n",
                     message_id=f"<m{n}@schule.example>")  # fmt: skip
    mail.add_attachment(report(n), maintype="application", subtype="pdf", filename=REPORT)
    mail.add_attachment(SHARED, maintype="application", subtype="pdf", filename="agb.pdf")
    return mail


async def desk_env(env_factory: Any, sink: Sink, **sections: dict[str, object]) -> Env:
    env: Env = await env_factory(sink, **sections)
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user(ANNA, "10042", name="Anna Müller", lang="de")
    await env.user(BEN, "10042", name="Ben Meyer", lang="en")
    await agents(env)
    return env


async def portal_file(client: Client, number: int, name: str = REPORT) -> Any:
    page = await client.get(f"/tickets/{number}")
    assert page.status_code == 200, page.text
    links = dict((n, u) for u, n in re.findall(
        r'href="(/tickets/\d+/files/\d+)" download>([^<]+)<', page.text))  # fmt: skip
    return await client.get(links[name])


async def test_an_attachment_is_stored_by_the_backend_and_downloads_from_portal_and_desk(
    env_factory: Any, sink: Sink
) -> None:
    """A mail's attachment and raw message are kept in the backend's blob store (files on
    SQLite, the blobs table on PostgreSQL) and download byte for byte, with their headers,
    from the portal and the desk."""
    env = await desk_env(env_factory, sink)
    mail = mail_with_files(1)
    assert (await env.send(mail))[0] == 250
    digest = hashlib.sha256(report(1)).hexdigest()
    if on_postgres():
        assert read_rows(env.data_dir, "SELECT size FROM blobs WHERE sha256 = ?", (digest,)) == [
            (len(report(1)),)
        ]
        assert not list((env.data_dir / "blobs").glob("??/??/*"))  # nothing on this node's disk
    else:
        assert (env.data_dir / "blobs" / digest[:2] / digest[2:4] / digest).read_bytes() == (
            report(1)
        )
    anna = await logged_in(env, ANNA)
    pdf = await portal_file(anna, 100001)
    assert pdf.status_code == 200
    assert pdf.content == report(1)
    assert pdf.headers["content-type"] == "application/octet-stream"
    assert pdf.headers["content-disposition"].startswith("attachment;")
    assert "filename*=UTF-8''Bericht%20M%C3%A4rz.pdf" in pdf.headers["content-disposition"]
    assert pdf.headers["content-length"] == str(len(report(1)))
    assert pdf.headers["x-content-type-options"] == "nosniff"
    desk = await agent_client(env)
    page = await desk.get("/desk/tickets/100001")
    found = re.search(r'href="(/desk/tickets/100001/files/\d+)"[^>]*>' + REPORT, page.text)
    assert found, page.text
    download = await desk.get(found.group(1))
    assert download.status_code == 200
    assert download.content == report(1)
    assert download.headers["content-disposition"] == pdf.headers["content-disposition"]
    article = (await env.cli_json("ticket", "show", "100001"))["articles"][0]["id"]
    raw = await desk.get(f"/desk/tickets/100001/raw/{article}")
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("message/rfc822")
    assert raw.content == mail.as_bytes(policy=email.policy.SMTP)
    missing = await anna.get("/tickets/100001/files/99999")
    assert missing.status_code == 404


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_storage_migrate_makes_the_schema_and_says_its_version(
    backend: str, tmp_path: Path, pg_cluster: PgCluster
) -> None:
    """`storage migrate` makes an empty database's schema (SQLite's file, an empty PostgreSQL
    database) and prints the version; a second run finds it up to date."""
    config = installation(tmp_path, backend, pg_cluster)
    for _ in range(2):
        done = run_cli("--config", str(config), "storage", "migrate", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"backend": backend, "schema_version": SCHEMA_VERSION}
    plain = run_cli("--config", str(config), "storage", "migrate")
    assert plain.stdout.strip().endswith(f"at version {SCHEMA_VERSION}"), plain.stdout
    conn = open_reader(load_config(config, environ={}).database)
    try:
        assert conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0] == 0
    finally:
        conn.close()


def installation(tmp_path: Path, backend: str, pg_cluster: PgCluster) -> Path:
    """A config for an installation on `backend`; on PostgreSQL a new, empty database on the
    session's cluster, its URL in a .env beside the config."""
    root = tmp_path / backend
    root.mkdir()
    config = root / "config.toml"
    lines = f'[storage]\ndata_dir = "{root / "var"}"\nbackend = "{backend}"\n'
    config.write_text(lines, encoding="utf-8")
    if backend == "postgres":
        url = pg_cluster.url(pg_cluster.new_database("template0"))
        (root / ".env").write_text(f"TICKETMAIL_DATABASE_URL={url}\n", encoding="utf-8")
    return config


def empty_database(pg_cluster: PgCluster) -> str:
    return pg_cluster.url(pg_cluster.new_database("template0"))


def tables_in(url: str) -> list[str]:
    conn = postgres.connect(url)
    try:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
        return [row[0] for row in rows]
    finally:
        conn.close()


def count(conn: Any, table: str) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608


async def moved_daemon(tmp_path: Path, url: str, sink: Sink, clock: Clock) -> Env:
    """A daemon (with the portal) on the PostgreSQL database at `url`."""
    (tmp_path / "moved").mkdir()
    path = write_test_config(
        tmp_path / "moved" / "config.toml", tmp_path / "moved" / "var", sink.port,
        storage={"backend": "postgres"}, web={"enabled": True},
    )  # fmt: skip
    (path.parent / ".env").write_text(f"TICKETMAIL_DATABASE_URL={url}\n", encoding="utf-8")
    config = load_config(path, environ={})
    daemon = Daemon(config, clock=clock)
    await daemon.start()
    return Env(path, config, daemon, clock, sink)


TICKETS = 12


async def test_storage_copy_moves_a_populated_installation_into_postgres(
    env_factory: Any, sink: Sink, clock: Clock, tmp_path: Path, pg_cluster: PgCluster
) -> None:
    """`storage copy --to URL` copies every table's rows and every blob file of the SQLite
    installation into an empty PostgreSQL database, counts checked; a daemon on it serves the
    same tickets and files byte for byte to a session made before the move, and new mail gets
    new ids and ticket numbers."""
    env = await desk_env(env_factory, sink, storage={"backend": "sqlite"})
    for n in range(1, TICKETS + 1):
        assert (await env.send(mail_with_files(n)))[0] == 250
    closed = await env.cli("ticket", "status", "100002", "closed", "--note", "erledigt")
    assert closed.returncode == 0, closed.stderr
    anna = await logged_in(env, ANNA)  # a password and a session
    assert (await portal_file(anna, 100001)).content == report(1)
    url = empty_database(pg_cluster)
    done = await env.cli("storage", "copy", "--to", url, "--json")
    assert done.returncode == 0, done.stderr
    copied = json.loads(done.stdout)
    source = open_reader(DatabaseTarget("sqlite", env.data_dir / DB_NAME))
    target = postgres.connect(url)
    try:
        for table in ("customers", "users", "agents", "passwords", "web_sessions", "tickets",
                      "messages", "articles", "attachments", "outbox", "ticket_history",
                      "ticket_tally"):  # fmt: skip
            have = count(source, table)
            assert copied["tables"][table] == {"source": have, "copied": have}, table
            assert count(target, table) == have, table
        assert count(target, "tickets") == TICKETS
        assert count(target, "web_sessions") >= 1
        assert count(target, "search_backlog") == count(source, "articles")  # all to index
        files = [p for p in (env.data_dir / "blobs").glob("??/??/*") if len(p.name) == 64]
        assert copied["blobs"]["files"] == len(files) == count(target, "blobs")
        assert len(files) == 2 * TICKETS + 1  # each mail, its report, and the shared file once
    finally:
        source.close()
        target.close()
    blobs = PgBlobStore(url)
    try:
        assert blobs.get(hashlib.sha256(report(7)).hexdigest()) == report(7)
    finally:
        blobs.close()
    moved = await moved_daemon(tmp_path, url, sink, clock)
    try:
        after = Client(moved)
        after.http.cookies = anna.http.cookies  # the session made before the move
        download = await portal_file(after, 100003)
        assert download.status_code == 200
        assert download.content == report(3)
        shown = json.loads((await moved.cli("ticket", "show", "100002", "--json")).stdout)
        assert shown["status"] == "closed"
        new_ticket = f"2.0.0 Ok: ticket {100001 + TICKETS}"  # numbers and ids past the copied
        assert await moved.send(mail_with_files(99)) == (250, new_ticket)
    finally:
        await moved.daemon.stop(grace=5)


def test_storage_copy_refuses_a_database_that_is_not_empty(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    """`storage copy` into a database that holds anything refuses with exit 1 and a clear
    message, and adds nothing to it."""
    config = installation(tmp_path, "sqlite", pg_cluster)
    assert run_cli("--config", str(config), "customer", "add", "10042", "Schule").returncode == 0
    url = empty_database(pg_cluster)
    conn = postgres.connect(url)
    conn.execute("CREATE TABLE notes (line TEXT)")
    conn.close()
    done = run_cli("--config", str(config), "storage", "copy", "--to", url)
    assert done.returncode == 1
    assert "is not empty (it holds public.notes)" in done.stderr
    assert "storage copy only fills an empty database" in done.stderr
    assert tables_in(url) == ["notes"]


def test_storage_copy_refuses_a_url_with_a_password(tmp_path: Path, pg_cluster: PgCluster) -> None:
    """A --to URL carrying a password is refused (exit 2) before anything is done, the
    password never echoed; PGPASSWORD or ~/.pgpass are named instead."""
    config = installation(tmp_path, "sqlite", pg_cluster)
    assert run_cli("--config", str(config), "customer", "add", "10042", "Schule").returncode == 0
    url = empty_database(pg_cluster)
    with_password = url.replace("postgres@", "postgres:Geheim-4711@")
    assert with_password != url
    for given in (with_password, f"{url}&password=Geheim-4711"):
        done = run_cli("--config", str(config), "storage", "copy", "--to", given)
        assert done.returncode == 2
        assert "must not carry a password" in done.stderr
        assert "PGPASSWORD" in done.stderr
        assert "~/.pgpass" in done.stderr
        assert "Geheim-4711" not in done.stderr + done.stdout
    assert tables_in(url) == []


def test_backup_on_postgres_writes_a_pg_dump_archive(tmp_path: Path, pg_cluster: PgCluster) -> None:
    """`backup DEST` on PostgreSQL writes pg_dump's custom format of the database to DEST
    (pg_restore reads it back, rows and blobs), and refuses a DEST that exists."""
    config = installation(tmp_path, "postgres", pg_cluster)
    assert run_cli("--config", str(config), "storage", "migrate").returncode == 0
    assert run_cli("--config", str(config), "customer", "add", "10042", "Schule").returncode == 0
    dest = tmp_path / "backups" / "ticketmail.pgdump"
    done = run_cli("--config", str(config), "backup", str(dest))
    assert done.returncode == 0, done.stderr
    assert f"backup written to {dest}" in done.stdout
    assert dest.read_bytes().startswith(b"PGDMP")  # the custom format's signature
    listed = subprocess.run(
        [str(pg_cluster.bin / "pg_restore"), "--list", str(dest)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"TABLE DATA public customers ", listed.stdout)
    assert re.search(r"TABLE DATA public blobs ", listed.stdout)
    restored = empty_database(pg_cluster)
    into = subprocess.run(
        [str(pg_cluster.bin / "pg_restore"), "--dbname", restored, str(dest)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert into.returncode == 0, into.stderr
    conn = postgres.connect(restored)
    try:
        assert conn.execute("SELECT name FROM customers").fetchall() == [("Schule",)]
    finally:
        conn.close()
    again = run_cli("--config", str(config), "backup", str(dest))
    assert again.returncode == 1
    assert "exists" in again.stderr
    assert not list(dest.parent.glob(".*tmp-*"))  # nothing half-written left beside it


def test_a_copy_that_fails_leaves_the_database_empty(tmp_path: Path, pg_cluster: PgCluster) -> None:
    """A copy that stops (here a blob file damaged: its bytes no longer match its name) says
    why, exit 1, and commits nothing: the database stays empty, ready for the next try."""
    config = installation(tmp_path, "sqlite", pg_cluster)
    assert run_cli("--config", str(config), "customer", "add", "10042", "Schule").returncode == 0
    name = hashlib.sha256(b"the original bytes").hexdigest()
    damaged = tmp_path / "sqlite" / "var" / "blobs" / name[:2] / name[2:4] / name
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"bytes a disk fault changed")
    url = empty_database(pg_cluster)
    done = run_cli("--config", str(config), "storage", "copy", "--to", url)
    assert done.returncode == 1
    assert f"{damaged}: its content does not match its name" in done.stderr
    assert tables_in(url) == []
