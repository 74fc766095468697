"""The zuul_console daemon, started and stopped by real Ansible runs on the sshd node.

The node is this machine, so the tests talk to the daemon on 127.0.0.1 with raw sockets and
write console files directly. Each daemon listens on a free port with its console files in the
test's own directory (so `state: absent` cannot touch anyone else's /tmp/console-*.log), and is
killed at the end of the test even when the test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import pytest

DEFAULT_CALLBACK = {"ANSIBLE_STDOUT_CALLBACK": "default"}
ROLE = Path(__file__).resolve().parents[2] / "zuul-jobs" / "roles" / "start-zuul-console"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listener_pids(port: int) -> set[int]:
    """Processes holding a socket that listens on the TCP port."""
    inodes = set()
    for table in ("/proc/net/tcp6", "/proc/net/tcp"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
                pids.add(int(pid))
        except OSError:
            continue
    return pids


@dataclass
class Daemon:
    port: int
    logs: Path

    def path(self, log_id: str) -> Path:
        return self.logs / f"console-{log_id}.log"

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture
def console_play(run_playbook: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    """Runs zuul_console on the node with the given arguments; returns the registered result."""

    def run(**args: Any) -> dict[str, Any]:
        out = tmp_path / "console-result.json"
        out.unlink(missing_ok=True)
        run = run_playbook(
            f"""\
            - hosts: node
              gather_facts: false
              tasks:
                - zuul_console: {json.dumps(args)}
                  register: console
                - copy:
                    content: "{{{{ console | to_json }}}}"
                    dest: {out}
                  delegate_to: localhost
            """,
            extra_env=DEFAULT_CALLBACK,
        )
        assert run.rc == 0, run.stdout
        return json.loads(out.read_text())

    return run


@pytest.fixture
def daemon(console_play: Callable[..., Any], tmp_path: Path) -> Iterator[Daemon]:
    logs = tmp_path / "console-logs"
    logs.mkdir()
    d = Daemon(free_port(), logs)
    try:
        result = console_play(port=d.port, path=f"{logs}/console-{{log_uuid}}.log")
        assert result["changed"] is True
        yield d
    finally:
        for pid in listener_pids(d.port):
            os.kill(pid, signal.SIGKILL)


def recv_until(conn: socket.socket, expected: bytes, timeout: float = 10) -> bytes:
    """Reads until `expected` has arrived; returns everything read."""
    data = b""
    deadline = time.monotonic() + timeout
    while expected not in data:
        conn.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    assert expected in data, data
    return data


def delivery_delay(conn: socket.socket, log: IO[bytes], line: bytes) -> float:
    """Seconds from appending `line` to the followed `log` until it arrives on `conn`."""
    sent = time.monotonic()
    log.write(line)
    recv_until(conn, line)
    return time.monotonic() - sent


def test_version_handshake_then_stream_and_follow(daemon: Daemon):
    log = daemon.path("task-1-node")
    log.write_bytes(b"2026-01-01 00:00:00.000001 | one\n" + b"x" * 10000 + b"\n")
    with daemon.connect() as conn:
        conn.sendall(b"v:0\n")
        assert recv_until(conn, b"\n") == b"1\n"
        conn.sendall(b"s:task-1-node\n")
        recv_until(conn, b"x" * 10000 + b"\n")
        with log.open("ab") as f:
            f.write(b"2026-01-01 00:00:01.000001 | two\n")
        recv_until(conn, b"| two\n")


def test_appended_lines_arrive_quickly(daemon: Daemon):
    # A printing command is followed with much less than Zuul's fixed 0.5 s polling delay.
    log = daemon.path("busy")
    log.write_bytes(b"")
    delays = []
    with daemon.connect() as conn, log.open("ab", buffering=0) as f:
        conn.sendall(b"s:busy\n")
        for i in range(20):
            time.sleep(0.05)
            delays.append(delivery_delay(conn, f, b"line %d\n" % i))
    assert sorted(delays)[len(delays) // 2] < 0.2, delays


def inotify_fds(pid: int) -> int:
    """How many inotify descriptors the process holds."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify"
        except OSError:
            continue
    return count


