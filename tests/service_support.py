"""`ticketmail serve` in a subprocess as systemd runs it: the notify socket it talks to, its
log, signals, and (for the descriptor tests) the limit of open files it starts with."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import free_port, run_cli, write_config

SENDER = "anna@schule.example"
STOP_SECONDS = 15.0  # well below the daemon's 30 s shutdown grace


class NotifySocket:
    """The datagram socket systemd would listen on ($NOTIFY_SOCKET), opened by the test."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def close(self) -> None:
        self.sock.close()

    def wait_for(self, line: str, *, seconds: float, count: int = 1) -> list[str]:
        """Read datagrams (bounded) until `count` of them carried `line`; return all read."""
        deadline = time.monotonic() + seconds
        seen = sum(line in m.splitlines() for m in self.messages)
        while seen < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{count} x {line!r} not received within {seconds}s; got {self.messages}"
                )
            self.sock.settimeout(remaining)
            try:
                message = self.sock.recv(4096).decode("utf-8")
            except TimeoutError:
                continue
            self.messages.append(message)
            seen += line in message.splitlines()
        return list(self.messages)


@dataclass
class Service:
    """`ticketmail serve` in a subprocess, as systemd would run it."""

    proc: subprocess.Popen[bytes]
    port: int
    config: Path
    log: Path
    notify: NotifySocket
    web_port: int | None = None

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, seconds: float = STOP_SECONDS) -> int:
        return self.proc.wait(timeout=seconds)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def cpu_seconds(self) -> float:
        """User plus system CPU time the daemon has used so far (/proc/PID/stat)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text(encoding="ascii")
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


StartService = Callable[..., Service]


def spawn_serve(
    config: Path, log: Path, *, environ: dict[str, str],
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """`ticketmail serve` on `config` in its own process, in the config's folder, stdout and
    stderr into `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ticketmail", "--config", str(config), "serve"],
            stdout=out, stderr=subprocess.STDOUT, env=environ, cwd=config.parent,
            preexec_fn=preexec_fn,
        )  # fmt: skip


def own_environ() -> dict[str, str]:
    """The test's environment without ticketmail's own variables (no config, secret, relay
    password from the developer's shell)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TICKETMAIL_")}


class Services:
    """Starts the test's daemon (one per test) and kills what is left at the end."""

    def __init__(self, tmp_path: Path, *, watchdog_usec: int) -> None:
        self.tmp_path = tmp_path
        self.watchdog_usec = watchdog_usec
        self.started: list[Service] = []

    def start(
        self, relay_port: int | None = None, *, nofile: tuple[int, int] | None = None,
        **sections: dict[str, Any],
    ) -> Service:  # fmt: skip
        """One registered user; `nofile`: the (soft, hard) limit of open files it starts with;
        `web={...}` serves the portal (on a port of its own)."""
        assert not self.started, "one daemon per test"
        tmp_path = self.tmp_path
        smtp = {"port": free_port(), **sections.pop("smtp", {})}
        web_port = None
        if "web" in sections:
            web_port = free_port()
            sections["web"] = {"enabled": True, "port": web_port, **sections["web"]}
        path = tmp_path / "config.toml"
        config = write_config(path, tmp_path / "var", relay_port, smtp=smtp, **sections)
        for args in (
            ("customer", "add", "10042", "Gymnasium Musterstadt", "--support-until", "2099-12-31"),
            ("user", "add", SENDER, "--customer", "10042", "--name", "Anna Müller"),
        ):
            result = run_cli("--config", str(config), *args)
            assert result.returncode == 0, result.stderr
        notify = NotifySocket(tmp_path / "notify.sock")
        environ = own_environ()
        environ.pop("WATCHDOG_PID", None)
        environ.update(
            {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(self.watchdog_usec)}
        )

        def limit_files() -> None:  # in the child, before it runs ticketmail
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

        log = tmp_path / "daemon.log"
        proc = spawn_serve(config, log, environ=environ, preexec_fn=limit_files)
        self.started.append(Service(proc, smtp["port"], config, log, notify, web_port))
        return self.started[-1]

    def close(self) -> None:
        for service in self.started:
            if service.proc.poll() is None:
                service.proc.kill()
                service.proc.wait(timeout=10)
            service.notify.close()
