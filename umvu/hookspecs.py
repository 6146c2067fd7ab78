"""The module contract: every hook a umvu module may implement.

A module is a Python module (or any object) registered with pluggy.  Built-in
and installed modules are found through the entry-point group
``umvu.modules``; ``vu_insmod path/to/file.py`` loads a file directly.

Hooks are for decisions made rarely: loading, unloading, choosing who mounts a
file system type.  Once a mount exists, the core calls its
:class:`umvu.vfs.FileSystem` object directly on every system call: no hook
runs on the hot path.

A minimal module (see modules/unreal.py for a whole one; import what a module needs from
``umvu.api``)::

    from umvu.api import FileSystem, hookimpl

    class HelloFS(FileSystem):
        ...

    @hookimpl
    def vu_module_describe():
        return "a file system that says hello"

    @hookimpl
    def vu_module_load(vu):
        vu.mount("/hello", HelloFS())

Every hook receiving ``vu`` gets a :class:`umvu.modules.ModuleContext`, the
module's handle on the hypervisor: ``mount`` and ``unmount`` (trees by path),
``claim_device`` and ``device_node`` (drivers by device number),
``claim_call`` and ``claim_family`` (services by call number and address
family), ``publish_block``, ``state`` and ``set_state`` (per-process state),
``mounted``, ``driver``, ``log``.  Claims and mounts go with the module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from umvu.modules import ModuleContext
    from umvu.vfs import FileSystem

hookspec = pluggy.HookspecMarker("umvu")
hookimpl = pluggy.HookimplMarker("umvu")


@hookspec(firstresult=True)
def vu_module_describe() -> str:
    """One line saying what the module gives, shown by ``vu_lsmod``.

    Asked of this module only.
    """


@hookspec
def vu_module_load(vu: ModuleContext) -> None:
    """The module was inserted (``vu_insmod``, ``umvu -o``).

    Asked of this module only.  Mounts made here with ``vu.mount`` belong to
    the module: ``vu_rmmod`` removes them.  Raising refuses the insertion;
    the message reaches the user.
    """


@hookspec
def vu_module_unload(vu: ModuleContext) -> None:
    """The module is being removed; nothing of it is in use any more.

    Asked of this module only, after its own mounts are gone.
    """


@hookspec(firstresult=True)
def vu_mount(vu: ModuleContext, fstype: str, source: str, target: str, options: str) -> FileSystem | None:
    """Return a FileSystem serving ``fstype`` mounted at ``target``, or None.

    Asked of every loaded module in turn; the first that answers serves the
    mount.  Raise ``OSError(EINVAL, ...)`` for bad options.  ``vu.caller`` is
    the thread making the mount(2) (its fds are in /proc/CALLER/fd).
    """


@hookspec
def vu_filesystems() -> list[str]:
    """The file system types this module can mount (for messages and ENODEV).

    "NAME.*" stands for every subtype (the fuse module: "fuse", "fuse.*").
    """


# -- process events: broadcast to every module that implements them -----------------------------
# They run in the hypervisor's loop, between stops: keep them short.  A module that keeps state per
# process uses ``vu.state(pid)`` / ``vu.set_state(pid, value)`` (the core carries it: a new process
# starts with its creator's value, the same object, which the module replaces here if the kernel
# would copy it; exec keeps it; it goes with the process), or its own table keyed by these events.
# An exception is logged; the session goes on.


@hookspec
def vu_process_fork(parent: int, child: int, thread: bool) -> None:
    """Process (or, ``thread``, thread) ``child`` was made by ``parent`` (fork, vfork, clone).

    ``child``'s state is its creator's already; called before the child runs a call that stops.
    """


@hookspec
def vu_process_exec(pid: int) -> None:
    """Process ``pid`` exec'd a new program (its state is kept, as the kernel keeps credentials
    and namespaces; a set-user-ID program is the identity module's to judge)."""


@hookspec
def vu_process_exit(pid: int) -> None:
    """Process ``pid`` is gone, its last thread ended (exit, kill, or an exec by another thread
    ended the others: they are not reported)."""
