"""Fixtures for testing Sluice's Ansible plugins against real Ansible runs.

A test gets an installed ansible-core venv (one run per version that `sluice manage-ansible`
installed), a real sshd node on loopback (tests/node/sshd-node), the native module built by
cargo, and `run_playbook`, which lays out a Zuul-style build directory and runs
`ansible-playbook` with Sluice's plugins the way the executor configures them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "ansible-plugins"
STATE_DIR = Path(
    os.environ.get("SLUICE_STATE_DIR")
    or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "sluice"
)
ANSIBLE_BIN = STATE_DIR / "ansible-bin"


def installed_versions() -> list[str]:
    if not ANSIBLE_BIN.is_dir():
        return []
    return sorted(p.name for p in ANSIBLE_BIN.iterdir() if (p / "bin" / "ansible-playbook").exists())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ansible_version" in metafunc.fixturenames:
        versions = installed_versions()
        if not versions:
            # Failing (not skipping) keeps a missing installation from passing silently.
            versions = ["missing"]
        metafunc.parametrize("ansible_version", versions)


@pytest.fixture
def ansible_venv(ansible_version: str) -> Path:
    if ansible_version == "missing":
        pytest.fail(f"no Ansible installed under {ANSIBLE_BIN}: run `sluice manage-ansible` first")
    return ANSIBLE_BIN / ansible_version


@pytest.fixture(scope="session")
def native_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding sluice_native.abi3.so built from the workspace."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    out = tmp_path_factory.mktemp("native")
    subprocess.run(["cargo", "build", "-q", "-p", "sluice-native"], cwd=REPO, check=True)
    lib = target / "debug" / "libsluice_native.so"
    if not lib.exists():
        pytest.fail(f"{lib} was not built: run `cargo build -p sluice-native`")
    shutil.copy(lib, out / "sluice_native.abi3.so")
    return out


@dataclass
class Node:
    dir: Path
    port: int
    user: str
    key: Path
    known_hosts: Path


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A real sshd on 127.0.0.1 with a throwaway key."""
    d = tmp_path_factory.mktemp("node")
    script = REPO / "tests" / "node" / "sshd-node"
    port = int(subprocess.run([str(script), "start", str(d)], check=True, capture_output=True, text=True).stdout.strip())
    try:
        yield Node(d, port, os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip(), d / "client_key", d / "known_hosts")
    finally:
        subprocess.run([str(script), "stop", str(d)], check=False)


@dataclass
class Run:
    rc: int
    stdout: str
    jobdir: Path

    @property
    def job_output(self) -> str:
        return (self.jobdir / "work" / "logs" / "job-output.txt").read_text()

    @property
    def job_output_json(self) -> str:
        return (self.jobdir / "work" / "logs" / "job-output.json").read_text()


@pytest.fixture
def run_playbook(tmp_path: Path, ansible_venv: Path, native_dir: Path, node: Node, request: pytest.FixtureRequest):
    """Run a playbook the way the executor does (without the sandbox).

    Returns a callable (playbook_yaml, phase="run", index=0, trusted=False, extra_env=None,
    background=False) -> Run, or a Popen plus the jobdir when background is true.
    """

    jobdir = tmp_path / "jobdir"
    for sub in ("work/logs", "work/tmp", "home/.ssh", ".ansible/cp", ".ansible/fact-cache", "ansible/playbook_0"):
        (jobdir / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(node.known_hosts, jobdir / "home" / ".ssh" / "known_hosts")
    pbdir = jobdir / "ansible" / "playbook_0"
    # ssh's control socket path must fit in 108 bytes, which the executor's
    # <jobdir>/.ansible/cp does not under pytest's long tmp_path names: use a short directory.
    control_dir = tempfile.mkdtemp(prefix="sluice-cp-", dir="/tmp")
    request.addfinalizer(lambda: shutil.rmtree(control_dir, ignore_errors=True))
    (pbdir / "inventory.yaml").write_text(
        textwrap.dedent(
            f"""\
            all:
              hosts:
                node:
                  ansible_host: 127.0.0.1
                  ansible_port: {node.port}
                  ansible_user: {node.user}
                  ansible_python_interpreter: /usr/bin/python3
                  ansible_ssh_private_key_file: {node.key}
                localhost:
                  ansible_connection: local
                  ansible_python_interpreter: {ansible_venv}/bin/python
            """
        )
    )
    (pbdir / "ansible.cfg").write_text(
        textwrap.dedent(
            f"""\
            [defaults]
            inventory = {pbdir}/inventory.yaml
            local_tmp = {jobdir}/work/tmp
            retry_files_enabled = False
            gathering = smart
            fact_caching = jsonfile
            fact_caching_connection = {jobdir}/.ansible/fact-cache
            library = {PLUGINS}/library
            module_utils = {PLUGINS}/library/module_utils
            callback_plugins = {PLUGINS}/callback
            stdout_callback = zuul_stream
            filter_plugins = {PLUGINS}/filter
            action_plugins = {PLUGINS}/action
            nocows = True
            timeout = 30
            display_args_to_stdout = True
            internal_poll_interval = 0.01

            [ssh_connection]
            retries = 3
            pipelining = True
            control_path_dir = {control_dir}
            ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o ServerAliveInterval=60 -o UserKnownHostsFile={jobdir}/home/.ssh/known_hosts
            """
        )
    )

    def run(playbook: str, phase: str = "run", index: int = 0, trusted: bool = False,
            extra_env: dict[str, str] | None = None, background: bool = False,
            restricted: bool = False, files: dict[str, str] | None = None):
        """restricted: run the way the executor runs untrusted playbooks (run_playbook.py),
        with the playbook and `files` in an untrusted checkout under the jobdir."""
        pb_root = jobdir / "untrusted" / "project_0" / "localhost" / "org" / "project" if restricted else tmp_path
        pb_root.mkdir(parents=True, exist_ok=True)
        for rel, content in (files or {}).items():
            (pb_root / rel).parent.mkdir(parents=True, exist_ok=True)
            (pb_root / rel).write_text(content)
        pb = pb_root / "playbook.yaml"
        pb.write_text(textwrap.dedent(playbook))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZUUL_")}
        env.update(
            {
                "ANSIBLE_CONFIG": str(pbdir / "ansible.cfg"),
                "HOME": str(jobdir / "home"),
                "TMP": str(jobdir / "work" / "tmp"),
                "ZUUL_JOBDIR": str(jobdir),
                "PYTHONPATH": str(native_dir),
            }
        )
        env.update(extra_env or {})
        entry = [str(ansible_venv / "bin" / "python"), str(PLUGINS / "restricted" / "run_playbook.py")] if restricted \
            else [str(ansible_venv / "bin" / "ansible-playbook")]
        argv = [
            *entry, "-v", str(pb),
            "-e", f"zuul_execution_phase={phase}",
            "-e", f"zuul_execution_phase_index={index}",
            "-e", f"zuul_execution_trusted={trusted}",
            "-e", f"zuul_execution_canonical_name_and_path=localhost/org/project/{pb.name}",
            "-e", "zuul_execution_branch=main",
        ]
        if background:
            return subprocess.Popen(argv, cwd=jobdir / "work", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), jobdir
        proc = subprocess.run(argv, cwd=jobdir / "work", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        return Run(proc.returncode, proc.stdout, jobdir)

    return run
