"""A private Postfix instance as a second yardstick (issue 7's stretch target), if installed.

Postfix's smtpd answers 250 only once its cleanup daemon has written and fsync'd the queue
file; its queue manager then hands every mail to the `discard` transport. So it does what a
durable MTA does with a mail, and keeps nothing afterwards. The instance lives in the
benchmark's temp dir (its own main.cf, master.cf, queue and log), listens on one 127.0.0.1
port and is stopped at the end. It needs Debian's `postfix` package and root (Postfix's
master starts as root and runs its daemons as the `postfix` user); without either, the
benchmark says so and runs without it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostfixServer", "start_postfix", "unavailable"]

POSTFIX = "/usr/sbin/postfix"

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/lib
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.example
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
relay_domains = stueber.de
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
default_transport = discard:bench
relay_transport = discard:bench
local_transport = discard:bench
alias_maps =
alias_database =
local_recipient_maps =
message_size_limit = 26214400
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 200
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
biff = no
"""

# Debian's services without chroot (the queue dir has no copy of /etc) and only those
# an SMTP-in, discard-out instance uses.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


def unavailable() -> str | None:
    """Why Postfix cannot be measured here, or None."""
    if not Path(POSTFIX).exists():
        return "Postfix is not installed (Debian: apt-get install postfix)"
    if os.geteuid() != 0:
        return "Postfix's master must be started as root"
    return None


@dataclass(slots=True)
class PostfixServer:
    """The running instance, shaped like procs.Server where the benchmark uses one."""

    name: str
    root: Path
    port: int
    pid: int

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = (self.root / "maillog").read_text(encoding="utf-8", errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def check_alive(self, *, during: str) -> None:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            raise RuntimeError(f"postfix exited during {during}:\n{self.log_tail()}") from None

    def stop(self) -> int:
        """`postfix stop`, then SIGKILL to the master should it still run; 0 (as a clean exit)."""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _postfix(self.config_dir, "stop", timeout=20)
        for _ in range(100):  # bounded: 5 s
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return 0
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, 9)
        return -9


def _postfix(config_dir: Path, command: str, *, timeout: float) -> str:
    result = subprocess.run(
        [POSTFIX, "-c", str(config_dir), command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"postfix {command} failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout


def start_postfix(root: Path, port: int, *, seconds: float) -> PostfixServer:
    """Write the instance's config under `root`, start it, wait for its port."""
    for sub in ("etc", "spool", "lib"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "etc" / "main.cf").write_text(MAIN_CF.format(root=root), encoding="ascii")
    (root / "etc" / "master.cf").write_text(MASTER_CF.format(port=port), encoding="ascii")
    shutil.chown(root / "lib", user="postfix")
    # Postfix's daemons (user postfix) must reach their queue inside the benchmark's temp
    # dir (mkdtemp makes it 0700): search permission for others on it, nothing more.
    for directory in (root.parent, root):
        directory.chmod(directory.stat().st_mode | 0o001)
    _postfix(root / "etc", "start", timeout=30)
    deadline = time.monotonic() + seconds
    pid_file = root / "spool" / "pid" / "master.pid"
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text(encoding="ascii").split()[0])
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return PostfixServer("postfix", root, port, pid)
        time.sleep(0.1)
    raise RuntimeError(f"postfix did not listen on 127.0.0.1:{port}:\n{root / 'maillog'}")
