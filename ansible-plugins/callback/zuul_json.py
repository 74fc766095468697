"""zuul_json: Sluice's aggregate callback writing Zuul's job-output.json.

Collects plays, tasks and per-host results of one ansible-playbook run as plain data (Ansible
2.19's tagged values included) and, when the playbook ends, appends one object to
`$ZUUL_JOBDIR/work/logs/job-output.json` through `sluice_native` (which writes it exactly as
Zuul does: indent 4, sorted keys). Playbook metadata (phase, index, trust, canonical path,
branch) comes from the `zuul_execution_*` extra vars the executor passes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from ansible.plugins.callback import CallbackBase

import sluice_native

DOCUMENTATION = """
    name: zuul_json
    type: aggregate
    short_description: Zuul-compatible job-output.json
    description:
      - Appends one object per playbook run to $ZUUL_JOBDIR/work/logs/job-output.json.
"""

CENSORED = "the output has been hidden due to the fact that 'no_log: true' was specified for this result"
METADATA = {
    "zuul_execution_canonical_name_and_path": "playbook",
    "zuul_execution_phase": "phase",
    "zuul_execution_phase_index": "index",
    "zuul_execution_trusted": "trusted",
    "zuul_execution_branch": "branch",
}


def plain(value: Any) -> Any:
    """Ansible data as plain JSON-able data, without Ansible's internal `_ansible_*` keys."""
    if value is None:
        return None
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items() if not str(k).startswith("_ansible_")}
    if isinstance(value, (list, tuple, set, frozenset)):
        # Fast path for the common big case (stdout_lines): a list of exact str needs no walk.
        if all(type(v) is str for v in value):
            return list(value)
        return [plain(v) for v in value]
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - an unprintable value must not break the log
        return repr(value)


class CallbackModule(CallbackBase):
    """Builds the job-output.json entry of one playbook run."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "zuul_json"
    CALLBACK_NEEDS_ENABLED = False
    CALLBACK_NEEDS_WHITELIST = False

    def __init__(self) -> None:
        super().__init__()
        jobdir = os.environ.get("ZUUL_JOBDIR") or os.path.dirname(os.getcwd())
        self._path = os.path.join(jobdir, "work", "logs", "job-output.json")
        self._plays: list[dict[str, Any]] = []
        self._meta: dict[str, Any] = {}

    def v2_playbook_on_play_start(self, play: Any) -> None:
        try:
            extra = play.get_variable_manager().extra_vars
        except Exception:  # noqa: BLE001
            extra = {}
        for var, key in METADATA.items():
            if var in extra:
                value = plain(extra[var])
                if key == "trusted":
                    value = str(value).lower() == "true"
                elif key == "index":
                    value = str(value)
                self._meta[key] = value
        self._plays.append(
            {
                "play": {"name": str(play.get_name()), "id": str(play._uuid), "duration": {"start": sluice_native.now_utc_iso()}},
                "tasks": [],
            }
        )

    def v2_playbook_on_task_start(self, task: Any, is_conditional: Any) -> None:
        if not self._plays:
            return
        entry: dict[str, Any] = {
            "task": {"name": str(task.get_name()), "id": str(task._uuid), "duration": {"start": sluice_native.now_utc_iso()}},
            "hosts": {},
        }
        role = getattr(task, "_role", None)
        if role is not None:
            entry["role"] = {"name": str(role.get_name()), "id": str(role._uuid), "path": str(role._role_path)}
        self._plays[-1]["tasks"].append(entry)

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self.v2_playbook_on_task_start(task, False)

    def _record(self, result: Any, **flags: bool) -> None:
        if not self._plays or not self._plays[-1]["tasks"]:
            return
        task = result._task
        res = result._result
        if task.no_log is True or res.get("_ansible_no_log"):
            host_result: dict[str, Any] = {"censored": CENSORED}
        else:
            host_result = plain(res)
        host_result["action"] = sluice_native.short_action(str(task.action))
        host_result.update(flags)
        entry = self._plays[-1]["tasks"][-1]
        entry["hosts"][result._host.get_name()] = host_result
        end = sluice_native.now_utc_iso()
        entry["task"]["duration"]["end"] = end
        self._plays[-1]["play"]["duration"]["end"] = end

    def v2_runner_on_ok(self, result: Any) -> None:
        self._record(result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record(result, failed=True)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._record(result, skipped=True)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._record(result, unreachable=True)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        summary = {str(h): plain(stats.summarize(h)) for h in sorted(stats.processed.keys())}
        output = {"plays": self._plays, "stats": summary, **self._meta}
        sluice_native.JobJson(self._path).append(json.dumps(output))
