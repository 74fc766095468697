"""Sluice's command action plugin and command module, run by real Ansible against the sshd node.

The node is this machine over ssh, so its console files are read straight from /tmp. Each test
removes the console files its tasks created.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

# The stdout callback is tested with the callbacks; these tests only need Ansible's default one.
DEFAULT_CALLBACK = {"ANSIBLE_STDOUT_CALLBACK": "default"}
CONSOLE_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} \| (.*)$")
LOG_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-(\d+)-node$")


@pytest.fixture
def console_files() -> Iterator[list[Path]]:
    """Console files a test registers here are removed when it ends."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        path.unlink(missing_ok=True)


def console(log_id: str, registry: list[Path]) -> list[str]:
    """The node's console file for a log id, as the messages after the timestamps."""
    path = Path(f"/tmp/console-{log_id}.log")
    registry.append(path)
    lines = path.read_text().splitlines()
    for line in lines:
        assert CONSOLE_LINE.match(line), f"not a timestamped console line: {line!r}"
    return [CONSOLE_LINE.match(line).group(1) for line in lines]


def node_play(tasks: str, handlers: str = "- meta: noop\n") -> str:
    """A play on the node from task and handler lists written at any indentation."""
    return ("- hosts: node\n  gather_facts: false\n  tasks:\n" + textwrap.indent(textwrap.dedent(tasks), "    ")
            + "  handlers:\n" + textwrap.indent(textwrap.dedent(handlers), "    "))


def run_and_collect(run_playbook: Callable[..., Any], tmp_path: Path, tasks: str, handlers: str = "- meta: noop\n",
                    extra_env: dict[str, str] | None = None) -> Any:
    """Runs tasks on the node, then returns the JSON of the variable `results`."""
    out = tmp_path / "out.json"
    collect = f"""\
        - copy:
            content: "{{{{ results | to_json }}}}"
            dest: {out}
          delegate_to: localhost
        """
    run = run_playbook(node_play(textwrap.dedent(tasks) + textwrap.dedent(collect), handlers),
                       extra_env={**DEFAULT_CALLBACK, **(extra_env or {})})
    assert out.exists(), run.stdout
    return json.loads(out.read_text())


def test_shell_streams_timestamped_lines_and_exit_code(run_playbook, tmp_path, console_files):
    result = run_and_collect(run_playbook, tmp_path, ("""\
        - shell: echo hello; echo oops >&2; exit 3
          register: results
          ignore_errors: true
        """))
    assert LOG_ID.match(result["zuul_log_id"]).group(1) == "1"
    assert console(result["zuul_log_id"], console_files) == ["hello", "oops", "[Zuul] Task exit code: 3"]
    # The same result as ansible.builtin.shell, stderr merged into stdout.
    assert result["rc"] == 3
    assert result["failed"] is True
    assert result["msg"] == "non-zero return code"
    assert result["stdout"] == "hello\noops"
    assert result["stdout_lines"] == ["hello", "oops"]
    assert result["stderr"] == ""
    assert result["cmd"] == "echo hello; echo oops >&2; exit 3"
    assert {"start", "end", "delta", "changed"} <= result.keys()


def test_command_arguments_behave_like_ansible(run_playbook, tmp_path, console_files):
    results = run_and_collect(run_playbook, tmp_path, (f"""\
        - command:
            argv: [printf, "%s|", "$HOME", "two words"]
            expand_argument_vars: false
          register: argv
        - command: cat
          args:
            stdin: fed
            chdir: /
          register: stdin
        - command: pwd
          args:
            chdir: /tmp
            creates: /tmp
          register: creates
        - command: echo "a  b"
          args:
            strip_empty_ends: false
          register: nostrip
        - command:
            cmd: echo from cmd
          register: cmd
        - set_fact:
            results: "{{{{ [argv, stdin, creates, nostrip, cmd] }}}}"
        """))
    argv, stdin, creates, nostrip, cmd = results
    assert argv["stdout"] == "$HOME|two words|"
    assert argv["cmd"] == ["printf", "%s|", "$HOME", "two words"]
    assert stdin["stdout"] == "fed"
    assert creates["changed"] is False
    assert creates["msg"] == "Did not run command since '/tmp' exists"
    assert creates["stdout"] == "skipped, since /tmp exists"
    assert nostrip["stdout"] == "a  b\n"
    assert cmd["stdout"] == "from cmd"
    for result in (argv, stdin, nostrip, cmd):
        assert console(result["zuul_log_id"], console_files)[-1] == "[Zuul] Task exit code: 0"


