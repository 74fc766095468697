"""Tests of Sluice's callbacks (zuul_stream, zuul_json, zuul_unreachable) on real Ansible runs.

Every test runs ansible-playbook (each installed ansible-core version) against the real sshd
node from conftest.py and checks job-output.txt / job-output.json / stdout against Zuul 14.3's
formats (the byte-for-byte samples in shared/reference/samples, copied into
ansible-plugins/core/testdata).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

import pytest

SAMPLES = Path(__file__).resolve().parents[1] / "core" / "testdata"
TS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})? \| ")
EXECUTOR_LINES = ("Job console starting", "Updating git repos", "Cloning repos into workspace",
                  "Restoring repo states", "Merging changes", "Checking out repos",
                  "Preparing playbooks", "Running Ansible setup", "PRE-RUN ", "RUN ")


def masked(text: str) -> list[str]:
    """Lines with the timestamp replaced by TS and runtimes by DELTA; every line must have a ts."""
    out = []
    for line in text.splitlines():
        assert TS.match(line), f"bad line: {line!r}"
        line = TS.sub("TS | ", line)
        out.append(re.sub(r"\d+:\d\d:\d\d\.\d{6}", "DELTA", line))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_listener(port: int) -> None:
    """Kills the process listening on a local TCP port (the node console daemon a test started)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                os.kill(int(proc.name), signal.SIGTERM)
        except OSError:
            continue


@pytest.fixture
def console_port() -> Iterator[int]:
    """A free port for a node console daemon, killed after the test."""
    port = free_port()
    yield port
    kill_listener(port)


@pytest.fixture
def env(console_port: int) -> Iterator[dict[str, str]]:
    """Environment for runs: the console port, and an ssh ControlPath dir short enough for a
    unix socket (pytest's per-test jobdir paths can pass the 108-byte limit)."""
    cp = tempfile.mkdtemp(prefix="cp", dir="/tmp")
    yield {"ZUUL_CONSOLE_PORT": str(console_port), "ANSIBLE_SSH_CONTROL_PATH_DIR": cp}
    shutil.rmtree(cp, ignore_errors=True)


def start_console(port: int) -> str:
    return f"""\
        - name: Start zuul_console daemon
          hosts: node
          gather_facts: false
          tasks:
            - name: Start zuul_console daemon
              zuul_console:
                port: {port}
        """.rstrip(" ")


def callback_lines(sample: str) -> list[str]:
    """The sample's lines written by the callback (executor lines removed), masked."""
    return [line for line in masked(sample) if not line[len("TS | "):].startswith(EXECUTOR_LINES)]


def test_callbacks_sample_job_format(run_playbook, console_port: int, env: dict[str, str]) -> None:
    # The sample's plays ran `hosts: all` on a one-node inventory; ours also has localhost, so
    # the plays target the node and are named like the sample's. Zuul's zuul_console reported
    # "changed": false; pinning that keeps this test about the callback's format.
    pre = run_playbook(f"""\
        - name: all
          hosts: node
          gather_facts: false
          tasks:
            - name: Start zuul_console daemon
              zuul_console:
                port: {console_port}
              changed_when: false
        """, phase="pre", index=0, trusted=True, extra_env=env)
    assert pre.rc == 0, pre.stdout
    run = run_playbook("""\
        - name: all
          hosts: node
          gather_facts: false
          tasks:
            - name: Say hi
              shell: "echo hi; sleep 2; echo bye"
        """, phase="run", index=0, trusted=False, extra_env=env)
    assert run.rc == 0, run.stdout
    expected = callback_lines((SAMPLES / "zuul-14.3-hello.job-output.txt").read_text())
    assert masked(run.job_output) == expected
    # The streamed lines keep the node's timestamps, written before the task ended.
    lines = run.job_output.splitlines()
    hi = next(line for line in lines if line.endswith("| node | hi"))
    bye = next(line for line in lines if line.endswith("| node | bye"))
    assert hi < bye


