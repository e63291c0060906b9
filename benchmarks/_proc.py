"""Process plumbing for the benchmarks: pinning, CPU and memory from /proc, cleanup.

Everything here reads Linux's ``/proc``; on another OS the figures are ``None``.
Every child started through :class:`Children` is terminated (then killed) when
the runner exits, however it exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
HERE = Path(__file__).resolve().parent


def pin(pid: int, cores: set[int]) -> bool:
    """Pin ``pid`` (0: this process) to ``cores``; ``False`` where not allowed."""
    try:
        os.sched_setaffinity(pid, cores)
    except (AttributeError, OSError, ValueError):
        return False
    return True


def cores_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (seconds), from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB, from /proc/PID/status."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def steal_seconds() -> float | None:
    """CPU time the hypervisor gave to others, all cores together (/proc/stat ``steal``)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    return int(fields[8]) / CLK_TCK if len(fields) > 8 and fields[0] == "cpu" else None


def all_cpu() -> dict[int, float]:
    """CPU seconds of every process we can see (for the noise guard)."""
    result: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            value = cpu_seconds(int(entry.name))
            if value is not None:
                result[int(entry.name)] = value
    return result


def foreign_cpu_pct(
    before: dict[int, float], after: dict[int, float], ours: set[int], seconds: float
) -> float:
    """CPU % (100 = one core) used in between by processes not in ``ours``."""
    used = 0.0
    for pid, value in after.items():
        if pid in ours or pid == os.getpid():
            continue
        used += value - before.get(pid, value)
    return 100.0 * used / seconds if seconds > 0 else 0.0


def wait_quiet(
    limit_pct: float = 10.0, timeout: float = 20.0, ours: set[int] | None = None
) -> float:
    """Wait (up to ``timeout``) until other processes use under ``limit_pct`` of a core."""
    deadline = time.monotonic() + timeout
    pct = 0.0
    while time.monotonic() < deadline:
        before = all_cpu()
        time.sleep(0.5)
        pct = foreign_cpu_pct(before, all_cpu(), ours or set(), 0.5)
        if pct < limit_pct:
            break
    return pct


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20.0
) -> None:
    """Wait until something accepts TCP on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Children:
    """Every subprocess the runner started; all of them are stopped on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        atexit.register(self.stop_all)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop_all()
        sys.exit(128 + signum)

    def start(
        self,
        args: Sequence[str],
        cores: set[int] | None,
        *,
        stdout: int | None = subprocess.DEVNULL,
        stdin: int | None = subprocess.DEVNULL,
        stderr: int | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            list(args),
            stdout=stdout,
            stdin=stdin,
            stderr=stderr,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.procs.append(proc)
        if cores is not None:
            pin(proc.pid, cores)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        for stream in (proc.stdout, proc.stdin, proc.stderr):
            if stream is not None:
                stream.close()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)