def test_split_streams_keeps_stderr_apart(run_playbook, tmp_path, console_files):
    result = run_and_collect(run_playbook, tmp_path, ("""\
        - shell: echo out; sleep 0.2; echo err >&2
          register: results
        """), extra_env={"ZUUL_ANSIBLE_SPLIT_STREAMS": "True"})
    assert result["stdout"] == "out"
    assert result["stderr"] == "err"
    assert console(result["zuul_log_id"], console_files) == ["out", "err", "[Zuul] Task exit code: 0"]


def test_console_file_is_written_while_the_command_runs(run_playbook, console_files):
    marker = uuid.uuid4().hex
    proc, _ = run_playbook(
        f"""\
        - hosts: node
          gather_facts: false
          tasks:
            - shell: echo {marker}-first; sleep 6; echo {marker}-second
        """,
        extra_env=DEFAULT_CALLBACK,
        background=True,
    )
    try:
        deadline = time.monotonic() + 60
        path = None
        while path is None and time.monotonic() < deadline:
            candidates = [p for p in Path("/tmp").glob("console-*-node.log") if marker in p.read_text(errors="replace")]
            path = candidates[0] if candidates else None
            time.sleep(0.1)
        assert path is not None, "no console file appeared while the task ran"
        console_files.append(path)
        mid_task = path.read_text()
        assert proc.poll() is None
        assert f"| {marker}-first\n" in mid_task
        assert "second" not in mid_task and "Task exit code" not in mid_task
    finally:
        output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert path.read_text().splitlines()[-2:][0].endswith(f"| {marker}-second")
    assert path.read_text().splitlines()[-1].endswith("| [Zuul] Task exit code: 0")


def test_every_spelling_goes_through_the_action_plugin(run_playbook, tmp_path, console_files):
    # ansible-core resolves ansible.builtin.command past action_plugins; Sluice's command action
    # takes its place once the controller has loaded it, which the zuul_stream callback does at
    # load time. This stand-in callback does only that, so the test does not depend on it.
    bootstrap = tmp_path / "bootstrap_callback"
    bootstrap.mkdir()
    (bootstrap / "load_command_action.py").write_text(
        "from ansible.plugins.callback import CallbackBase\n"
        "from ansible.plugins.loader import action_loader\n"
        "action_loader.get('ansible.legacy.command', class_only=True)\n"
        "class CallbackModule(CallbackBase):\n"
        "    CALLBACK_VERSION = 2.0\n"
        "    CALLBACK_TYPE = 'aggregate'\n"
        "    CALLBACK_NAME = 'load_command_action'\n"
        "    CALLBACK_NEEDS_ENABLED = True\n"
    )
    plugins = Path(__file__).resolve().parents[1]
    spellings = ["ansible.builtin.command", "command", "shell", "ansible.builtin.shell",
                 "ansible.legacy.command", "ansible.legacy.shell"]
    tasks = "".join(f"- {name}: echo {name}\n  register: r{i}\n" for i, name in enumerate(spellings))
    tasks += f"- set_fact:\n    results: \"{{{{ [{', '.join(f'r{i}' for i in range(len(spellings)))}] }}}}\"\n"
    results = run_and_collect(run_playbook, tmp_path, tasks, extra_env={
        "ANSIBLE_CALLBACK_PLUGINS": f"{plugins / 'callback'}:{bootstrap}"})
    for name, result in zip(spellings, results):
        assert LOG_ID.match(result["zuul_log_id"]), (name, result)
        assert console(result["zuul_log_id"], console_files) == [name, "[Zuul] Task exit code: 0"]


