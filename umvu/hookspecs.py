"""The module contract: every hook a umvu module may implement.

A module is a Python module (or any object) registered with pluggy.  Built-in
and installed modules are found through the entry-point group
``umvu.modules``; ``vu_insmod path/to/file.py`` loads a file directly.

Hooks are for decisions made rarely: loading, unloading, choosing who mounts a
file system type.  Once a mount exists, the core calls its
:class:`umvu.vfs.FileSystem` object directly on every system call: no hook
runs on the hot path.

A minimal module (see modules/unreal.py for a whole one)::

    from umvu.hookspecs import hookimpl
    from umvu.vfs import FileSystem

    class HelloFS(FileSystem):
        ...

    @hookimpl
    def vu_module_describe():
        return "a file system that says hello"

    @hookimpl
    def vu_module_load(vu):
        vu.mount("/hello", HelloFS())

Every hook receiving ``vu`` gets a :class:`umvu.modules.ModuleContext`, the
module's handle on the hypervisor (mount, unmount, log).
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