def test_callbacks_job_output_json_structure(run_playbook, console_port: int, env: dict[str, str]) -> None:
    pre = run_playbook(start_console(console_port), phase="pre", index=0, trusted=True, extra_env=env)
    assert pre.rc == 0, pre.stdout
    run = run_playbook("""\
        - hosts: node
          gather_facts: false
          tasks:
            - name: Say hi
              shell: "echo hi; sleep 2; echo bye"
        """, phase="run", index=1, trusted=False, extra_env=env)
    assert run.rc == 0, run.stdout
    text = run.job_output_json
    data = json.loads(text)
    # Zuul's exact serialisation: indent 4, sorted keys, one object appended per playbook.
    assert text == "[\n" + ",\n".join(json.dumps(o, indent=4, sort_keys=True) for o in data) + "\n]\n"
    sample = json.loads((SAMPLES / "zuul-14.3-hello.job-output.json").read_text())
    assert len(data) == 2
    for got, want in zip(data, sample):
        assert set(got) == set(want)
        assert set(got["plays"][0]) == set(want["plays"][0])
        assert set(got["plays"][0]["play"]) == set(want["plays"][0]["play"])
        assert set(got["plays"][0]["tasks"][0]) == set(want["plays"][0]["tasks"][0])
        assert set(got["stats"]["node"]) == set(want["stats"]["node"])
        for d in (got["plays"][0]["play"]["duration"], got["plays"][0]["tasks"][0]["task"]["duration"]):
            for ts in d.values():
                assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", ts)
    assert [(o["phase"], o["index"], o["trusted"], o["branch"]) for o in data] == [("pre", "0", True, "main"), ("run", "1", False, "main")]
    assert data[1]["playbook"] == "localhost/org/project/playbook.yaml"
    node = data[1]["plays"][0]["tasks"][0]["hosts"]["node"]
    want = sample[1]["plays"][0]["tasks"][0]["hosts"]["node"]
    assert node["action"] == "shell"
    assert node["stdout_lines"] == ["hi", "bye"]
    assert {"changed", "cmd", "delta", "end", "rc", "start", "stdout", "stderr", "zuul_log_id"} <= set(node) <= set(want) | {"failed"}
    assert not any(k.startswith("_ansible") for k in node)
    assert data[1]["stats"]["node"] == sample[1]["stats"]["node"]
    assert data[1]["plays"][0]["tasks"][0]["task"]["name"] == "Say hi"
    # The streamer asked the console daemon to delete the node's log file after the exit code.
    assert re.fullmatch(r"[0-9a-f-]+-1-node", node["zuul_log_id"])
    assert not Path(f"/tmp/console-{node['zuul_log_id']}.log").exists()


