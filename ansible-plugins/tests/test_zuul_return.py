"""zuul_return, run by real Ansible on the executor side (localhost and the sshd node)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

DEFAULT_CALLBACK = {"ANSIBLE_STDOUT_CALLBACK": "default"}


def results_file(jobdir: Path) -> Path:
    return jobdir / "work" / "results.json"


def test_calls_deep_merge_and_accumulate(run_playbook: Callable[..., Any], tmp_path: Path):
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"from_file": True, "nested": {"c": 3}}))
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"token": "from-file"}))
    run = run_playbook(
        f"""\
        - hosts: localhost
          gather_facts: false
          tasks:
            - zuul_return:
                data:
                  zuul:
                    artifacts: [{{name: first, url: one.tgz}}]
                    warnings: [careful]
                    file_comments:
                      README: [{{line: 1, message: a}}]
                  nested: {{a: 1, list: [1, 2], keep: yes}}
                  scalar: old
            - zuul_return:
                file: {extra}
                secret_file: {secret}
                data:
                  zuul:
                    artifacts: [{{name: second, url: two.tgz, metadata: {{type: docs}}}}]
                    warnings: [again]
                    log_url: https://logs.example/1/
                    file_comments:
                      README: [{{line: 2, message: b}}]
                      setup.py: [{{line: 3, message: c}}]
                  nested: {{b: 2, list: [3]}}
                  scalar: new
                secret_data:
                  password: hunter2
        """,
        extra_env=DEFAULT_CALLBACK,
    )
    assert run.rc == 0, run.stdout
    assert json.loads(results_file(run.jobdir).read_text()) == {
        "data": {
            "zuul": {
                "artifacts": [{"name": "second", "url": "two.tgz", "metadata": {"type": "docs"}},
                              {"name": "first", "url": "one.tgz"}],
                "warnings": ["again", "careful"],
                "log_url": "https://logs.example/1/",
                "file_comments": {"README": [{"line": 1, "message": "a"}, {"line": 2, "message": "b"}],
                                  "setup.py": [{"line": 3, "message": "c"}]},
            },
            "nested": {"a": 1, "b": 2, "c": 3, "list": [3], "keep": True},
            "scalar": "new",
            "from_file": True,
        },
        "secret_data": {"password": "hunter2", "token": "from-file"},
    }


def test_invalid_artifact_fails_and_keeps_the_file(run_playbook: Callable[..., Any]):
    run = run_playbook(
        """\
        - hosts: localhost
          gather_facts: false
          tasks:
            - zuul_return:
                data: {zuul: {artifacts: [{name: good, url: good.tgz}]}}
            - zuul_return:
                data: {zuul: {artifacts: [{name: bad}]}}
        """,
        extra_env=DEFAULT_CALLBACK,
    )
    assert run.rc == 2, run.stdout
    assert "invalid artifact" in run.stdout
    assert json.loads(results_file(run.jobdir).read_text())["data"] == {
        "zuul": {"artifacts": [{"name": "good", "url": "good.tgz"}]}}


def test_file_is_replaced_atomically_by_concurrent_hosts(run_playbook: Callable[..., Any]):
    # Both hosts run zuul_return at once; a reader must never see a partial file, and the
    # lock must keep either host's artifact from being lost.
    run = run_playbook(
        """\
        - hosts: all
          gather_facts: false
          tasks:
            - zuul_return:
                data:
                  zuul:
                    artifacts: [{name: "{{ inventory_hostname }}", url: "{{ inventory_hostname }}.tgz"}]
        """,
        extra_env=DEFAULT_CALLBACK,
    )
    assert run.rc == 0, run.stdout
    path = results_file(run.jobdir)
    data = json.loads(path.read_text())["data"]
    assert sorted(a["name"] for a in data["zuul"]["artifacts"]) == ["localhost", "node"]
    # Written through a temporary file renamed into place: nothing else is left behind.
    assert sorted(p.name for p in path.parent.iterdir() if p.is_file()) == ["results.json"]


def test_rename_replaces_the_inode(run_playbook: Callable[..., Any]):
    run = run_playbook(
        """\
        - hosts: localhost
          gather_facts: false
          tasks:
            - zuul_return:
                data: {step: 1}
        """,
        extra_env=DEFAULT_CALLBACK,
    )
    assert run.rc == 0, run.stdout
    path = results_file(run.jobdir)
    before = path.stat().st_ino
    reader = path.open()
    run = run_playbook(
        """\
        - hosts: localhost
          gather_facts: false
          tasks:
            - zuul_return:
                data: {step: 2}
        """,
        extra_env=DEFAULT_CALLBACK,
    )
    assert run.rc == 0, run.stdout
    # A reader that opened the old file still sees it whole; the path now names a new file.
    assert json.loads(reader.read()) == {"data": {"step": 1}, "secret_data": {}}
    reader.close()
    assert path.stat().st_ino != before
    assert json.loads(path.read_text())["data"] == {"step": 2}
