"""Shared set-up for Sluice's benchmarks: a local sshd node, git repositories for a job, and
interleaved timed runs whose medians are compared side by side.

Benchmarks print ratios against a baseline measured in the same run, the commands interleaved
round by round; the machines are shared and noisy, so only medians over several runs are quoted.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# SLUICE_BIN names a prebuilt binary (e.g. one built from a clean worktree of a commit).
SLUICE = Path(os.environ.get("SLUICE_BIN") or REPO / "target" / "release" / "sluice")
STATE_DIR = Path(
    os.environ.get("SLUICE_STATE_DIR")
    or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "sluice"
)


def build_release() -> None:
    if not os.environ.get("SLUICE_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "sluice", "-p", "sluice-native"], cwd=REPO, check=True)
    subprocess.run([str(SLUICE), "manage-ansible"], check=True, stdout=subprocess.DEVNULL)


@dataclass
class Node:
    dir: Path
    port: int

    @property
    def nodes_file(self) -> Path:
        return self.dir / "nodes.yaml"

    @property
    def key(self) -> Path:
        return self.dir / "client_key"

    def inventory(self, path: Path, python: str = "/usr/bin/python3") -> Path:
        path.write_text(
            textwrap.dedent(
                f"""\
                all:
                  hosts:
                    node:
                      ansible_host: 127.0.0.1
                      ansible_port: {self.port}
                      ansible_user: {os.environ.get("USER", "root")}
                      ansible_python_interpreter: {python}
                      ansible_ssh_private_key_file: {self.key}
                """
            )
        )
        return path

    def stop(self) -> None:
        subprocess.run([str(REPO / "tests/node/sshd-node"), "stop", str(self.dir)], check=False)


def start_node(root: Path) -> Node:
    d = root / "node"
    out = subprocess.run([str(REPO / "tests/node/sshd-node"), "start", str(d)], check=True, capture_output=True, text=True)
    return Node(d, int(out.stdout.strip()))


def git_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        f = path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(content)
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "bench"], cwd=path, check=True, env=env)
    return path


def bare_repo(path: Path, files: dict[str, str]) -> None:
    """A bare repository at `path` whose `main` holds `files` (one commit, `git fast-import`)."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    stream = ["commit refs/heads/main", "committer b <b@b> 0 +0000", "data 6", "import"]
    for rel, content in files.items():
        data = content.encode()
        stream += [f"M 100644 inline {rel}", f"data {len(data)}", content]
    fast_import(path, stream)


def fast_import(path: Path, stream: list[str]) -> None:
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, input="\n".join(stream).encode() + b"\n", check=True)


def review_branches(repo: Path, n: int) -> None:
    """N review branches `review/main/cNNNN`, each one commit on top of `main`, in one import."""
    stream: list[str] = []
    for i in range(n):
        text = f"change {i}\n"
        stream += [
            f"commit refs/heads/review/main/c{i:04d}",
            f"committer b <b@b> {i + 1} +0000",
            f"data {len(f'Change {i}')}",
            f"Change {i}",
            "from refs/heads/main^0",
            "M 100644 inline change.txt",
            f"data {len(text)}",
            text,
        ]
    fast_import(repo, stream)


def interleaved(commands: dict[str, str], runs: int, out: Path, prepare: str | None = None) -> dict[str, float]:
    """Times the named shell commands round-robin (A, B, C, A, B, C, ...) after one warm-up
    round, so that load from other work on a shared machine falls on every command alike rather
    than on whichever ran during a busy minute. Returns median seconds per name and writes every
    time to `out` (JSON)."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for round_idx in range(runs + 1):
        # Rotate the order so no command always runs right after the same other one.
        order = names[round_idx % len(names):] + names[: round_idx % len(names)]
        for name in order:
            if prepare:
                subprocess.run(prepare, shell=True, check=True)
            start = time.perf_counter()
            proc = subprocess.run(commands[name], shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            elapsed = time.perf_counter() - start
            if proc.returncode != 0:
                sys.exit(f"{name} failed (exit {proc.returncode}): {commands[name]}")
            if round_idx > 0:
                times[name].append(elapsed)
    out.write_text(json.dumps({"commands": commands, "times": times}, indent=2))
    return {name: statistics.median(t) for name, t in times.items()}


def report(title: str, medians: dict[str, float], baseline: str) -> None:
    print(f"\n{title}")
    base = medians[baseline]
    for name, median in medians.items():
        print(f"  {name:40s} median {median:7.3f} s   ratio {median / base:5.2f}x")
