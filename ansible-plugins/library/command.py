#!/usr/bin/python
"""Sluice's `command` module: `ansible.builtin.command` that also streams its output.

It takes every argument of ansible-core's command module (shell tasks reach it with
`_uses_shell`) and returns the same result keys, plus Zuul's extra arguments:

- `zuul_log_id` (required, set by the command action plugin): every output line is appended,
  as it is produced, to `/tmp/console-<zuul_log_id>.log` on the node as
  `<YYYY-MM-DD HH:MM:SS.ffffff> | <line>`, and `[Zuul] Task exit code: <rc>` comes last. The ids
  `skip` and `in-loop-ignore` write to /dev/null: nobody streams those tasks.
- `zuul_ansible_split_streams`: capture stderr separately instead of merging it into stdout.
- `zuul_output_max_bytes`: once the output passes this many bytes the command's process group is
  killed and the task fails with rc 257.
- `zuul_no_log`: nothing is written to the console file or captured.

The zuul_console daemon serves the console file to the executor's log streamer.
"""

from __future__ import annotations

import datetime
import glob
import os
import shlex
import signal
import subprocess
import threading
import time
from typing import IO, Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.collections import is_iterable
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text

CONSOLE_PATH = "/tmp/console-{log_id}.log"
UNSTREAMED_LOG_IDS = ("skip", "in-loop-ignore")
# Lines longer than this are written to the console in pieces, so output without newlines
# still reaches the console (and the output cap) instead of growing one unbounded line.
MAX_LINE_BYTES = 65536
READER_GRACE_SECONDS = 10.0
OUTPUT_CAP_RC = 257


class Console:
    """The node-side console log of one task, shared by the stdout and stderr readers."""

    def __init__(self, log_id: str) -> None:
        path = os.devnull if log_id in UNSTREAMED_LOG_IDS else CONSOLE_PATH.format(log_id=log_id)
        self._file = open(path, "ab", buffering=0)
        self._lock = threading.Lock()

    def write(self, line: bytes | str) -> None:
        self.write_lines([to_bytes(line, errors="surrogate_or_strict")])

    def write_lines(self, lines: list[bytes]) -> None:
        """Writes lines read at the same moment with one timestamp and one write call."""
        stamp = datetime.datetime.now().isoformat(" ", "microseconds").encode() + b" | "
        data = b"".join(stamp + (line if line.endswith(b"\n") else line + b"\n") for line in lines)
        with self._lock:
            self._file.write(data)

    def close(self) -> None:
        self._file.close()


class Capture:
    """Drains the child's pipes into the console and memory, enforcing the output cap."""

    def __init__(self, proc: subprocess.Popen[bytes], console: Console, max_bytes: int | None, no_log: bool) -> None:
        self._proc = proc
        self._console = console
        self._max_bytes = max_bytes
        self._no_log = no_log
        self._lock = threading.Lock()
        self._total = 0
        self.exceeded = False

    def follow(self, pipe: IO[bytes], chunks: list[bytes]) -> None:
        """Reads whatever the pipe holds, as soon as it holds anything, and writes the complete
        lines of each read at once: one timestamp and one write per read instead of per line,
        which is what keeps streaming cheap for commands printing many lines quickly."""
        fd = pipe.fileno()
        pending = b""
        while True:
            data = os.read(fd, MAX_LINE_BYTES)
            if not data:
                break
            if self._count(len(data)):
                return
            if self._no_log:
                continue
            chunks.append(data)
            lines = (pending + data).split(b"\n")
            pending = lines.pop()
            # A line without a newline longer than the limit is written in pieces.
            while len(pending) > MAX_LINE_BYTES:
                lines.append(pending[:MAX_LINE_BYTES])
                pending = pending[MAX_LINE_BYTES:]
            if lines:
                self._console.write_lines(lines)
        if pending and not self._no_log:
            self._console.write_lines([pending])

    def _count(self, n_bytes: int) -> bool:
        """Adds to the byte total; returns true (once the cap is hit, always) to stop reading."""
        with self._lock:
            if self.exceeded:
                return True
            self._total += n_bytes
            if self._max_bytes is None or self._total <= self._max_bytes:
                return False
            self.exceeded = True
        self._console.write(f"[Zuul] Log output exceeded max of {self._max_bytes}, terminating")
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return True


def build_argv(module: AnsibleModule, args: str | list[str], shell: bool, executable: str | None,
               expand_argument_vars: bool) -> tuple[bytes | list[bytes], bool]:
    """Turns the task's command into Popen arguments (and whether to use /bin/sh) like run_command."""
    if shell:
        script = b" ".join(to_bytes(shlex.quote(a)) for a in args) if isinstance(args, list) else to_bytes(args)
        shell_executable = executable or module._shell
        if shell_executable and shell_executable != "/bin/sh":
            return [to_bytes(shell_executable), b"-c", script], False
        return script, True
    if isinstance(args, str):
        args = shlex.split(args)
    if expand_argument_vars:
        args = [os.path.expanduser(os.path.expandvars(a)) for a in args]
    return [to_bytes(a, errors="surrogate_or_strict") for a in args], False