def test_callbacks_job_output_json_large_output_and_flags(run_playbook, console_port: int, env: dict[str, str]) -> None:
    # zuul_stream writes job-output.json itself (one copy of each result from Ansible) and
    # zuul_json stands aside: one entry per playbook, the whole output in it, Zuul's format.
    pre = run_playbook(start_console(console_port), phase="pre", index=0, trusted=True, extra_env=env)
    assert pre.rc == 0, pre.stdout
    run = run_playbook("""\
        - hosts: node
          gather_facts: false
          tasks:
            - name: Many lines
              shell: seq 1 50000
            - name: Hidden
              command: echo hidden
              no_log: true
            - name: Not now
              command: echo no
              when: false
            - name: Fails
              shell: "echo out; exit 3"
              ignore_errors: true
        """, phase="run", index=1, extra_env=env)
    assert run.rc == 0, run.stdout
    text = run.job_output_json
    data = json.loads(text)
    assert text == "[\n" + ",\n".join(json.dumps(o, indent=4, sort_keys=True) for o in data) + "\n]\n"
    assert [(o["phase"], o["index"]) for o in data] == [("pre", "0"), ("run", "1")]
    tasks = data[1]["plays"][0]["tasks"]
    assert [t["task"]["name"] for t in tasks] == ["Many lines", "Hidden", "Not now", "Fails"]
    many, hidden, skipped, failed = (t["hosts"]["node"] for t in tasks)
    expected = [str(i) for i in range(1, 50001)]
    assert many["stdout_lines"] == expected
    assert many["stdout"] == "\n".join(expected)
    assert many["rc"] == 0 and many["changed"] is True and many["action"] == "shell"
    assert many["cmd"] == "seq 1 50000" and many["stderr_lines"] == []
    assert many["invocation"]["module_args"]["_raw_params"] == "seq 1 50000"
    assert not any(k.startswith("_ansible") for k in many)
    assert "failed" not in many and "skipped" not in many
    assert hidden == {"action": "command", "censored": "the output has been hidden due to the fact that 'no_log: true' was specified for this result"}
    assert skipped["skipped"] is True and skipped["action"] == "command"
    assert skipped["skip_reason"] == "Conditional result was False"
    assert failed["failed"] is True and failed["rc"] == 3 and failed["stdout_lines"] == ["out"]
    stats = data[1]["stats"]["node"]
    assert (stats["failures"], stats["ignored"], stats["skipped"], stats["unreachable"]) == (0, 1, 1, 0), stats
    for t in tasks:
        assert t["task"]["duration"]["start"] <= t["task"]["duration"]["end"]
    # The streamed output reached job-output.txt line by line, in order.
    node_lines = [line.split(" | ", 2)[2] for line in run.job_output.splitlines() if " | node | " in line]
    i = node_lines.index("1")
    assert node_lines[i:i + 50000] == expected


def test_zuul_json_and_zuul_unreachable_without_zuul_stream(run_playbook, node, env: dict[str, str]) -> None:
    # Jobs that use another stdout callback still get job-output.json and nodes.unreachable
    # from the aggregate callbacks.
    closed = free_port()
    run = run_playbook(f"""\
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: Say
              debug:
                msg: hello
            - add_host:
                name: ghost
                ansible_host: 127.0.0.1
                ansible_port: {closed}
                ansible_user: {node.user}
                ansible_ssh_private_key_file: {node.key}
        - hosts: ghost
          gather_facts: false
          tasks:
            - name: Unreachable
              command: "true"
        """, extra_env={**env, "ANSIBLE_STDOUT_CALLBACK": "default"})
    assert run.rc == 4, run.stdout
    assert not (run.jobdir / "work" / "logs" / "job-output.txt").exists()
    assert "PLAY RECAP" in run.stdout
    assert run.stdout.splitlines().count("RESULT unreachable") == 1, run.stdout
    assert (run.jobdir / ".ansible" / "nodes.unreachable").read_text() == "ghost\n"
    text = run.job_output_json
    data = json.loads(text)
    assert text == "[\n" + ",\n".join(json.dumps(o, indent=4, sort_keys=True) for o in data) + "\n]\n"
    assert len(data) == 1
    assert (data[0]["phase"], data[0]["index"], data[0]["trusted"], data[0]["branch"]) == ("run", "0", False, "main")
    say = data[0]["plays"][0]["tasks"][0]
    assert say["task"]["name"] == "Say"
    assert say["hosts"]["localhost"]["msg"] == "hello"
    assert say["hosts"]["localhost"]["action"] == "debug"
    ghost = data[0]["plays"][1]["tasks"][0]["hosts"]["ghost"]
    assert ghost["unreachable"] is True
    assert data[0]["stats"]["ghost"]["unreachable"] == 1


