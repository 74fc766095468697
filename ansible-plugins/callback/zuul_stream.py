"""zuul_stream: Sluice's stdout callback, writing Zuul's job-output.txt and job-output.json.

A thin shim: Ansible's `v2_*` hooks are turned into plain data and handed to the `sluice_native`
module, which formats the lines, appends them to `$ZUUL_JOBDIR/work/logs/job-output.txt`, streams
command/shell output live from the node console daemon (one thread per host and task) and builds
this playbook's entry of `$ZUUL_JOBDIR/work/logs/job-output.json`. Control lines for the
executor (`RESULT failure`, `RESULT unreachable`) go to stdout.

This callback also does the work of the aggregate callbacks `zuul_json` and `zuul_unreachable`
(which then stand aside, see `sluice_native.claim`): Ansible copies every task result once per
plugin that receives it, and for a task with a large output that copy costs more than writing
both files. A task result is read into Rust once (`sluice_native.PlainResult`) for both files.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from ansible.plugins.callback import CallbackBase

import sluice_native

try:  # ansible-core 2.19+: tagged, lazy and vaulted values as plain data (vaulted ones redacted)
    from ansible.utils.vars import transform_to_native_types as native_value
except ImportError:  # 2.18: results hold plain data (and str subclasses)
    native_value = None

DOCUMENTATION = """
    name: zuul_stream
    type: stdout
    short_description: Zuul-compatible job-output.txt and job-output.json with live node console streaming
    description:
      - Writes $ZUUL_JOBDIR/work/logs/job-output.txt in Zuul's format and appends this playbook's
        entry to $ZUUL_JOBDIR/work/logs/job-output.json.
      - Records unreachable hosts in $ZUUL_JOBDIR/.ansible/nodes.unreachable.
"""

STREAM_GRACE = 10.0
LOCAL_ADDRS = ("localhost", "127.0.0.1", "::1")
UNSTREAMED_CONNECTIONS = ("local", "winrm", "psrp", "kubectl", "network_cli", "httpapi", "netconf")
NOT_RUN = ("Did not run command since", "Would not run command since")
RECORDED = {"ok": {}, "failed": {"failed": True}, "skipped": {"skipped": True}, "unreachable": {"unreachable": True}}


def raw_result(result: Any) -> Mapping[str, Any]:
    """The callback's own copy of the module result. On 2.19+ this skips `result.result`, which
    would copy the whole result once more to convert it to native types: sluice_native reads it
    as it is and hands only unusual values to `native_value`."""
    data = getattr(result, "_return_data", None)
    return data if isinstance(data, Mapping) else result._result


def jobdir() -> str:
    return os.environ.get("ZUUL_JOBDIR") or os.path.dirname(os.getcwd())


def record_unreachable(result: Any) -> bool:
    """Adds the host to nodes.unreachable (unless the task ignores unreachable hosts); whether
    the executor is to be told (`RESULT unreachable`)."""
    if getattr(result._task, "ignore_unreachable", False) is True:
        return False
    sluice_native.record_unreachable(os.path.join(jobdir(), ".ansible", "nodes.unreachable"), result._host.get_name())
    return True


def role_of(task: Any) -> tuple[str, str, str] | None:
    role = getattr(task, "_role", None)
    if role is None:
        return None
    return (str(role.get_name()), str(role._uuid), str(role._role_path))


def truthy(value: Any) -> bool:
    """Ansible-style boolean of a variable value."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y", "t")
    return bool(value)


def log_host(name: str) -> str:
    """The host part of a zuul_log_id: the inventory name with only ASCII letters and digits."""
    return re.sub(r"[^A-Za-z0-9]", "", name)


def configure_redaction() -> None:
    """Reads the secret values to redact from the in-memory file the executor names in
    SLUICE_SECRET_VALUES (`{"mode": "redact"|"fail", "values": [...]}`) and hands them to
    sluice_native, which redacts job-output.txt and job-output.json."""
    path = os.environ.get("SLUICE_SECRET_VALUES")
    if not path:
        return
    with open(path) as f:
        spec = json.load(f)
    sluice_native.set_redaction([str(v) for v in spec.get("values", [])], spec.get("mode") == "fail")