def run(module: AnsibleModule, argv: bytes | list[bytes], shell: bool, stdin: bytes | None,
        console: Console) -> tuple[int, bytes, bytes, str | None]:
    """Runs the command, streaming its output; returns rc, stdout, stderr and a failure message.

    The command gets its own process group so the output cap can kill everything it started.
    """
    params = module.params
    split = params["zuul_ansible_split_streams"]
    proc = subprocess.Popen(
        argv,
        shell=shell,
        stdin=subprocess.PIPE if stdin is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if split else subprocess.STDOUT,
        process_group=0,
    )

    capture = Capture(proc, console, params["zuul_output_max_bytes"], params["zuul_no_log"])
    stdout: list[bytes] = []
    stderr: list[bytes] = []
    readers = [threading.Thread(target=capture.follow, args=(proc.stdout, stdout), daemon=True)]
    if split:
        readers.append(threading.Thread(target=capture.follow, args=(proc.stderr, stderr), daemon=True))
    for reader in readers:
        reader.start()
    if proc.stdin is not None:
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass
    rc = proc.wait()

    deadline = time.monotonic() + READER_GRACE_SECONDS
    for reader in readers:
        reader.join(max(0.0, deadline - time.monotonic()))
    if any(reader.is_alive() for reader in readers):
        console.write("[Zuul] standard output/error still open after child exited")

    msg = None
    if capture.exceeded:
        rc = OUTPUT_CAP_RC
        msg = f"Log output exceeded max of {params['zuul_output_max_bytes']}, terminating"
    console.write(f"[Zuul] Task exit code: {rc}")
    return rc, b"".join(stdout), b"".join(stderr), msg


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            _raw_params=dict(),
            _uses_shell=dict(type="bool", default=False),
            cmd=dict(),
            argv=dict(type="list", elements="str"),
            chdir=dict(type="path"),
            executable=dict(),
            expand_argument_vars=dict(type="bool", default=True),
            creates=dict(type="path"),
            removes=dict(type="path"),
            stdin=dict(),
            stdin_add_newline=dict(type="bool", default=True),
            strip_empty_ends=dict(type="bool", default=True),
            zuul_log_id=dict(),
            zuul_ansible_split_streams=dict(type="bool", default=False),
            zuul_output_max_bytes=dict(type="int"),
            zuul_no_log=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    shell = params["_uses_shell"]
    args = params["_raw_params"] or params["cmd"]
    argv = params["argv"]
    executable = params["executable"]
    creates = params["creates"]
    removes = params["removes"]
    log_id = params["zuul_log_id"]

    # The same keys ansible-core's command module promises; the action plugin adds *_lines.
    r: dict[str, Any] = {"changed": False, "stdout": "", "stderr": "", "rc": None, "cmd": None,
                         "start": None, "end": None, "delta": None, "msg": ""}

    if not log_id:
        r["rc"] = 256
        r["msg"] = "zuul_log_id missing: this task did not go through Sluice's command action plugin"
        module.fail_json(**r)
    r["zuul_log_id"] = log_id

    if not shell and executable:
        module.warn("As of Ansible 2.4, the parameter 'executable' is no longer supported with the 'command' module. "
                    f"Not using '{executable}'.")
        executable = None
    if (not args or args.strip() == "") and not argv:
        r["rc"] = 256
        r["msg"] = "no command given"
        module.fail_json(**r)
    if args and argv:
        r["rc"] = 256
        r["msg"] = "only command or argv can be given, not both"
        module.fail_json(**r)

    if not shell and args:
        args = shlex.split(args)
    args = args or argv
    if is_iterable(args, include_strings=False):
        args = [to_native(a, errors="surrogate_or_strict", nonstring="simplerepr") for a in args]
    r["cmd"] = args

    if params["chdir"]:
        try:
            os.chdir(to_bytes(params["chdir"], errors="surrogate_or_strict"))
        except OSError as e:
            r["msg"] = f"Unable to change directory before execution: {to_text(e)}"
            module.fail_json(**r)

    verb = "Would" if module.check_mode else "Did"
    if creates and glob.glob(creates):
        r["msg"] = f"{verb} not run command since '{creates}' exists"
        r["stdout"] = f"skipped, since {creates} exists"
        r["rc"] = 0
    elif removes and not glob.glob(removes):
        r["msg"] = f"{verb} not run command since '{removes}' does not exist"
        r["stdout"] = f"skipped, since {removes} does not exist"
        r["rc"] = 0
    if r["msg"]:
        module.exit_json(**r)

    r["changed"] = True
    if module.check_mode:
        r["rc"] = 0
        r["msg"] = "Command would have run if not in check mode"
        if creates is None and removes is None:
            r["skipped"] = True
            r["changed"] = False
        module.exit_json(**r)

    stdin = params["stdin"]
    stdin_bytes = to_bytes(stdin + "\n" if params["stdin_add_newline"] else stdin) if stdin else None
    command, use_shell = build_argv(module, args, shell, executable, params["expand_argument_vars"])

    console = Console(log_id)
    try:
        start = datetime.datetime.now()
        rc, stdout, stderr, failure = run(module, command, use_shell, stdin_bytes, console)
        end = datetime.datetime.now()
    except OSError as e:
        # Like run_command: a command that cannot be started fails with its errno.
        console.write(f"[Zuul] {e}")
        console.write(f"[Zuul] Task exit code: {e.errno}")
        r.update(rc=e.errno, msg=to_native(e))
        module.fail_json(**r)
    finally:
        console.close()

    r.update(rc=rc, start=to_text(start), end=to_text(end), delta=to_text(end - start),
             stdout=to_text(stdout), stderr=to_text(stderr))
    if params["strip_empty_ends"]:
        r["stdout"] = r["stdout"].rstrip("\r\n")
        r["stderr"] = r["stderr"].rstrip("\r\n")
    if failure:
        r["msg"] = failure
        module.fail_json(**r)
    if rc != 0:
        r["msg"] = "non-zero return code"
        module.fail_json(**r)
    module.exit_json(**r)


if __name__ == "__main__":
    main()