def test_callbacks_streams_live(run_playbook, console_port: int, env: dict[str, str]) -> None:
    pre = run_playbook(start_console(console_port), extra_env=env)
    assert pre.rc == 0, pre.stdout
    proc, jobdir = run_playbook("""\
        - hosts: node
          gather_facts: false
          tasks:
            - name: Slow
              shell: "echo first; sleep 5; echo second"
        """, extra_env=env, background=True)
    path = jobdir / "work" / "logs" / "job-output.txt"
    seen_live = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            text = path.read_text() if path.exists() else ""
            if "| node | first" in text:
                # The task (and so the playbook) is still running: no second line, no result.
                seen_live = "node | second" not in text and "Runtime:" not in text and proc.poll() is None
                break
            time.sleep(0.05)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen_live, path.read_text()
    assert proc.returncode == 0, out
    assert masked(path.read_text())[-8:-4] == ["TS | TASK [Slow]", "TS | node | first", "TS | node | second", "TS | node | ok: Runtime: DELTA"]


def test_callbacks_failed_task_error_block_and_recap(run_playbook, console_port: int, env: dict[str, str]) -> None:
    run = run_playbook(start_console(console_port) + """\
        - hosts: node
          gather_facts: false
          tasks:
            - name: Fine
              command: "true"
            - name: Break
              shell: "echo broken; exit 3"
        """, extra_env=env)
    assert run.rc == 2, run.stdout
    lines = masked(run.job_output)
    i = lines.index("TS | TASK [Break]")
    assert lines[i + 1:i + 10] == [
        "TS | node | broken",
        "TS | node | ERROR",
        "TS | node | {",
        'TS | node |   "delta": "DELTA",',
        'TS | node |   "end": "' + lines[i + 5].split('"end": "')[-1],
        'TS | node |   "msg": "non-zero return code",',
        'TS | node |   "rc": 3,',
        'TS | node |   "start": "' + lines[i + 8].split('"start": "')[-1],
        "TS | node | }",
    ]
    assert lines[-4:] == [
        "TS | ",
        "TS | PLAY RECAP",
        "TS | node | ok: 2 changed: 2 unreachable: 0 failed: 1 skipped: 0 rescued: 0 ignored: 0",
        "TS | ",
    ]
    assert "RESULT failure" in run.stdout.splitlines()


def test_callbacks_failure_output_regex(run_playbook, console_port: int, env: dict[str, str]) -> None:
    env = {**env, "ZUUL_JOB_FAILURE_OUTPUT": json.dumps(["FAILED: .*"])}
    run = run_playbook(start_console(console_port) + """\
        - hosts: node
          gather_facts: false
          tasks:
            - name: Report
              shell: "echo 'not FAILED: here'; echo 'FAILED: test_one'; echo 'FAILED: test_two'"
        """, extra_env=env)
    assert run.rc == 0, run.stdout
    lines = masked(run.job_output)
    i = lines.index("TS | node | FAILED: test_one")
    assert lines[i + 1] == 'TS | node | Early failure in job, matched regex "FAILED: .*"'
    assert lines.count('TS | node | Early failure in job, matched regex "FAILED: .*"') == 1
    assert run.stdout.splitlines().count("RESULT failure") == 1


def test_callbacks_unreachable_host(run_playbook, node, env: dict[str, str]) -> None:
    closed = free_port()
    run = run_playbook(f"""\
        - hosts: localhost
          gather_facts: false
          tasks:
            - add_host:
                name: ghost
                ansible_host: 127.0.0.1
                ansible_port: {closed}
                ansible_user: {node.user}
                ansible_ssh_private_key_file: {node.key}
        - hosts: ghost
          gather_facts: false
          tasks:
            - name: Unreachable
              command: "true"
        """, extra_env=env)
    assert run.rc == 4, run.stdout
    assert (run.jobdir / ".ansible" / "nodes.unreachable").read_text() == "ghost\n"
    # zuul_stream records it; zuul_unreachable stands aside: one control line.
    assert run.stdout.splitlines().count("RESULT unreachable") == 1, run.stdout
    lines = masked(run.job_output)
    assert any(line.startswith("TS | ghost | UNREACHABLE") for line in lines), lines
    ghost = json.loads(run.job_output_json)[0]["plays"][1]["tasks"][0]["hosts"]["ghost"]
    assert ghost["unreachable"] is True and ghost["action"] == "command", ghost
    assert "TS | ghost | ok: 0 changed: 0 unreachable: 1 failed: 0 skipped: 0 rescued: 0 ignored: 0" in lines


