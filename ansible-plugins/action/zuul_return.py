"""zuul_return: hands data from a playbook back to Sluice, on the executor.

Arguments: `data` and `secret_data` (dicts), `file` and `secret_file` (JSON files on the
executor holding such dicts) and `path`, the results file (default
`$ZUUL_JOBDIR/work/results.json`). The results file holds `{"data": {...}, "secret_data":
{...}}`; each call merges its values in (a file's first, then the inline dict) and replaces the
file atomically, so a reader never sees half of it.

Merging is deep for dicts; anything else in the new value replaces the old one, except that the
lists `zuul.artifacts`, `zuul.warnings` and `zuul.redactions` accumulate (new items first, then
the earlier ones) and `zuul.file_comments` extends each file's list of comments. The `zuul`
keys Sluice interprets are checked before anything is written.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

ACCUMULATED_LISTS = ("artifacts", "warnings", "redactions")


def validate(data: dict[str, Any]) -> None:
    """Raises AnsibleActionFail when a `zuul` key Sluice interprets has the wrong shape."""
    zuul = data.get("zuul")
    if zuul is None:
        return
    if not isinstance(zuul, dict):
        raise AnsibleActionFail("zuul_return: zuul must be a dict")
    if "log_url" in zuul and not isinstance(zuul["log_url"], str):
        raise AnsibleActionFail("zuul_return: zuul.log_url must be a string")
    for key in ("warnings", "redactions"):
        if key in zuul and not (isinstance(zuul[key], list) and all(isinstance(v, str) for v in zuul[key])):
            raise AnsibleActionFail(f"zuul_return: zuul.{key} must be a list of strings")
    if "artifacts" in zuul:
        artifacts = zuul["artifacts"]
        if not isinstance(artifacts, list):
            raise AnsibleActionFail("zuul_return: zuul.artifacts must be a list")
        for artifact in artifacts:
            if not (isinstance(artifact, dict) and isinstance(artifact.get("name"), str)
                    and isinstance(artifact.get("url"), str)
                    and isinstance(artifact.get("metadata", {}), dict)
                    and set(artifact) <= {"name", "url", "metadata"}):
                raise AnsibleActionFail(
                    f"zuul_return: invalid artifact {artifact!r}: expected name (str), url (str) and optional metadata (dict)")
    if "file_comments" in zuul and not (
            isinstance(zuul["file_comments"], dict) and all(isinstance(c, list) for c in zuul["file_comments"].values())):
        raise AnsibleActionFail("zuul_return: zuul.file_comments must map file paths to lists of comments")


def deep_merge(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """Merges new into old (in place) and returns old."""
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            deep_merge(value, old[key])
        else:
            old[key] = value
    return old


def merge(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """deep_merge with Zuul's accumulating keys under `zuul`."""
    new_zuul, old_zuul = new.get("zuul"), old.get("zuul")
    if not (isinstance(new_zuul, dict) and isinstance(old_zuul, dict)):
        return deep_merge(new, old)
    accumulated = {key: new_zuul[key] + old_zuul[key] for key in ACCUMULATED_LISTS
                   if isinstance(new_zuul.get(key), list) and isinstance(old_zuul.get(key), list)}
    comments = None
    if isinstance(new_zuul.get("file_comments"), dict) and isinstance(old_zuul.get("file_comments"), dict):
        comments = {path: list(c) for path, c in old_zuul["file_comments"].items()}
        for path, c in new_zuul["file_comments"].items():
            comments.setdefault(path, []).extend(c)
    deep_merge(new, old)
    old["zuul"].update(accumulated)
    if comments is not None:
        old["zuul"]["file_comments"] = comments
    return old


def load_json_file(path: str) -> dict[str, Any]:
    with open(path) as f:
        value = json.load(f)
    if not isinstance(value, dict):
        raise AnsibleActionFail(f"zuul_return: {path} does not hold a JSON object")
    return value


def update_results(path: str, updates: dict[str, list[dict[str, Any]]]) -> None:
    """Merges each section's updates into the results file and replaces it atomically.

    The directory is locked while reading and writing, so concurrent calls (several hosts
    running zuul_return at once) do not lose each other's data.
    """
    directory = os.path.dirname(os.path.abspath(path))
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        results = json.loads(text) if text.strip() else {}
        for section, values in updates.items():
            merged = results.get(section) if isinstance(results.get(section), dict) else {}
            for value in values:
                merged = merge(value, merged)
            results[section] = merged
        fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".results-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(results, f)
            os.chmod(tmp_path, 0o644)
            os.rename(tmp_path, path)
        except BaseException:
            os.unlink(tmp_path)
            raise
    finally:
        os.close(dir_fd)


class ActionModule(ActionBase):
    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        results = super().run(tmp, task_vars or {})
        del tmp
        args = self._task.args

        path = args.get("path")
        if not path:
            jobdir = os.environ.get("ZUUL_JOBDIR")
            if not jobdir:
                raise AnsibleActionFail("zuul_return: no path given and ZUUL_JOBDIR is not set")
            path = os.path.join(jobdir, "work", "results.json")

        updates: dict[str, list[dict[str, Any]]] = {"data": [], "secret_data": []}
        for section, file_arg in (("data", "file"), ("secret_data", "secret_file")):
            if args.get(file_arg):
                updates[section].append(load_json_file(args[file_arg]))
            if args.get(section):
                if not isinstance(args[section], dict):
                    raise AnsibleActionFail(f"zuul_return: {section} must be a dict")
                updates[section].append(args[section])
        for values in updates.values():
            for value in values:
                validate(value)

        update_results(path, updates)
        results["changed"] = False
        return results
