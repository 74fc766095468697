"""Sluice's restricted module set for untrusted playbooks, enforced at Ansible's choke points.

Zuul's 2019 executor guarded untrusted playbooks by overriding action plugins one by one; every
Ansible release added a way around that. This module instead wraps the few places that every
action, module and lookup goes through, so module names, FQCNs (`ansible.builtin.copy`,
`ansible.legacy.copy`), `local_action`, `delegate_to`, `connection: local` plays and modules
shipped in a role's `library/` all meet the same checks:

- `TaskExecutor._get_action_handler_with_module_context`: the action plugin chosen for a task.
  On a local connection `raw` and `script` are refused, and action plugins that are neither
  ansible-core's, Sluice's nor in a short allow-list are refused everywhere (they run Python on
  the executor); `add_host`, `fetch` and `zuul_return` have their arguments checked.
- `ActionBase._execute_module`: a module about to run on a local connection (i.e. on the
  executor). Modules that do not come from ansible-core, the installed collections or Sluice's
  `library/` are refused; only an allow-list of modules may run, with their path arguments
  checked (`dest` must be in the work dir, ...); `uri` only with http, https or ftp.
- `ActionBase._find_needle`, `DataLoader._get_file_contents` / `get_real_file`, Jinja's
  `FileSystemLoader`, `LookupBase.find_file_in_search_path`: every file the controller reads
  must resolve (symlinks followed) inside the allowed roots.
- `connection.fetch_file`: what a remote host sends back must land in the work dir.
- `lookup_loader.get`: only lookups that do not act on the executor are allowed.

It is loaded only for untrusted playbooks, by `run_playbook.py`, before any Ansible code runs;
worker processes are forked from the controller (ansible-core forces the fork start method), so
the wrapped classes are the ones every worker uses. It holds on ansible-core 2.18 and 2.19
because the wrapped methods have the same names and roles in both.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, Iterable
from urllib.parse import urlparse

import ansible
from ansible.errors import AnsibleError

PLUGINS_ROOT = os.path.dirname(os.path.realpath(__file__))
"""`<state>/ansible/<ver>/zuul/ansible/restricted`: Sluice's plugin dirs are its siblings."""

ACCESS_MSG = "Accessing files from outside the working dir {} is prohibited"
SYNC_MSG = "Syncing files {} outside the working dir {} is prohibited"
LOCAL_CODE_MSG = "Executing local code is prohibited"
OVERRIDDEN_MSG = "Local execution of overridden module {} is forbidden"
LOOKUP_MSG = "Use of lookup modules that perform local actions on the executor is forbidden."
ADD_HOST_MSG = "Adding hosts {} with {} to the inventory is prohibited"
URI_SCHEMES = ("https", "http", "ftp")

# Lookups that only compute from their arguments or Ansible's variables.
SAFE_LOOKUPS = frozenset({
    "items", "list", "dict", "indexed_items", "nested", "together", "sequence", "subelements",
    "random_choice", "inventory_hostnames", "vars", "varnames", "config",
})
# Lookups that read files through LookupBase.find_file_in_search_path (path-checked there).
PATH_LOOKUPS = frozenset({"file", "fileglob", "first_found", "csvfile", "ini", "unvault"})

# Modules that may run on the executor, with the arguments that name executor paths.
LOCAL_MODULES: dict[str, tuple[str, ...]] = {
    "command": (),  # runs inside the sandbox, like Zuul's command on localhost
    "shell": (),
    "copy": ("dest",),
    "assemble": ("dest",),
    "file": ("path", "dest", "name"),
    "stat": ("path",),
    "known_hosts": ("path",),
    "uri": ("src", "dest"),
    "patch": ("basedir", "dest"),
    "unarchive": ("dest",),
    "setup": ("fact_path",),
    "gather_facts": (),
    "synchronize": (),
}
# Arguments that are executor paths only when the module reads its source on the executor.
REMOTE_SRC_MODULES = ("copy", "patch", "unarchive")
# Modules whose `src` is always on the executor (assemble's remote_src defaults to true).
SRC_TREE_MODULES = ("assemble",)

