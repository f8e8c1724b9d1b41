"""A throwaway PostgreSQL cluster for the tests: Debian's binaries, a Unix socket, a database
from a template per test.

The cluster lives in a directory of its own under /tmp (never pytest's temporary root, which
is mode 0700 and which the `postgres` user could not enter; /tmp also keeps the socket path
short). As root, initdb and pg_ctl run as the `postgres` OS user (`runuser`); otherwise as the
current user. The server listens on no TCP address at all (`listen_addresses = ''`), runs with
`fsync = on` for the crash tests, and has nothing to do with the system's own cluster that
Debian's package may have created.

Fixtures (registered in conftest.py): `pg_cluster` (session; started only when a test asks),
`pg_template` (session; the template `tm_template`, prepared once by `TEMPLATE_SETUP`) and
`pg_url` (a fresh database per test, dropped afterwards)."""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

# Set to a function that prepares the template database once per session (ticketmail's schema
# migration); it gets the template's URL and must close every connection it opened.
TEMPLATE_SETUP: Callable[[str], None] | None = None
TEMPLATE = "tm_template"

PG_ROOT = Path("/usr/lib/postgresql")
TMP_ROOT = Path("/tmp")
PREFIX = "ticketmail-pg-"
OS_USER = "postgres"  # the OS user the server runs as when the tests run as root
SUPERUSER = "postgres"  # the database superuser initdb creates (trust authentication)
PORT = 5432  # names the socket file only: there is no TCP listener
MISSING = "Debian's postgresql is not installed: run make postgres"
SERVER_OPTIONS = (
    "-c listen_addresses='' -c unix_socket_directories={socket} -c port={port} "
    "-c fsync=on -c max_connections=300 -c shared_buffers=64MB"
)
START_SECONDS = 60  # pg_ctl -t: the wait for the server to start or stop
COMMAND_SECONDS = 120  # every subprocess is bounded
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PgError(RuntimeError):
    """A cluster command failed; the message carries its output (and the server log)."""


def bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<N>/bin that has initdb, or a clear error."""
    found = sorted(
        (int(p.parent.parent.name), p.parent)
        for p in PG_ROOT.glob("*/bin/initdb")
        if p.parent.parent.name.isdigit()
    )
    if not found:
        raise PgError(MISSING)
    return found[-1][1]


def _clean_environ() -> dict[str, str]:
    """The environment without PG* variables (PGPORT, PGHOST, PGOPTIONS, ... would change
    what the commands do)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a plain database name: {name!r}")
    return name