def test_callbacks_loop(run_playbook, console_port: int, env: dict[str, str]) -> None:
    run = run_playbook(start_console(console_port) + """\
        - hosts: node
          gather_facts: false
          tasks:
            - name: Loop it
              shell: "echo {{ item }}; test {{ item }} != c"
              loop: [a, b, c]
              ignore_errors: true
        """, extra_env=env)
    assert run.rc == 0, run.stdout
    lines = masked(run.job_output)
    i = lines.index("TS | LOOP [Loop it]")
    assert lines[i + 1:i + 6] == [
        "TS | node | ok: Item: a Runtime: DELTA",
        "TS | node | ok: Item: b Runtime: DELTA",
        "TS | node | ok: Item: c Result: 1",
        "TS | node | ERROR: All items complete",
        "TS | ",
    ]
    assert lines[i + 6] == "TS | node | Ignoring Errors"
    assert "RESULT failure" not in run.stdout.splitlines()


def test_callbacks_localhost_output(run_playbook, env: dict[str, str]) -> None:
    run = run_playbook("""\
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: Local
              shell: "echo one; echo two"
            - debug:
                msg: "hello\\nworld"
            - shell: "echo unnamed"
        """, extra_env=env)
    assert run.rc == 0, run.stdout
    lines = masked(run.job_output)
    i = lines.index("TS | TASK [Local]")
    assert lines[i + 1:i + 4] == ["TS | localhost | one", "TS | localhost | two", "TS | localhost | ok: Runtime: DELTA"]
    j = lines.index("TS | TASK [debug]")
    assert lines[j + 1:j + 3] == ["TS | hello", "TS | world"]
    k = lines.index("TS | TASK [shell: echo unnamed]")
    assert lines[k + 1:k + 3] == ["TS | localhost | unnamed", "TS | localhost | ok: Runtime: DELTA"]
    assert lines[-2] == "TS | localhost | ok: 3 changed: 2 unreachable: 0 failed: 0 skipped: 0 rescued: 0 ignored: 0"


def test_callbacks_rerun_skip_and_rescue(run_playbook, console_port: int, env: dict[str, str]) -> None:
    run = run_playbook(start_console(console_port) + """\
        - hosts: node
          gather_facts: false
          handlers:
            - name: Again
              shell: "echo handler-ran"
          tasks:
            - command: "echo one"
              changed_when: true
              notify: Again
            - meta: flush_handlers
            - command: "echo two"
              changed_when: true
              notify: Again
            - meta: flush_handlers
            - name: Skipped
              shell: "echo never"
              when: false
            - block:
                - name: Rescued
                  command: "false"
              rescue:
                - debug:
                    msg: rescued
        """, extra_env=env)
    assert run.rc == 0, run.stdout
    lines = masked(run.job_output)
    # The handler ran twice with the same task object: the second run's log id (n=2) was
    # predicted right, so its output was streamed too.
    assert lines.count("TS | node | handler-ran") == 2, lines
    assert "TS | TASK [command: echo one]" in lines
    i = lines.index("TS | TASK [Skipped]")
    assert lines[i + 1] == "TS | node | skipping: Conditional result was False"
    assert not any("Waiting on logger" in line or "did not terminate" in line for line in lines)
    assert "TS | rescued" in lines
    # A failure handled by a rescue block is not an early failure.
    assert "RESULT failure" not in run.stdout.splitlines()


