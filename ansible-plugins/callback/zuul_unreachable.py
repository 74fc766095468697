"""zuul_unreachable: records unreachable hosts for the executor.

Each unreachable host's name is appended (once) to `$ZUUL_JOBDIR/.ansible/nodes.unreachable`,
and the control line `RESULT unreachable` is printed on stdout, which the executor reads.

When the stdout callback `zuul_stream` runs in the same process it does this itself and this
plugin disables itself: on ansible-core 2.18 every enabled plugin costs a copy of every task
result, whether or not it handles the event.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ansible.plugins.callback import CallbackBase

import sluice_native

DOCUMENTATION = """
    name: zuul_unreachable
    type: aggregate
    short_description: Records unreachable hosts for the Zuul-compatible executor
    description:
      - Appends unreachable hosts to $ZUUL_JOBDIR/.ansible/nodes.unreachable, unless the
        zuul_stream stdout callback already does.
"""


class CallbackModule(CallbackBase):
    """Writes nodes.unreachable and emits `RESULT unreachable`."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "zuul_unreachable"
    CALLBACK_NEEDS_ENABLED = False
    CALLBACK_NEEDS_WHITELIST = False

    def __init__(self) -> None:
        super().__init__()
        if not sluice_native.claim("nodes.unreachable"):
            self.disabled = True

    def v2_runner_on_unreachable(self, result: Any) -> None:
        if getattr(result._task, "ignore_unreachable", False) is True:
            return
        jobdir = os.environ.get("ZUUL_JOBDIR") or os.path.dirname(os.getcwd())
        sluice_native.record_unreachable(os.path.join(jobdir, ".ansible", "nodes.unreachable"), result._host.get_name())
        sys.stdout.write("RESULT unreachable\n")
        sys.stdout.flush()
