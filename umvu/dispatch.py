"""The path every stopped system call walks, and the family handlers.

on_syscall() takes a seccomp stop: the table gives the call's shape; if
nothing virtual can be involved (no mounts, no virtual fds, a real cwd) the
tracee resumes at once.  Otherwise a handler coroutine runs for the call's
family: it decides who is responsible (the path, resolved in the caller's view,
looked up in the mount registry; or the fd in the fd table) and either lets
the kernel run the call (REAL, with a rewritten path when the caller's cwd or
dirfd is virtual) or serves it from the module and skips the kernel call,
returning the value in the same stop.

Errors are one mechanism: a handler (or a module under it) raises OSError and
the tracee gets -errno; any other exception is a bug, logged, and EIO.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import os
import signal as signal_mod
import socket
import stat as stat_mod
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from umvu import abi, arch, argcheck, bpf, creds, devices, ioctls, libc, memory, syscalls
from umvu.borrowed import Borrowed
from umvu.creds import MAY_READ, MAY_WRITE, current, permitted
from umvu.fdtable import OpenFile
from umvu.paths import RealWalkError, Resolved, resolve, seen_from
from umvu.registry import DeviceClaim, Mount
from umvu.syscalls import Syscall
from umvu.vfs import Connect, FileSystem

if TYPE_CHECKING:
    from umvu.hypervisor import Hypervisor
    from umvu.tracer import Tracee

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_EACCESS = 0x200
AT_SYMLINK_FOLLOW = 0x400
AT_NO_AUTOMOUNT = 0x800
AT_EMPTY_PATH = 0x1000
AT_STATX_SYNC_TYPE = 0x6000
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
MAX_RW_COUNT = 0x7FFFF000
NR_OPENAT = syscalls.BY_NAME["openat"].nr
NR_MMAP = syscalls.BY_NAME["mmap"].nr
NR_CLOSE = syscalls.BY_NAME["close"].nr
NR_SOCKET = 41  # not in the table: never stopped on
NR_PPOLL = 271
ERESTARTSYS, ERESTARTNOHAND = 512, 514  # the kernel's own: a signal ended the call, restart or EINTR
POLLIN, POLLOUT = 1, 4
NR_CONNECT = 42
PLACEHOLDER = b"/dev/null\0"
PATH_MAX = 4096

# What a call will do to the name it resolves: see FileSystem.host_path.
Intent = str | None | Callable[[os.stat_result | None], str | None]
WRITE_INTENTS = frozenset({"write", "create", "remove", "rename", "bind"})
# Families worth a host path (FileSystem.host_path): the kernel's work gives
# something umvu cannot (a real fd, an exec).  Handing it any other call costs
# a second stop (the rewritten argument is restored at the call's exit), while
# serving it from the module's own (host) calls takes one.
PASSTHROUGH_FAMILIES = frozenset({"open", "openat2", "exec", "hostonly", "sockaddr"})
# Families that may read the mount tables umvu writes under /proc.
SYNTHETIC_FAMILIES = frozenset({"open", "stat", "statx", "access"})


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


REAL = _Sentinel("REAL")  # let the kernel run the call
DONE = _Sentinel("DONE")  # the handler already resumed the tracee


def s32(v: int) -> int:
    return ctypes.c_int32(v & 0xFFFFFFFF).value


def s64(v: int) -> int:
    return ctypes.c_int64(v).value


async def maybe(value: Any) -> Any:
    """Modules may be sync or async: await only what needs it."""
    if hasattr(value, "__await__"):
        return await value
    return value


class _Answer(Exception):
    """The call's result, found in the middle of its checks (as the kernel returns early)."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


class Restart(Exception):
    """A signal ended a wait in the kernel (Call.wait_in_kernel): the call ends as the kernel's would."""


class Call:
    """One stopped system call being served."""

    def __init__(self, hv: Hypervisor, t: Tracee, sc: Syscall, regs: arch.Regs) -> None:
        self.hv = hv
        self.t = t
        self.sc = sc
        self.orig = regs.copy()  # as the tracee made it: restored after rewrites
        self._regs: arch.Regs | None = None  # what the kernel will see if we resume: see regs
        self.args = regs.args()
        self.rewritten = False
        self.strings: dict[int, str] = {}
        self._scratch = regs.sp - arch.RED_ZONE
        self.via: dict[int, Mount] = {}  # path arguments handed to a module's host path
        self.real: Resolved | None = None  # the last real path target() resolved
        self.handed: tuple[str, str] | None = None  # (view path, host path) given to the kernel
        self.oflags: int | None = None  # an open's flags when no argument holds them (openat2's struct)
        self.addr_host: str | None = None  # the name an AF_UNIX address was rewritten to
        # the chosen service of a call chosen by fd (syscalls.py, choice): its virtual open file
        # (None: a real fd a module handed out, for the calls its layer stops)
        self.of: OpenFile | None = None

    @property
    def regs(self) -> arch.Regs:
        """The registers the kernel will see if the call goes on: a copy of the caller's, made when
        first asked for (most calls are served, and need only the caller's)."""
        if self._regs is None:
            self._regs = self.orig.copy()
        return self._regs

    # -- arguments -------------------------------------------------------------------
    def arg(self, kind: str) -> int:
        i = self.sc.arg_index(kind)
        return 0 if i is None else self.args[i]

    def read_str(self, i: int) -> str:
        if i not in self.strings:
            self.strings[i] = os.fsdecode(memory.read_cstring(self.t.tid, self.args[i]))
        return self.strings[i]

    def write(self, addr: int, data: bytes) -> None:
        memory.write(self.t.tid, addr, data)

    def vfd(self, i: int = 0) -> OpenFile | None:
        return self.t.files.get(s32(self.args[i]))

    def open_flags(self) -> int:
        """The flags of the open this call is (openat2's from its struct, creat's its own)."""
        if self.oflags is not None:
            return self.oflags
        if self.sc.name == "creat":
            return os.O_CREAT | os.O_WRONLY | os.O_TRUNC
        return argcheck.effective_open_flags(self.arg("oflags"))

    def cwd(self) -> str:
        fs = self.t.fs
        if fs.cwd is None:
            try:
                fs.cwd = os.readlink(f"/proc/{self.t.tid}/cwd")
            except OSError:
                fs.cwd = "/"
        return fs.cwd

    def put_scratch(self, data: bytes) -> int:
        self._scratch = (self._scratch - len(data)) & ~15
        self.write(self._scratch, data)
        return self._scratch

    # -- who is responsible --------------------------------------------------------------
    def _follow(self, i: int) -> bool:
        kind = self.sc.args[i]
        if kind in ("path", "str"):
            return True
        if kind in ("lpath", "npath", "ubind"):
            return False
        if kind == "uaddr":
            return True
        if kind == "apath":
            return not self.arg("atflags") & AT_SYMLINK_NOFOLLOW
        if kind == "fpath":
            return bool(self.arg("atflags") & AT_SYMLINK_FOLLOW)
        if kind == "opath":
            fl = self.oflags if self.oflags is not None else argcheck.effective_open_flags(self.arg("oflags"))
            if fl & os.O_NOFOLLOW or (fl & os.O_CREAT and fl & os.O_EXCL):
                return False
            return True
        raise AssertionError(kind)

    def _rewrite(self, i: int, dirfd_i: int | None, path: str) -> None:
        """Make the kernel see canonical/host ``path`` in argument ``i``."""
        if self.sc.args[i] in syscalls.ADDR_KINDS:  # an AF_UNIX address, its length the next argument
            name = os.fsencode(path)
            if len(name) >= SUN_PATH_MAX:
                raise OSError(errno.ENAMETOOLONG, "the host's name of this socket does not fit an address")
            addr = struct.pack("<H", socket.AF_UNIX) + name + b"\0"
            self.regs.set_arg(i, self.put_scratch(addr))
            self.regs.set_arg(i + 1, len(addr))
            self.rewritten = True
            self.addr_host = path
            return
        self.regs.set_arg(i, self.put_scratch(os.fsencode(path) + b"\0"))
        if dirfd_i is not None:
            self.regs.set_arg(dirfd_i, AT_FDCWD)
        self.rewritten = True

    async def locate_name(self, i: int) -> Resolved:
        """Path argument ``i`` without its trailing slashes, the last component not followed."""
        saved_str, saved_sc = self.strings.get(i), self.sc
        self.strings[i] = self.read_str(i).rstrip("/") or "/"
        self.sc = dataclasses.replace(self.sc, args=tuple("lpath" if k == i else a for k, a in enumerate(self.sc.args)))
        try:
            return await self.locate(i)
        finally:
            self.sc = saved_sc
            if saved_str is None:
                self.strings.pop(i, None)
            else:
                self.strings[i] = saved_str

    async def locate(self, i: int) -> Resolved:
        """Resolve path argument ``i`` in the caller's view, real or virtual: no rewrite, no passthrough."""
        r = await self.target(i, None, locate=True)
        assert r is not None
        return r

    async def target(self, i: int | None = None, intent: Intent = "read", locate: bool = False) -> Resolved | None:
        """Resolve path argument ``i``; None when the kernel runs the call.

        None covers three cases: a real file (the kernel finds it by itself);
        a real file reached through a virtual cwd or dirfd, or in a chroot
        (the argument is rewritten to the canonical path, the dirfd to
        AT_FDCWD); a virtual file whose module gave a host path for
        ``intent`` (rewritten to it: passthrough, see FileSystem.host_path).
        ``intent`` None means the call must be served here.  ``intent`` may
        be a function of the lstat (None: no such name) when the call's
        effect depends on whether the name exists.
        """
        sc = self.sc
        if i is None:
            i = sc.path_args[0]
        dirfd_i = i - 1 if i > 0 and sc.args[i - 1] == "dirfd" else None
        dirfd = s32(self.args[dirfd_i]) if dirfd_i is not None else AT_FDCWD
        if self.args[i] == 0 and (dirfd != AT_FDCWD and sc.family == "utime" or sc.family in ("stat", "statx")
                                  and self.arg("atflags") & AT_EMPTY_PATH):
            # utimensat(fd, NULL), and since Linux 6.10 fstatat(fd, NULL, AT_EMPTY_PATH): the fd itself
            # (AT_FDCWD too: the cwd)
            path = ""
        else:
            path = self.read_str(i)
        t = self.t
        hv = self.hv
        confined = t.fs.root != "/" or locate
        fd_itself = False  # an empty path that names the dirfd's own file
        if not path:
            # "" names the dirfd with AT_EMPTY_PATH, and for readlinkat whenever there is one (LOOKUP_EMPTY)
            empty_ok = sc.args[i] in ("apath", "fpath") and self.arg("atflags") & AT_EMPTY_PATH \
                or sc.family == "readlink" and dirfd != AT_FDCWD or sc.family == "utime" and self.args[i] == 0
            if not empty_ok:
                raise OSError(errno.ENOENT, "empty path")
            if dirfd == AT_FDCWD:
                path, fd_itself = ".", True
            else:
                of = t.files.get(dirfd)
                if sc.family == "utime" and self.args[i] == 0 and (
                        of.flags & os.O_PATH if of is not None else
                        t.files.places and t.files.view_of(t.tid, dirfd) is not None
                        and _real_flags(t.tid, dirfd) & os.O_PATH):
                    raise OSError(errno.EBADF, "an O_PATH fd")  # do_utimes_fd: fdget, unlike a lookup from it
                if of is not None:
                    r = Resolved(of.path, of.mount, None)
                    r.of = of  # type: ignore[attr-defined]
                    return r
                if locate:
                    return await self._locate_fd(dirfd)
                if not t.files.places or t.files.view_of(t.tid, dirfd) is None:
                    return None
                path, fd_itself = ".", True  # a real fd a module handed out: the file it names in the view
        virtual_base = False
        opened = None
        real_dirfd = False
        if path[0] == "/":
            start = t.fs.root
        elif dirfd == AT_FDCWD:
            virtual_base = t.fs.cwd_virtual
            if not hv.registry and not virtual_base and not confined:
                return None
            start = self.cwd()
        else:
            of = t.files.get(dirfd)
            if of is not None:
                if not of.is_dir:
                    raise OSError(errno.ENOTDIR, "dirfd is not a directory")
                start, virtual_base = of.path, True
                # names under a host directory opened for its listing (phantom_dirs) are walked as ever
                opened = (of.mount, of.handle) if of.mount is not hv.phantom_dirs else None
            else:
                if not hv.registry and not confined:
                    return None
                try:
                    start = os.readlink(f"/proc/{t.tid}/fd/{dirfd}")
                except OSError:
                    raise OSError(errno.EBADF, "bad dirfd") from None
                if not start.startswith("/"):
                    raise OSError(errno.ENOTDIR, "dirfd is not a directory")  # path_init, before any name
                real_dirfd = not fd_itself  # whether it is a directory: asked only if umvu answers
                view = t.files.view_of(t.tid, dirfd, start) if t.files.places else None
                if view is not None:  # a real directory fd a module handed out
                    start, virtual_base = view, True
        if not hv.registry and not virtual_base and not confined:
            return None
        if len(path) >= PATH_MAX:
            raise OSError(errno.ENAMETOOLONG, "path too long")
        try:
            r = await resolve(hv.registry, start, path, self._follow(i), t.fs.root, self._magic, opened,
                              sc.args[i] in ("npath", "ubind"), itself=fd_itself)
        except RealWalkError:
            if (virtual_base and path[0] != "/") or confined:
                self._dirfd_is_dir(real_dirfd, dirfd)
                raise  # the kernel would look from the wrong place: answer here
            return None  # the kernel meets the same error and says it itself
        except OSError:
            self._dirfd_is_dir(real_dirfd, dirfd)
            raise
        if real_dirfd and (locate or r.mount is not None or r.crossed or confined or virtual_base):
            self._dirfd_is_dir(real_dirfd, dirfd)  # umvu answers, or rewrites: path_init's check first
        if locate:
            return r
        m = r.mount
        if m is None and sc.family in ("open", "openat2") and hv.registry.phantoms(r.path) \
                and not self.open_flags() & os.O_PATH and os.path.isdir(r.path):
            return Resolved(r.path, hv.phantom_dirs, r.st, True)  # its listing shows the nodes mounted in it
        if m is None and r.path.startswith("/proc/") and sc.family in SYNTHETIC_FAMILIES:
            m = hv.proc.synthetic(r.path)
            if m is not None:
                return Resolved(r.path, m, r.st, True)
        if m is not None:
            if callable(intent):
                intent = intent(r.st)
            if m.flags:
                if intent == "exec" and "noexec" in m.flags:
                    raise OSError(errno.EACCES, "mounted noexec")
                if intent in WRITE_INTENTS and m.readonly and not (intent in ("create", "bind") and r.st is not None):
                    raise OSError(errno.EROFS, "read-only file system")
            if intent is not None and sc.family in PASSTHROUGH_FAMILIES and not (
                    sc.family in ("open", "openat2") and r.st is not None and _claimed_device(hv, r.st)):
                host = await maybe(m.fs.host_path(m.inner(r.path), intent, r.st))
                if host is None and r.st is not None and stat_mod.S_ISFIFO(r.st.st_mode) \
                        and sc.family in ("open", "openat2"):
                    fl = self.oflags if self.oflags is not None else argcheck.effective_open_flags(self.arg("oflags"))
                    mask = {os.O_RDONLY: MAY_READ, os.O_WRONLY: MAY_WRITE}.get(fl & os.O_ACCMODE, MAY_READ | MAY_WRITE)
                    if not m.fs.open_permitted(r.st, mask):  # the kernel's check at an open it serves itself
                        raise OSError(errno.EACCES, "permission denied")
                    host = hv.shadows.fifo(m, r.st)  # a pipe, which no module is asked to open
                if host is not None:
                    self.handed = (r.path, host)
                    if path.endswith("/") and not host.endswith("/"):
                        host += "/"  # the kernel's trailing-slash rules (EISDIR, ENOTDIR) still apply
                    self._rewrite(i, dirfd_i, host)
                    self.via[i] = m
                    return None
            return r
        self.real = r
        if r.crossed or confined or (virtual_base and path[0] != "/"):
            self._rewrite(i, dirfd_i, r.path)
        return None

    def _dirfd_is_dir(self, real_dirfd: bool, dirfd: int) -> None:
        if real_dirfd and not os.path.isdir(f"/proc/{self.t.tid}/fd/{dirfd}"):
            raise OSError(errno.ENOTDIR, "dirfd is not a directory")

    async def _locate_fd(self, fd: int) -> Resolved:
        """A real fd's own file (an empty path with AT_EMPTY_PATH), with its attributes."""
        try:
            path = os.readlink(f"/proc/{self.t.tid}/fd/{fd}")
            st = os.stat(f"/proc/{self.t.tid}/fd/{fd}")
        except OSError:
            raise OSError(errno.EBADF, "bad fd") from None
        return Resolved(path, None, st)

    async def _magic(self, mount: Mount | None, path: str, st: os.stat_result | None) -> tuple[str, str] | None:
        """/proc's magic links answered for this process, wherever /proc is seen (a vufs bind too)."""
        host = path
        if mount is not None:
            host = await maybe(mount.fs.host_path(mount.inner(path), "read", st))
            if host is None:
                return None
        if not host.startswith("/proc/"):
            return None
        return self.hv.proc.magic(self.t, host)

    def mount_of(self, i: int, r: Resolved | None) -> Mount | None:
        """The mount behind path argument ``i``, passthrough included (None: real)."""
        return r.mount if r is not None else self.via.get(i)

    # -- ending the call ------------------------------------------------------------------
    async def run_real(self) -> None:
        t = self.t
        if not self.rewritten:
            t.cont()
            return
        if self.sc.family == "exec":
            # A successful exec replaces the registers, so nothing is restored; the
            # tracer must see the exec event itself.  A failed one leaves the
            # rewritten path register behind, which the caller does not read.
            arch.setregs(t.tid, self.regs)
            t.cont()
            return
        ret = await t.finish_syscall(self.regs)
        if ret >= 0 and self.handed is not None and self.sc.family in ("open", "openat2"):
            t.files.hand(ret, *self.handed)  # a real fd: remember where it is in the view
            m = self.via.get(self.sc.path_args[0])
            if m is not None:
                if self.hv.shadows.is_fifo(self.handed[1]):
                    # the session's FIFO carries the data; the file's attributes and xattrs are the module's
                    await self.add_layer(ret, bpf.STAND_IN_CALLS)
                elif m.fs.guard_handed(self.handed[1], m.readonly):
                    await self.add_layer(ret, bpf.METADATA_CALLS)  # fchmod & co. must not reach that file
        self.resume_with(ret)

    def skip(self, ret: int) -> None:
        """Skip the kernel's call: it returns ``ret`` (seccomp(2): nr = -1)."""
        r = self.orig
        r.nr = -1
        r.ret = ret
        arch.setregs(self.t.tid, r)
        self.t.cont()

    def resume_with(self, ret: int) -> None:
        """At an exit stop: restore the caller's registers, with ``ret``."""
        r = self.orig.copy()
        r.ret = ret
        arch.setregs(self.t.tid, r)
        self.t.cont()

    async def wait_in_kernel(self, fd: int, events: int) -> None:
        """Until the caller's own real ``fd`` is ready for ``events`` (POLLIN, POLLOUT): the caller
        waits in the kernel, a ppoll(2) in place of its call, as the real call would block there.

        A thread held in a ptrace stop is no candidate for a process-wide signal (the kernel
        gives it to another thread), so a wait served in the hypervisor would miss the signal
        meant to end it; in the kernel, it is found as it would be.  A signal raises Restart.
        The caller is then at a call's exit stop: ending the call restores its registers.
        """
        t = self.t
        pfd = self.put_scratch(struct.pack("<ihh", fd, events, 0))
        if t.at_entry:
            regs = self.orig.copy()
            regs.nr = NR_PPOLL
            for i, v in enumerate((pfd, 1, 0, 0, 8)):
                regs.set_arg(i, v)
            ret = await t.finish_syscall(regs)
        else:
            ret = await t.inject(NR_PPOLL, pfd, 1, 0, 0, 8)
        if ret in (-errno.EINTR, -ERESTARTSYS, -ERESTARTNOHAND):
            raise Restart()
        if ret < 0:
            raise OSError(-ret, os.strerror(-ret))

    def restart(self) -> None:
        """At an exit stop: end the call as the kernel ends a blocked call a signal came for
        (-ERESTARTSYS): run again if the signal's handler has SA_RESTART, else EINTR."""
        self.resume_with(-ERESTARTSYS)


    async def install_vfd(self, of: OpenFile, fd: int) -> None:
        """At an exit stop that made ``fd`` a placeholder: make it virtual."""
        t = self.t
        released = t.files.install(fd, of)
        if released is not None:
            self.hv.release(released)
        if fd not in t.proc.layers:
            await self.add_layer(fd)

    async def guard_copy(self, old: int, fd: int) -> None:
        """``fd`` is a copy of the guarded real fd ``old`` (dup, F_DUPFD): it names the same place of the
        view, and the same calls on it stop (bpf.METADATA_CALLS, STAND_IN_CALLS)."""
        t = self.t
        t.files.hosted[fd] = t.files.hosted[old]
        await self.add_layer(fd, t.proc.meta_layers[old])

    async def add_layer(self, fd: int, only: frozenset[str] | None = None, record: bool = True) -> None:
        """Stack a seccomp filter so that calls naming ``fd`` stop (``only``: just those calls).

        ``record``: remember it in the process (the fd table's layers, or the
        metadata ones), so that it is not stacked twice.
        """
        t = self.t
        if only is not None and record:
            if fd in t.proc.layers:  # every call on this fd stops already: what is guarded is all to keep
                t.proc.meta_layers[fd] = t.proc.meta_layers.get(fd, frozenset()) | only
                return
            only = only - t.proc.meta_layers.get(fd, frozenset())  # what earlier layers already stop
            if not only:
                return
        if not await t.stack_layer(bpf.fd_layer([fd], only=only), f"the fd filter for fd {fd}", self.hv.log):
            return
        if record and only is None:
            t.proc.layers.add(fd)
        elif record:
            t.proc.meta_layers[fd] = t.proc.meta_layers.get(fd, frozenset()) | only