def test_first_line_after_a_quiet_period_is_woken_by_the_write(daemon: Daemon):
    # A poll that backs off while the file is idle would make these lines wait up to its
    # longest interval (Zuul: 0.5 s); the daemon waits on inotify instead, so the write wakes it.
    log = daemon.path("quiet-then-busy")
    log.write_bytes(b"start\n")
    (pid,) = listener_pids(daemon.port)
    assert inotify_fds(pid) == 0, "the daemon holds inotify descriptors with no client"
    delays = []
    with daemon.connect() as conn, log.open("ab", buffering=0) as f:
        conn.sendall(b"s:quiet-then-busy\n")
        recv_until(conn, b"start\n")
        assert inotify_fds(pid) == 1, "the stream does not follow the file with inotify"
        for i in range(4):
            # A back-off from 10 ms doubling to 0.5 s would look at 1.13 s and 1.63 s after the
            # last data: written at 1.2 s, a line would wait about 0.43 s.
            time.sleep(1.2)
            delays.append(delivery_delay(conn, f, b"after quiet %d\n" % i))
    # The write wakes the daemon within a millisecond or so; 0.2 s leaves room for a loaded
    # machine and is still half of what the back-off would take.
    assert sorted(delays)[len(delays) // 2] < 0.2, delays
    deadline = time.monotonic() + 5
    while inotify_fds(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert inotify_fds(pid) == 0, "the stream's inotify descriptor outlived its client"


def test_log_created_after_the_request_is_sent_without_polling_delay(daemon: Daemon):
    (pid,) = listener_pids(daemon.port)
    with daemon.connect() as conn:
        conn.sendall(b"s:appears\n")
        recv_until(conn, b"[Zuul] Log not found\n")
        assert inotify_fds(pid) == 1, "the stream does not wait for the file with inotify"
        time.sleep(0.2)
        sent = time.monotonic()
        daemon.path("appears").write_bytes(b"here\n")
        recv_until(conn, b"here\n")
        # The notice comes every 0.5 s; the file is found on its creation, not at the next look.
        assert time.monotonic() - sent < 0.25


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_streams_cost_almost_no_cpu(daemon: Daemon):
    # The fast follow backs off while nothing is written, and a waiting stream slows down.
    daemon.path("quiet").write_bytes(b"only line\n")
    (pid,) = listener_pids(daemon.port)
    with daemon.connect() as following, daemon.connect() as waiting:
        following.sendall(b"s:quiet\n")
        recv_until(following, b"only line\n")
        waiting.sendall(b"s:absent\n")
        recv_until(waiting, b"[Zuul] Log not found\n")
        before = cpu_seconds(pid)
        time.sleep(3)
        assert cpu_seconds(pid) - before < 0.1


def test_missing_log_then_created(daemon: Daemon):
    with daemon.connect() as conn:
        conn.sendall(b"s:later\n")
        recv_until(conn, b"[Zuul] Log not found\n")
        daemon.path("later").write_bytes(b"hello\n")
        data = recv_until(conn, b"hello\n")
        assert set(data.replace(b"hello\n", b"").splitlines()) <= {b"[Zuul] Log not found"}


def test_bare_log_id_from_version_0_clients(daemon: Daemon):
    daemon.path("old").write_bytes(b"old client\n")
    with daemon.connect() as conn:
        conn.sendall(b"old\n")
        recv_until(conn, b"old client\n")


def test_replaced_or_truncated_file_restarts_from_the_beginning(daemon: Daemon):
    log = daemon.path("rotating")
    log.write_bytes(b"first file\n")
    with daemon.connect() as conn:
        conn.sendall(b"s:rotating\n")
        recv_until(conn, b"first file\n")
        replacement = daemon.logs / "replacement"
        replacement.write_bytes(b"second file\n")
        replacement.rename(log)
        recv_until(conn, b"second file\n")
        log.write_bytes(b"3\n")
        recv_until(conn, b"3\n")


def test_finish_request_deletes_the_file_and_ids_stay_in_the_directory(daemon: Daemon):
    log = daemon.path("done")
    log.write_bytes(b"[Zuul] Task exit code: 0\n")
    outside = daemon.logs.parent / "console-outside.log"
    outside.write_bytes(b"secret\n")
    with daemon.connect() as conn:
        conn.sendall(b"v:1\nf:done\nv:1\n")
        assert recv_until(conn, b"1\n1\n") == b"1\n1\n"
    assert not log.exists()
    with daemon.connect() as conn:
        conn.sendall(b"s:../console-outside\n")
        assert recv_until(conn, b"[Zuul] Log not found\n").count(b"secret") == 0


def test_present_is_idempotent_and_absent_stops_it(daemon: Daemon, console_play: Callable[..., Any]):
    path = f"{daemon.logs}/console-{{log_uuid}}.log"
    assert console_play(port=daemon.port, path=path)["changed"] is False
    assert len(listener_pids(daemon.port)) == 1
    daemon.path("leftover").write_bytes(b"x\n")
    assert console_play(port=daemon.port, path=path, state="absent")["changed"] is True
    assert not daemon.path("leftover").exists()
    assert listener_pids(daemon.port) == set()
    with pytest.raises(ConnectionRefusedError):
        daemon.connect()


def test_start_zuul_console_role(run_playbook: Callable[..., Any], tmp_path: Path):
    port = free_port()
    try:
        run = run_playbook(
            f"""\
            - hosts: node
              gather_facts: false
              roles:
                - role: {ROLE}
                  vars:
                    zuul_console_port: {port}
            """,
            extra_env=DEFAULT_CALLBACK,
        )
        assert run.rc == 0, run.stdout
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"v:0\n")
            assert recv_until(conn, b"\n") == b"1\n"
    finally:
        for pid in listener_pids(port):
            os.kill(pid, signal.SIGKILL)