# Action plugins from collections that may be used (they resolve paths through the checked
# helpers); any other collection action plugin runs unreviewed Python on the executor.
ALLOWED_COLLECTION_ACTIONS = frozenset({"ansible.posix.synchronize", "ansible.posix.patch"})
# Collection modules checked like the ansible-core modules they once were.
MODULE_ALIASES = {"ansible.posix.synchronize": "synchronize", "ansible.posix.patch": "patch"}
ALLOWED_COLLECTION_ACTION_PREFIXES = ("ansible.windows.",)

ADD_HOST_KEYS = frozenset({
    "ansible_connection", "ansible_python_interpreter", "ansible_host", "ansible_port",
    "ansible_user", "ansible_password", "ansible_ssh_host", "ansible_ssh_port",
    "ansible_ssh_user", "ansible_ssh_pass",
})
ADD_HOST_CONNECTIONS = frozenset({"ssh", "kubectl", "ansible.builtin.ssh", "kubernetes.core.kubectl"})

# Connection plugins that run modules on another machine; every other connection (local,
# network_cli, chroot, ...) runs module code on the executor.
REMOTE_TRANSPORTS = frozenset({"ssh", "paramiko", "winrm", "psrp"})
REMOTE_COLLECTION_CONNECTIONS = frozenset({"kubernetes.core.kubectl"})


class Roots:
    """The directories a restricted playbook may touch, from the executor's environment."""

    def __init__(self, jobdir: str, playbook_config_dir: str) -> None:
        self.jobdir = os.path.realpath(jobdir)
        self.work = os.path.join(self.jobdir, "work")
        self.trusted = os.path.join(self.jobdir, "trusted")
        self.untrusted = os.path.join(self.jobdir, "untrusted")
        self.ansible_dir = os.path.join(self.jobdir, "ansible")
        self.playbook_config_dir = os.path.realpath(playbook_config_dir)
        self.ansible_pkg = os.path.dirname(os.path.realpath(ansible.__file__))
        self.collections = os.path.join(os.path.dirname(self.ansible_pkg), "ansible_collections")

    @property
    def writable(self) -> tuple[str, ...]:
        """Where the executor side may write: the work dir."""
        return (self.work,)

    @property
    def readable(self) -> tuple[str, ...]:
        """Where task sources may come from: the work dir and the playbook checkouts."""
        return (self.work, self.trusted, self.untrusted)

    @property
    def loadable(self) -> tuple[str, ...]:
        """What Ansible itself may load: the above, this playbook's config dir, Ansible's own files."""
        return self.readable + (self.playbook_config_dir, self.ansible_pkg, self.collections)


ROOTS: Roots | None = None


def roots() -> Roots:
    """The installed roots (install() sets them)."""
    if ROOTS is None:
        raise AnsibleError("Sluice's restricted module set is not installed")
    return ROOTS


def inside(path: str, allowed: Iterable[str]) -> bool:
    """Whether path, with every symlink resolved, is one of `allowed` or below one."""
    real = os.path.realpath(os.path.abspath(os.path.expanduser(path)))
    return any(real == root or real.startswith(root.rstrip("/") + "/") for root in allowed)


def tree_inside(path: str, allowed: Iterable[str]) -> bool:
    """inside() for path and, when it is a directory, everything below it (symlinks followed)."""
    allowed = tuple(allowed)
    if not inside(path, allowed):
        return False
    if not os.path.isdir(path):
        return True
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        for name in dirnames + filenames:
            if not inside(os.path.join(dirpath, name), allowed):
                return False
    return True


def access_error(invalid: str | None = None) -> AnsibleError:
    """Zuul's error for a path outside the work dir (with the path, for source lookups)."""
    msg = ACCESS_MSG.format(roots().work)
    if invalid is not None:
        msg += f". Invalid path: {invalid}"
    return AnsibleError(msg)


def failed(msg: str, **extra: Any) -> dict[str, Any]:
    """A failed task result."""
    return {"failed": True, "msg": msg, **extra}