def test_module_without_log_id_fails(run_playbook, tmp_path):
    # Without Sluice's action plugins, `command` reaches the module with no zuul_log_id.
    run = run_playbook(
        """\
        - hosts: node
          gather_facts: false
          tasks:
            - command: echo hi
        """,
        extra_env={**DEFAULT_CALLBACK, "ANSIBLE_ACTION_PLUGINS": str(tmp_path / "no-action-plugins")},
    )
    assert run.rc == 2, run.stdout
    assert '"rc": 256' in run.stdout
    assert "zuul_log_id missing" in run.stdout


def test_output_cap_kills_the_process_group(run_playbook, tmp_path, console_files):
    started = time.monotonic()
    result = run_and_collect(run_playbook, tmp_path, ("""\
        - shell: (sleep 120; echo late) & for i in $(seq 1 2000); do echo "line $i"; done; sleep 120
          register: results
          ignore_errors: true
        """), extra_env={"ZUUL_OUTPUT_MAX_BYTES": "1000"})
    assert time.monotonic() - started < 60
    assert result["rc"] == 257
    assert result["failed"] is True
    assert result["msg"] == "Log output exceeded max of 1000, terminating"
    lines = console(result["zuul_log_id"], console_files)
    assert lines[-2:] == ["[Zuul] Log output exceeded max of 1000, terminating", "[Zuul] Task exit code: 257"]
    assert sum(len(line) + 1 for line in lines[:-2]) <= 1000


def test_no_log_logs_nothing(run_playbook, tmp_path, console_files):
    result = run_and_collect(run_playbook, tmp_path, ("""\
        - command: echo secret
          no_log: true
          register: hidden
        - set_fact:
            results: "{{ hidden.zuul_log_id }}"
        """))
    assert console(result, console_files) == ["[Zuul] Task exit code: 0"]


def test_loops_and_disabled_console_are_not_streamed(run_playbook, tmp_path):
    results = run_and_collect(run_playbook, tmp_path, ("""\
        - command: echo {{ item }}
          loop: [a, b]
          register: looped
        - command: echo quiet
          vars:
            zuul_console_disabled: "{{ 1 == 1 }}"
          register: disabled
        - set_fact:
            results: "{{ looped.results | map(attribute='zuul_log_id') + [disabled.zuul_log_id] }}"
        """))
    assert results == ["in-loop-ignore", "in-loop-ignore", "skip"]


def test_repeated_executions_count_up(run_playbook, tmp_path, console_files):
    marker = tmp_path / "retry-marker"
    results = run_and_collect(run_playbook, tmp_path, (f"""\
        - debug: msg=notify
          changed_when: true
          notify: echo
        - meta: flush_handlers
        - set_fact:
            ids: ["{{{{ handled.zuul_log_id }}}}"]
        - debug: msg=notify
          changed_when: true
          notify: echo
        - meta: flush_handlers
        - shell: test -f {marker} || {{ touch {marker}; exit 1; }}
          register: retried
          until: retried.rc == 0
          retries: 2
          delay: 0
        - set_fact:
            results: "{{{{ ids + [handled.zuul_log_id, retried.zuul_log_id] }}}}"
        """), handlers=("""\
        - name: echo
          command: echo handler
          register: handled
        """))
    first, second, retried = (LOG_ID.match(i) for i in results)
    assert (first.group(1), second.group(1)) == ("1", "2")
    assert results[0].rsplit("-", 2)[0] == results[1].rsplit("-", 2)[0]
    # Both attempts of the until loop are one execution, with one id and one console file.
    assert retried.group(1) == "1"
    assert console(results[2], console_files) == ["[Zuul] Task exit code: 1", "[Zuul] Task exit code: 0"]
    for log_id in results[:2]:
        assert console(log_id, console_files) == ["handler", "[Zuul] Task exit code: 0"]


def test_output_held_open_after_exit_is_reported(run_playbook, tmp_path, console_files):
    # A background child keeps the pipe open: the module waits 10 s for it, then gives up.
    result = run_and_collect(run_playbook, tmp_path, """\
        - shell: sleep 14 & echo started
          register: results
        """)
    assert result["rc"] == 0
    assert result["stdout"] == "started"
    assert console(result["zuul_log_id"], console_files) == [
        "started", "[Zuul] standard output/error still open after child exited", "[Zuul] Task exit code: 0"]