def test_callbacks_delegated_to_localhost(run_playbook, console_port: int, env: dict[str, str]) -> None:
    run = run_playbook(start_console(console_port) + """\
        - hosts: node
          gather_facts: false
          tasks:
            - name: On the executor
              shell: "echo delegated-out"
              delegate_to: localhost
        """, extra_env=env)
    assert run.rc == 0, run.stdout
    lines = masked(run.job_output)
    i = lines.index("TS | TASK [On the executor]")
    # Not streamed from the node (no wait for a log that never appears): captured output instead.
    assert lines[i + 1:i + 3] == ["TS | node -> localhost | delegated-out", "TS | node -> localhost | ok: Runtime: DELTA"], lines[i:]
    stamps = [line.split(" | ")[0] for line in run.job_output.splitlines() if "TASK [On the executor]" in line or "ok: Runtime" in line]
    start, end = (datetime.fromisoformat(ts) for ts in stamps[-2:])
    assert (end - start).total_seconds() < 5


def test_callbacks_roles_and_includes(run_playbook, tmp_path: Path, env: dict[str, str]) -> None:
    role = tmp_path / "roles" / "greet" / "tasks"
    role.mkdir(parents=True)
    (role / "main.yaml").write_text("- name: Hello\n  debug:\n    msg: hello from role\n")
    (tmp_path / "more.yaml").write_text("- name: Included\n  debug:\n    msg: included task\n")
    run = run_playbook("""\
        - hosts: localhost
          gather_facts: false
          roles:
            - greet
          tasks:
            - include_tasks: more.yaml
        """, extra_env=env)
    assert run.rc == 0, run.stdout
    lines = masked(run.job_output)
    i = lines.index("TS | TASK [greet : Hello]")
    assert lines[i + 1] == "TS | hello from role"
    assert f"TS | localhost | included: {tmp_path / 'more.yaml'}" in lines
    assert "TS | included task" in lines
    data = json.loads(run.job_output_json)
    tasks = data[0]["plays"][0]["tasks"]
    hello = next(t for t in tasks if t["task"]["name"] == "greet : Hello")
    assert hello["role"]["name"] == "greet"
    assert hello["role"]["path"] == str(tmp_path / "roles" / "greet")
    assert hello["hosts"]["localhost"]["action"] == "debug"
    assert hello["hosts"]["localhost"]["msg"] == "hello from role"


def test_callbacks_console_missing(run_playbook, env: dict[str, str]) -> None:
    # Nothing listens on the console port: the streamer keeps retrying while the task runs, then
    # gives up after the grace period instead of hanging the playbook.
    started = time.monotonic()
    run = run_playbook("""\
        - hosts: node
          gather_facts: false
          tasks:
            - name: No console
              shell: "sleep 2; echo done"
        """, extra_env=env)
    elapsed = time.monotonic() - started
    assert run.rc == 0, run.stdout
    lines = masked(run.job_output)
    i = lines.index("TS | TASK [No console]")
    assert "TS | [node] Waiting on logger" in lines[i + 1:]
    assert "TS | node | ok: Runtime: DELTA" in lines[i + 1:]
    assert "TS | node | done" not in lines
    assert elapsed < 25, elapsed


def test_callbacks_console_disabled(run_playbook, env: dict[str, str]) -> None:
    # zuul_console_disabled: no streaming (and no waiting for a console that is not there); the
    # captured output is printed after the task instead.
    run = run_playbook("""\
        - hosts: node
          gather_facts: false
          vars:
            zuul_console_disabled: true
          tasks:
            - name: Quiet console
              shell: "echo captured"
        """, extra_env=env)
    assert run.rc == 0, run.stdout
    lines = masked(run.job_output)
    i = lines.index("TS | TASK [Quiet console]")
    assert lines[i + 1:i + 3] == ["TS | node | captured", "TS | node | ok: Runtime: DELTA"]
    assert not any("Waiting on logger" in line for line in lines)
