"""The systemd notify protocol (sd_notify): READY, STOPPING, WATCHDOG over a datagram socket."""

from __future__ import annotations

import os
import socket

__all__ = ["Notifier", "watchdog_interval"]


class Notifier:
    """$NOTIFY_SOCKET, connected once at start and kept: a WATCHDOG=1 still goes out when
    the process has no descriptor left to open a socket with."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        address = os.environ.get("NOTIFY_SOCKET")
        if not address:
            return
        if address.startswith("@"):
            address = "\0" + address[1:]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            return
        sock.setblocking(False)  # a full queue at systemd's end loses a message, never waits
        self._sock = sock

    def notify(self, message: str) -> bool:
        """Send one notification; False when not run under systemd (or it was not taken)."""
        if self._sock is None:
            return False
        try:
            self._sock.send(message.encode("utf-8"))
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float | None:
    """Half the watchdog timeout systemd expects pings within, or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        microseconds = int(usec)
    except ValueError:
        return None
    return microseconds / 1_000_000 / 2 if microseconds > 0 else None