Handler = Callable[[Call], Awaitable[Any]]
FAMILIES: dict[str, Handler] = {}


def family(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for n in names:
            FAMILIES[n] = fn
        return fn

    return register


def _fs_call(r: Resolved, method: str, *args: Any) -> Any:
    return maybe(getattr(r.mount.fs, method)(r.mount.inner(r.path), *args))


def _need(r: Resolved) -> os.stat_result:
    if r.st is None:
        raise OSError(errno.ENOENT, "no such file")
    return r.st


# -- open, close, dup ---------------------------------------------------------------------

def _open_intent(flags: int) -> Callable[[os.stat_result | None], str | None]:
    def intent(st: os.stat_result | None) -> str | None:
        if flags & os.O_PATH:
            return "read"
        if st is None:
            return "create" if flags & os.O_CREAT else None
        if flags & os.O_CREAT and flags & os.O_EXCL:
            return None  # EEXIST, said here
        return "write" if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC else "read"

    return intent


@family("open")
async def fam_open(c: Call) -> Any:
    """The module opens the file; the caller gets a placeholder fd the kernel allocates, or, for a module
    whose files are host files (vufs), the real file: its I/O then never stops."""
    if c.sc.name == "creat":
        flags, mode = os.O_CREAT | os.O_WRONLY | os.O_TRUNC, c.args[1]
    else:
        flags, mode = s32(c.arg("oflags")), c.arg("mode")
    return await _open(c, argcheck.effective_open_flags(flags), mode)  # unknown bits dropped; O_PATH drops most


async def _open(c: Call, flags: int, mode: int) -> Any:
    # Without O_CREAT the mode register is whatever the caller left there; the
    # kernel keeps only the permission bits either way.
    mode &= 0o7777
    acc = flags & os.O_ACCMODE
    if flags & os.O_CREAT and not flags & os.O_PATH and c.read_str(c.sc.path_args[0]).endswith("/") \
            and (c.hv.registry or not c.t.fs.plain):
        await c.locate_name(c.sc.path_args[0])  # open_last_lookups: the parent is walked first
        raise OSError(errno.EISDIR, "O_CREAT with a trailing slash")
    r = await c.target(intent=_open_intent(flags))
    if r is None:
        return REAL
    st = r.st
    if st is None:
        if not flags & os.O_CREAT:
            raise OSError(errno.ENOENT, "no such file")
        if c.read_str(c.sc.path_args[0]).endswith("/"):
            raise OSError(errno.EISDIR, "is a directory")
        mode &= ~c.t.fs.umask
    else:
        tmpfile = flags & argcheck.O_TMPFILE_BIT  # an unnamed file in the directory named
        if tmpfile and not stat_mod.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, "O_TMPFILE in what is not a directory")
        if flags & os.O_CREAT and flags & os.O_EXCL:
            raise OSError(errno.EEXIST, "exists")
        if flags & os.O_DIRECTORY and not stat_mod.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, "not a directory")  # do_open, before may_open's ELOOP
        if stat_mod.S_ISLNK(st.st_mode) and not flags & os.O_PATH:
            raise OSError(errno.ELOOP, "is a symlink (O_NOFOLLOW)")
        if tmpfile:
            mode &= ~c.t.fs.umask
        elif stat_mod.S_ISDIR(st.st_mode) and (acc != os.O_RDONLY or flags & (os.O_CREAT | os.O_TRUNC)) \
                and not flags & os.O_PATH:
            raise OSError(errno.EISDIR, "is a directory")  # may_open: O_TRUNC asks for write access too
    claim = _device_of(c, r.mount, st) if st is not None and not flags & os.O_PATH else None
    if claim is not None:  # the driver's file operations, the node's attributes (devices.DeviceFile)
        mask = {os.O_RDONLY: MAY_READ, os.O_WRONLY: MAY_WRITE}.get(acc, MAY_READ | MAY_WRITE)
        if not r.mount.fs.open_permitted(st, mask):  # type: ignore[arg-type]
            raise OSError(errno.EACCES, "permission denied")  # may_open, before the driver's open
        fs = devices.DeviceFile(claim.driver, r.mount.fs, r.mount.inner(r.path), st.st_mode,  # type: ignore[union-attr]
                                claim.module)
        handle = await maybe(claim.driver.open(st.st_rdev, flags & ~os.O_CLOEXEC))  # type: ignore[union-attr]
    else:
        fs = r.mount.fs
        handle = await maybe(fs.open(r.mount.inner(r.path), flags & ~os.O_CLOEXEC, mode))
    if isinstance(handle, Connect):
        return await _hand_socket(c, handle, flags)
    # st None: this open made a regular file (asking its type again would be a lookup the kernel
    # does not make, which may be refused by then); so did O_TMPFILE
    of = OpenFile(r.mount, handle, r.path, flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_CLOEXEC | os.O_NOCTTY
                                                     | argcheck.O_TMPFILE),
                  st is not None and stat_mod.S_ISDIR(st.st_mode) and not flags & argcheck.O_TMPFILE_BIT, ops=fs)
    of.named = not flags & argcheck.O_TMPFILE_BIT
    # Let the kernel allocate the number: open a placeholder in place of the call.
    try:
        regs = c.regs
        regs.nr = NR_OPENAT
        regs.set_arg(0, AT_FDCWD)
        regs.set_arg(1, c.put_scratch(PLACEHOLDER))
        regs.set_arg(2, os.O_RDONLY | (flags & os.O_CLOEXEC))  # pollable: always ready, as a file
        regs.set_arg(3, 0)
        fd = await c.t.finish_syscall(regs)
    except BaseException:  # the caller vanished (or was woken): nobody else will close what the module opened
        c.hv.release(of)
        raise
    if fd < 0:
        await maybe(fs.close(handle))
        c.resume_with(fd)
        return DONE
    c.hv.opened(of)
    await c.install_vfd(of, fd)  # from here the fd table holds it: its going releases it
    c.resume_with(fd)
    c.result = fd  # type: ignore[attr-defined]
    return DONE


def _claimed_device(hv: Hypervisor, st: os.stat_result) -> bool:
    """Whether ``st`` is a char or block node whose number a module's driver serves (then an
    open of it is never handed to the kernel: the host has no such driver)."""
    kind = "c" if stat_mod.S_ISCHR(st.st_mode) else "b" if stat_mod.S_ISBLK(st.st_mode) else None
    return kind is not None and hv.registry.device(kind, st.st_rdev) is not None