class PgCluster:
    """One throwaway cluster: `start()` runs initdb and starts the server; `stop()` stops it
    and removes its directory. Databases: `create_template`, `fresh_database`, `drop_database`;
    `stop_server`/`start_server`/`restart` keep the data for tests that stop the database."""

    def __init__(self) -> None:
        self.bin = bin_dir()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            try:
                self._owner = pwd.getpwnam(OS_USER)
            except KeyError:
                raise PgError(f"{MISSING} (there is no '{OS_USER}' user)") from None
        self.dir: Path | None = None
        self._counter = itertools.count(1)
        self.running = False

    # --- paths, commands ----------------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        if self.dir is None:
            raise PgError("the cluster is not started")
        return self.dir

    @property
    def data_dir(self) -> Path:
        return self.socket_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.socket_dir / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        """The libpq URL of a database on this cluster's socket:
        postgresql://postgres@/DBNAME?host=/tmp/ticketmail-pg-XXXX&port=5432"""
        host = quote(str(self.socket_dir), safe="/")
        return f"postgresql://{SUPERUSER}@/{quote(dbname, safe='')}?host={host}&port={PORT}"

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-20:])

    def _run(self, tool: str, *args: str, server: bool = False) -> str:
        """Run a tool of the cluster's bin dir, bounded; as `postgres` for the server tools
        (initdb, pg_ctl) when we are root. A failure raises PgError with its output."""
        command = [str(self.bin / tool), *args]
        if server and self.as_postgres:
            command = ["runuser", "-u", OS_USER, "--", *command]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=COMMAND_SECONDS,
                env=_clean_environ(),
                cwd=self.dir or TMP_ROOT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PgError(f"{tool} {' '.join(args)}: no answer within {exc.timeout} s") from None
        if done.returncode != 0:
            log = self._log_tail() if server else ""
            raise PgError(
                f"{tool} {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}" + (f"\nserver log:\n{log}" if log else "")
            )
        return done.stdout

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL through psql (no psqlrc, stop at the first error); return the unaligned,
        tuples-only output."""
        return self._run(
            "psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.url(dbname),
            "-c", sql,
        )  # fmt: skip

    # --- the server -------------------------------------------------------------------------

    def start(self) -> PgCluster:
        """initdb into a new directory under /tmp and start the server (bounded)."""
        reap_stale()
        self.dir = Path(tempfile.mkdtemp(prefix=PREFIX, dir=TMP_ROOT))
        (self.dir / "owner").write_text(f"{os.getpid()} {_pid_namespace()}\n", encoding="utf-8")
        self.dir.chmod(0o755)
        if self.as_postgres:
            os.chown(self.dir, self._owner.pw_uid, self._owner.pw_gid)
        try:
            self._run(
                "initdb", "-D", str(self.data_dir), "--auth=trust", f"--username={SUPERUSER}",
                "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync", server=True,
            )  # fmt: skip
            self.start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def start_server(self) -> None:
        """Start the server on the existing data (pg_ctl -w, bounded by -t)."""
        options = SERVER_OPTIONS.format(socket=self.socket_dir, port=PORT)
        self._run(
            "pg_ctl", "start", "-w", "-t", str(START_SECONDS), "-D", str(self.data_dir),
            "-l", str(self.log_file), "-o", options, server=True,
        )  # fmt: skip
        self.running = True

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server, keeping the data: mode `fast` (a clean shutdown) or `immediate`
        (as a crash: recovery from the WAL at the next start)."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"pg_ctl has no stop mode {mode!r}")
        self._run(
            "pg_ctl", "stop", "-w", "-t", str(START_SECONDS), "-m", mode,
            "-D", str(self.data_dir), server=True,
        )  # fmt: skip
        self.running = False

    def restart(self, mode: str = "fast") -> None:
        """Stop the server (see stop_server) and start it again on the same data."""
        self.stop_server(mode)
        self.start_server()

    def stop(self) -> None:
        """Stop the server (fast, else immediate, else SIGKILL) and remove the directory."""
        if self.dir is None:
            return
        if _postmaster(self.data_dir) is not None:
            _stop_at(self.data_dir, lambda mode: self.stop_server(mode))
        self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    # --- databases --------------------------------------------------------------------------

    def create_template(self, name: str, setup: Callable[[str], None] | None = None) -> str:
        """Create database `name`, run `setup(url)` on it once, then make it a template that
        takes no connections (so copying it never waits for a leftover one)."""
        _is_name(name)
        self.psql(f'CREATE DATABASE "{name}"')
        if setup is not None:
            setup(self.url(name))
        asked = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'"  # noqa: S608
        left = self.psql(asked)  # (name is checked by _is_name above)
        if int(left.strip()) != 0:
            raise PgError(f"the template setup left {left.strip()} connections open to {name}")
        self.psql(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
        return name

    def new_database(self, template: str) -> str:
        """A new database copied from `template`; its name (t_1, t_2, ...: unique per cluster)."""
        name = f"t_{next(self._counter)}"
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE "{_is_name(template)}"')
        return name

    def fresh_database(self, template: str) -> str:
        """A new database copied from `template`; its URL."""
        return self.url(self.new_database(template))

    def drop_database(self, name: str) -> None:
        """Drop a database, ending any connections still open to it."""
        self.psql(f'DROP DATABASE IF EXISTS "{_is_name(name)}" WITH (FORCE)')


def _postmaster(data_dir: Path) -> int | None:
    """The pid of the running postmaster of `data_dir`; None when there is none (no pid file,
    or a stale one whose pid is gone or now another process's)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    return pid if os.fsencode(data_dir) in command else None


def _stop_at(data_dir: Path, stop: Callable[[str], None]) -> None:
    """Stop the server of `data_dir`: fast, then immediate, then SIGKILL to the postmaster."""
    for mode in ("fast", "immediate"):
        try:
            stop(mode)
            return
        except PgError:
            continue
    pid = _postmaster(data_dir)
    if pid is not None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def reap_stale() -> None:
    """Stop and remove clusters that a test session killed before its cleanup left behind:
    those whose owning process (same PID namespace) is gone. Another live session's cluster
    is never touched."""
    namespace = _pid_namespace()
    for directory in TMP_ROOT.glob(f"{PREFIX}*"):
        try:
            pid_text, _, owner_ns = (directory / "owner").read_text().strip().partition(" ")
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if owner_ns != namespace or _alive(pid):
            continue
        try:
            stale = PgCluster()
        except PgError:
            return
        stale.dir = directory
        stale.stop()


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's throwaway cluster, started the first time a test asks for it."""
    cluster = PgCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PgCluster) -> str:
    """The template every test's database is copied from, prepared once by TEMPLATE_SETUP."""
    return pg_cluster.create_template(TEMPLATE, TEMPLATE_SETUP)


@pytest.fixture
def pg_url(pg_cluster: PgCluster, pg_template: str) -> Iterator[str]:
    """A fresh database of this test's own, copied from the template; dropped afterwards."""
    if not pg_cluster.running:
        pg_cluster.start_server()  # a test before this one stopped the server and failed
    name = pg_cluster.new_database(pg_template)
    yield pg_cluster.url(name)
    if not pg_cluster.running:
        pg_cluster.start_server()
    pg_cluster.drop_database(name)
