"""`ansible-playbook` for untrusted playbooks: Sluice's restricted module set, then Ansible.

The executor runs `<venv python> run_playbook.py <ansible-playbook arguments>` instead of the
venv's `ansible-playbook` when the playbook is untrusted. The restrictions are installed before
Ansible reads the inventory or the playbook (so static imports, roles and `vars_files` are
covered too) and before any worker is forked. Without `ZUUL_JOBDIR` and `ANSIBLE_CONFIG` it
refuses to run rather than run unrestricted.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Installs the restrictions and hands over to ansible-playbook's own entry point."""
    jobdir = os.environ.get("ZUUL_JOBDIR")
    config = os.environ.get("ANSIBLE_CONFIG")
    if not jobdir or not config:
        sys.stderr.write("ERROR! restricted ansible-playbook needs ZUUL_JOBDIR and ANSIBLE_CONFIG\n")
        sys.exit(250)
    from ansible.cli.playbook import main as playbook_main

    import sluice_restricted

    sluice_restricted.install(jobdir, os.path.dirname(config))
    sys.argv[0] = "ansible-playbook"
    playbook_main()


if __name__ == "__main__":
    main()
