"""zuul_unreachable: records unreachable hosts for the executor.

Each unreachable host's name is appended (once) to `$ZUUL_JOBDIR/.ansible/nodes.unreachable`,
and the control line `RESULT unreachable` is printed on stdout, which the executor reads.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: zuul_unreachable
    type: aggregate
    short_description: Records unreachable hosts for the Zuul-compatible executor
    description:
      - Appends unreachable hosts to $ZUUL_JOBDIR/.ansible/nodes.unreachable.
"""


class CallbackModule(CallbackBase):
    """Writes nodes.unreachable and emits `RESULT unreachable`."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "zuul_unreachable"
    CALLBACK_NEEDS_ENABLED = False
    CALLBACK_NEEDS_WHITELIST = False

    def v2_runner_on_unreachable(self, result: Any) -> None:
        if getattr(result._task, "ignore_unreachable", False) is True:
            return
        jobdir = os.environ.get("ZUUL_JOBDIR") or os.path.dirname(os.getcwd())
        path = os.path.join(jobdir, ".ansible", "nodes.unreachable")
        host = result._host.get_name()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with open(path) as f:
                known = {line.strip() for line in f}
        except FileNotFoundError:
            known = set()
        if host not in known:
            with open(path, "a") as f:
                f.write(host + "\n")
        sys.stdout.write("RESULT unreachable\n")
        sys.stdout.flush()
