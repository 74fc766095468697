"""zuul_json: Sluice's aggregate callback writing Zuul's job-output.json.

Collects plays, tasks and per-host results of one ansible-playbook run through `sluice_native`
and, when the playbook ends, appends one object to `$ZUUL_JOBDIR/work/logs/job-output.json`
(exactly as Zuul does: indent 4, sorted keys). Playbook metadata (phase, index, trust, canonical
path, branch) comes from the `zuul_execution_*` extra vars the executor passes.

When the stdout callback `zuul_stream` runs in the same process it records job-output.json
itself (Ansible would otherwise copy every task result once more for this plugin), and this
plugin disables itself. It records only when used without `zuul_stream`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ansible.plugins.callback import CallbackBase

import sluice_native

try:  # ansible-core 2.19+: tagged, lazy and vaulted values as plain data (vaulted ones redacted)
    from ansible.utils.vars import transform_to_native_types as native_value
except ImportError:  # 2.18: results hold plain data (and str subclasses)
    native_value = None

DOCUMENTATION = """
    name: zuul_json
    type: aggregate
    short_description: Zuul-compatible job-output.json
    description:
      - Appends one object per playbook run to $ZUUL_JOBDIR/work/logs/job-output.json, unless the
        zuul_stream stdout callback already does.
"""


def raw_result(result: Any) -> Mapping[str, Any]:
    """The callback's own copy of the module result (2.19+: without a second copy converted to
    native types; sluice_native reads it as it is)."""
    data = getattr(result, "_return_data", None)
    return data if isinstance(data, Mapping) else result._result


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
        self._record: Any = None
        if sluice_native.claim("job-output.json"):
            self._record = sluice_native.JobRecord(os.path.join(jobdir, "work", "logs", "job-output.json"))
        else:
            # zuul_stream records it: a disabled plugin gets no events (and no result copies).
            self.disabled = True

    def v2_playbook_on_play_start(self, play: Any) -> None:
        try:
            extra = play.get_variable_manager().extra_vars
        except Exception:  # noqa: BLE001
            extra = {}
        self._record.play_start(str(play.get_name()), str(play._uuid), extra)

    def v2_playbook_on_task_start(self, task: Any, is_conditional: Any) -> None:
        role = getattr(task, "_role", None)
        role_ref = None if role is None else (str(role.get_name()), str(role._uuid), str(role._role_path))
        self._record.task_start(str(task.get_name()), str(task._uuid), role_ref)

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self.v2_playbook_on_task_start(task, False)

    def _host_result(self, result: Any, **flags: bool) -> None:
        res = raw_result(result)
        censored = result._task.no_log is True or res.get("_ansible_no_log")
        plain = None if censored else sluice_native.PlainResult(res, native_value)
        self._record.host_result(result._host.get_name(), str(result._task.action), plain, **flags)

    def v2_runner_on_ok(self, result: Any) -> None:
        self._host_result(result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._host_result(result, failed=True)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._host_result(result, skipped=True)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._host_result(result, unreachable=True)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._record.write({str(h): stats.summarize(h) for h in sorted(stats.processed.keys())})