class CallbackModule(CallbackBase):
    """Writes job-output.txt and job-output.json through sluice_native."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "zuul_stream"

    def __init__(self) -> None:
        super().__init__()
        logs = os.path.join(jobdir(), "work", "logs")
        os.makedirs(logs, exist_ok=True)
        self._out = sluice_native.JobOutput(os.path.join(logs, "job-output.txt"), self._control)
        # Ansible instantiates the stdout callback first: zuul_json and zuul_unreachable find
        # these claimed and stand aside.
        self._record: Any = None
        if sluice_native.claim("job-output.json"):
            self._record = sluice_native.JobRecord(os.path.join(logs, "job-output.json"))
        self._unreachable = sluice_native.claim("nodes.unreachable")
        try:
            self._out.set_failure_output([str(r) for r in json.loads(os.environ.get("ZUUL_JOB_FAILURE_OUTPUT") or "[]")])
        except ValueError as e:
            self._out.line(f"Invalid failure-output: {e}")
        configure_redaction()
        self._port = int(os.environ.get("ZUUL_CONSOLE_PORT") or sluice_native.DEFAULT_CONSOLE_PORT)
        self._play: Any = None
        self._streams: dict[tuple[str, str], Any] = {}
        self._unstreamed: dict[tuple[str, str], bool] = {}
        self._last_log_n: dict[tuple[str, str], int] = {}
        try:
            # Makes ansible.builtin.command resolve to Sluice's command action in every worker.
            from ansible.plugins.loader import action_loader

            action_loader.get("ansible.legacy.command", class_only=True)
        except Exception:  # noqa: BLE001 - plugin dir may not be configured (e.g. ad-hoc use)
            pass

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _control(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def _emit(self, event: dict[str, Any]) -> None:
        self._out.lines(sluice_native.format_event(event))

    def _host_vars(self, host: Any, task: Any) -> Mapping[str, Any]:
        try:
            return self._play.get_variable_manager().get_vars(play=self._play, host=host, task=task, include_hostvars=False)
        except Exception:  # noqa: BLE001 - fall back to inventory vars
            return host.get_vars()

    def _is_local(self, host: Any, hvars: Mapping[str, Any]) -> bool:
        conn = str(hvars.get("ansible_connection") or "")
        if conn == "local":
            return True
        return host.get_name() in LOCAL_ADDRS and not hvars.get("ansible_host") and conn in ("", "smart")

    def _result(self, kind: str, result: Any, **extra: Any) -> None:
        """Writes a host's result to job-output.txt and, for a task's final result, records it
        for job-output.json."""
        task = result._task
        res = raw_result(result)
        host = result._host.get_name()
        shown = host
        delegated = res.get("_ansible_delegated_vars") or {}
        if delegated.get("ansible_host"):
            shown = f"{host} -> {delegated['ansible_host']}"
        action = str(task.action)
        is_command = sluice_native.is_command_action(action)
        unstreamed = self._unstreamed.get((str(task._uuid), host), False)
        meta = {
            "host": shown,
            "action": action,
            "is_loop": bool(task.loop or getattr(task, "loop_with", None)),
            "print_stdout": sluice_native.short_action(action) == "raw" or (is_command and unstreamed),
            "no_log": task.no_log is True,
            **extra,
        }
        plain = sluice_native.PlainResult(res, native_value)
        self._out.lines(sluice_native.format_result(kind, meta, plain))
        if self._record is not None and kind in RECORDED:
            censored = task.no_log is True or res.get("_ansible_no_log")
            self._record.host_result(host, action, None if censored else plain, **RECORDED[kind])

    def _finish_stream(self, result: Any, grace: float) -> None:
        task_uuid = str(result._task._uuid)
        host = result._host.get_name()
        stream = self._streams.pop((task_uuid, host), None)
        log_id = str(raw_result(result).get("zuul_log_id") or "")
        m = re.fullmatch(re.escape(task_uuid) + r"-(\d+)-" + re.escape(log_host(host)), log_id)
        if m:
            self._last_log_n[(task_uuid, log_host(host))] = int(m.group(1))
        if stream is not None:
            stream.stop(grace)
            stream.join()

    @staticmethod
    def _in_rescue_block(task: Any) -> bool:
        parent = getattr(task, "_parent", None)
        while parent is not None:
            if getattr(parent, "rescue", None):
                return True
            parent = getattr(parent, "_parent", None)
        return False

    # -- hooks ---------------------------------------------------------------------------------

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._play = play
        self._emit({"event": "play", "name": str(play.get_name())})
        if self._record is not None:
            try:
                extra = play.get_variable_manager().extra_vars
            except Exception:  # noqa: BLE001
                extra = {}
            self._record.play_start(str(play.get_name()), str(play._uuid), extra)

    def v2_playbook_on_task_start(self, task: Any, is_conditional: Any) -> None:
        args = task.args or {}
        raw = args.get("_raw_params")
        self._emit(
            {
                "event": "task",
                "name": str(task.get_name()),
                "action": str(task.action),
                "named": bool(task.name),
                "raw_params": None if raw is None else str(raw),
                "uses_shell": truthy(args.get("_uses_shell", False)),
                "is_loop": bool(task.loop or getattr(task, "loop_with", None)),
            }
        )
        if self._record is not None:
            self._record.task_start(str(task.get_name()), str(task._uuid), role_of(task))

    v2_playbook_on_handler_task_start = v2_playbook_on_task_start

    def v2_playbook_on_cleanup_task_start(self, task: Any) -> None:
        self.v2_playbook_on_task_start(task, False)

    def _target(self, host: Any, task: Any) -> tuple[Any, Mapping[str, Any]]:
        """The host a task really runs on (its delegate, if any) and that host's variables."""
        hvars = self._host_vars(host, task)
        delegate = task.delegate_to
        if not delegate:
            return host, hvars
        vm = self._play.get_variable_manager()
        name = str(delegate)
        if "{{" in name or "{%" in name:
            from ansible.template import Templar

            name = str(Templar(loader=vm._loader, variables=hvars).template(delegate))
        target = vm._inventory.get_host(name)
        if target is None:
            # Not in the inventory: Ansible connects to the name itself (localhost is implicit).
            local = name in LOCAL_ADDRS
            return host, {"ansible_host": name, "ansible_connection": "local" if local else "ssh",
                          "zuul_console_disabled": hvars.get("zuul_console_disabled", False)}
        tvars = dict(self._host_vars(target, task))
        tvars.setdefault("zuul_console_disabled", hvars.get("zuul_console_disabled", False))
        return target, tvars

    def v2_runner_on_start(self, host: Any, task: Any) -> None:
        if not sluice_native.is_command_action(str(task.action)) or self._play is None:
            return
        name = host.get_name()
        target, hvars = self._target(host, task)
        disabled = truthy(hvars.get("zuul_console_disabled", False))
        conn = str(hvars.get("ansible_connection") or "")
        local = self._is_local(target, hvars)
        self._unstreamed[(str(task._uuid), name)] = local or disabled or conn in UNSTREAMED_CONNECTIONS
        if task.loop or getattr(task, "loop_with", None) or task.async_val or local or disabled or conn in UNSTREAMED_CONNECTIONS:
            return
        key = (str(task._uuid), log_host(name))
        log_id = f"{task._uuid}-{self._last_log_n.get(key, 0) + 1}-{log_host(name)}"
        addr = str(hvars.get("ansible_host") or target.get_name())
        self._streams[(str(task._uuid), name)] = self._out.stream(name, addr, self._port, log_id)

    def v2_runner_on_ok(self, result: Any) -> None:
        msg = str(raw_result(result).get("msg") or "")
        self._finish_stream(result, 0.0 if msg.startswith(NOT_RUN) else STREAM_GRACE)
        self._result("ok", result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._finish_stream(result, STREAM_GRACE)
        self._result("failed", result, ignore_errors=bool(ignore_errors))
        if not ignore_errors and not self._in_rescue_block(result._task):
            self._out.signal_failure()

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._finish_stream(result, 0.0)
        self._result("skipped", result)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._finish_stream(result, 0.0)
        self._result("unreachable", result)
        if self._unreachable and record_unreachable(result):
            self._control("RESULT unreachable")

    def _item(self, kind: str, result: Any) -> None:
        res = raw_result(result)
        label = res.get("_ansible_item_label", res.get("item"))
        self._result(kind, result, item_label=label if native_value is None else native_value(label))

    def v2_runner_item_on_ok(self, result: Any) -> None:
        self._item("item_ok", result)

    def v2_runner_item_on_failed(self, result: Any) -> None:
        self._item("item_failed", result)

    def v2_runner_item_on_skipped(self, result: Any) -> None:
        self._item("item_skipped", result)

    def v2_playbook_on_include(self, included_file: Any) -> None:
        hosts = [h.get_name() for h in included_file._hosts]
        self._emit({"event": "include", "hosts": hosts, "file": str(included_file._filename)})

    def v2_playbook_on_stats(self, stats: Any) -> None:
        for stream in self._streams.values():
            stream.stop(0.0)
        for stream in self._streams.values():
            stream.join()
        self._streams.clear()
        hosts = {str(h): stats.summarize(h) for h in sorted(stats.processed.keys())}
        self._emit({"event": "stats", "hosts": hosts})
        if self._record is not None:
            self._record.write(hosts)
