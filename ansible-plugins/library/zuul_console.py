#!/usr/bin/python
"""zuul_console: the node daemon that serves command output logs to the executor's streamer.

Arguments: `path` (console file template, default `/tmp/console-{log_uuid}.log`), `port`
(default 19885) and `state`. `present` starts the daemon unless something already listens on
the port (then nothing changes); `absent` kills whatever listens on the port and removes every
console file.

The daemon listens on `[::]:port` (dual stack; `0.0.0.0` when the node has no IPv6) and speaks
Zuul's console protocol, version 1. Requests are lines of at most 1024 bytes that must arrive
within 10 seconds:

- `v:<client version>` answers `1\\n`; more requests may follow.
- `f:<log id>` deletes that console file, answers nothing; more requests may follow.
- `s:<log id>`, or any other line taken as a bare log id (version 0 clients), streams the file:
  `[Zuul] Log not found\\n` every 0.5 s while it does not exist, then the whole file, then what
  is appended to it, until the client closes. A file replaced (new inode) or truncated is
  streamed again from its start. The end of a task's log is its `[Zuul] Task exit code: <rc>`
  line; the protocol has no end marker.

On Linux the daemon is woken by the write itself (inotify, through ctypes: the node has only
Python's standard library); elsewhere, or when inotify cannot be set up, it polls with a back-off.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import select
import signal
import socket
import threading
import time
from typing import IO, Any

from ansible.module_utils.basic import AnsibleModule

DEFAULT_PATH = "/tmp/console-{log_uuid}.log"
DEFAULT_PORT = 19885
PROTOCOL_VERSION = 1
MAX_REQUEST_BYTES = 1024
REQUEST_TIMEOUT_SECONDS = 10.0
CHUNK_BYTES = 4096
NOT_FOUND = b"[Zuul] Log not found\n"
NOT_FOUND_INTERVAL_SECONDS = 0.5
# A missing file is looked for more often than the notice is sent: the streamer usually
# connects just before the command starts, and its first line should not wait half a second.
# A file still missing after a while (a task that never ran its command) is looked for at the
# notice's pace, so a forgotten client costs no more than it does with Zuul.
APPEAR_POLL_SECONDS = 0.05
APPEAR_FAST_POLL_FOR_SECONDS = 10.0

# Without inotify, following a file polls it, but not at Zuul's fixed 0.5 s: right after new
# data the next look comes after 10 ms, and each look that finds nothing doubles the wait, up to
# 0.5 s. A command that is printing is streamed with about 10 ms of delay; an idle stream costs
# what Zuul's costs (two wake-ups a second), and a daemon with no client costs nothing (it
# sleeps in accept). But the first line after a quiet period waits up to 0.5 s.
# The wait is a select() on the client socket, so a client that hangs up is noticed at once.
FOLLOW_MIN_WAIT_SECONDS = 0.01
FOLLOW_MAX_WAIT_SECONDS = 0.5

# With inotify the same select() also waits on an inotify descriptor watching the open file
# (written, truncated, unlinked) and its directory (a file created or renamed into it), so a
# write wakes the stream at once, however long it was quiet. It still looks every 0.5 s, as the
# back-off does when idle: a file system that does not report some change (a write from another
# NFS client) is then followed no worse than before, and the idle cost is unchanged.
WATCHED_WAIT_SECONDS = 0.5
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
FILE_EVENTS = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF
DIRECTORY_EVENTS = IN_CREATE | IN_MOVED_TO


def _load_inotify() -> tuple[Any, Any] | None:
    """libc's inotify_init1 and inotify_add_watch, or None where they do not exist."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        init, add_watch = libc.inotify_init1, libc.inotify_add_watch
    except (OSError, AttributeError):
        return None
    init.argtypes, init.restype = [ctypes.c_int], ctypes.c_int
    add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    add_watch.restype = ctypes.c_int
    return init, add_watch


INOTIFY = _load_inotify()


