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