def short_name(name: str) -> str:
    """`ansible.builtin.copy` / `ansible.legacy.copy` / `copy` → `copy`."""
    for prefix in ("ansible.builtin.", "ansible.legacy."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def is_local(connection: Any) -> bool:
    """Whether modules run through this connection execute on the executor."""
    transport = str(getattr(connection, "transport", "") or "")
    module_file = os.path.realpath(_module_file(type(connection)))
    ansible_conn_dir = os.path.join(roots().ansible_pkg, "plugins", "connection")
    if transport in REMOTE_TRANSPORTS and module_file.startswith(ansible_conn_dir + "/"):
        return False
    if transport in REMOTE_COLLECTION_CONNECTIONS and module_file.startswith(roots().collections + "/"):
        return False
    return True


def _module_file(cls: type) -> str:
    """The file a class was defined in ("" when unknown)."""
    module = sys.modules.get(cls.__module__)
    return str(getattr(module, "__file__", "") or "")


def plugin_is_official(path: str | None) -> bool:
    """Whether a plugin or module file is ansible-core's, an installed collection's or Sluice's."""
    if not path:
        return False
    r = roots()
    official = (r.ansible_pkg, r.collections, os.path.dirname(PLUGINS_ROOT))
    return inside(path, official) and not inside(path, r.readable)


# -- task-level checks (action plugin chosen) ---------------------------------------------------


def check_action(handler: Any, task_vars: dict[str, Any]) -> dict[str, Any] | None:
    """A failed result when the task may not run in a restricted playbook, else None."""
    name = str(getattr(handler, "ansible_name", "") or getattr(handler, "_load_name", ""))
    path = getattr(handler, "_original_path", None)
    short = short_name(name)
    local = is_local(handler._connection)
    from_core = bool(path) and inside(path, (roots().ansible_pkg,))
    from_sluice = bool(path) and inside(path, (os.path.dirname(PLUGINS_ROOT),))
    if not (from_core or from_sluice):
        allowed = name in ALLOWED_COLLECTION_ACTIONS or name.startswith(ALLOWED_COLLECTION_ACTION_PREFIXES)
        if not allowed or not plugin_is_official(path):
            return failed(LOCAL_CODE_MSG)
    if local and short in ("raw", "script"):
        return failed(LOCAL_CODE_MSG)
    args = handler._task.args
    if short == "add_host":
        return check_add_host(args)
    if short == "fetch":
        dest = args.get("dest")
        if dest and not inside(_dwim(handler, str(dest)), roots().writable):
            return failed(ACCESS_MSG.format(roots().work), path=str(dest))
    if short == "zuul_return":
        for key, allowed in (("path", roots().writable), ("file", roots().readable), ("secret_file", roots().readable)):
            value = args.get(key)
            if value and not inside(_dwim(handler, str(value)), allowed):
                return failed(ACCESS_MSG.format(roots().work), path=str(value))
    if short == "include_vars":
        directory = args.get("dir")
        if directory:
            base = os.path.dirname(str(getattr(handler._task._ds, "_data_source", "") or ""))
            role = getattr(handler._task, "_role", None)
            if role is not None:
                base = os.path.join(role._role_path, "vars")
            full = os.path.join(base, os.path.expanduser(str(directory)))
            if not tree_inside(full, roots().readable):
                return failed(ACCESS_MSG.format(roots().work), path=str(directory))
    return None


def _dwim(handler: Any, path: str) -> str:
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else handler._loader.path_dwim(path)


def check_add_host(args: dict[str, Any]) -> dict[str, Any] | None:
    """Zuul's add_host rule: only a few connection keys, and only ssh or kubectl connections."""
    unsafe = sorted(k for k in args if str(k).startswith("ansible_") and k not in ADD_HOST_KEYS)
    conn = args.get("ansible_connection")
    if unsafe or (conn is not None and str(conn) not in ADD_HOST_CONNECTIONS):
        return failed(ADD_HOST_MSG.format(conn, unsafe))
    return None


# -- module-level checks (module about to run on the executor) -----------------------------------


def check_local_module(action: Any, module_name: str, module_args: dict[str, Any]) -> dict[str, Any] | None:
    """A failed result when this module may not run on the executor with these arguments."""
    loader = action._shared_loader_obj.module_loader
    context = loader.find_plugin_with_context(module_name, collection_list=action._task.collections)
    short = short_name(str(getattr(context, "resolved_fqcn", "") or module_name))
    resolved = getattr(context, "plugin_resolved_path", None) if getattr(context, "resolved", False) else None
    if resolved and not plugin_is_official(resolved):
        return failed(OVERRIDDEN_MSG.format(module_name))
    short = MODULE_ALIASES.get(short, short)
    if short not in LOCAL_MODULES:
        return failed(LOCAL_CODE_MSG)
    work = roots().work
    for key in LOCAL_MODULES[short]:
        value = module_args.get(key)
        if value and not inside(str(value), roots().writable):
            return failed(ACCESS_MSG.format(work), path=str(value))
    if short in REMOTE_SRC_MODULES and module_args.get("remote_src") and module_args.get("src"):
        if not inside(str(module_args["src"]), roots().readable):
            return failed(ACCESS_MSG.format(work), path=str(module_args["src"]))
    if short in SRC_TREE_MODULES and module_args.get("src"):
        if not tree_inside(str(module_args["src"]), roots().readable):
            return failed(ACCESS_MSG.format(work), path=str(module_args["src"]))
    if short == "known_hosts" and not module_args.get("path"):
        if not inside("~/.ssh/known_hosts", roots().writable):
            return failed(ACCESS_MSG.format(work), path="~/.ssh/known_hosts")
    if short == "file" and str(module_args.get("state")) in ("link", "hard") and module_args.get("src"):
        if not inside(str(module_args["src"]), roots().readable):
            return failed(ACCESS_MSG.format(work), path=str(module_args["src"]))
    if short == "uri":
        scheme = urlparse(str(module_args.get("url", ""))).scheme
        if scheme not in URI_SCHEMES:
            return failed(f"{scheme} urls are not allowed from localhost. Only {URI_SCHEMES} are allowed")
    if short == "synchronize":
        return check_synchronize(module_args)
    return None


def check_synchronize(args: dict[str, Any]) -> dict[str, Any] | None:
    """Push needs a safe local src, pull a safe local dest; symlinks leaving the tree are not copied."""
    work = roots().work
    pull = str(args.get("mode", "push")) == "pull"
    opts = args.get("rsync_opts") or []
    if isinstance(opts, str):
        opts = [opts]
    args["rsync_opts"] = list(opts) + ["--safe-links"]
    if pull:
        dest = str(args.get("dest", ""))
        if ":" not in dest.split("/")[0] and not inside(dest, roots().writable):
            return failed(SYNC_MSG.format("to", work), path=dest)
    else:
        src = str(args.get("src", ""))
        if ":" not in src.split("/")[0] and not tree_inside(src, roots().readable):
            return failed(SYNC_MSG.format("from", work), path=src)
    return None


# -- installation --------------------------------------------------------------------------------


def _wrap(owner: Any, attr: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    original = getattr(owner, attr)
    wrapped = make(original)
    functools.update_wrapper(wrapped, original)
    setattr(owner, attr, wrapped)


def _guard_handler(handler: Any) -> None:
    run = handler.run

    def guarded_run(tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        refused = check_action(handler, task_vars or {})
        if refused is not None:
            return refused
        return run(tmp=tmp, task_vars=task_vars)

    handler.run = guarded_run


def install(jobdir: str, playbook_config_dir: str) -> None:
    """Wraps Ansible's choke points; call once, before Ansible loads any playbook."""
    global ROOTS
    ROOTS = Roots(jobdir, playbook_config_dir)

    import jinja2
    from ansible.executor.task_executor import TaskExecutor
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.action import ActionBase
    from ansible.plugins.loader import lookup_loader
    from ansible.plugins.lookup import LookupBase

    def handler_choice(original: Callable[..., Any]) -> Callable[..., Any]:
        def chosen(self: Any, templar: Any) -> Any:
            handler, module = original(self, templar)
            _guard_handler(handler)
            return handler, module
        return chosen

    _wrap(TaskExecutor, "_get_action_handler_with_module_context", handler_choice)

    def execute_module(original: Callable[..., Any]) -> Callable[..., Any]:
        def run(self: Any, module_name: str | None = None, module_args: dict[str, Any] | None = None,
                *args: Any, **kwargs: Any) -> Any:
            if is_local(self._connection):
                name = module_name or self._task.action
                refused = check_local_module(self, str(name), module_args if module_args is not None else self._task.args)
                if refused is not None:
                    return refused
            return original(self, module_name, module_args, *args, **kwargs)
        return run

    _wrap(ActionBase, "_execute_module", execute_module)

    def find_needle(original: Callable[..., Any]) -> Callable[..., Any]:
        def find(self: Any, dirname: str, needle: str) -> str:
            found = original(self, dirname, needle)
            if not tree_inside(found, roots().readable):
                raise access_error(found)
            return found
        return find

    _wrap(ActionBase, "_find_needle", find_needle)

    def loader_read(original: Callable[..., Any]) -> Callable[..., Any]:
        def read(self: Any, file_name: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(file_name, bytes):
                path = file_name.decode("utf-8", "surrogateescape")
            else:
                path = str(file_name)
            full = self.path_dwim(path)
            if not (inside(full, roots().loadable) or inside(full, roots().ansible_dir) and
                    os.path.dirname(os.path.realpath(full)) == roots().ansible_dir):
                raise access_error()
            return original(self, file_name, *args, **kwargs)
        return read

    _wrap(DataLoader, "_get_file_contents", loader_read)
    _wrap(DataLoader, "get_real_file", loader_read)

    def search_path(original: Callable[..., Any]) -> Callable[..., Any]:
        def find(self: Any, myvars: Any, subdir: str, needle: str, ignore_missing: bool = False) -> Any:
            found = original(self, myvars, subdir, needle, ignore_missing=ignore_missing)
            if found and not inside(str(found), roots().readable):
                raise access_error()
            return found
        return find

    _wrap(LookupBase, "find_file_in_search_path", search_path)

    def jinja_source(original: Callable[..., Any]) -> Callable[..., Any]:
        def get_source(self: Any, environment: Any, template: str) -> Any:
            source, filename, uptodate = original(self, environment, template)
            if filename and not inside(filename, roots().readable):
                raise access_error()
            return source, filename, uptodate
        return get_source

    _wrap(jinja2.FileSystemLoader, "get_source", jinja_source)

    original_get = lookup_loader.get

    def guarded_get(name: str, *args: Any, **kwargs: Any) -> Any:
        instance = original_get(name, *args, **kwargs)
        if instance is None:
            return None
        resolved = str(getattr(instance, "ansible_name", "") or name)
        short = short_name(resolved)
        path = getattr(instance, "_original_path", None)
        if short not in SAFE_LOOKUPS | PATH_LOOKUPS or "." in short or not inside(str(path or ""), (roots().ansible_pkg,)):
            raise AnsibleError(LOOKUP_MSG)
        return instance

    lookup_loader.get = guarded_get

    _guard_fetch_file()


def _guard_fetch_file() -> None:
    """What a remote host sends back (fetch, ...) must land in the work dir."""
    import importlib

    for module_name in ("ssh", "paramiko_ssh", "local", "winrm", "psrp"):
        try:
            module = importlib.import_module(f"ansible.plugins.connection.{module_name}")
        except Exception:  # noqa: BLE001 - optional dependencies (winrm, psrp) may be missing
            continue
        cls = getattr(module, "Connection", None)
        if cls is None or "fetch_file" not in vars(cls):
            continue

        def fetch(original: Callable[..., Any]) -> Callable[..., Any]:
            def guarded(self: Any, in_path: str, out_path: str, *args: Any, **kwargs: Any) -> Any:
                if not inside(out_path, roots().writable):
                    raise access_error(out_path)
                return original(self, in_path, out_path, *args, **kwargs)
            return guarded

        _wrap(cls, "fetch_file", fetch)
