"""Server subprocesses of the benchmark: start, wait for the port, read /proc, stop.

Every wait is bounded. A child gets SIGTERM from the kernel if the runner dies without
cleaning up (PR_SET_PDEATHSIG), so no server outlives a killed benchmark.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = [
    "Server",
    "cpu_seconds",
    "family",
    "free_port",
    "machine_cpu",
    "mount_of",
    "peak_rss_kib",
    "reset_peak_rss",
    "rss_kib",
    "start",
    "wait_idle",
    "wait_quiet",
]

PR_SET_PDEATHSIG = 1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port nobody listens on right now (bound once on 127.0.0.1, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(slots=True)
class Server:
    """One server subprocess listening on 127.0.0.1:port; its output goes to `log_path`."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    _log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def check_alive(self, *, during: str) -> None:
        """Raise, with the end of its log, if the server has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with status {self.proc.returncode} during {during}:\n"
                f"{self.log_tail()}"
            )

    def wait_port(self, *, seconds: float) -> None:
        """Return once the port accepts connections; raise if the process exits or time is up."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.proc.returncode}:\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not accept connections within {seconds} s")

    def stop(self, *, seconds: float = 20.0) -> int | None:
        """SIGTERM, wait (bounded), then SIGKILL. Returns the exit status."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=seconds)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5.0)
            return self.proc.returncode
        finally:
            self._log.close()


def start(
    name: str,
    argv: Sequence[str],
    /,
    *,
    port: int,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Server:
    """Start `argv` with stdout and stderr into `log_path`."""
    log = log_path.open("wb")
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            preexec_fn=_die_with_parent,
        )
    except BaseException:
        log.close()
        raise
    return Server(name, proc, port, log_path, log)


def family(pid: int) -> list[int]:
    """The process and all its descendants (ticketmail's worker processes, smtp.workers)."""
    found = [pid]
    for parent in found:  # grows while it is walked: breadth first
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            with contextlib.suppress(OSError, ValueError):
                children = (task / "children").read_text(encoding="ascii").split()
                found.extend(int(c) for c in children if int(c) not in found)
    return found


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {key}")


def _family_sum(pid: int, read: Callable[[int], float], exclude: Collection[int] = ()) -> float:
    total = 0.0
    for member in family(pid):
        if member in exclude:
            continue
        try:
            total += read(member)
        except (OSError, IndexError, ValueError):
            if member == pid:
                raise
    return total


def peak_rss_kib(pid: int) -> int:
    """VmHWM, the largest resident set since start or since `reset_peak_rss`, summed over
    the process and its descendants (an upper bound of their peak together)."""
    return int(_family_sum(pid, lambda p: _status_kib(p, "VmHWM")))


def rss_kib(pid: int) -> int:
    """VmRSS now, summed over the process and its descendants."""
    return int(_family_sum(pid, lambda p: _status_kib(p, "VmRSS")))


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), for the process and its descendants;
    False where that is not allowed."""
    done = True
    for member in family(pid):
        try:
            with open(f"/proc/{member}/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")
        except OSError:
            done = False
    return done


def _own_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    # After "pid (comm)": state is field 3, utime field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds(pid: int, *, exclude: Collection[int] = ()) -> float:
    """User plus system CPU time of the process (all its threads) and of its descendants
    now alive, in seconds; descendants in `exclude` left out."""
    return _family_sum(pid, _own_cpu_seconds, exclude)


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, summed over all cores."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    steal = fields[7] if len(fields) > 7 else 0
    return busy / CLOCK_TICKS, steal / CLOCK_TICKS


def _cpu_or_zero(pid: int) -> float:
    """CPU seconds of the process, 0 once it is gone (its exit is reported elsewhere)."""
    try:
        return cpu_seconds(pid)
    except (OSError, IndexError, ValueError):
        return 0.0


def wait_idle(
    pids: Sequence[int], *, seconds: float, busy_below: float = 0.05, window: float = 0.3
) -> float:
    """Wait (bounded) until the processes together use under `busy_below` of a core.

    Returns the time waited; a server that keeps working after the load (an outbox being
    drained) would otherwise steal CPU from the next measurement.
    """
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        before = sum(_cpu_or_zero(p) for p in pids)
        time.sleep(window)
        used = sum(_cpu_or_zero(p) for p in pids) - before
        if used / window < busy_below:
            break
    return time.monotonic() - start


def wait_quiet(*, seconds: float, busy_below: float = 0.2, window: float = 0.5) -> float:
    """Wait (bounded) until the whole machine uses under `busy_below` of one core.

    For shared machines: other people's test runs distort a benchmark. Returns the time waited.
    """
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        before, _ = machine_cpu()
        time.sleep(window)
        after, _ = machine_cpu()
        if (after - before) / window < busy_below:
            break
    return time.monotonic() - start


def mount_of(path: Path) -> tuple[str, str]:
    """(mount point, filesystem type) that holds `path`, from /proc/self/mounts."""
    best = ("/", "unknown")
    resolved = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/self/mounts", encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 3:
                continue
            point, fstype = parts[1], parts[2]
            inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best[0]):
                best = (point, fstype)
    return best