class ChangeWatch:
    """An inotify descriptor watching some paths; readable when one of them changed.

    The events are not parsed: any event means "look again", and the caller compares the file
    with what it has sent.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def create(cls, watches: list[tuple[str, int]]) -> ChangeWatch | None:
        """Watches each (path, mask); None when inotify is unavailable or a watch fails."""
        if INOTIFY is None:
            return None
        init, add_watch = INOTIFY
        fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None  # EMFILE (too many instances for this user), ENOSYS, ...
        for path, mask in watches:
            if add_watch(fd, os.fsencode(path), mask) < 0:
                os.close(fd)
                return None
        return cls(fd)

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> None:
        try:
            while os.read(self._fd, 65536):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self._fd)


class ClientGone(Exception):
    """The client closed the connection or it broke."""


class Connection:
    """One client connection: reads request lines, streams console files."""

    def __init__(self, conn: socket.socket, path_template: str) -> None:
        self._conn = conn
        self._path_template = path_template
        self._buffer = b""

    def serve(self) -> None:
        try:
            while True:
                request = self._read_request()
                if request is None:
                    return
                if request.startswith("v:"):
                    self._conn.sendall(b"%d\n" % PROTOCOL_VERSION)
                elif request.startswith("f:"):
                    self._delete(request[2:])
                else:
                    self._stream(request[2:] if request.startswith("s:") else request)
                    return
        except (ClientGone, OSError):
            pass
        finally:
            self._conn.close()

    def _read_request(self) -> str | None:
        """The next request line, stripped; None when none arrives in time or it is too long."""
        self._conn.settimeout(REQUEST_TIMEOUT_SECONDS)
        while not (b"\n" in self._buffer and self._buffer.index(b"\n") > 0):
            if len(self._buffer) >= MAX_REQUEST_BYTES:
                return None
            try:
                data = self._conn.recv(MAX_REQUEST_BYTES - len(self._buffer))
            except socket.timeout:
                return None
            if not data:
                return None
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        self._conn.settimeout(None)
        return line.decode("utf-8", "replace").strip()

    def _log_path(self, log_id: str) -> str:
        # Only the basename: a log id cannot walk out of the console directory.
        return self._path_template.format(log_uuid=os.path.basename(log_id.strip()))

    def _delete(self, log_id: str) -> None:
        try:
            os.unlink(self._log_path(log_id))
        except FileNotFoundError:
            pass

    def _stream(self, log_id: str) -> None:
        path = self._log_path(log_id)
        while True:
            log = self._open_when_present(path)
            with log:
                self._follow(path, log)

    def _open_when_present(self, path: str) -> IO[bytes]:
        # Watched before the first look, so a file created in between still wakes us.
        watch = ChangeWatch.create([(os.path.dirname(path) or ".", DIRECTORY_EVENTS)])
        try:
            started = time.monotonic()
            next_notice = 0.0
            while True:
                try:
                    return open(path, "rb")
                except FileNotFoundError:
                    pass
                now = time.monotonic()
                if now >= next_notice:
                    self._conn.sendall(NOT_FOUND)
                    next_notice = now + NOT_FOUND_INTERVAL_SECONDS
                if watch is not None:
                    self._wait(max(0.0, next_notice - now), watch)
                else:
                    fast = now - started < APPEAR_FAST_POLL_FOR_SECONDS
                    self._wait(APPEAR_POLL_SECONDS if fast else NOT_FOUND_INTERVAL_SECONDS)
        finally:
            if watch is not None:
                watch.close()

    def _follow(self, path: str, log: IO[bytes]) -> None:
        """Sends the file from its start and follows it; returns when it must be reopened."""
        inode = os.fstat(log.fileno()).st_ino
        # The open file itself is watched (through /proc, so a file replaced since we opened it
        # cannot be watched instead), and its directory for a replacement appearing.
        opened = f"/proc/self/fd/{log.fileno()}"
        watch = ChangeWatch.create([
            (os.path.dirname(path) or ".", DIRECTORY_EVENTS),
            (opened if os.path.exists(opened) else path, FILE_EVENTS),
        ])
        wait = FOLLOW_MIN_WAIT_SECONDS
        try:
            while True:
                sent = False
                while chunk := log.read(CHUNK_BYTES):
                    self._conn.sendall(chunk)
                    sent = True
                try:
                    st = os.stat(path)
                    if st.st_ino != inode or st.st_size < log.tell():
                        return
                except FileNotFoundError:
                    pass  # Deleted under us: keep the open file until a new one appears.
                if watch is not None:
                    self._wait(WATCHED_WAIT_SECONDS, watch)
                else:
                    wait = FOLLOW_MIN_WAIT_SECONDS if sent else min(wait * 2, FOLLOW_MAX_WAIT_SECONDS)
                    self._wait(wait)
        finally:
            if watch is not None:
                watch.close()

    def _wait(self, seconds: float, watch: ChangeWatch | None = None) -> None:
        """Sleeps until `seconds` pass or the watch fires, discarding client input; raises
        ClientGone when the client hangs up."""
        waits: list[Any] = [self._conn] if watch is None else [self._conn, watch]
        readable, _, _ = select.select(waits, [], [], seconds)
        if self._conn in readable and not self._conn.recv(MAX_REQUEST_BYTES):
            raise ClientGone()
        if watch is not None and watch in readable:
            watch.drain()


def bound_socket(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def listen(port: int) -> socket.socket:
    """Listens on [::]:port, taking IPv4 too, or on 0.0.0.0:port where IPv6 is unavailable."""
    try:
        sock = bound_socket(socket.AF_INET6, "::", port)
    except OSError as e:
        if e.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
            raise
        sock = bound_socket(socket.AF_INET, "0.0.0.0", port)
    # Zuul's backlog is 1; a few more let every host's stream and finish request queue at once.
    sock.listen(16)
    return sock


def serve_forever(sock: socket.socket, path_template: str) -> None:
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=Connection(conn, path_template).serve, daemon=True).start()


def start_daemon(path_template: str, port: int) -> str | None:
    """Double-forks the daemon; returns an error message if it could not listen."""
    status_read, status_write = os.pipe()
    child = os.fork()
    if child:
        os.close(status_write)
        os.waitpid(child, 0)
        with os.fdopen(status_read, "rb") as status:
            message = status.read().decode("utf-8", "replace")
        return None if message == "ok" else message or "the console daemon exited before listening"

    # First child: a new session without a controlling terminal, then the daemon's fork.
    os.close(status_read)
    os.setsid()
    if os.fork():
        os._exit(0)
    try:
        os.chdir("/")
        os.umask(0o022)
        sock = listen(port)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        # Whatever else Ansible left open (the ssh session's pipes) must not be held by us.
        keep = {0, 1, 2, sock.fileno(), status_write}
        for fd in [int(fd) for fd in os.listdir("/proc/self/fd")]:
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        os.write(status_write, b"ok")
        os.close(status_write)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        serve_forever(sock, path_template)
    except Exception as e:
        try:
            os.write(status_write, str(e).encode())
        except OSError:
            pass
    # The daemon never returns into the module's code.
    os._exit(1)


def listener_inodes(port: int) -> set[str]:
    """Socket inodes listening on the TCP port, from /proc/net/tcp6 and /proc/net/tcp."""
    inodes = set()
    for table in ("/proc/net/tcp6", "/proc/net/tcp"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "0A":  # 0A is TCP_LISTEN.
                inodes.add(fields[9])
    return inodes


def stop_listener(port: int) -> bool:
    """Kills the processes holding a socket that listens on the port; true if there was one."""
    targets = {f"socket:[{inode}]" for inode in listener_inodes(port)}
    killed = False
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            owns = any(os.readlink(f"/proc/{pid}/fd/{fd}") in targets for fd in fds)
        except OSError:
            continue
        if owns:
            try:
                os.kill(int(pid), signal.SIGKILL)
                killed = True
            except ProcessLookupError:
                pass
    return killed


def remove_console_files(path_template: str) -> bool:
    removed = False
    for path in glob.glob(path_template.format(log_uuid="*")):
        try:
            os.unlink(path)
            removed = True
        except FileNotFoundError:
            pass
    return removed


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(default=DEFAULT_PATH),
            port=dict(type="int", default=DEFAULT_PORT),
            state=dict(default="present", choices=["present", "absent"]),
        ),
    )
    path, port = module.params["path"], module.params["port"]
    if module.params["state"] == "absent":
        stopped = stop_listener(port)
        removed = remove_console_files(path)
        module.exit_json(changed=stopped or removed)
    if listener_inodes(port):
        module.exit_json(changed=False)
    error = start_daemon(path, port)
    if error:
        module.fail_json(msg=f"could not start the console daemon on port {port}: {error}")
    module.exit_json(changed=True)


if __name__ == "__main__":
    main()