def _device_of(c: Call, m: Mount, st: os.stat_result) -> DeviceClaim | None:
    """The driver claim for a char or block node of a view, if a module claims its number (else
    the node's file system opens it, as a host-backed tree opens the host's device).  A nodev
    mount opens no device node (may_open: EACCES)."""
    if not (stat_mod.S_ISCHR(st.st_mode) or stat_mod.S_ISBLK(st.st_mode)):
        return None
    if "nodev" in m.flags:
        raise OSError(errno.EACCES, "device nodes are not opened on a nodev mount")
    return c.hv.registry.device("c" if stat_mod.S_ISCHR(st.st_mode) else "b", st.st_rdev)


async def _hand_socket(c: Call, want: Connect, flags: int) -> Any:
    """The open becomes socket(2) plus connect(2) to the hypervisor (see vfs.Connect)."""
    t = c.t
    regs = c.regs
    regs.nr = NR_SOCKET
    regs.set_arg(0, socket.AF_UNIX)
    regs.set_arg(1, want.kind | (socket.SOCK_CLOEXEC if flags & os.O_CLOEXEC else 0)
                 | (socket.SOCK_NONBLOCK if flags & os.O_NONBLOCK else 0))
    regs.set_arg(2, 0)
    fd = await t.finish_syscall(regs)
    if fd < 0:
        c.resume_with(fd)
        return DONE
    listener, name = c.hv.listener(want.kind)
    addr = struct.pack("<H", socket.AF_UNIX) + name
    [at] = t.scratch(t.getregs(), addr)
    ret = await t.inject(NR_CONNECT, fd, at, len(addr))
    ours = None
    if ret == 0:
        try:
            ours, _ = listener.accept()
            pid = struct.unpack("<iII", ours.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
            if pid != t.proc.tgid:  # someone else on the host found the name: not ours to serve
                ours.close()
                ours, ret = None, -errno.EAGAIN
        except OSError as e:
            ret = -(e.errno or errno.EIO)
    if ours is None:
        await t.inject(NR_CLOSE, fd)
        c.resume_with(ret if ret < 0 else -errno.EIO)
        return DONE
    try:
        inode = os.stat(f"/proc/{t.tid}/fd/{fd}").st_ino
    except OSError:
        ours.close()
        raise OSError(errno.ESRCH, "the caller vanished") from None
    consumer = want.connected(ours, inode)
    if consumer is not None:
        c.hv.sockets[f"socket:[{inode}]"] = consumer
        t.files.consumers[fd] = consumer
        await c.add_layer(fd, only=WRITE_CALLS | FD_REPLACING, record=False)
    c.resume_with(fd)
    c.result = fd  # type: ignore[attr-defined]
    return DONE


@family("openat2")
async def fam_openat2(c: Call) -> Any:
    """As openat; with RESOLVE_ flags, on a real path only (a file only a module holds: ENOSYS)."""
    flags, mode, how = argcheck.OPEN_HOW.unpack(memory.read(c.t.tid, c.args[2], 24))  # checked (argcheck)
    c.oflags = flags
    if not how:
        return await _open(c, flags, mode)
    # RESOLVE_* flags name the dirfd, which a rewrite loses: they go to the kernel on real paths only.
    r = await c.target(intent=None)
    if r is None:
        return REAL
    raise OSError(errno.ENOSYS, "openat2 with RESOLVE_ flags on a virtual path: umvu does not resolve them yet")


@family("close")
async def fam_close(c: Call) -> Any:
    """As the kernel's close: the fd goes first, then the file is flushed (its error is close's),
    then, if that was the last fd, released (RELEASE after FLUSH's answer)."""
    of = c.vfd(0)
    released = c.t.files.remove(s32(c.args[0]))
    if of is None or of.flags & os.O_PATH or of.is_dir or type(of.ops).flush is FileSystem.flush:
        if released is not None:  # nothing to flush: no stop at the call's exit
            c.hv.release(released)
        return REAL  # the kernel closes the placeholder
    failed = None
    try:
        ret = await c.t.finish_syscall()  # the placeholder's number is free from here, as in the kernel
        try:
            await maybe(of.ops.flush(of.handle))
        except OSError as e:
            failed = e
        except Exception as e:  # a module's bug: logged, and the fd is still closed
            c.hv.log(f"{of.mount.module}: flush of {of.path} failed: {e!r}")
            failed = OSError(errno.EIO, "flush failed")
    finally:  # even if the caller died meanwhile: the open file must be released
        if released is not None:
            c.hv.release(released)
    c.resume_with(ret if failed is None else -(failed.errno or errno.EIO))
    return DONE


@family("close_range")
async def fam_close_range(c: Call) -> Any:
    """The virtual fds in the range are released (their modules' close); the kernel closes the placeholders."""
    first, last, flags = c.args[0] & 0xFFFFFFFF, c.args[1] & 0xFFFFFFFF, c.args[2]
    files = c.t.files
    if files and not flags & 4:  # CLOSE_RANGE_CLOEXEC: the kernel marks, exec decides
        if flags & 2 and files.users > 1:  # CLOSE_RANGE_UNSHARE
            shared = files
            c.t.files = files = shared.copy()
            files.users = 1
            shared.users -= 1
        for fd in [fd for fd in files.fds if first <= fd <= last]:
            released = files.remove(fd)
            if released is not None:
                c.hv.release(released)
    return REAL


@family("dup")
async def fam_dup(c: Call) -> Any:
    """The new fd shares the virtual open file (its offset, its flags); the kernel allocates the number."""
    of = c.vfd(0)
    two = c.sc.name != "dup"
    newfd = s32(c.args[1]) if two else -1
    old = s32(c.args[0])
    guarded = of is None and old in c.t.proc.meta_layers and c.t.files.view_of(c.t.tid, old) is not None
    if of is None and not guarded and not (two and c.t.files.get(newfd)):
        return REAL
    if two and newfd == old:
        return REAL
    fd = await c.t.finish_syscall()
    if fd >= 0:
        if of is None:
            released = c.t.files.remove(fd)  # a real fd replaced a virtual one
            if released is not None:
                c.hv.release(released)
            if guarded:
                await c.guard_copy(old, fd)
        else:
            await c.install_vfd(of, fd)
    c.resume_with(fd)
    return DONE


F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW = 0, 1, 2, 3, 4, 5, 6, 7
F_DUPFD_CLOEXEC = 1030
F_DUPFD_QUERY = 1027  # Linux 6.10: whether two fds share a description (the placeholders answer)
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
SETFL_MASK = os.O_APPEND | os.O_NONBLOCK | os.O_DIRECT | os.O_NOATIME | 0o20000  # O_ASYNC


@family("fcntl")
async def fam_fcntl(c: Call) -> Any:
    """Status flags and record locks are the open file's (the module's lock, for modules that hold host fds);
    F_DUPFD shares it; F_GETFD and F_SETFD run on the placeholder, with no stop."""
    of = c.vfd(0)
    cmd = s32(c.args[1])
    if of is None:
        old = s32(c.args[0])
        if cmd not in (F_DUPFD, F_DUPFD_CLOEXEC) or old not in c.t.proc.meta_layers \
                or c.t.files.view_of(c.t.tid, old) is None:
            return REAL
        fd = await c.t.finish_syscall()  # a copy of a guarded real fd: guarded too
        if fd >= 0:
            await c.guard_copy(old, fd)
        c.resume_with(fd)
        return DONE
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        fd = await c.t.finish_syscall()
        if fd >= 0:
            await c.install_vfd(of, fd)
        c.resume_with(fd)
        return DONE
    if cmd == F_GETFL:
        return of.flags | (0o100000 if of.flags & os.O_PATH == 0 else 0)  # O_LARGEFILE, as the kernel shows
    if cmd == F_SETFL:
        of.flags = (of.flags & ~SETFL_MASK) | (c.args[2] & SETFL_MASK)
        return 0
    if cmd in (F_GETLK, F_OFD_GETLK, F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW):
        return await _record_lock(c, of, cmd)
    return REAL  # the rest act on the placeholder (F_GETFD/F_SETFD do not even stop: bpf.NATIVE_ON_PLACEHOLDER)


async def _record_lock(c: Call, of: OpenFile, cmd: int) -> int:
    """fcntl record locks on a virtual fd: the module's ``lock`` decides (see vfs.HostFdLocks)."""
    l_type, whence, start, length, _pid = abi.FLOCK.unpack(memory.read(c.t.tid, c.args[2], abi.FLOCK.size))
    if l_type not in (0, 1, 2):  # F_RDLCK, F_WRLCK, F_UNLCK
        raise OSError(errno.EINVAL, "bad lock type")
    if l_type == 0 and not of.readable or l_type == 1 and not of.writable:
        raise OSError(errno.EBADF, "the fd's access mode does not allow this lock")
    if whence == os.SEEK_CUR:
        start, whence = start + of.offset, os.SEEK_SET
    elif whence == os.SEEK_END:
        start, whence = start + (await maybe(of.ops.fstat(of.handle))).st_size, os.SEEK_SET
    elif whence != os.SEEK_SET:
        raise OSError(errno.EINVAL, "bad whence")
    if start < 0:
        raise OSError(errno.EINVAL, "negative start")
    get = cmd in (F_GETLK, F_OFD_GETLK)
    wait = cmd in (F_SETLKW, F_OFD_SETLKW)
    got = await maybe(of.ops.lock(of.handle, "get" if get else "wait" if wait else "set", l_type, start, length))
    if get:
        c.write(c.args[2], abi.FLOCK.pack(*(got or (2, 0, start, length, 0))))
    return 0


@family("flock")
async def fam_flock(c: Call) -> Any:
    """The module's flock (enforced by modules whose files are host fds)."""
    of = _chosen(c)
    op = s32(c.args[1])  # checked already (argcheck)
    if op & ~4 != 8 and not (of.readable or of.writable):  # open with the access mode 3
        raise OSError(errno.EBADF, "neither open for reading nor for writing")
    await maybe(of.ops.flock(of.handle, op))
    return 0


# -- I/O ---------------------------------------------------------------------------------

RWF_SUPPORTED = 0x1FF  # RWF_HIPRI ... RWF_NOSIGNAL: preadv2 and pwritev2 refuse other bits (EOPNOTSUPP)
RWF_ATOMIC, RWF_NOWAIT, RWF_APPEND, RWF_NOAPPEND = 0x40, 0x08, 0x10, 0x20


def _rw_args(c: Call, of: OpenFile, write: bool) -> tuple[list[tuple[int, int]], int | None]:
    """A read or write family call's buffers and explicit offset (None: the file's), its arguments
    checked in the kernel's order: a negative offset (before the fd is even looked at), the fd's
    access mode, the buffers (access_ok, import_iovec), the range, then preadv2's flags."""
    name = c.sc.name
    off = None
    if name in ("pread64", "pwrite64", "preadv", "pwritev") or name in ("preadv2", "pwritev2") \
            and s64(c.args[3]) != -1:
        off = s64(c.args[3])  # negative: EINVAL already (argcheck)
    if not (of.writable if write else of.readable):
        raise OSError(errno.EBADF, f"not open for {'writing' if write else 'reading'}")
    if name in ("read", "write", "pread64", "pwrite64"):
        buf, count = c.args[1], c.args[2]
        if not memory.access_ok(buf, count):
            raise OSError(errno.EFAULT, "the buffer is outside the address space")
        if count > memory.SSIZE_MAX:
            raise OSError(errno.EINVAL, "count past SSIZE_MAX")
        bufs = [(buf, min(count, MAX_RW_COUNT))]
    else:
        bufs = memory.read_iovec(c.t.tid, c.args[1], c.args[2] & 0xFFFFFFFF)  # import_iovec: unsigned int
        if not any(n for _b, n in bufs):
            raise _Answer(0)  # vfs_readv, vfs_writev: nothing to move is 0, before anything else
    if off is not None and off + sum(n for _b, n in bufs) > memory.SSIZE_MAX:
        raise OSError(errno.EINVAL, "the range passes the largest offset")
    rwf = c.args[5] & 0xFFFFFFFF if name in ("preadv2", "pwritev2") else 0
    if rwf & ~RWF_SUPPORTED:  # kiocb_set_rw_flags, in its order
        raise OSError(errno.EOPNOTSUPP, "unknown RWF_ flags")
    if rwf & RWF_APPEND and rwf & RWF_NOAPPEND:
        raise OSError(errno.EINVAL, "RWF_APPEND with RWF_NOAPPEND")
    if rwf & (RWF_ATOMIC | (RWF_NOWAIT if write else 0)):
        # RWF_ATOMIC no file of a view takes; RWF_NOWAIT writes neither ext4 nor FUSE take buffered
        raise OSError(errno.EOPNOTSUPP, "RWF_ATOMIC, or RWF_NOWAIT on a write")
    return bufs, off


@family("read")
async def fam_read(c: Call) -> Any:
    """The module reads at the fd's offset (or pread's), into the caller's buffers; a buffer that
    faults part way ends the read there, with what was copied (EFAULT if nothing was)."""
    of = _chosen(c)
    bufs, off = _rw_args(c, of, write=False)
    if of.is_dir:
        raise OSError(errno.EISDIR, "is a directory")
    total = sum(n for _, n in bufs)
    pos = of.offset if off is None else off
    data = await maybe(of.ops.read(of.handle, total, pos)) if total else b""
    done = 0
    for addr, n in bufs:
        if done >= len(data):
            break
        piece = data[done : done + n]
        if not piece:
            continue  # a zero-length buffer
        copied = memory.write_some(c.t.tid, addr, piece)
        done += copied
        if copied < len(piece):
            if not done:
                raise OSError(errno.EFAULT, "bad buffer")
            break
    if off is None:
        of.offset += done
    return done


WRITE_CALLS = frozenset({"write", "writev"})
# The calls that can put another file at an open fd's number (with exec, which unshares the table).
FD_REPLACING = frozenset({"close", "dup2", "dup3", "close_range"})


def consumer_of(hv: Hypervisor, tid: int, fd: int) -> Callable[[bytes], int] | None:
    """What takes the writes on ``fd``, if it is a socket handed out with a consumer (vfs.Connect).

    /proc names a socket "socket:[INODE]", and only sockets (their inodes are on sockfs) are
    named so: the name alone tells the socket, one readlink (a stat and its device cost twice).
    """
    try:
        return hv.sockets.get(os.readlink(f"/proc/{tid}/fd/{fd}"))
    except OSError:
        return None


def written(tid: int, name: str, args: list[int] | tuple[int, ...]) -> bytes:
    """The bytes a write(2) or writev(2) to a consumer socket (vfs.Connect) hands over, whole or EFAULT."""
    if name in ("write", "pwrite64"):
        return memory.read(tid, args[1], min(args[2], MAX_RW_COUNT))
    return memory.read_gathered(tid, args[1], s32(args[2]))


def _gather(tid: int, bufs: list[tuple[int, int]]) -> bytes:
    """What the caller's buffers hold, up to the first byte that faults (EFAULT if that is the first)."""
    out = []
    for addr, n in bufs:
        piece = memory.read_some(tid, addr, n)
        out.append(piece)
        if len(piece) < n:
            break
    data = b"".join(out)
    if not data and any(n for _a, n in bufs):
        raise OSError(errno.EFAULT, "bad buffer")
    return data


def consume_write(tid: int, consumer: Callable[[bytes], int], name: str, args: list[int]) -> int:
    """Hand a write(2)/writev(2)'s bytes to ``consumer``: the call's result, or -errno."""
    try:
        data = written(tid, name, args)
    except OSError as e:
        return -(e.errno or errno.EFAULT)
    return consumer(data)


@family("write")
async def fam_write(c: Call) -> Any:
    """The module writes what the caller's buffers hold, at the fd's offset, pwrite's, or the end (O_APPEND,
    pwrite's too, as on Linux); a buffer that faults part way ends the write there (EFAULT if nothing
    could be read)."""
    of = _chosen(c)  # a socket with a consumer was served before dispatch (Hypervisor.on_syscall)
    bufs, off = _rw_args(c, of, write=True)
    fs = of.ops
    rwf = c.args[5] & 0xFFFFFFFF if c.sc.name == "pwritev2" else 0
    if (of.flags & os.O_APPEND or rwf & RWF_APPEND) and not rwf & RWF_NOAPPEND:
        pos = (await maybe(fs.fstat(of.handle))).st_size  # pwrite(2): "appends data regardless of offset"
        if off is None:
            of.offset = pos
    else:
        pos = of.offset if off is None else off
    data = _gather(c.t.tid, bufs)
    n = await maybe(fs.write(of.handle, data, pos)) if data else 0
    if off is None:
        of.offset += n
    return n


@family("lseek")
async def fam_lseek(c: Call) -> Any:
    """The open file's offset, with the module's SEEK_DATA and SEEK_HOLE where it has them."""
    of = _chosen(c)
    off, whence = s64(c.args[1]), s32(c.args[2])
    if whence == os.SEEK_SET:
        new = off
    elif whence == os.SEEK_CUR:
        new = of.offset + off
    elif whence in (os.SEEK_DATA, os.SEEK_HOLE) and \
            (new := await maybe(of.ops.seek(of.handle, off, whence))) is not None:
        pass
    elif whence in (os.SEEK_END, os.SEEK_DATA, os.SEEK_HOLE):
        if isinstance(of.ops, devices.DeviceFile):
            size = await maybe(of.ops.size(of.handle)) or 0  # a device's stat shows no size
        else:
            size = (await maybe(of.ops.fstat(of.handle))).st_size
        if whence == os.SEEK_END:
            new = size + off
        elif off >= size or off < 0:
            raise OSError(errno.ENXIO, "past the end")
        else:
            new = off if whence == os.SEEK_DATA else size
    else:
        raise OSError(errno.EINVAL, "bad whence")
    if new < 0:
        raise OSError(errno.EINVAL, "negative offset")
    if isinstance(of.ops, devices.DeviceFile) and (limit := await maybe(of.ops.size(of.handle))) is not None \
            and new > limit:
        raise OSError(errno.EINVAL, "past the end of the device")  # blkdev_llseek: fixed_size_llseek
    of.offset = new
    return new


@family("getdents")
async def fam_getdents(c: Call) -> Any:
    """The module's listing of the open directory, packed as the kernel's dirents."""
    of = _chosen(c)
    if not of.is_dir:
        raise OSError(errno.ENOTDIR, "not a directory")
    if of.dents is None or of.offset == 0:
        of.dents = list(await maybe(of.ops.getdents(of.handle)))
    pack = abi.pack_dirent64 if c.sc.name == "getdents64" else abi.pack_dirent
    room = c.args[2] & 0xFFFFFFFF
    out = bytearray()
    i = of.offset
    while i < len(of.dents):
        rec = pack(of.dents[i], i + 1)
        if len(out) + len(rec) > room:
            if not out:
                raise OSError(errno.EINVAL, "buffer too small")
            break
        out += rec
        i += 1
    c.write(c.args[1], bytes(out))
    of.offset = i
    return len(out)


@family("fsync")
async def fam_fsync(c: Call) -> Any:
    """The module's fsync (sync_file_range and syncfs: 0)."""
    of = _chosen(c)
    if c.sc.name in ("fsync", "fdatasync"):
        await maybe(of.ops.fsync(of.handle, c.sc.name == "fdatasync"))
    return 0


@family("fdnoop")
async def fam_fdnoop(c: Call) -> Any:
    """Advice the module does not need (readahead, fadvise): 0."""
    _chosen(c)
    return 0


@family("fallocate")
async def fam_fallocate(c: Call) -> Any:
    """The module's fallocate (EOPNOTSUPP where it has none)."""
    of = _chosen(c)
    if not of.writable:  # after the range and the mode (argcheck)
        raise OSError(errno.EBADF, "not open for writing")
    mode, offset, length = s32(c.args[1]), s64(c.args[2]), s64(c.args[3])
    await maybe(of.ops.fallocate(of.handle, mode, offset, length))
    return 0


@family("mmap")
async def fam_mmap(c: Call) -> Any:
    """Map a private host copy of the virtual file (see shadows.py).

    The copy is opened in the tracee in place of the call, mapped with the
    caller's arguments, and closed again.  Writes through a shared writable
    map reach the module when the file's last fd is closed.
    """
    of = c.vfd(4)
    if of is None:
        return REAL
    prot, flags = c.args[2], c.args[3]
    shared_write = flags & 0x3 == 0x1 and prot & 0x2  # MAP_SHARED, PROT_WRITE
    if not of.readable or (shared_write and not of.writable):
        raise OSError(errno.EACCES, "the fd's access mode does not allow this map")
    if of.is_dir or isinstance(of.ops, devices.DeviceFile):
        raise OSError(errno.ENODEV, "a directory, or a device whose driver maps nothing")
    st = await maybe(of.ops.fstat(of.handle))
    shadow = await c.hv.shadows.copy_of(of.mount, of.path, st, of.handle)
    if shared_write:
        of.shadow = shadow
    regs = c.regs
    regs.nr = NR_OPENAT
    regs.set_arg(0, AT_FDCWD)
    regs.set_arg(1, c.put_scratch(os.fsencode(shadow) + b"\0"))
    regs.set_arg(2, (os.O_RDWR if shared_write else os.O_RDONLY) | os.O_CLOEXEC)
    regs.set_arg(3, 0)
    fd = await c.t.finish_syscall(regs)
    if fd < 0:
        c.resume_with(fd)
        return DONE
    args = list(c.args[:6])
    args[4] = fd
    ret = await c.t.inject(NR_MMAP, *args)
    await c.t.inject(NR_CLOSE, fd)
    if shared_write and not -4096 < s64(ret) < 0:
        proc = c.t.proc
        of.refs += 1  # the map holds the open file, as a vma does
        proc.maps[ret] = (of, c.args[1])
        if not proc.maps_traced:  # from now on munmap and msync stop in this process
            proc.maps_traced = await c.t.stack_layer(bpf.calls_layer(("munmap", "msync")), "the map filter", c.hv.log)
    c.resume_with(ret)
    c.result = ret  # type: ignore[attr-defined]
    return DONE


@family("unmap")
async def fam_unmap(c: Call) -> Any:
    """munmap and msync over shared writable maps of private copies: the module gets the data."""
    maps = c.t.proc.maps
    if not maps:
        return REAL
    addr, length = c.args[0], c.args[1]
    for start, (of, size) in list(maps.items()):
        if start < addr + length and addr < start + size:  # overlaps
            if c.sc.name == "msync":
                await c.hv.write_back(of)
            elif addr <= start and start + size <= addr + length:
                del maps[start]
                await c.hv.unmap(of)
            else:
                await c.hv.write_back(of)  # a part: the rest stays mapped
    return REAL


@family("ioctl")
async def fam_ioctl(c: Call) -> Any:
    """The requests every open file takes (do_vfs_ioctl), then the open file's ops with the
    argument read and written as the request's entry in umvu.ioctls says (ENOTTY: unknown)."""
    of = _chosen(c)
    req = ioctls.request(c.args[1])
    if req is None:
        raise OSError(errno.ENOTTY, "inappropriate ioctl for device")
    ptr = c.args[2]
    if req.core and (res := await _file_ioctl(c, of, req, ptr)) is not None:
        return res
    arg: bytes | int | None = memory.read(c.t.tid, ptr, req.size) if req.way in ("in", "inout") \
        else ptr if req.way == "value" else None
    theirs = s32(ptr) if req.way == "fd" else struct.unpack_from("<i", arg, req.fd_at)[0] \
        if req.fd_at >= 0 and isinstance(arg, bytes) else None
    mine = _callers_file(c, theirs) if theirs is not None else None
    if mine is not None:
        arg = mine if req.way == "fd" else struct.pack("<i", mine).join((arg[: req.fd_at], arg[req.fd_at + 4 :]))
    try:
        res, out = await maybe(of.ops.ioctl(of.handle, req.nr, arg))
    finally:
        if mine is not None:
            os.close(mine)
    if out is not None and req.way in ("out", "inout"):
        c.write(ptr, out[: req.size])
    return res


def _callers_file(c: Call, fd: int) -> int:
    """The caller's real fd ``fd`` opened here, for what the caller's is open for (an ioctl's
    argument: LOOP_SET_FD).  EBADF for no such fd; a virtual one is not a host file (EINVAL)."""
    if c.t.files.get(fd) is not None:
        raise OSError(errno.EINVAL, "a virtual file cannot back a device")
    link = f"/proc/{c.t.tid}/fd/{fd}"
    try:
        st = os.stat(link)
    except OSError:
        raise OSError(errno.EBADF, "bad fd in the argument") from None
    flags = _real_flags(c.t.tid, fd)
    if flags & os.O_PATH:
        raise OSError(errno.EBADF, "an O_PATH fd")  # fget
    if not (stat_mod.S_ISREG(st.st_mode) or stat_mod.S_ISBLK(st.st_mode)):
        raise OSError(errno.EINVAL, "not a file or a block device")  # a FIFO's open would block here
    try:
        return os.open(link, flags & os.O_ACCMODE | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        raise OSError(errno.EBADF, "bad fd in the argument") from None


async def _file_ioctl(c: Call, of: OpenFile, req: ioctls.Request, ptr: int) -> Any:
    """do_vfs_ioctl and file_ioctl: what every file, or every regular file, answers (None: the
    request is the driver's, as FIONREAD on a device)."""
    name = req.name
    if name in ("FIOCLEX", "FIONCLEX"):
        return REAL  # close-on-exec is the fd table's, which holds the placeholder
    if name in ("FIONBIO", "FIOASYNC"):
        on = struct.unpack("<i", memory.read(c.t.tid, ptr, 4))[0]
        bit = os.O_NONBLOCK if name == "FIONBIO" else os.O_ASYNC  # FASYNC
        of.flags = of.flags | bit if on else of.flags & ~bit
        return 0
    if isinstance(of.ops, devices.DeviceFile):
        return None
    st = await maybe(of.ops.fstat(of.handle))
    if name == "FIGETBSZ":
        c.write(ptr, struct.pack("<i", st.st_blksize or 4096))
        return 0
    if name == "FIOQSIZE" and stat_mod.S_IFMT(st.st_mode) in (stat_mod.S_IFREG, stat_mod.S_IFDIR, stat_mod.S_IFLNK):
        # inode_get_bytes: what it takes on disk (ext4's st_blocks also counts delayed allocations)
        c.write(ptr, struct.pack("<q", st.st_blocks * 512))
        return 0
    if name == "FIONREAD" and stat_mod.S_ISREG(st.st_mode):
        c.write(ptr, struct.pack("<i", max(0, min(st.st_size - of.offset, 0x7FFFFFFF))))
        return 0
    raise OSError(errno.ENOTTY, "inappropriate ioctl for device")


# What hostonly refuses a virtual file with: the kernel's answer for a file system that cannot.
HOSTONLY_ERRNO = {"inotify_add_watch": errno.ENOSYS, "fanotify_mark": errno.ENOSYS,
                  "name_to_handle_at": errno.EOPNOTSUPP, "uselib": errno.ENOEXEC}
HOSTONLY_WRITES = frozenset({"acct", "swapon", "setxattrat", "removexattrat", "file_setattr"})


@family("hostonly")
async def fam_hostonly(c: Call) -> Any:
    """Only the kernel can do it, on a host file: a virtual one goes as the host file behind it
    (vufs), else the call fails (ENOSYS for watches, EOPNOTSUPP for handles, EINVAL for mounts).

    Watches (inotify, fanotify), file handles, swap, process accounting, the
    new mount API and the *xattrat calls work on the kernel's inodes; a name
    in a view must never reach the host's file of the same name.
    """
    for i in c.sc.path_args:
        if not c.args[i]:
            continue  # NULL: the call names its dirfd, or nothing (acct(NULL))
        r = await c.target(i, "write" if c.sc.name in HOSTONLY_WRITES else "read")
        if r is not None:
            raise OSError(HOSTONLY_ERRNO.get(c.sc.name, errno.EINVAL),
                          f"{c.sc.name} on a file only a module holds")
    return REAL


@family("bypass")
async def fam_bypass(c: Call) -> Any:
    """Calls whose work the kernel would do out of umvu's sight (io_uring opens files itself)."""
    if not c.hv.registry and c.t.fs.plain:
        return REAL
    raise OSError(errno.ENOSYS, f"{c.sc.name} would bypass the view: use the plain system calls")


# -- in-kernel copies with a virtual end: read on one side, write on the other ---------------

SPLICE_F_NONBLOCK, SPLICE_F_ALL = 2, 0xF
COPY_CHUNK = 1 << 20
LOFF = struct.Struct("<q")


class _End:
    """One end of copy_file_range, sendfile or splice: a virtual open file, or the caller's real
    fd borrowed for the call (umvu/borrowed.py: the same open file, offset and all)."""

    def __init__(self, fd: int, of: OpenFile | None, real: Borrowed | None) -> None:
        self.fd, self.of, self.real = fd, of, real  # fd: its number in the caller
        self.st: os.stat_result | None = real.st if real is not None else None

    @classmethod
    def open(cls, c: Call, i: int) -> _End:
        """Argument ``i``'s fd; EBADF when it is not open (the borrowed fd is closed by ``close``)."""
        fd = s32(c.args[i])
        of = c.vfd(i)
        if of is not None:
            return cls(fd, of, None)
        real = Borrowed(c.t.proc.tgid, fd)
        if real.flags & os.O_PATH:  # fdget: an O_PATH fd is no file for these calls
            os.close(real.fd)
            raise OSError(errno.EBADF, "an O_PATH fd")
        return cls(fd, None, real)

    def close(self) -> None:
        if self.real is not None:
            os.close(self.real.fd)

    async def stat(self) -> os.stat_result:
        if self.st is None:
            assert self.of is not None
            self.st = await maybe(self.of.ops.fstat(self.of.handle))
        return self.st

    @property
    def readable(self) -> bool:
        return self.of.readable if self.of is not None else self.real.readable

    @property
    def writable(self) -> bool:
        return self.of.writable if self.of is not None else self.real.writable

    @property
    def flags(self) -> int:
        return self.of.flags if self.of is not None else self.real.flags

    @property
    def pipe(self) -> bool:  # a virtual file is never one
        return self.real is not None and self.real.is_pipe

    @property
    def position(self) -> int:
        if self.of is not None:
            return self.of.offset
        return os.lseek(self.real.fd, 0, os.SEEK_CUR) if self.real.seekable else 0

    def same_file(self, other: _End) -> bool:
        a, b = self.st, other.st
        if self.of is not None and other.of is not None:
            return self.of.mount is other.of.mount and a is not None and b is not None and a.st_ino == b.st_ino
        return self.real is not None and other.real is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    async def read(self, size: int, pos: int | None) -> bytes:
        if self.of is not None:
            data = await maybe(self.of.ops.read(self.of.handle, size, self.of.offset if pos is None else pos))
            if pos is None:
                self.of.offset += len(data)
            return bytes(data)
        return self.real.read(size, pos)

    async def write(self, c: Call, data: bytes, pos: int | None) -> int:
        if self.of is not None:
            n = await maybe(self.of.ops.write(self.of.handle, data, self.of.offset if pos is None else pos))
            if pos is None:
                self.of.offset += n
            return n
        try:
            return self.real.write(data, pos)
        except BrokenPipeError:  # the kernel's SIGPIPE goes with EPIPE, to the caller
            _tgkill(c.t.proc.tgid, c.t.tid, signal_mod.SIGPIPE)
            raise

    async def ready(self, c: Call, write: bool, nonblock: bool, moved: int) -> bool:
        """Whether to go on: a real pipe or socket may have to be waited for, unless something was moved
        already (the call returns it) or the caller asked not to wait (EAGAIN)."""
        if self.real is None or self.real.ready(write):
            return True
        if moved:
            return False
        if nonblock:
            raise OSError(errno.EAGAIN, "would block")
        await c.wait_in_kernel(self.fd, POLLOUT if write else POLLIN)
        return True


def _tgkill(tgid: int, tid: int, sig: int) -> None:
    libc.raw_syscall(234, tgid, tid, sig)


async def _pump(c: Call, src: _End, spos: int | None, dst: _End, dpos: int | None, count: int,
                nonblock: bool = False) -> int:
    """Move up to ``count`` bytes; a position None is the end's own offset, which moves."""
    moved = 0
    while moved < count:
        if not await src.ready(c, False, nonblock, moved) or not await dst.ready(c, True, nonblock, moved):
            break
        data = await src.read(min(count - moved, COPY_CHUNK), None if spos is None else spos + moved)
        if not data:
            break
        n = await dst.write(c, data, None if dpos is None else dpos + moved)
        if n < len(data) and spos is None:  # what the other end did not take is not consumed
            if src.of is not None:
                src.of.offset -= len(data) - n
            elif src.real.seekable:
                os.lseek(src.real.fd, n - len(data), os.SEEK_CUR)
        moved += n
        if n < len(data):
            break
    return moved


def _rw_verify(pos: int, count: int) -> None:
    """The kernel's rw_verify_area: a negative position, or one the count would take past the end."""
    if count > (1 << 63) - 1 or pos < 0 or pos + count > (1 << 63) - 1:
        raise OSError(errno.EINVAL, "bad range")


@family("copy")
async def fam_copy(c: Call) -> Any:
    """copy_file_range, sendfile, splice and tee when a virtual fd is involved, in the kernel's
    order of checks; the copy itself is a read on one end and a write on the other."""
    if not any(c.vfd(i) for i in c.sc.fd_args):
        return REAL
    return await {"copy_file_range": _copy_file_range, "sendfile": _sendfile, "splice": _splice,
                  "tee": _tee}[c.sc.name](c)


def _read_loff(c: Call, addr: int) -> int:
    return LOFF.unpack(memory.read(c.t.tid, addr, 8))[0]


def _ends(c: Call, a: int, b: int) -> tuple[_End, _End]:
    first = _End.open(c, a)
    try:
        return first, _End.open(c, b)
    except BaseException:
        first.close()
        raise


async def _copy_file_range(c: Call) -> int:
    off_in, off_out, count, flags = c.args[1], c.args[3], c.args[4], c.args[5] & 0xFFFFFFFF
    src, dst = _ends(c, 0, 2)
    try:
        pos_in = _read_loff(c, off_in) if off_in else src.position
        pos_out = _read_loff(c, off_out) if off_out else dst.position
        if flags:
            raise OSError(errno.EINVAL, "flags")
        sin, sout = await src.stat(), await dst.stat()
        if stat_mod.S_ISDIR(sin.st_mode) or stat_mod.S_ISDIR(sout.st_mode):
            raise OSError(errno.EISDIR, "a directory")
        if not stat_mod.S_ISREG(sin.st_mode) or not stat_mod.S_ISREG(sout.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if not src.readable or not dst.writable or dst.flags & os.O_APPEND:
            raise OSError(errno.EBADF, "not open for that")
        u64 = (1 << 64) - 1
        if (pos_in & u64) + count > u64 or (pos_out & u64) + count > u64:
            raise OSError(errno.EOVERFLOW, "the range wraps")
        count = 0 if pos_in >= sin.st_size else min(count, sin.st_size - pos_in)
        if src.same_file(dst) and pos_out + count > pos_in and pos_out < pos_in + count:
            raise OSError(errno.EINVAL, "overlapping ranges in one file")
        _rw_verify(pos_in, count)
        _rw_verify(pos_out, count)
        if count == 0:
            return 0
        n = await _pump(c, src, pos_in, dst, pos_out, min(count, MAX_RW_COUNT))
        if n > 0:
            for ptr, end, pos in ((off_in, src, pos_in), (off_out, dst, pos_out)):
                if ptr:
                    c.write(ptr, LOFF.pack(pos + n))
                elif end.of is not None:
                    end.of.offset = pos + n
                else:
                    os.lseek(end.real.fd, pos + n, os.SEEK_SET)
        return n
    finally:
        src.close()
        dst.close()


async def _sendfile(c: Call) -> int:
    ptr, count = c.args[2], c.args[3]
    pos = _read_loff(c, ptr) if ptr else None  # read before anything else, written back whatever comes
    after = pos
    try:
        n, after = await _sendfile_from(c, pos, count)
    finally:
        if ptr:
            c.write(ptr, LOFF.pack(after))
    return n


async def _sendfile_from(c: Call, pos: int | None, count: int) -> tuple[int, int | None]:
    """sendfile's work: the count, and the position to write back to its pointer (None: there is none)."""
    src = _End.open(c, 1)
    try:
        if not src.readable:
            raise OSError(errno.EBADF, "not open for reading")
        start = src.position if pos is None else pos
        _rw_verify(start, count)
        count = min(count, MAX_RW_COUNT)
        dst = _End.open(c, 0)
        try:
            if not dst.writable:
                raise OSError(errno.EBADF, "not open for writing")
            if not dst.pipe:
                if dst.flags & os.O_APPEND:
                    raise OSError(errno.EINVAL, "an O_APPEND target")
                mode = (await src.stat()).st_mode
                if not stat_mod.S_ISREG(mode) and not stat_mod.S_ISBLK(mode):
                    raise OSError(errno.EINVAL, "the source is not a file")
            elif stat_mod.S_ISDIR((await src.stat()).st_mode):
                raise OSError(errno.EINVAL, "a directory cannot be read so")
            n = await _pump(c, src, start, dst, None, count, nonblock=dst.pipe and bool(dst.flags & os.O_NONBLOCK))
            if pos is not None:
                return n, start + n
            if src.of is not None:
                src.of.offset = start + n
            else:
                os.lseek(src.real.fd, start + n, os.SEEK_SET)
            return n, None
        finally:
            dst.close()
    finally:
        src.close()


async def _splice(c: Call) -> int:
    off_in, off_out, count, flags = c.args[1], c.args[3], c.args[4], c.args[5] & 0xFFFFFFFF
    if count == 0:
        return 0
    if flags & ~SPLICE_F_ALL:
        raise OSError(errno.EINVAL, "bad flags")
    src, dst = _ends(c, 0, 2)
    try:
        if src.pipe and off_in or dst.pipe and off_out:
            raise OSError(errno.ESPIPE, "an offset for a pipe")
        pos_out = _read_loff(c, off_out) if off_out else None
        pos_in = _read_loff(c, off_in) if off_in else None
        if not src.readable or not dst.writable:
            raise OSError(errno.EBADF, "not open for that")
        nonblock = bool(flags & SPLICE_F_NONBLOCK)
        if src.pipe:  # a pipe into the virtual file
            if dst.flags & os.O_APPEND:
                raise OSError(errno.EINVAL, "an O_APPEND target")
            start = dst.position if pos_out is None else pos_out
            _rw_verify(start, count)
            n = await _pump(c, src, None, dst, start, count, nonblock or bool(src.flags & os.O_NONBLOCK))
            if off_out:
                c.write(off_out, LOFF.pack(start + n))
            else:
                dst.of.offset = start + n
            return n
        if dst.pipe:  # the virtual file into a pipe
            if stat_mod.S_ISDIR((await src.stat()).st_mode):
                raise OSError(errno.EINVAL, "a directory cannot be read so")
            start = src.position if pos_in is None else pos_in
            _rw_verify(start, count)
            n = await _pump(c, src, start, dst, None, min(count, MAX_RW_COUNT),
                            nonblock or bool(dst.flags & os.O_NONBLOCK))
            if off_in:
                c.write(off_in, LOFF.pack(start + n))
            else:
                src.of.offset = start + n
            return n
        raise OSError(errno.EINVAL, "neither end is a pipe")
    finally:
        src.close()
        dst.close()


async def _tee(c: Call) -> int:
    """Both ends must be pipes, which a virtual file never is."""
    if c.args[3] & 0xFFFFFFFF & ~SPLICE_F_ALL:
        raise OSError(errno.EINVAL, "bad flags")
    if c.args[2] == 0:
        return 0
    src, dst = _ends(c, 0, 1)
    try:
        if not src.readable or not dst.writable:
            raise OSError(errno.EBADF, "not open for that")
        raise OSError(errno.EINVAL, "not a pipe")
    finally:
        src.close()
        dst.close()


# -- names ---------------------------------------------------------------------------------

async def _stat_of(c: Call) -> tuple[os.stat_result, int] | None:
    """The stat a stat-family call asks for, and the st_dev to show; None when it is real."""
    if c.sc.choice == "fd":
        of = c.of
        if of is None:  # a real fd that stands in for a module's file (a FIFO)
            r = await _handed_out(c, "read", path_ok=True)
            return None if r is None else _dev(r.mount, _need(r))
        return _dev(of.mount, await maybe(of.ops.fstat(of.handle)))
    r = await c.target()
    if r is None:
        return None
    of = getattr(r, "of", None)
    if of is not None:
        return _dev(of.mount, await maybe(of.ops.fstat(of.handle)))
    return _dev(r.mount, _need(r))


def _dev(m: Mount, st: os.stat_result) -> tuple[os.stat_result, int]:
    """The stat and the st_dev to show: the mount's, or the host's for a host file handed out as such."""
    fs = m.fs
    if fs.real_files and (fs.real_dirs or not stat_mod.S_ISDIR(st.st_mode)):
        return st, st.st_dev
    return st, m.dev


@family("stat")
async def fam_stat(c: Call) -> Any:
    """The module's lstat or fstat, with the mount's st_dev (a host file handed out keeps its own)."""
    got = await _stat_of(c)
    if got is None:
        return REAL
    c.write(c.args[c.sc.arg_index("ptr")], abi.pack_stat(*got))
    return 0


@family("statx")
async def fam_statx(c: Call) -> Any:
    """As stat, in struct statx."""
    mask = c.args[3] & 0xFFFFFFFF  # flags and mask checked already (argcheck)
    got = await _stat_of(c)
    if got is None:
        return REAL
    c.write(c.args[4], abi.pack_statx(got[0], mask, got[1]))
    return 0


@family("statfs")
async def fam_statfs(c: Call) -> Any:
    """The module's statfs of its file system; through an open file, without a walk to its name
    (which the caller may no longer be allowed to walk)."""
    if c.sc.choice == "fd":
        of = c.of
        if of is not None:
            s = await maybe(of.ops.fstatfs(of.handle, of.mount.inner(of.path) if of.named else None))
        else:
            fd = s32(c.args[0])
            view = c.t.files.view_of(c.t.tid, fd) if c.t.files.places else None
            m = c.hv.registry.lookup(view) if view is not None else None
            if m is None:
                return REAL
            try:  # a real fd a module handed out: the view's file system
                s = await maybe(m.fs.statfs(m.inner(view)))
            except OSError:  # its name cannot be walked now: the file the fd holds tells
                s = abi.host_statfs(f"/proc/{c.t.tid}/fd/{fd}")
    else:
        r = await c.target()
        if r is None:
            return REAL
        _need(r)
        s = await maybe(r.mount.fs.statfs(r.mount.inner(r.path)))
    c.write(c.args[1], abi.pack_statfs(s))
    return 0


# -- AF_UNIX names ------------------------------------------------------------------------------

SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path)


def _sun_path(c: Call, i: int) -> str | None:
    """The path an AF_UNIX address argument names; None (the kernel's to judge) for other families,
    abstract and unnamed addresses, and addresses the kernel refuses (bad length, bad pointer)."""
    addr, size = c.args[i], c.args[i + 1] & 0xFFFFFFFF
    if not addr or not 2 < size <= 2 + SUN_PATH_MAX:
        return None
    try:
        data = memory.read(c.t.tid, addr, size)
    except OSError:
        return None
    if struct.unpack_from("<H", data)[0] != socket.AF_UNIX or data[2] == 0:
        return None
    return os.fsdecode(data[2:].split(b"\0", 1)[0])


@family("sockaddr")
async def fam_sockaddr(c: Call) -> Any:
    """bind, connect and sendto with an AF_UNIX path: the path is the view's.  Where the module gives
    a host name the socket is made or reached there (it appears in the view); in a tree with none,
    bind is refused as by a file system that cannot hold sockets (EPERM) and connect finds no socket.
    Nothing is made outside the view.  Other families and abstract names are the kernel's."""
    i = c.sc.addr_args[0]
    path = _sun_path(c, i)
    if path is None:
        return REAL
    c.strings[i] = path
    made = c.sc.args[i] == "ubind"
    r = await c.target(i, intent="bind" if made else "connect")
    if r is None:
        if made and c.addr_host is not None:
            c.hv.unix_names[c.addr_host] = path  # what getsockname shows: the name the caller gave
        return REAL
    if made:
        if r.st is not None:
            raise OSError(errno.EADDRINUSE, "address in use")
        raise OSError(errno.EPERM, "this file system cannot hold sockets")  # vfs_mknod with no mknod
    st = _need(r)  # unix_find_bsd: the name, write permission on it, then a socket bound to it
    if not permitted(st, MAY_WRITE, current()):
        raise OSError(errno.EACCES, "permission denied")
    raise OSError(errno.ECONNREFUSED, "no socket is bound there")


@family("sockname")
async def fam_sockname(c: Call) -> Any:
    """getsockname and getpeername: an AF_UNIX name umvu bound at a host path reads as the name the
    process gave to bind."""
    names = c.hv.unix_names
    if not names:
        return REAL
    addr, lenp = c.args[1], c.args[2]
    try:
        room = struct.unpack("<i", memory.read(c.t.tid, lenp, 4))[0]
    except OSError:
        return REAL  # the kernel's EFAULT
    ret = await c.t.finish_syscall()
    if ret == 0 and room > 2:
        try:
            size = struct.unpack("<I", memory.read(c.t.tid, lenp, 4))[0]
            data = memory.read(c.t.tid, addr, min(size, room))
        except OSError:
            data = b""
        if len(data) > 2 and struct.unpack_from("<H", data)[0] == socket.AF_UNIX:
            view = names.get(os.fsdecode(data[2:].split(b"\0", 1)[0]))
            if view is not None:
                new = struct.pack("<H", socket.AF_UNIX) + os.fsencode(view) + b"\0"
                c.write(addr, new[:room])
                c.write(lenp, struct.pack("<I", len(new)))
    c.resume_with(ret)
    return DONE


def view_path(c: Call, path: str) -> str:
    """A canonical path as the caller shows it: relative to its root."""
    seen = seen_from(path, c.t.fs.root)
    return "(unreachable)" + path if seen is None else seen


@family("readlink")
async def fam_readlink(c: Call) -> Any:
    """The module's readlink; /proc's magic links (cwd, root, exe, fd/N) are answered for the view."""
    r = await c.target()
    if r is None:
        real = c.real
        if real is None or not real.path.startswith("/proc/") or real.path.startswith("/proc/self"):
            return REAL
        link = await c._magic(None, real.path, None)  # /proc/PID/cwd, root, fd/N of a process with a virtual one
        if link is None:
            return REAL
        target = view_path(c, link[1]) if link[0] == "place" else link[1]
        data = os.fsencode(target)[: s32(c.args[c.sc.arg_index("size")])]  # a size > 0 (argcheck)
        c.write(c.args[c.sc.arg_index("ptr")], data)
        return len(data)
    size = s32(c.args[c.sc.arg_index("size")])
    st = _need(r)
    if not stat_mod.S_ISLNK(st.st_mode):  # do_readlinkat: "" names the dirfd's file, which is ENOENT then
        raise OSError(errno.ENOENT if not c.strings.get(c.sc.path_args[0]) else errno.EINVAL, "not a symlink")
    link = await c._magic(r.mount, r.path, st)  # /proc bound into the view (a chroot's)
    if link is not None and link[0] != "final":
        target = os.fsencode(view_path(c, link[1]) if link[0] == "place" else link[1])[:size]
    else:
        target = os.fsencode(await _fs_call(r, "readlink"))[:size]
    c.write(c.args[c.sc.arg_index("ptr")], target)
    return len(target)


@family("access")
async def fam_access(c: Call) -> Any:
    """The module's access check (EROFS for a write on a read-only mount), made with the caller's real
    ids unless AT_EACCESS, walk included (as access_override_creds)."""
    mode = s32(c.arg("mode"))
    if mode & ~7:
        return REAL
    if c.sc.name == "faccessat2" and c.arg("atflags") & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        return REAL
    who = c.t.caller_creds()
    if (who.ruid != who.uid or who.rgid != who.gid) and not (c.sc.name == "faccessat2"
                                                            and c.arg("atflags") & AT_EACCESS):
        c.t.acting = who.real()
        outer = creds.serve(c.t.acting)
        try:
            return await _access(c, mode)
        finally:
            c.t.acting = None
            creds.serve(outer)
    return await _access(c, mode)


async def _access(c: Call, mode: int) -> Any:
    r = await c.target(intent=None if mode & os.W_OK else "read")
    if r is None:
        return REAL
    st = _need(r)
    if mode & os.W_OK and r.mount.readonly and not stat_mod.S_ISLNK(st.st_mode):
        raise OSError(errno.EROFS, "read-only file system")
    await _fs_call(r, "access", mode)
    return 0


@family("getcwd")
async def fam_getcwd(c: Call) -> Any:
    """The view's cwd, as the caller's root shows it, when it is virtual or the caller is chrooted."""
    fs = c.t.fs
    if not fs.cwd_virtual and fs.root == "/":
        return REAL
    if fs.cwd_virtual:
        try:
            gone = (await resolve(c.hv.registry, "/", fs.cwd, True)).st is None
        except OSError:
            gone = True
        if gone:
            raise OSError(errno.ENOENT, "the current directory was removed")
    data = os.fsencode(view_path(c, c.cwd())) + b"\0"
    if c.args[1] < len(data):
        raise OSError(errno.ERANGE, "buffer too small")
    c.write(c.args[0], data)
    return len(data)


@family("chdir")
async def fam_chdir(c: Call) -> Any:
    """A virtual directory becomes the process's cwd in the view (the kernel's stays where it was)."""
    fs = c.t.fs
    if c.sc.name == "fchdir":
        of = c.vfd(0)
        if of is None:
            view = None
            if c.t.files.places:  # a copy of a handed-out directory fd, made unseen, is found by its name
                try:
                    view = c.t.files.view_of(c.t.tid, s32(c.args[0]),
                                             os.readlink(f"/proc/{c.t.tid}/fd/{s32(c.args[0])}"))
                except OSError:
                    pass
            if view is None:
                fs.cwd, fs.cwd_virtual = None, False
                return REAL
            ret = await c.t.finish_syscall(c.regs)  # the kernel checks the real directory
            if ret == 0:  # a real directory fd a module handed out names a place in the view
                fs.cwd, fs.cwd_virtual = view, True
            c.resume_with(ret)
            return DONE
        if not of.is_dir:
            raise OSError(errno.ENOTDIR, "not a directory")
        fs_ = of.ops  # MAY_EXEC | MAY_CHDIR on the directory itself, whatever its name is now
        if not fs_.checks_search:
            try:
                st = await maybe(fs_.fstat(of.handle))
            except OSError:  # a module that knows it by its name alone, which cannot be walked now
                st = None
            if st is not None and not fs_.search_permitted(st):
                raise OSError(errno.EACCES, "permission denied")
        fs.cwd, fs.cwd_virtual = of.path, True
        return 0
    r = await c.target(intent=None)
    if r is None:
        if fs.root != "/":  # the kernel goes to the canonical path; the view's cwd is that
            ret = await c.t.finish_syscall(c.regs)
            if ret == 0:
                fs.cwd, fs.cwd_virtual = c.real.path, False
            c.resume_with(ret)
            c.result = ret  # type: ignore[attr-defined]
            return DONE
        fs.cwd, fs.cwd_virtual = None, False  # the kernel's answer, read when needed
        return REAL
    st = _need(r)
    if not stat_mod.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, "not a directory")
    await _fs_call(r, "access", os.X_OK)
    fs.cwd, fs.cwd_virtual = r.path, True
    return 0


@family("setid")
async def fam_setid(c: Call) -> Any:
    """The kernel's; the caller's credentials (creds.py) are read again when next needed."""
    c.t.creds = None
    return REAL


@family("umask")
async def fam_umask(c: Call) -> Any:
    """Noted for the view (files the modules make take it), then the kernel's."""
    c.t.fs.umask = c.args[0] & 0o777
    return REAL


@family("exec")
async def fam_exec(c: Call) -> Any:
    """A file only a module holds runs from a private host copy; a host file behind a view runs as itself; a
    script's or ld.so's interpreter is the one the view names."""
    c.t.exec_view = None
    r = await c.target(intent="exec")
    if r is not None:  # a file only a module holds: the kernel gets a private copy of it
        of = getattr(r, "of", None)  # fexecve: execveat(fd, "", AT_EMPTY_PATH)
        st = await maybe(of.ops.fstat(of.handle)) if of is not None else _need(r)
        c.t.exec_view = r.path
        if not stat_mod.S_ISREG(st.st_mode):
            raise OSError(errno.EACCES, "not a regular file")
        await _fs_call(r, "access", os.X_OK)
        c._rewrite(c.sc.path_args[0], c.sc.path_args[0] - 1 if c.sc.name == "execveat" else None,
                   await c.hv.shadows.copy_of(r.mount, r.path, st))
    elif c.handed is not None:
        c.t.exec_view = c.handed[0]
    elif c.rewritten and c.real is not None:
        c.t.exec_view = c.real.path  # a chroot's program: /proc/self/exe names it in the view
    elif not c.rewritten and not c.hv.registry:
        return REAL  # a real file named as the kernel sees it: nothing of the view is involved
    await _exec_interpreter(c)
    return REAL


async def _exec_interpreter(c: Call) -> None:
    """Run a script's or a dynamic binary's interpreter as the view names it.

    The kernel reads "#!/path" and PT_INTERP and opens those paths itself, on
    the host: a script whose interpreter lives in a virtual tree (a venv in a
    cow mount), or any binary in a chroot, would get the host's or none.
    Then the exec becomes one of the interpreter, with the arguments the
    kernel would have made: for "#!" (interp, [arg], file, argv[1:]); for
    ld.so (ld.so, --argv0, argv[0], file, argv[1:]).
    """
    i = c.sc.path_args[0]
    host = os.fsdecode(memory.read_cstring(c.t.tid, c.regs.args()[i]))
    if not host.startswith("/"):  # not rewritten: as the kernel will look it up
        dirfd = s32(c.args[0]) if c.sc.name == "execveat" else AT_FDCWD
        try:
            base = c.cwd() if dirfd == AT_FDCWD else os.readlink(f"/proc/{c.t.tid}/fd/{dirfd}")
        except OSError:
            return
        host = os.path.join(base, host)
    confined = c.t.fs.root != "/"
    try:
        with open(host, "rb") as f:
            head = f.read(4096)
    except OSError:
        return  # the kernel will say why
    if head.startswith(b"#!"):
        line = head[2:].split(b"\n", 1)[0].strip()
        if not line:
            return
        parts = line.split(None, 1)
        interp, extra = os.fsdecode(parts[0]), [parts[1]] if len(parts) > 1 else []
        ld_style = False
    elif head.startswith(b"\x7fELF") and confined:
        interp = _pt_interp(host)
        if interp is None:
            return
        extra, ld_style = [], True
    else:
        return
    t = c.t
    try:
        ri = await resolve(c.hv.registry, c.cwd(), interp, True, t.fs.root, c._magic)
    except OSError:
        return
    if ri.st is None:
        return
    if ri.mount is None:
        if ri.path == interp and not confined:
            return  # the host finds the same interpreter
        interp_host = ri.path
    else:
        interp_host = await maybe(ri.mount.fs.host_path(ri.mount.inner(ri.path), "exec", ri.st))
        if interp_host is None:
            interp_host = await c.hv.shadows.copy_of(ri.mount, ri.path, ri.st)
    argv_addr = c.args[i + 1]
    old = memory.read_pointers(t.tid, argv_addr) if argv_addr else []
    # The name as the caller wrote it (the interpreter opens it in the view), unless it is
    # relative to a dirfd (execveat) that the interpreter would not know.
    file_ptr = c.args[i]
    if c.sc.name == "execveat" and not c.read_str(i).startswith("/"):
        file_ptr = c.put_scratch(os.fsencode(c.t.exec_view or host) + b"\0")
    if ld_style:
        new = [c.put_scratch(os.fsencode(interp_host) + b"\0"), c.put_scratch(b"--argv0\0"),
               old[0] if old else c.put_scratch(b"\0"), file_ptr, *old[1:]]
    else:
        new = [c.put_scratch(os.fsencode(interp) + b"\0"),
               *[c.put_scratch(x + b"\0") for x in extra], file_ptr, *old[1:]]
    array = c.put_scratch(struct.pack(f"<{len(new) + 1}Q", *new, 0))
    regs = c.regs
    if c.sc.name == "execveat":
        envp = c.args[3]
        regs.nr = syscalls.BY_NAME["execve"].nr
        regs.set_arg(2, envp)
    regs.set_arg(0, c.put_scratch(os.fsencode(interp_host) + b"\0"))
    regs.set_arg(1, array)
    c.rewritten = True


def _pt_interp(path: str) -> str | None:
    """The ELF program interpreter (PT_INTERP) of a 64-bit little-endian binary."""
    try:
        with open(path, "rb") as f:
            ehdr = f.read(64)
            if len(ehdr) < 64 or ehdr[4] != 2:
                return None
            phoff, = struct.unpack_from("<Q", ehdr, 32)
            phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for k in range(phnum):
                p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", table, k * phentsize)
                if p_type == 3:  # PT_INTERP
                    f.seek(p_offset)
                    return os.fsdecode(f.read(p_filesz).rstrip(b"\0"))
    except (OSError, struct.error):
        return None
    return None


# -- changes by name --------------------------------------------------------------------------

@family("mkdir")
async def fam_mkdir(c: Call) -> Any:
    """The module's mkdir, with the caller's umask applied."""
    r = await c.target(intent="create")
    if r is None:
        return REAL
    if r.st is not None:
        raise OSError(errno.EEXIST, "exists")
    await _fs_call(r, "mkdir", c.arg("mode") & 0o1777 & ~c.t.fs.umask)  # no setuid or setgid asked
    return 0


def _last_name(c: Call) -> str:
    return c.read_str(c.sc.path_args[0]).rstrip("/").rsplit("/", 1)[-1]


@family("rmdir")
async def fam_rmdir(c: Call) -> Any:
    """The module's rmdir (EBUSY for a mount point, EINVAL for ".")."""
    i = c.sc.path_args[0]
    if c.read_str(i).endswith("/") and c.read_str(i).rstrip("/") and (c.hv.registry or not c.t.fs.plain):
        name = await c.locate_name(i)  # "link/" names the link, which rmdir does not follow
        if name.st is not None and stat_mod.S_ISLNK(name.st.st_mode) and (name.mount or name.crossed):
            raise OSError(errno.ENOTDIR, "a symlink")
    last = _last_name(c)
    if last in (".", "..") and (c.hv.registry or not c.t.fs.plain):
        r = await c.locate(c.sc.path_args[0])
        if r.mount is not None or not c.t.fs.plain:
            raise OSError(errno.EINVAL if last == "." else errno.ENOTEMPTY, "rmdir of . or ..")
    r = await c.target(intent="remove")
    if r is None:
        return REAL
    if not stat_mod.S_ISDIR(_need(r).st_mode):
        raise OSError(errno.ENOTDIR, "not a directory")
    if r.path == r.mount.point:
        raise OSError(errno.EBUSY, "a mount point")
    await _fs_call(r, "rmdir")
    return 0


@family("unlink")
async def fam_unlink(c: Call) -> Any:
    """The module's unlink (unlinkat with AT_REMOVEDIR: its rmdir)."""
    if c.sc.name == "unlinkat" and c.args[2] & AT_REMOVEDIR:
        return await fam_rmdir(c)
    i = c.sc.path_args[0]
    if c.read_str(i).endswith("/") and (c.hv.registry or not c.t.fs.plain):
        r = await c.locate_name(i)  # the name itself, not followed: Linux judges it
        if r.mount is None and not r.crossed and c.t.fs.plain:
            return REAL
        if r.st is None:
            raise OSError(errno.ENOENT, "no such file or directory")
        raise OSError(errno.EISDIR if stat_mod.S_ISDIR(r.st.st_mode) else errno.ENOTDIR, "trailing slash")
    r = await c.target(intent="remove")
    if r is None:
        return REAL
    st = _need(r)
    if stat_mod.S_ISDIR(st.st_mode):
        raise OSError(errno.EISDIR, "is a directory")
    await _fs_call(r, "unlink")
    return 0


async def _two_paths(c: Call, whole_first: bool = False) -> tuple[Resolved | None, Resolved | None]:
    """Both names of rename/link; EXDEV unless one mount (or none) holds both.

    ``whole_first``: the first name must exist before the second is even read (do_linkat looks
    the old name up whole first; rename looks up both parents, then the names).
    """
    a, b = c.sc.path_args
    if whole_first:  # real or not: the kernel's lookup errors come before the second name
        old = await c.locate(a)
        of = getattr(old, "of", None)
        if old.st is None and of is not None:  # the name of a virtual fd (AT_EMPTY_PATH)
            old.st = await maybe(of.ops.fstat(of.handle))
        _need(old)
    ra = await c.target(a, "rename")
    rb = await c.target(b, "rename")
    if c.mount_of(a, ra) is not c.mount_of(b, rb) or (ra is None) != (rb is None):
        raise OSError(errno.EXDEV, "across mounts")
    return ra, rb


def _same_mount(ra: Resolved | None, rb: Resolved | None) -> bool:
    """True when the kernel runs the call (both real, or both passed through)."""
    return ra is None


@family("rename")
async def fam_rename(c: Call) -> Any:
    """The module's rename, within one mount (EXDEV across mounts, as between file systems)."""
    flags = c.args[4] & 0xFFFFFFFF if c.sc.name == "renameat2" else 0  # checked already (argcheck)
    ra, rb = await _two_paths(c)
    if _same_mount(ra, rb):
        return REAL
    if _vfs_rename_checks(c, ra, rb, flags):
        return 0
    await maybe(ra.mount.fs.rename(ra.mount.inner(ra.path), rb.mount.inner(rb.path), flags))
    return 0


RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def _last_is_dot(raw: str) -> bool:
    """Whether a name's last component is ".", ".." or the root (the kernel's LAST_DOT and friends)."""
    return raw.rstrip("/").rsplit("/", 1)[-1] in ("", ".", "..")


def _vfs_rename_checks(c: Call, ra: Resolved, rb: Resolved, flags: int) -> bool:
    """do_renameat2's and vfs_rename's checks, in their order, made before any file system is asked;
    True when the kernel does nothing and returns 0 (both names are one file)."""
    a, b = c.sc.path_args
    raw_a, raw_b = c.read_str(a), c.read_str(b)
    if _last_is_dot(raw_a):
        raise OSError(errno.EBUSY, "renaming . or ..")
    if _last_is_dot(raw_b):
        raise OSError(errno.EEXIST if flags & RENAME_NOREPLACE else errno.EBUSY, "renaming onto . or ..")
    st = _need(ra)
    target = rb.st
    if flags & RENAME_NOREPLACE and target is not None:
        raise OSError(errno.EEXIST, "exists")
    if flags & RENAME_EXCHANGE:
        if target is None:
            raise OSError(errno.ENOENT, "no such file or directory")
        if not stat_mod.S_ISDIR(target.st_mode) and raw_b.endswith("/"):
            raise OSError(errno.ENOTDIR, "a trailing slash, and not a directory")
    if not stat_mod.S_ISDIR(st.st_mode) and (raw_a.endswith("/") or not flags & RENAME_EXCHANGE
                                             and raw_b.endswith("/")):
        raise OSError(errno.ENOTDIR, "a trailing slash, and not a directory")
    if rb.path.startswith(ra.path + "/"):
        raise OSError(errno.EINVAL, "a directory into its own subtree")
    if ra.path.startswith(rb.path + "/"):
        raise OSError(errno.EINVAL if flags & RENAME_EXCHANGE else errno.ENOTEMPTY, "onto its own ancestor")
    if target is not None and (target.st_ino, target.st_dev) == (st.st_ino, st.st_dev):
        return True  # vfs_rename: source and target are one inode
    if target is not None and not flags & RENAME_EXCHANGE:
        if stat_mod.S_ISDIR(st.st_mode) and not stat_mod.S_ISDIR(target.st_mode):
            raise OSError(errno.ENOTDIR, "a directory over a file")
        if not stat_mod.S_ISDIR(st.st_mode) and stat_mod.S_ISDIR(target.st_mode):
            raise OSError(errno.EISDIR, "a file over a directory")
    registry = c.hv.registry
    if registry.at(ra.path) is not None or registry.at(rb.path) is not None:
        raise OSError(errno.EBUSY, "a mount point")
    return False


@family("link")
async def fam_link(c: Call) -> Any:
    """The module's link, within one mount (EXDEV across mounts)."""
    ra, rb = await _two_paths(c, whole_first=True)
    if _same_mount(ra, rb):
        return REAL
    st = _need(ra)
    _new_name(c, rb)
    if stat_mod.S_ISDIR(st.st_mode):
        raise OSError(errno.EPERM, "a hard link to a directory")  # vfs_link, before any file system is asked
    await maybe(ra.mount.fs.link(ra.mount.inner(ra.path), rb.mount.inner(rb.path)))
    return 0


@family("symlink")
async def fam_symlink(c: Call) -> Any:
    """The module's symlink."""
    r = await c.target(intent="create")
    if r is None:
        return REAL
    _new_name(c, r)
    await maybe(r.mount.fs.symlink(c.read_str(0), r.mount.inner(r.path)))
    return 0


def _new_name(c: Call, r: Resolved, i: int | None = None) -> None:
    """filename_create's rules for a name about to be made: EEXIST if it is there (a symlink is not
    followed), ENOENT if it is not and a slash follows it (only mkdir takes one)."""
    if r.st is not None:
        raise OSError(errno.EEXIST, "exists")
    if c.sc.family != "mkdir" and c.read_str(c.sc.path_args[-1] if i is None else i).endswith("/"):
        raise OSError(errno.ENOENT, "a trailing slash on a name that is not a directory's")


async def _path_or_fd(c: Call, intent: str = "write") -> Resolved | None:
    if c.sc.choice == "fd":
        of = c.of
        if of is None:
            return await _handed_out(c, intent)
        if intent != "read" and of.mount.readonly:
            raise OSError(errno.EROFS, "read-only file system")
        r = Resolved(of.path, of.mount, None)
        r.of = of  # type: ignore[attr-defined]
        return r
    r = await c.target(intent=intent)
    if r is not None and getattr(r, "of", None) is None:
        _need(r)
    return r


async def _change(r: Resolved, method: str, *args: Any) -> Any:
    """A metadata call (chmod, chown, utime, the xattr calls) on what ``r`` names: an open file goes
    to the module's f-method (the file itself, renamed, removed or never named), a name to the
    path method."""
    of = getattr(r, "of", None)
    if of is not None:
        named = of.mount.inner(of.path) if of.named else None
        return await maybe(getattr(of.ops, "f" + method)(of.handle, *args, named))
    return await _fs_call(r, method, *args)


async def _attrs(r: Resolved) -> os.stat_result:
    """The attributes of what ``r`` names (an open file's by its handle)."""
    of = getattr(r, "of", None)
    if of is not None:
        return await maybe(of.ops.fstat(of.handle))
    return r.st if r.st is not None else await maybe(r.mount.fs.lstat(r.mount.inner(r.path)))


async def _handed_out(c: Call, intent: str, path_ok: bool = False) -> Resolved | None:
    """fchmod & co. on a real fd a module handed out: the module changes the file (cow copies it up).
    An O_PATH fd is EBADF, as fdget finds it, unless the call takes one (``path_ok``: fstat)."""
    t = c.t
    fd = s32(c.args[0])
    view = t.files.view_of(t.tid, fd) if t.files.places else None
    m = c.hv.registry.lookup(view) if view is not None else None
    if m is None:
        return None
    if not path_ok and _real_flags(t.tid, fd) & os.O_PATH:
        raise OSError(errno.EBADF, "an O_PATH fd")
    if intent != "read" and m.readonly:
        raise OSError(errno.EROFS, "read-only file system")
    try:
        st = await maybe(m.fs.lstat(m.inner(view)))
    except OSError:  # its name cannot be walked now (or is gone): the fd still names the file
        st = os.stat(f"/proc/{t.tid}/fd/{fd}")
    return Resolved(view, m, st)


def _real_flags(tid: int, fd: int) -> int:
    """A real fd's file status flags, as /proc shows them."""
    try:
        with open(f"/proc/{tid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0


@family("chmod")
async def fam_chmod(c: Call) -> Any:
    """The module's chmod (of a path, or of an open file)."""
    r = await _path_or_fd(c)
    if r is None:
        return REAL
    if r.st is not None and stat_mod.S_ISLNK(r.st.st_mode):
        raise OSError(errno.EOPNOTSUPP, "symlinks have no mode of their own")
    await _change(r, "chmod", c.arg("mode") & 0o7777)
    return 0


@family("chown")
async def fam_chown(c: Call) -> Any:
    """The module's chown (of a path, or of an open file)."""
    r = await _path_or_fd(c)
    if r is None:
        return REAL
    i = c.sc.args.index("int")
    uid, gid = c.args[i] & 0xFFFFFFFF, c.args[i + 1] & 0xFFFFFFFF  # uid_t and gid_t: 32 bits, -1 "unchanged"
    await _change(r, "chown", -1 if uid == 0xFFFFFFFF else uid, -1 if gid == 0xFFFFFFFF else gid)
    return 0


@family("truncate")
async def fam_truncate(c: Call) -> Any:
    """The module's truncate or ftruncate."""
    length = s64(c.args[1])
    if length < 0:
        raise OSError(errno.EINVAL, "negative length")
    if c.sc.choice == "fd":
        of = _chosen(c)
        if not of.writable:
            raise OSError(errno.EINVAL, "not open for writing")
        await maybe(of.ops.ftruncate(of.handle, length))
        return 0
    r = await c.target(intent="write")
    if r is None:
        return REAL
    st = _need(r)
    if stat_mod.S_ISDIR(st.st_mode):
        raise OSError(errno.EISDIR, "is a directory")
    if not stat_mod.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file")  # vfs_truncate
    await _fs_call(r, "truncate", length)
    return 0


@family("utime")
async def fam_utime(c: Call) -> Any:
    """The module's utime, with UTIME_NOW and UTIME_OMIT resolved."""
    r = await _path_or_fd(c)
    if r is None:
        return REAL
    name, ptr = c.sc.name, c.arg("ptr")
    if not ptr:
        times = None
    elif name == "utime":
        a, m = struct.unpack("<qq", memory.read(c.t.tid, ptr, 16))
        times = (a * 10**9, m * 10**9)
    else:
        raw = struct.unpack("<qqqq", memory.read(c.t.tid, ptr, 32))
        scale = 1000 if name in ("utimes", "futimesat") else 1
        spec = [(raw[0], raw[1] * scale), (raw[2], raw[3] * scale)]
        if scale == 1 and all(ns == UTIME_NOW for _, ns in spec):
            times = None  # as no times at all: who may write the file may do it, not only its owner
        elif scale == 1 and any(ns in (UTIME_NOW, UTIME_OMIT) for _, ns in spec):
            st = await _attrs(r)
            now = __import__("time").time_ns()
            cur = (st.st_atime_ns, st.st_mtime_ns)
            times = tuple(now if ns == UTIME_NOW else cur[k] if ns == UTIME_OMIT else sec * 10**9 + ns
                          for k, (sec, ns) in enumerate(spec))
        else:
            if any(not 0 <= ns < 10**9 for _, ns in spec):
                raise OSError(errno.EINVAL, "bad time")
            times = tuple(sec * 10**9 + ns for sec, ns in spec)
    await _change(r, "utime", times)
    return 0


@family("mknod")
async def fam_mknod(c: Call) -> Any:
    """The module's mknod, with the caller's umask applied."""
    r = await c.target(intent="create")
    if r is None:
        return REAL
    _new_name(c, r)
    mode = c.arg("mode")
    if not stat_mod.S_IFMT(mode):
        mode |= stat_mod.S_IFREG
    dev = c.args[c.sc.args.index("hex")]
    await _fs_call(r, "mknod", (mode & ~0o7777) | (mode & 0o7777 & ~c.t.fs.umask), dev)
    return 0


@family("xattr")
async def fam_xattr(c: Call) -> Any:
    """The module's xattr calls, after the kernel's rules for the namespaces (trusted.*, security.*, user.*)."""
    name = c.sc.name
    if name[0] in "lf" and name[1:] in ("getxattr", "setxattr", "listxattr", "removexattr"):
        name = name[1:]
    r = await _path_or_fd(c, "read" if name in ("getxattr", "listxattr") else "write")
    if r is None:
        return REAL
    if name == "listxattr":
        names = await _change(r, "listxattr")
        data = b"".join(os.fsencode(n) + b"\0" for n in names)
        size = c.args[2]
        if size == 0:
            return len(data)
        if size < len(data):
            raise OSError(errno.ERANGE, "buffer too small")
        c.write(c.args[1], data)
        return len(data)
    attr = c.read_str(1)
    await _xattr_permission(r, attr, write=name != "getxattr")
    if name == "getxattr":
        value = bytes(await _change(r, "getxattr", attr))
        size = c.args[3]
        if size == 0:
            return len(value)
        if size < len(value):
            raise OSError(errno.ERANGE, "buffer too small")
        c.write(c.args[2], value)
        return len(value)
    if name == "setxattr":
        value = memory.read(c.t.tid, c.args[2], c.args[3])
        await _change(r, "setxattr", attr, value, s32(c.args[4]))
        return 0
    await _change(r, "removexattr", attr)
    return 0


async def _xattr_permission(r: Resolved, attr: str, write: bool) -> None:
    """The VFS's rules for the namespaces, before any file system is asked (xattr_permission,
    and commoncap's for security.*); whether the mode allows it is the file system's to say
    (vfs.xattr_mode_decides).

    Privilege is the caller's: root's.
    """
    root = current().uid == 0
    if attr.startswith("trusted.") and not root:
        raise OSError(errno.EPERM if write else errno.ENODATA, "trusted.* is root's")
    if attr.startswith("security.") and write and not root:
        raise OSError(errno.EPERM, "security.* is root's to change")
    if attr.startswith("user."):
        try:  # an fd's file may have no name left: then the file system alone answers
            st = await _attrs(r)
        except OSError:
            return
        if not (stat_mod.S_ISREG(st.st_mode) or stat_mod.S_ISDIR(st.st_mode)):
            raise OSError(errno.EPERM if write else errno.ENODATA, "user.* only on files and directories")
        if write and stat_mod.S_ISDIR(st.st_mode) and st.st_mode & stat_mod.S_ISVTX and not root \
                and st.st_uid != current().uid:
            raise OSError(errno.EPERM, "a sticky directory: only its owner")


# -- the mount table and the root ----------------------------------------------------------------

def _opt_str(c: Call, i: int, limit: int = 4096) -> str:
    """A string argument that may be NULL (mount's source, type and data)."""
    if not c.args[i]:
        return ""
    return os.fsdecode(memory.read_cstring(c.t.tid, c.args[i], limit))


async def _source_on_host(c: Call, source: str, fstype: str) -> str:
    """A path source (vufs, bind) as the host knows it; other sources pass as they are.

    Several directories (merge) are separated by ':'.
    """
    if not source or fstype not in c.hv.modules.path_sources():
        return source
    return ":".join([await _one_source(c, part) for part in source.split(":")])


async def _one_source(c: Call, source: str) -> str:
    c.strings[0] = source
    r = await c.locate(0)
    if r.st is None:
        raise OSError(errno.ENOENT, f"{source}: no such file or directory")
    if r.mount is None:
        return r.path
    host = await maybe(r.mount.fs.host_path(r.mount.inner(r.path), "read", r.st))
    if host is None:
        raise OSError(errno.EINVAL, f"{source} is served by {r.mount.fstype}, not a real directory")
    return host


@family("mount")
async def fam_mount(c: Call) -> Any:
    """A type a loaded module serves is mounted in the view; a kernel type, a propagation change or a move
    goes to the kernel."""
    hv = c.hv
    fstype, flags = _opt_str(c, 2, 256), c.args[3] & 0xFFFFFFFF
    data = _opt_str(c, 4)
    bind = flags & 4096  # MS_BIND
    remount = flags & 32
    if not remount and not hv.autoload("vufs" if bind else fstype):
        known = _kernel_filesystems()
        if bind or fstype in known or flags & (1 << 17 | 1 << 18 | 1 << 19 | 1 << 20 | 8192):
            # a kernel file system, a propagation change, a move: the kernel decides, on the place the view names
            return _kernel_mount(c, 1, await c.locate(1))
        hv.mount_errors[c.t.tid] = f"unknown file system type '{fstype}'"
        raise OSError(errno.ENODEV, "unknown file system type")
    target = await c.locate(1)
    if target.st is None and not (fstype in hv.modules.node_types() and not remount):
        raise OSError(errno.ENOENT, "mount point does not exist")  # a device's node is made by its mount
    if remount and target.mount is None:
        return _kernel_mount(c, 1, target)
    try:
        source = await _source_on_host(c, _opt_str(c, 0), "vufs" if bind else fstype)
        hv.caller = c.t.tid
        try:
            hv.mount(fstype, source, target.path, flags, data, phantom=target.st is None)
        finally:
            hv.caller = 0
    except OSError as e:
        hv.mount_errors[c.t.tid] = e.strerror or os.strerror(e.errno or errno.EIO)
        raise
    return 0


def _kernel_mount(c: Call, i: int, target: Resolved) -> Any:
    """Let the kernel mount or unmount the host directory ``target`` names; never one of the view's."""
    if target.mount is not None:
        raise OSError(errno.EINVAL, "a kernel mount on a virtual directory")
    if target.crossed or not c.t.fs.plain or c.read_str(i) != target.path:
        c._rewrite(i, None, target.path)
    return REAL


def _host_mount_points() -> set[str]:
    from umvu.mounts import unescape

    try:
        with open("/proc/self/mountinfo") as f:
            return {unescape(line.split(" ")[4]) for line in f}
    except (OSError, IndexError):
        return set()


def _kernel_filesystems() -> set[str]:
    try:
        with open("/proc/filesystems") as f:
            return {line.split()[-1] for line in f if line.strip()}
    except OSError:
        return set()


@family("umount")
async def fam_umount(c: Call) -> Any:
    """A mount of the view goes (EBUSY while used; MNT_DETACH at once); the host's go to the kernel."""
    flags = c.args[1] & 0xFFFFFFFF
    if flags & 8:  # UMOUNT_NOFOLLOW: the target is looked up like an lstat
        c.sc = dataclasses.replace(c.sc, args=("lpath", "hex"))
    try:
        r = await c.locate(0)
    except OSError as e:
        # The root of a FUSE mount whose daemon died answers ENOTCONN, yet unmounts on Linux:
        # its name is enough.
        point = os.path.normpath(os.path.join(c.cwd(), c.read_str(0)))
        if e.errno != errno.ENOTCONN or c.hv.registry.at(point) is None:
            raise
        c.hv.umount(point, flags)
        return 0
    if r.st is None:
        raise OSError(errno.ENOENT, "no such file or directory")
    if c.hv.registry.at(r.path) is None:
        if r.mount is None and r.path in _host_mount_points():
            return _kernel_mount(c, 0, r)  # the host's: the kernel decides (EPERM for an ordinary user)
        raise OSError(errno.EINVAL, "not a mount point")
    try:
        c.hv.umount(r.path, flags)
    except OSError as e:
        c.hv.mount_errors[c.t.tid] = e.strerror or ""
        raise
    return 0


@family("chroot")
async def fam_chroot(c: Call) -> Any:
    """The process's root in the view: from then on umvu resolves every path it names, never above that root."""
    r = await c.locate(0)
    st = _need(r)
    if not stat_mod.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, "not a directory")
    if r.mount is not None:
        await _fs_call(r, "access", os.X_OK)
    elif not os.access(r.path, os.X_OK):
        raise OSError(errno.EACCES, "permission denied")
    c.t.fs.root = r.path
    if not c.hv.tracer.paths_traced:
        c.hv.tracer.trace_paths()  # every path of this process must now be seen
    return 0


@family("control")
async def fam_control(c: Call) -> Any:
    """umvu's own call: vu_insmod, vu_rmmod, vu_lsmod, vumount's messages."""
    return await c.hv.control(c)


# -- the entry point -----------------------------------------------------------------------

def format_call(c: Call, ret: Any) -> str:
    parts = []
    for i, kind in enumerate(c.sc.args):
        v = c.args[i]
        if i in c.strings:
            parts.append(repr(c.strings[i]).replace("'", '"'))
        elif kind in ("fd", "dirfd"):
            fd = s32(v)
            parts.append("AT_FDCWD" if fd == AT_FDCWD and kind == "dirfd" else str(fd))
        elif kind in ("oflags", "atflags", "hex"):
            parts.append(hex(v & 0xFFFFFFFF))
        elif kind == "mode":
            parts.append(oct(v & 0o7777))
        elif kind in ("ptr", "str"):
            parts.append(hex(v))
        else:
            parts.append(str(s64(v)))
    if isinstance(ret, int) and ret < 0:
        rs = f"-1 {errno.errorcode.get(-ret, '?')} ({os.strerror(-ret)})"
    else:
        rs = str(ret)
    return f"[{c.t.tid}] {c.sc.name}({', '.join(parts)}) = {rs}"


# What an O_PATH fd is good for (open(2)); anything else on one is EBADF.  Used as a dirfd
# (the *at calls) it is not an "fd" argument.
O_PATH_CALLS = frozenset({"close", "fstat", "fstatfs", "fchdir", "dup", "dup2", "dup3", "fcntl"})
O_PATH_FCNTL = frozenset({F_DUPFD, F_DUPFD_CLOEXEC, F_DUPFD_QUERY, F_GETFD, F_SETFD, F_GETFL})


def _path_only(c: Call) -> bool:
    """Whether the call names a virtual O_PATH fd for something it cannot do."""
    sc = c.sc
    if sc.name in O_PATH_CALLS and (sc.name != "fcntl" or s32(c.args[1]) in O_PATH_FCNTL):
        return False
    for i, kind in enumerate(sc.args):
        if kind == "fd":
            of = c.vfd(i)
            if of is not None and of.flags & os.O_PATH:
                return True
    return False


def _precheck(c: Call) -> int | None:
    """The kernel's complaints about the arguments, in its order, before any lookup (argcheck):
    those before the fds, the O_PATH fd's EBADF, those after the fd.  A result: the call's."""
    name = c.sc.name
    check = argcheck.BEFORE.get(name)
    if check is not None and (res := check(c)) is not None:
        return res
    if c.t.files and _path_only(c):
        raise OSError(errno.EBADF, "an O_PATH fd")
    check = argcheck.AFTER_FD.get(name)
    if check is not None and c.vfd(c.sc.fd_args[0]) is not None:
        return check(c)
    return None


def _choose(c: Call) -> bool:
    """The choice column (syscalls.py), decided once before any handler: False when no service
    is chosen and the call is the kernel's.  A call chosen by fd is served when the fd is virtual
    (``c.of``), or when it is a real fd a module handed out and the call is one its layer stops for
    the module (a stand-in's attributes, a guarded file's metadata: bpf.STAND_IN_CALLS)."""
    if c.sc.choice in ("fd", "ioctl"):
        t = c.t
        fd = s32(c.args[c.sc.fd_args[0]])
        c.of = t.files.get(fd)
        return c.of is not None or c.sc.name in bpf.STAND_IN_CALLS and bool(t.files.places) \
            and t.files.view_of(t.tid, fd) is not None
    return True


def _chosen(c: Call) -> OpenFile:
    """The virtual open file chosen for a call whose handler serves nothing else (a handed-out
    real fd reaches it only for the stand-in calls, which these are not)."""
    assert c.of is not None, c.sc.name
    return c.of


async def serve(hv: Hypervisor, t: Tracee, sc: Syscall, regs: arch.Regs) -> None:
    c = Call(hv, t, sc, regs)
    try:
        if not _choose(c):
            res = REAL
        elif (res := _precheck(c)) is None:
            res = await FAMILIES[sc.family](c)
    except _Answer as a:
        res = a.value
    except Restart:
        c.restart()
        if hv.debug:
            hv.log(format_call(c, "? ERESTARTSYS (a signal: restarted, or EINTR)"))
        return
    except OSError as e:
        res = -(e.errno or errno.EIO)
    except Exception:
        import traceback  # only on a module bug: keep it out of start-up

        hv.log(f"[{t.tid}] {sc.name}: a module raised:\n{traceback.format_exc().rstrip()}")
        res = -errno.EIO
    if res is REAL:
        if hv.debug > 1:
            hv.log(format_call(c, "(real)"))
        await c.run_real()
        return
    if res is DONE:
        res = getattr(c, "result", "(done)")
    else:
        c.skip(res)
    if hv.debug:
        hv.log(format_call(c, res))
