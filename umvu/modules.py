"""Loading, listing and removing modules (pluggy plugins).

Modules are looked up by name in the entry-point group ``umvu.modules`` (the
built-in ones and any installed package), or given as the source of a ``.py``
file (``vu_insmod ./mine.py`` sends the file's text, read in the caller's
own view, so a module file may itself live on a virtual mount).
"""

from __future__ import annotations

import errno
import os
import socket
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from umvu import devices, hookspecs, memory, syscalls
from umvu.registry import CallClaim, DeviceClaim, Mount
from umvu.vfs import CallService, Device, FileSystem

if TYPE_CHECKING:
    from umvu.hypervisor import Hypervisor

GROUP = "umvu.modules"
# CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
CLONE_NEW_ANY = 0x80 | 0x20000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
AT_SYSINFO_EHDR = 33


def available() -> dict[str, Any]:
    """Entry points of every installed module, by name."""
    from importlib.metadata import entry_points  # slow to import: only when modules are asked for

    return {ep.name: ep for ep in entry_points(group=GROUP)}


def covers(types: set[str], fstype: str) -> bool:
    """Whether ``fstype`` is one of ``types``; "fuse.*" covers every "fuse.NAME" (subtypes)."""
    return fstype in types or ("." in fstype and fstype.partition(".")[0] + ".*" in types)


