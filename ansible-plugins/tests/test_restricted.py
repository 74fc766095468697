"""The restricted module set (ansible-plugins/restricted) under real Ansible, per version.

The full hostile corpus runs through `sluice job run` (tests/tests/restricted.rs); these tests
check the entry point and a few rules with the plugins straight from the source tree.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import PLUGINS

DEFAULT_CALLBACK = {"ANSIBLE_STDOUT_CALLBACK": "default"}


def test_entry_point_refuses_to_run_without_the_build_environment(ansible_venv: Path, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("ZUUL_JOBDIR", "ANSIBLE_CONFIG")}
    pb = tmp_path / "pb.yaml"
    pb.write_text("- hosts: localhost\n  tasks: []\n")
    proc = subprocess.run([str(ansible_venv / "bin" / "python"), str(PLUGINS / "restricted" / "run_playbook.py"), str(pb)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 250
    assert "needs ZUUL_JOBDIR and ANSIBLE_CONFIG" in proc.stderr


def test_path_lookup_and_local_code_rules_hold(run_playbook: Callable[..., Any], tmp_path: Path):
    canary = tmp_path / "canary.txt"
    canary.write_text("token-pytest-canary\n")
    work = tmp_path / "jobdir" / "work"
    names = ["copy_outside", "copy_good", "pipe", "raw", "command"]
    collected = ", ".join(f"'{n}': r_{n}" for n in names)
    run = run_playbook(
        f"""\
        - hosts: localhost
          gather_facts: false
          tasks:
            - copy: {{src: "{canary}", dest: "{work}/stolen"}}
              register: r_copy_outside
              ignore_errors: true
            - copy: {{src: good.txt, dest: "{work}/good"}}
              register: r_copy_good
            - debug: {{msg: "{{{{ lookup('pipe', 'cat {canary}') }}}}"}}
              register: r_pipe
              ignore_errors: true
            - raw: cat {canary}
              register: r_raw
              ignore_errors: true
            - command: echo sandboxed
              register: r_command
            - copy:
                content: "{{{{ {{{collected}}} | to_json }}}}"
                dest: "{work}/outcomes.json"
        """,
        restricted=True,
        files={"files/good.txt": "good\n"},
        extra_env=DEFAULT_CALLBACK,
    )
    assert run.rc == 0, run.stdout
    results = json.loads((work / "outcomes.json").read_text())
    assert results["copy_outside"]["failed"]
    assert f"Accessing files from outside the working dir {work} is prohibited" in results["copy_outside"]["msg"]
    assert not results["copy_good"].get("failed")
    assert results["pipe"]["failed"]
    assert "Use of lookup modules that perform local actions on the executor is forbidden." in results["pipe"]["msg"]
    assert results["raw"]["failed"] and results["raw"]["msg"] == "Executing local code is prohibited"
    assert results["command"]["stdout"] == "sandboxed"
    assert "token-pytest-canary" not in run.stdout + json.dumps(results)


# Files Ansible itself loads (not through an action): static imports and roles are read before
# the first task, vars_files when the play starts. Each case stops its playbook, so one run each.
LOADED_FILE_CASES = {
    "import_tasks": "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - import_tasks: {canary}\n",
    "include_tasks": "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - include_tasks: {canary}\n",
    "vars_files": "- hosts: localhost\n  gather_facts: false\n  vars_files: [{canary}]\n  tasks:\n    - debug: {{msg: '{{{{ canary_token }}}}'}}\n",
    "role_by_path": "- hosts: localhost\n  gather_facts: false\n  roles: [{canary_dir}]\n",
}


@pytest.mark.parametrize("case", sorted(LOADED_FILE_CASES))
def test_files_ansible_loads_are_path_checked(run_playbook: Callable[..., Any], tmp_path: Path, case: str):
    secret_dir = tmp_path / "outside"
    (secret_dir / "tasks").mkdir(parents=True)
    canary = secret_dir / "canary.yaml"
    canary.write_text("- debug: {msg: token-loaded-canary}\n")
    (secret_dir / "tasks" / "main.yaml").write_text("- debug: {msg: token-loaded-canary}\n")
    playbook = LOADED_FILE_CASES[case].format(canary=canary, canary_dir=secret_dir)
    run = run_playbook(playbook, restricted=True, extra_env=DEFAULT_CALLBACK)
    assert run.rc != 0, run.stdout
    assert "Accessing files from outside the working dir" in run.stdout, run.stdout
    assert "token-loaded-canary" not in run.stdout
