"""Sluice's `command` action: runs command and shell tasks through Sluice's command module.

It adds Zuul's extra module arguments before running `ansible.legacy.command` (the module in
`library/command.py`, since ansible.cfg's `library` points there):

- `zuul_log_id`: `skip` when the variable `zuul_console_disabled` is true, `in-loop-ignore` for
  loop items, else `<task uuid>-<n>-<host>`, where host is inventory_hostname with everything but
  ASCII letters and digits removed, and n counts the executions of that task on that host in this
  ansible-playbook run: 1 the first time (the usual case), 2 the next (say, a handler run by
  two flushes). `until` retries reuse their execution's id. The id is also returned in the
  result as `zuul_log_id`, so a log streamer can predict the next run's id as the n it last
  saw plus one.
- `zuul_output_max_bytes` from the environment variable ZUUL_OUTPUT_MAX_BYTES (when set),
  `zuul_ansible_split_streams` from ZUUL_ANSIBLE_SPLIT_STREAMS == "True", and `zuul_no_log`
  from the task's no_log.

Routing: unqualified `command` and `ansible.legacy.command` resolve to this plugin through
`action_plugins`; ansible-core's `shell` action (any spelling) sets `_uses_shell` and runs
`ansible.legacy.command`, which is this plugin. Only `ansible.builtin.command` is resolved past
`action_plugins`, to ansible-core's own action. ansible-core loads that one as the Python module
named by BUILTIN_MODULE_NAME, taking it from sys.modules when it is already there; importing this
file puts itself there. So the controller process must import this plugin before the first task
(the zuul_stream callback does `action_loader.get("ansible.legacy.command", class_only=True)`
at load time), and every worker forked after that runs `ansible.builtin.command` through it.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from ansible import constants as C
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

BUILTIN_MODULE_NAME = "ansible_collections.ansible.builtin.plugins.action.command"
sys.modules[BUILTIN_MODULE_NAME] = sys.modules[__name__]

# The id of each (task uuid, host) execution in this worker, so `until` retries keep theirs.
_execution_ids: dict[tuple[str, str], str] = {}


def log_host(inventory_hostname: str) -> str:
    """The host part of a log id: the inventory name with only ASCII letters and digits."""
    return re.sub(r"[^A-Za-z0-9]", "", inventory_hostname)


def next_execution(task_uuid: str, host: str) -> int:
    """Claims the next execution number of a task on a host, counting from 1.

    Every task execution runs in a freshly forked worker process, so the count cannot live in
    memory: each execution claims a marker file with O_EXCL in ansible-playbook's own local
    temporary directory, which all workers share and which is removed when the run ends.
    """
    markers = os.path.join(C.DEFAULT_LOCAL_TMP, "zuul-log-ids")
    os.makedirs(markers, exist_ok=True)
    n = 1
    while True:
        try:
            os.close(os.open(os.path.join(markers, f"{task_uuid}-{n}-{host}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return n
        except FileExistsError:
            n += 1


class ActionModule(ActionBase):
    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        self._supports_async = True
        task_vars = task_vars or {}
        results = super().run(tmp, task_vars)
        del tmp

        args = self._task.args
        args["zuul_log_id"] = self._log_id(task_vars)
        if os.environ.get("ZUUL_OUTPUT_MAX_BYTES"):
            args["zuul_output_max_bytes"] = int(os.environ["ZUUL_OUTPUT_MAX_BYTES"])
        args["zuul_ansible_split_streams"] = os.environ.get("ZUUL_ANSIBLE_SPLIT_STREAMS") == "True"
        args["zuul_no_log"] = bool(self._task.no_log)

        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        results = merge_hash(results, self._execute_module(
            module_name="ansible.legacy.command", task_vars=task_vars, wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        results["zuul_log_id"] = args["zuul_log_id"]
        return results

    def _log_id(self, task_vars: dict[str, Any]) -> str:
        if boolean(self._templar.template(task_vars.get("zuul_console_disabled", False)), strict=False):
            return "skip"
        if "ansible_loop_var" in task_vars:
            return "in-loop-ignore"
        host = log_host(task_vars["inventory_hostname"])
        key = (self._task._uuid, host)
        if key not in _execution_ids:
            _execution_ids[key] = f"{self._task._uuid}-{next_execution(*key)}-{host}"
        return _execution_ids[key]