class ModuleError(Exception):
    """A refusal to show to the user, with the errno the command exits with."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(message)
        self.errno = err


class ModuleContext:
    """A module's handle on the hypervisor."""

    def __init__(self, name: str, plugin: Any, hv: Hypervisor) -> None:
        self.name, self.plugin, self.hv = name, plugin, hv
        self.mounts: list[Mount] = []

    def mount(self, target: str, fs: FileSystem, source: str = "none", fstype: str | None = None,
              options: str = "", hidden: bool = False) -> Mount:
        """Mount ``fs`` at canonical path ``target`` for every process of the session.

        ``hidden``: not listed in /proc/PID/mounts (a device node such as /dev/fuse,
        which on Linux is a file of /dev, not a mount).
        """
        point = target.rstrip("/") or "/"
        extra: dict[str, Any] = {"hidden": True} if hidden else {}
        if not os.path.lexists(point):
            extra["phantom"] = True  # the listing of its host directory shows it (registry.phantoms)
        m = Mount(point, fs, source, fstype or fs.fstype, options, self.name, auto=True, extra=extra)
        self.hv.registry.add(m)
        self.hv.mounted_now(m)
        self.mounts.append(m)
        return m

    def claim_device(self, kind: str, major: int, minors: range, driver: Device) -> DeviceClaim:
        """Serve device numbers ``major``:``minors`` of ``kind`` ("c" char, "b" block) with
        ``driver`` (vfs.Device), until the module is removed; EBUSY if another module serves one."""
        claim = DeviceClaim(kind, major, minors, driver, self.name)
        self.hv.registry.claim_device(claim)
        return claim

    def claim_call(self, name: str, service: CallService) -> CallClaim:
        """Serve system call ``name`` (its choice column says ``nr``) with ``service``
        (vfs.CallService) in every process, until the module is removed; EBUSY if another
        module serves it, EINVAL for a call that is not chosen by number."""
        sc = syscalls.BY_NAME.get(name)
        if sc is None or sc.choice != "nr":
            raise OSError(errno.EINVAL, f"{name}: not a call a module may claim")
        claim = CallClaim("nr", name, service, self.name)
        self.hv.registry.claim_call(claim)
        self.hv.tracer.trace_calls({name})
        return claim

    def claim_family(self, family: int, service: CallService) -> CallClaim:
        """Serve socket(2) and socketpair(2) of address ``family`` with ``service``, until the
        module is removed; EBUSY if another module serves it.  AF_UNIX stays the kernel's (the
        core talks to processes through it)."""
        if family == socket.AF_UNIX or not 0 < family < 64:
            raise OSError(errno.EINVAL, f"address family {family} cannot be claimed")
        claim = CallClaim("family", family, service, self.name)
        self.hv.registry.claim_call(claim)
        self.hv.tracer.trace_calls({"socket", "socketpair"})
        return claim

    def claim_namespace(self, flag: int, unshare: Callable[[int], None]) -> CallClaim:
        """Keep a kind of namespace per process, named by its CLONE_NEW* ``flag``: unshare(2) with
        that flag calls ``unshare(pid)``, which gives process ``pid`` a copy of its state (see
        ``set_state``), with no privilege asked; the flags nobody claimed are the kernel's.  EBUSY
        if another module keeps it."""
        if flag & (flag - 1) or not flag & CLONE_NEW_ANY:
            raise OSError(errno.EINVAL, f"{flag:#x} is not one CLONE_NEW* flag")
        claim = CallClaim("namespace", flag, unshare, self.name)
        self.hv.registry.claim_call(claim)
        self.hv.tracer.trace_calls({"unshare"})
        return claim

    def driver(self, kind: str, rdev: int) -> Device | None:
        """The driver any module claimed device ``rdev`` of ``kind`` with (None: no module serves it)."""
        claim = self.hv.registry.device(kind, rdev)
        return claim.driver if claim is not None else None

    def mounted(self, target: str) -> bool:
        """Whether something is mounted at canonical path ``target`` (any module's, or a node)."""
        return self.hv.registry.at(target.rstrip("/") or "/") is not None

    def device_node(self, target: str, kind: str, rdev: int, mode: int = 0o600,
                    owner: tuple[int, int] = (0, 0)) -> Mount:
        """Put a device node at canonical path ``target`` (as udev makes one in /dev): its stat
        shows ``kind``, ``rdev``, ``mode`` and ``owner`` (uid, gid), which decide who may open
        it; opening it reaches the driver that claims ``rdev``."""
        return self.mount(target, devices.NodeFS(kind, rdev, mode, owner), source="udev", hidden=True)

    def publish_block(self, name: str, rdev: int | None, size: int = 0) -> None:
        """List block device ``name`` (number ``rdev``, ``size`` bytes) in /proc/partitions, or
        (``rdev`` None) no longer; its sysfs directories are the module's to mount."""
        if rdev is None:
            self.hv.proc.disks.pop(name, None)
        else:
            self.hv.proc.disks[name] = (rdev, size)

    def state(self, pid: int) -> Any:
        """This module's state for process ``pid`` (any of its threads), None if it has none."""
        proc = self.hv.tracer.process(pid)
        return proc.state.get(self.name) if proc is not None else None

    def show_net(self, pid: int, holder: int | None) -> None:
        """Process ``pid``'s /proc/PID/net (and /proc/net, /proc/self/net) shows the network of
        process ``holder`` (a stack's helper), inherited by its children; None: its own again."""
        proc = self.hv.tracer.process(pid)
        if proc is not None:
            proc.net_pid = holder

    def pids(self) -> set[int]:
        """The processes of the session now (their states: ``state``)."""
        return {t.proc.tgid for t in self.hv.tracer.tracees.values()}

    def set_state(self, pid: int, value: Any) -> None:
        """Keep ``value`` for process ``pid``: its children start with it (see vu_process_fork),
        exec keeps it, it goes with the process.  ESRCH if ``pid`` is not traced."""
        t = self.hv.tracer.tracees.get(pid)
        if t is None:
            raise OSError(errno.ESRCH, f"process {pid} is not traced")
        t.proc.state[self.name] = value

    def unmount(self, target: str) -> None:
        m = self.hv.registry.remove(target)
        if m in self.mounts:
            self.mounts.remove(m)

    def log(self, message: str) -> None:
        self.hv.log(f"{self.name}: {message}")

    @property
    def calling_pid(self) -> int:
        """The process whose call the core is serving now (0: none): a file system's view of a
        per-process state (``state``) reads it in its methods."""
        t = self.hv.tracer.current
        return t.proc.tgid if t is not None else 0

    def without_vdso(self, pid: int) -> None:
        """At ``vu_process_exec``: the new program gets no vDSO, so its clock calls are system
        calls (a time view's), as the kernel gives none when AT_SYSINFO_EHDR is 0."""
        t = self.hv.tracer.tracees.get(pid)
        if t is not None:
            memory.patch_auxv(t.tid, t.getregs().sp, {AT_SYSINFO_EHDR: 0})

    @property
    def caller(self) -> int:
        """The thread whose mount(2) ``vu_mount`` serves (0: none), to read its fds in /proc."""
        return self.hv.caller

    @property
    def tracer(self) -> Any:
        """The session's tracer: ``call_soon`` and ``revoke`` for modules with their own threads."""
        return self.hv.tracer


