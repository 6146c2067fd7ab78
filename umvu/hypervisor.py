"""The hypervisor: one session's tracer, mounts, modules and control channel.

It owns the decision made at every stop (``on_syscall``): the fast way out
when nothing virtual can be involved, else the dispatcher's handler.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Coroutine
from typing import IO, TYPE_CHECKING, Any

from umvu import arch, argcheck, bpf, calls, devices, identity, memory, mounts, syscalls
from umvu.calls.readwrite import disk_size
from umvu.fakeroot import Records
from umvu.fdtable import FdTable, OpenFile, kernel_offset
from umvu.paths import DeadDirs
from umvu.procfs import ProcView
from umvu.registry import Mount
from umvu.shadows import Shadows
from umvu.tracer import NR_POLL, NR_PPOLL, Tracee, Tracer

if TYPE_CHECKING:  # pluggy and entry points cost start-up time: imported on first use
    from umvu.modules import ModuleManager

# calls on a disk's own file that may run as they are (Hypervisor._disk_in_range)
_DISK_CALLS = frozenset({"read", "write"})
# families that reach the handlers with nothing virtual in the process: the view-changing calls, and
# the calls a module claimed (they stop only once claimed)
ALWAYS = syscalls.ALWAYS_TRACED | {"service"}
_REVOKED_CALLS = frozenset({"read", "readv", "write", "writev", "close"})


def _string(tid: int, addr: int) -> str:
    return os.fsdecode(memory.read_cstring(tid, addr))


def _reads_only(sc: syscalls.Syscall, regs: Any) -> bool:
    """Whether the call is an open that changes no tree (no copy-up: nothing written, created or
    truncated), so that the fast path's library may look in a layered mount's layers meanwhile
    (a pipeline's other processes)."""
    at = sc.arg_index("oflags")
    if sc.family != "open" or at is None:
        return False  # (creat; openat2's flags are in memory)
    flags = regs.args()[at]
    return not flags & (os.O_ACCMODE | os.O_CREAT | os.O_TRUNC | argcheck.O_TMPFILE_BIT)


def _now(ret: Any) -> Any:
    """Run a module method to its end here (a coroutine that does not suspend)."""
    if hasattr(ret, "send"):
        try:
            ret.send(None)
        except StopIteration as stop:
            return stop.value
        ret.close()
        raise OSError(errno.EIO, "the module's method would have to wait here")
    return ret


class Hypervisor:
    def __init__(self, debug: int = 0, logfile: IO[str] | None = None) -> None:
        self.debug = debug
        self.logfile = logfile or sys.stderr
        self.tracer = Tracer(self.on_syscall, self.log)
        self.tracer.debug_events = self.tracer.trace_everything = debug > 1
        self.tracer.release_file = self.release
        self.tracer.unmap_file = lambda of: self.tracer.detach(self.unmap(of), f"the write-back of {of.path}")
        self.registry = self.tracer.registry
        self._modules: ModuleManager | None = None
        self.tracer.on_event = self._process_event
        self.by_nr = syscalls.BY_NR
        self.proc = ProcView(self.tracer)
        self.identity = identity.Identities(self.tracer)
        self.fake: Records | None = None  # a fake root's records (umvu --fakeroot)
        # host directories listed with the device nodes mounted in them (registry.phantoms)
        self.phantom_dirs = Mount("/", devices.HostDirWithNodes(self.registry), "none", "host", "", "core")
        self.dead_dirs = Mount("/", DeadDirs(), "none", "none", "", "core")  # removed virtual cwds
        self.shadows = Shadows()
        # AF_UNIX names bound at a host name in place of the view's: host name -> the name given
        self.unix_names: dict[str, str] = {}
        self.mount_errors: dict[int, str] = {}  # tid -> why its last mount(2) failed (for vumount)
        self.caller = 0  # the tid whose mount(2) a module's vu_mount is serving
        self._listeners: dict[int, tuple[Any, bytes]] = {}
        # "socket:[INODE]" (as /proc names it) -> what takes the writes a process makes on it (vfs.Connect)
        self.sockets: dict[str, Callable[[bytes], int]] = {}
        # sockets a service handed out whose connect(2) may leave for the host's network when
        # their own has no route (ServiceCall.hand_fd's ``uplink``): socket inode -> the address
        # to reach on the host instead (None: none)
        self.uplinks: dict[int, Callable[[bytes], bytes | None]] = {}
        self.fast: Any = None  # umvu.fast.FastPath: the in-process fast path, when on

    def fast_path(self) -> None:
        """Turn the in-process fast path on for the processes to come (before spawn): they preload
        its library, and every filter lets its trampoline's calls pass (umvu.fast)."""
        from umvu import fast

        why = fast.available()
        if why is not None:
            raise OSError(errno.ENOEXEC, why)
        self.fast = fast.FastPath()
        bpf.DOOR = self.fast.door()
        Tracee.fast_sync = self.fast.sync
        FdTable.placing = self.fast.place_of
        FdTable.marked = self._fast_marked
        self.fast.guarded = lambda t: self.tracer.traces(bpf.CHANGES_BY_FD) and not t.proc.pending
        self.registry.on_change.append(self.publish_fast)
        self.publish_fast()

    def _fast_marked(self, tid: int, fd: int) -> bool:
        t = self.tracer.tracees.get(tid)
        return t is not None and self.fast is not None and self.fast.marked(t, fd)

    def publish_fast(self) -> None:
        """What the fast path may not touch, anew: the mount points; or nothing at all, when umvu
        answers for every path (a fake root's records, virtual ids judged by access())."""
        if self.fast is not None:
            off = self.fake is not None or self.registry.watching
            self.fast.publish(list(self.registry), off, self.registry.devices_claimed(), not self.tracer.paths_traced)
            if self.fast.layered:
                # the library opens a lower layer's files itself: what would change one through
                # its fd alone must reach the module (a copy-up), whichever fd it is (bpf)
                self.tracer.trace_calls(set(bpf.CHANGES_BY_FD))
            if self.fast.was_off:
                Tracee.fast_sync = None  # no page is read again: none is written

    @property
    def modules(self) -> ModuleManager:
        if self._modules is None:
            from umvu.modules import ModuleManager

            self._modules = ModuleManager(self)
        return self._modules

    def _process_event(self, what: str, pid: int, child: int, thread: bool) -> None:
        """Broadcast a process event to the modules that implement its hook (hookspecs.py)."""
        if self._modules is None or not self._modules.loaded:
            return
        hook = self._modules.pm.hook
        try:
            if what == "fork":
                hook.vu_process_fork(parent=pid, child=child, thread=thread)
            elif what == "exec":
                hook.vu_process_exec(pid=pid)
            else:
                hook.vu_process_exit(pid=pid)
        except Exception:
            import traceback

            self.log(f"a module's vu_process_{what} raised:\n{traceback.format_exc().rstrip()}")

    def log(self, message: str) -> None:
        try:
            self.logfile.write(f"umvu: {message}\n")
            self.logfile.flush()
        except (OSError, ValueError):
            pass

    # -- the hot path ----------------------------------------------------------------------
    def on_syscall(self, t: Tracee) -> Coroutine | None:
        regs = t.getregs()
        sc = self.by_nr.get(regs.nr)
        if self.tracer.stats is not None:
            self.tracer.stat_name = sc.name if sc is not None else f"syscall {regs.nr}"
        if sc is None:
            if t.proc.revoked and regs.nr in (NR_POLL, NR_PPOLL):  # see _revoked_poll
                self._revoked_poll(t, regs)
            if self.debug > 1:  # every call stops under -vv: this one is the kernel's alone
                from umvu.catalog import describe

                self.log(f"[{t.tid}] {describe(regs.nr, regs.args(), lambda a: _string(t.tid, a))} = (real)")
            t.cont()
            return None
        if t.proc.revoked and regs.rdi in t.proc.revoked and sc.name in _REVOKED_CALLS \
                and self._still_revoked(t, regs.rdi):
            if sc.name == "close":
                del t.proc.revoked[regs.rdi]
            else:  # an unmounted /dev/fuse: the daemon's loop ends
                regs.nr = -1
                regs.ret = -errno.ENODEV
                arch.setregs(t.tid, regs)
            t.cont()
            return None
        if self.sockets:
            if sc.name in calls.WRITE_CALLS:
                args = regs.args()
                fd = calls.s32(args[0])
                consumer = t.files.consumers.get(fd)
                if consumer is None and t.files.get(fd) is None:
                    consumer = calls.consumer_of(self, t.tid, fd)
                    if consumer is not None:
                        t.files.consumers[fd] = consumer
                if consumer is not None:  # a FUSE daemon's reply: the shortest way, no Call, no coroutine
                    self._consume(t, regs, args, sc.name, consumer)
                    return None
            elif sc.name in calls.FD_REPLACING and t.files.consumers:
                t.files.consumers.clear()  # another file may come to that number: ask /proc again
        if t.files and sc.name in _DISK_CALLS and self._disk_in_range(t, sc.name, regs):
            t.cont()  # the kernel moves the data, between the caller's buffer and the disk's file
            return None
        if not self.registry and not t.files and t.fs.plain and sc.family not in ALWAYS:
            if self.debug > 1:
                from umvu.catalog import describe

                self.log(f"[{t.tid}] {describe(regs.nr, regs.args(), lambda a: _string(t.tid, a))} "
                         "= (real: nothing virtual here)")
            t.cont()  # nothing virtual exists for this process: the kernel's call
            return None
        if self.fast is not None and self.fast.layered and sc.family in self.fast.CHANGING \
                and not _reads_only(sc, regs):
            return self.fast.changing(calls.serve(self, t, sc, regs))  # a layered mount's layers may change
        return calls.serve(self, t, sc, regs)

    def _consume(self, t: Tracee, regs: Any, args: Any, name: str, consumer: Callable[[bytes], int]) -> None:
        """A write on a socket with a consumer (vfs.Connect): the consumer's answer is the result."""
        try:
            ret = calls.consume_write(t.tid, consumer, name, args)
        except Exception:
            import traceback

            self.log(f"[{t.tid}] {name}: a module raised:\n{traceback.format_exc().rstrip()}")
            ret = -errno.EIO
        if self.debug:
            self.log(f"[{t.tid}] {name}({calls.s32(args[0])}, {args[1]:#x}, {args[2]}) = {ret}")
        regs.nr = -1
        regs.ret = ret
        try:
            arch.setregs(t.tid, regs)
        except OSError:
            return  # killed meanwhile: its exit is on the way
        t.cont()

    def _still_revoked(self, t: Tracee, fd: int) -> bool:
        """Whether ``fd`` still is the revoked socket (dup2, exec, close_range may have changed it)."""
        try:
            if os.readlink(f"/proc/{t.tid}/fd/{fd}") == t.proc.revoked[fd]:
                return True
        except OSError:
            pass
        del t.proc.revoked[fd]
        return False

    def _disk_in_range(self, t: Tracee, name: str, regs: Any) -> bool:
        """Whether a read(2) or write(2) of a disk whose placeholder is its file (OpenFile.passthrough)
        lies within the disk, from the fd's offset: then it runs as it is, decided here before any
        Call is made (the handler's checks, calls.readwrite._on_backing, for everything else: the
        end of the disk, a read-only disk, O_APPEND, counts of 0)."""
        of = t.files.get(calls.s32(regs.rdi))
        if of is None or of.passthrough is None:
            return False
        count = regs.rdx
        if not 0 < count <= calls.MAX_RW_COUNT:
            return False
        write = name == "write"
        if not (of.writable and not of.flags & os.O_APPEND if write else of.readable):
            return False
        size = disk_size(of, write)
        if size is None:
            return False
        try:
            pos = kernel_offset(t.tid, calls.s32(regs.rdi)) - of.base
        except OSError:
            return False
        return pos + count <= size

    def _revoked_poll(self, t: Tracee, regs: Any) -> None:
        """poll of one revoked fd says POLLERR at once, as the kernel's for an unmounted /dev/fuse.

        libfuse reads it so: "already unmounted", and does not try umount2 again.
        """
        import struct

        if regs.rsi != 1:
            return
        try:
            fd, events, _ = struct.unpack("<ihh", memory.read(t.tid, regs.rdi, 8))
            if fd not in t.proc.revoked or not self._still_revoked(t, fd):
                return
            memory.write(t.tid, regs.rdi, struct.pack("<ihh", fd, events, 0x008))  # POLLERR
        except OSError:
            return
        regs.nr = -1
        regs.ret = 1
        arch.setregs(t.tid, regs)

    def listener(self, kind: int) -> tuple[Any, bytes]:
        """A listening Unix socket of type ``kind`` and its abstract name (see vfs.Connect)."""
        if kind not in self._listeners:
            import socket

            sock = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
            name = b"\0umvu-" + os.urandom(12).hex().encode()
            sock.bind(name)
            sock.listen(64)
            sock.settimeout(2)
            self._listeners[kind] = (sock, name)
        return self._listeners[kind]

    # -- open files -----------------------------------------------------------------------
    def moved(self, old: str, new: str) -> None:
        """A name of a view was renamed (by a module, at a process's request): the virtual cwds
        and open files under it follow, as the kernel's references to their directories do (a
        rename made by the host, out of umvu's sight, is not seen).  Canonical paths."""
        def under(p: str | None) -> bool:
            return p is not None and (p == old or p.startswith(old + "/"))

        if self.fast is not None:
            self.fast.dirs_moved()  # running processes' pages hold cwds until their next stop

        views, tables = {}, {}
        for t in self.tracer.tracees.values():
            views[id(t.fs)], tables[id(t.files)] = t.fs, t.files
        for fs in views.values():
            if fs.cwd_virtual and under(fs.cwd):
                fs.cwd = new + fs.cwd[len(old):]  # type: ignore[index]
        for of in {id(of): of for files in tables.values() for of in files.fds.values()}.values():
            if of.mount is not None and under(of.path):
                of.path = new + of.path[len(old):]

    def removed(self, m: Mount, path: str, st: os.stat_result) -> None:
        """A directory of a view was removed (by a module, at a process's request): a process
        whose virtual cwd it was keeps it as the kernel keeps a dead directory (FsView.gone).
        Its "." stays a directory with nothing in it where the file system says removed
        directories still open (FileSystem.removed_dirs_open), else it is ENOENT."""
        dead = os.stat_result((st.st_mode, st.st_ino, st.st_dev, 0, *tuple(st)[4:]))
        if self.fast is not None:
            self.fast.dirs_moved()
        for t in self.tracer.tracees.values():
            if t.fs.cwd_virtual and t.fs.cwd == path and t.fs.gone is None:
                t.fs.gone = dead
                if m.fs.removed_dirs_open:
                    self.dead_dirs.fs.attrs[path] = dead

    def opened(self, of: OpenFile) -> None:
        pass

    def release(self, of: OpenFile) -> None:
        """The last fd (or map) of a virtual open file went away: tell its module (after the
        write-back of a shared writable map, which may have to wait for the module)."""
        if of.shadow is None:
            self._close(of)
            return

        async def written_then_closed() -> None:
            await self.write_back(of)
            self._close(of)

        self.tracer.detach(written_then_closed(), f"the write-back of {of.path}")

    def _close(self, of: OpenFile) -> None:
        if of.ready is not None:
            of.ready.close()
        if of.lockfile is not None:
            self.shadows.unlock_file(of.lockfile)
        try:
            _now(of.ops.close(of.handle))
        except Exception as e:
            self.log(f"{of.mount.module}: close of {of.path} failed: {e!r}")

    async def write_back(self, of: OpenFile) -> None:
        """What a shared writable map wrote into the private copy goes to the module."""
        if of.shadow is None:
            return
        try:
            with open(of.shadow, "rb") as f:
                offset = 0
                while data := f.read(1 << 20):
                    await calls.maybe(of.ops.write(of.handle, data, offset))
                    offset += len(data)
        except Exception as e:
            self.log(f"{of.mount.module}: writing back the map of {of.path} failed: {e!r}")

    async def unmap(self, of: OpenFile) -> None:
        """A shared writable map of ``of`` went: write back, drop the map's reference."""
        await self.write_back(of)
        of.refs -= 1
        if of.refs == 0:
            self.release(of)

    # -- the mount table -----------------------------------------------------------------------
    def serves(self, fstype: str) -> bool:
        """Whether a loaded module mounts ``fstype`` (else the kernel decides)."""
        return self._modules is not None and self.modules.serves(fstype)

    def autoload(self, fstype: str) -> bool:
        """Whether ``fstype`` is served, loading the module of that name if one is installed.

        The kernel loads a file system's module on the first mount of its
        type (request_module "fs-TYPE"); so does umvu.
        """
        if self.serves(fstype):
            return True
        fstype = fstype.partition(".")[0]  # fuse.sshfs: the fuse module
        if not fstype or "/" in fstype:
            return False
        from umvu.modules import ModuleError, available

        if fstype not in available() or (self._modules is not None and fstype in self.modules.loaded):
            return False
        try:
            self.modules.insmod(fstype)
        except ModuleError as e:
            self.log(f"loading module {fstype} for a mount: {e}")
            return False
        return self.serves(fstype)

    def mount(self, fstype: str, source: str, point: str, flags: int, data: str, phantom: bool = False) -> Mount:
        """mount(2) in the view; raises OSError with the errno mount(2) returns.  ``phantom``: the
        mount point does not exist (a device node's mount makes it: its directory lists it)."""
        generic, options = mounts.parse(flags, data)
        if flags & mounts.MS_REMOUNT:
            m = self.registry.at(point)
            if m is None:
                raise OSError(errno.EINVAL, f"{point} is not a mount point")
            m.flags = generic | ({"ro"} if getattr(m.fs, "readonly", False) else set())
            return m
        if flags & mounts.MS_BIND:
            options = ",".join(o for o in ("bind", options) if o)
            fstype = "vufs"
        if not self.serves(fstype):
            loaded = ", ".join(sorted(self.modules.filesystems())) if self._modules else ""
            raise OSError(errno.ENODEV, f"unknown file system type '{fstype}'"
                          + (f" (loaded modules mount: {loaded})" if loaded else " (no module loaded mounts it)"))
        name, fs = self.modules.mount_fs(fstype, source, point, options)
        shown = fs.fstype if type(fs).fstype != "vfs" and fs.fstype != "vfs" else fstype
        options = getattr(fs, "shown_options", options)  # fuse: user_id=...,group_id=..., not fd=
        if getattr(fs, "device_ro", None) is not None:  # a device's node: -o ro makes the device read-only
            fs.device_ro("ro" in generic)  # (writes EPERM, as blockdev --setro), not its node's mount
            generic = generic - {"ro"}
        m = Mount(point, fs, source or "none", shown, options, name, flags=generic,
                  extra={"hidden": True, "phantom": True} if phantom else {})
        if getattr(fs, "readonly", False):
            m.flags = m.flags | {"ro"}
        try:
            self.registry.add(m)
        except OSError:
            fs.unmount()  # what the module set up for it goes
            raise
        self.mounted_now(m)
        self.mounts_changed()
        return m

    def mount_users(self, m: Mount) -> tuple[int, int]:
        """(open files, processes with their cwd or root) inside mount ``m``.

        Open files count the real fds the module handed out too, while the fd
        still names what was handed out, and with the fast path, those its
        library opened in the mount (found by their host names).
        """
        files, cwds, seen, seen_tables = set(), 0, set(), set()
        opened_here = self.fast is not None and self.fast.rule_for(m)
        for t in self.tracer.tracees.values():
            if id(t.files) not in seen_tables:
                seen_tables.add(id(t.files))
                holds = getattr(m.fs, "holds", None)  # a device's mount: its files opened by any node
                files.update(id(of) for of in t.files.fds.values() if of.mount is m or holds and holds(of))
                for fd, (view, _host) in list(t.files.hosted.items()):
                    if self.registry.lookup(view) is m and t.files.view_of(t.tid, fd) is not None:
                        files.add((id(t.files), fd))
                if opened_here:
                    files.update((id(t.files), fd) for fd in self._placed_fds(t, m))
            if id(t.fs) not in seen:
                seen.add(id(t.fs))
                if t.fs.cwd_virtual and self.registry.lookup(t.fs.cwd) is m:
                    cwds += 1
                elif t.fs.root != "/" and self.registry.lookup(t.fs.root) is m:
                    cwds += 1
        return len(files), cwds

    def _placed_fds(self, t: Tracee, m: Mount) -> list[int]:
        """The fds of ``t`` that the fast path's library opened in ``m`` (umvu never saw them)."""
        try:
            names = os.listdir(f"/proc/{t.tid}/fd")
        except OSError:
            return []
        found = []
        for name in names:
            fd = int(name)
            if fd in t.files.fds or fd in t.files.hosted:
                continue
            try:
                view = self.fast.place_of(os.readlink(f"/proc/{t.tid}/fd/{fd}"), lambda fd=fd: self.fast.marked(t, fd))
            except OSError:
                continue
            if view is not None and self.registry.lookup(view) is m:
                found.append(fd)
        return found

    def umount(self, point: str, flags: int) -> None:
        mounts.check_umount_flags(flags)
        m = self.registry.at(point)
        if m is None or m.auto and m.extra.get("hidden"):  # a node a module made (/dev/fuse): no mount
            raise OSError(errno.EINVAL, f"{point} is not a mount point")
        # mounts that come and go with this one (a disk's partition nodes)
        companions = [c for p in getattr(m.fs, "companions", ()) if (c := self.registry.at(p)) is not None]
        if not flags & mounts.MNT_DETACH:
            for one in (m, *companions):
                files, cwds = self.mount_users(one)
                if files or cwds or self.registry.below(one.point) or one.fs.busy():
                    raise OSError(errno.EBUSY, "target is busy")
        elif flags & mounts.MNT_EXPIRE:
            raise OSError(errno.EAGAIN, "not expired")
        for inner in reversed(self.registry.below(point)) if flags & mounts.MNT_DETACH else ():
            self._drop(inner)
        for one in companions:
            self._drop(one)
        self._drop(m)

    def mounted_now(self, m: Mount) -> None:
        """A mount was made: a fake root loads the records it keeps with its files."""
        if self.fake is not None:
            path = m.fs.fakeroot_records()
            if path is not None:
                try:
                    self.fake.keep(m.id, path, m.dev)
                except (OSError, ValueError) as e:
                    self.log(f"cannot read the fakeroot records of {m.point}: {e}")

    def _drop(self, m: Mount) -> None:
        self.registry.remove(m.point)
        if self.fake is not None:
            try:
                self.fake.save_kept(m.id)  # a fake root's records of its files, kept with them
            except OSError as e:
                self.log(f"cannot keep the fakeroot records of {m.point}: {e.strerror}")
        if self._modules is not None:
            self.modules.forget_mount(m)
        try:
            ret = m.fs.unmount()
            if hasattr(ret, "send"):
                try:
                    ret.send(None)
                except StopIteration:
                    pass
        except Exception as e:
            self.log(f"{m.module}: unmount of {m.point} failed: {e!r}")

    # -- the control channel -------------------------------------------------------------------
    async def control(self, c: calls.Call) -> int:
        op, inaddr, inlen, outaddr, outlen = c.args[:5]
        if op == 2 and self.fast is not None:  # the fast path's library: its page is at inaddr
            try:
                self.fast.register(c.t, inaddr, outaddr, outlen)
            except OSError as e:
                return -(e.errno or errno.EINVAL)
            return 0
        if op != 1 or inlen > 1 << 20:
            return -errno.EINVAL
        import json

        from umvu.modules import ModuleError

        try:
            req = json.loads(memory.read(c.t.tid, inaddr, inlen))
            reply = self.serve_request(req, c.t)
        except ModuleError as e:
            reply = {"errno": e.errno, "error": str(e)}
        except OSError as e:
            if e.errno == errno.EFAULT:
                raise
            reply = {"errno": e.errno or errno.EIO, "error": e.strerror or str(e)}
        except (ValueError, KeyError, TypeError) as e:
            reply = {"errno": errno.EINVAL, "error": f"bad request: {e}"}
        data = json.dumps(reply).encode()
        if len(data) > outlen:
            return -errno.E2BIG
        c.write(outaddr, data)
        return len(data)

    def serve_request(self, req: dict[str, Any], t: Tracee) -> dict[str, Any]:
        op = req["op"]
        if op == "insmod":
            name = self.modules.insmod(req["name"], req.get("source"), req.get("path"))
            self.mounts_changed()
            return {"name": name}
        if op == "rmmod":
            self.modules.rmmod(req["name"])
            return {}
        if op == "lsmod":
            return {"modules": self.modules.lsmod() if self._modules else []}
        if op == "available":
            from umvu.modules import available

            return {"modules": sorted(available())}
        if op == "mount_error":
            return {"error": self.mount_errors.pop(t.tid, "")}
        if op == "mounts":
            from umvu.mounts import generic_options

            return {"mounts": [{"point": m.point, "source": m.source, "fstype": m.fstype, "flags": generic_options(m),
                                "options": m.options, "module": m.module} for m in self.registry]}
        if op == "become":  # vusu: the view is the authority on who a process is
            uid, gid = int(req["uid"]), int(req["gid"])
            groups = tuple(sorted({int(g) for g in req.get("groups", ())}))
            if not all(0 <= x < identity.NO_ID for x in (uid, gid, *groups)) or len(groups) > identity.NGROUPS_MAX:
                raise OSError(errno.EINVAL, "not a valid id")
            self.identity.give(t.proc, identity.Ids.of_user(uid, gid, groups))
            return {}
        from umvu.modules import ModuleError

        raise ModuleError(errno.EINVAL, f"unknown request '{op}'")

    def mounts_changed(self) -> None:
        """Path calls need not stop while nothing is mounted; once something is, they must."""
        if self.registry:
            self.trace_paths()

    def trace_paths(self) -> None:
        """Every path call stops from now on (Tracer.trace_paths); the fast path's library, which
        stood aside while none did (idle), takes the calls it can."""
        if not self.tracer.paths_traced:
            self.tracer.trace_paths()
            self.publish_fast()

    # -- running -------------------------------------------------------------------------------
    def preload(self, names: list[str]) -> None:
        for name in names:
            self.modules.insmod(name)

    def fake_root(self, state: str | None) -> None:
        """Every process is root, and what a root would change on a file is recorded (umvu.fakeroot)."""
        from umvu.calls import fake

        self.fake = Records()
        if state is not None and os.path.exists(state):
            self.fake.load(state)
        self.identity.activate()
        self.tracer.trace_calls(set(fake.FD_CALLS))
        self.tracer.view_stat = self._view_stat

    def _view_stat(self, st: os.stat_result) -> os.stat_result:
        if self.fake is None:
            return st
        mode, uid, gid, _rdev = self.fake.shown(st)
        return os.stat_result((mode, st.st_ino, st.st_dev, st.st_nlink, uid, gid, *tuple(st)[6:]))

    def run(self, argv: list[str]) -> int:
        self.tracer.spawn(argv)
        try:
            return self.tracer.run()
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """The session is over: unmount what is left (a cow mount's private upper goes), innermost first."""
        for m in sorted(self.registry, key=lambda m: m.point.count("/"), reverse=True):
            self._drop(m)
        if self.fast is not None:
            self.registry.on_change.remove(self.publish_fast)
            FdTable.placing = FdTable.marked = None
            self.fast.close()