class ModuleManager:
    def __init__(self, hv: Hypervisor) -> None:
        self.hv = hv
        self.pm = pluggy.PluginManager("umvu")
        self.pm.add_hookspecs(hookspecs)
        self.loaded: dict[str, ModuleContext] = {}

    def _only(self, name: str, hook: str) -> Any:
        others = [p for n, p in self.pm.list_name_plugin() if n != name]
        return self.pm.subset_hook_caller(hook, remove_plugins=others)

    def insmod(self, name: str, source: str | None = None, path: str | None = None) -> str:
        if source is not None:
            mod = types.ModuleType(name)
            mod.__file__ = path
            try:
                exec(compile(source, path or name, "exec"), mod.__dict__)
            except Exception as e:
                raise ModuleError(errno.ENOEXEC, f"{path}: {type(e).__name__}: {e}") from None
            plugin = mod
        else:
            eps = available()
            if name not in eps:
                names = ", ".join(sorted(eps)) or "none"
                raise ModuleError(errno.ENOENT, f"unknown module '{name}'; available: {names}")
            plugin = eps[name].load()
        if name in self.loaded:
            raise ModuleError(errno.EEXIST, f"module '{name}' is already loaded")
        self.pm.register(plugin, name=name)
        ctx = ModuleContext(name, plugin, self.hv)
        self.loaded[name] = ctx
        try:
            self._only(name, "vu_module_load")(vu=ctx)
        except Exception as e:
            for m in list(ctx.mounts):
                self.hv.registry.remove(m.point)
            for d in self.hv.registry.devices(name):
                self.hv.registry.release_device(d)
            del self.loaded[name]
            self.pm.unregister(name=name)
            if isinstance(e, OSError):
                raise ModuleError(e.errno or errno.EIO, f"{name}: {e.strerror or e}") from None
            raise ModuleError(errno.EIO, f"{name}: {type(e).__name__}: {e}") from None
        return name

    def filesystems(self) -> set[str]:
        types: set[str] = set()
        for name in self.loaded:
            for answer in self._only(name, "vu_filesystems")():
                types.update(answer or ())
        return types

    def path_sources(self) -> set[str]:
        """File system types whose source is a directory (resolved in the caller's view)."""
        types: set[str] = set()
        for name in self.loaded:
            mod = self.loaded[name].plugin
            types.update(getattr(mod, "PATH_SOURCES", ()))
        return types

    def node_types(self) -> set[str]:
        """Types whose mount makes a device node at its target, which need not exist (vudev)."""
        types: set[str] = set()
        for ctx in self.loaded.values():
            types.update(getattr(ctx.plugin, "NODE_MOUNTS", ()))
        return types

    def serves(self, fstype: str) -> bool:
        return covers(self.filesystems(), fstype)

    def mount_fs(self, fstype: str, source: str, target: str, options: str) -> tuple[str, FileSystem]:
        """(module name, file system) for a mount(2); the module's OSError goes to the caller."""
        for name, ctx in self.loaded.items():
            if not covers(set().union(*(a or () for a in self._only(name, "vu_filesystems")())), fstype):
                continue
            try:
                fs = self._only(name, "vu_mount")(vu=ctx, fstype=fstype, source=source, target=target,
                                                   options=options)
            except OSError:
                raise
            except Exception as e:
                self.hv.log(f"{name}: mount raised {e!r}")
                raise OSError(errno.EIO, f"{name}: {type(e).__name__}: {e}") from None
            if fs is not None:
                return name, fs
        raise OSError(errno.ENODEV, f"unknown file system type '{fstype}'")

    def forget_mount(self, m: Mount) -> None:
        ctx = self.loaded.get(m.module)
        if ctx is not None and m in ctx.mounts:
            ctx.mounts.remove(m)

    def describe(self, name: str) -> str:
        return self._only(name, "vu_module_describe")() or ""

    def users(self, name: str) -> dict[str, int]:
        """What uses a module: its mounts, open files and cwds in its mounts."""
        mounts = [m for m in self.hv.registry if m.module == name]
        files, cwds = set(), 0
        seen_tables, seen_fs = set(), set()
        for t in self.hv.tracer.tracees.values():
            if id(t.files) not in seen_tables:
                seen_tables.add(id(t.files))
                files.update(id(of) for of in t.files.fds.values()
                             if of.mount.module == name or getattr(of.ops, "module", None) == name)
            if id(t.fs) not in seen_fs:
                seen_fs.add(id(t.fs))
                if t.fs.cwd_virtual and any(self.hv.registry.lookup(t.fs.cwd) is m for m in mounts):
                    cwds += 1
        return {"mounts": len(mounts), "user_mounts": sum(1 for m in mounts if not m.auto),
                "files": len(files), "cwds": cwds}

    def rmmod(self, name: str) -> None:
        ctx = self.loaded.get(name)
        if ctx is None:
            raise ModuleError(errno.ENOENT, f"module '{name}' is not loaded")
        u = self.users(name)
        busy = []
        if u["files"]:
            busy.append(f"{u['files']} open file(s)")
        if u["cwds"]:
            busy.append(f"{u['cwds']} process(es) with their cwd inside")
        if u["user_mounts"]:
            busy.append(f"{u['user_mounts']} mount(s) made with vumount")
        if busy:
            raise ModuleError(errno.EBUSY, f"module '{name}' is in use: {', '.join(busy)}")
        for m in list(ctx.mounts):
            ctx.unmount(m.point)
        for d in self.hv.registry.devices(name):
            self.hv.registry.release_device(d)
        for claim in self.hv.registry.calls(name):
            self.hv.registry.release_call(claim)
        for t in self.hv.tracer.tracees.values():
            t.proc.state.pop(name, None)
        try:
            self._only(name, "vu_module_unload")(vu=ctx)
        finally:
            del self.loaded[name]
            self.pm.unregister(name=name)

    def lsmod(self) -> list[dict[str, Any]]:
        rows = []
        for name in self.loaded:
            u = self.users(name)
            rows.append({"name": name, "description": self.describe(name),
                         "users": u["mounts"] + u["files"] + u["cwds"], **u})
        return rows
