"""One stopped system call being served (Call), and what every handler shares.

A handler is a coroutine registered for a family of calls (``@family``): it
receives the Call, whose service the choice step (serve.py) already found for
the calls chosen by fd, and returns REAL (the kernel runs the call, perhaps
with rewritten arguments), DONE (it resumed the tracee itself), or the
call's result.  Errors are one mechanism: raise OSError and the tracee gets
-errno.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat as stat_mod
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from umvu import arch, argcheck, bpf, memory, notify, syscalls
from umvu.creds import MAY_READ, MAY_WRITE, current, permitted
from umvu.fdtable import OpenFile, real_flags
from umvu.libc import ERESTARTNOHAND, ERESTARTSYS
from umvu.paths import RealWalkError, Resolved, resolve, seen_from
from umvu.registry import CallClaim, Mount
from umvu.syscalls import Syscall, s32

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
NR_EVENTFD2 = 290
NR_LSEEK = syscalls.BY_NAME["lseek"].nr
EFD_NONBLOCK = os.O_NONBLOCK


NR_PPOLL = 271


POLLIN, POLLOUT = 1, 4


NR_CONNECT = 42
NR_PIDFD_OPEN, NR_PIDFD_GETFD = 434, 438


PLACEHOLDER = "/dev/null"  # a virtual fd's kernel side, unless it needs another (calls.files._placeholder)


PATH_MAX = 4096


# What a call will do to the name it resolves: see FileSystem.host_path.
Intent = str | None | Callable[[os.stat_result | None], str | None]


WRITE_INTENTS = frozenset({"write", "create", "remove", "rename", "bind", "tmpfile"})


# Families worth a host path (FileSystem.host_path): the kernel's work gives
# something umvu cannot (a real fd, an exec).  Handing it any other call costs
# a second stop (the rewritten argument is restored at the call's exit), while
# serving it from the module's own (host) calls takes one.
PASSTHROUGH_FAMILIES = frozenset({"open", "openat2", "exec", "hostonly", "sockaddr"})


# sysfs's network devices: a process in a network stack of the view sees the stack's (vunet)
NET_SYSFS = ("/sys/class/net", "/sys/devices/virtual/net")

# Families that may read the mount tables umvu writes under /proc.
SYNTHETIC_FAMILIES = frozenset({"open", "stat", "statx", "access"})


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


REAL = _Sentinel("REAL")  # let the kernel run the call


DONE = _Sentinel("DONE")  # the handler already resumed the tracee


def s64(v: int) -> int:
    return ctypes.c_int64(v).value


async def maybe(value: Any) -> Any:
    """Modules may be sync or async: await only what needs it."""
    if hasattr(value, "__await__"):
        return await value
    return value


class Answer(Exception):
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
        self._kept: list[ctypes.Array] = []  # put_scratch's buffers for a notified call
        self.via: dict[int, Mount] = {}  # path arguments handed to a module's host path
        self.real: Resolved | None = None  # the last real path target() resolved
        self.handed: tuple[str, str] | None = None  # (view path, host path) given to the kernel
        self.handed_dir = False  # and that is a directory
        self.oflags: int | None = None  # an open's flags when no argument holds them (openat2's struct)
        self.addr_host: str | None = None  # the name an AF_UNIX address was rewritten to
        self.after: list[Callable[[int], Awaitable[None]]] = []  # told the kernel's result (run_real)
        # the chosen service of a call chosen by fd (syscalls.py, choice): its virtual open file
        # (None: a real fd a module handed out, for the calls its layer stops)
        self.of: OpenFile | None = None
        self.service: CallClaim | None = None  # a call service the choice step found (calls.service)
        self.result: int | None = None  # what a handler that ended the call itself gave (ended)

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

    async def fd_from(self, pid: int, fd: int, at_entry: bool = False) -> int:
        """A copy of fd ``fd`` of process ``pid`` (of the session's user) as a new fd of the caller,
        close-on-exec: pidfd_open and pidfd_getfd made by the caller (``at_entry``: the first in
        place of its call, else at a call's exit stop).  The new fd's number, or -errno."""
        t = self.t
        if at_entry:
            regs = self.orig.copy()
            regs.nr = NR_PIDFD_OPEN
            regs.set_arg(0, pid)
            regs.set_arg(1, 0)
            pidfd = await t.finish_syscall(regs)
        else:
            pidfd = await t.inject(NR_PIDFD_OPEN, pid, 0)
        if pidfd < 0:
            return pidfd
        got = await t.inject(NR_PIDFD_GETFD, pidfd, fd, 0)
        await t.inject(NR_CLOSE, pidfd)
        return got

    def give(self, addr: int, size: int, data: bytes) -> int:
        """Answer ``data`` into the caller's buffer of ``size`` bytes, as the xattr calls do: size 0
        asks for the length alone, a smaller buffer is ERANGE."""
        if size == 0:
            return len(data)
        if size < len(data):
            raise OSError(errno.ERANGE, "buffer too small")
        self.write(addr, data)
        return len(data)

    def set_arg(self, i: int, value: int) -> None:
        """Make the kernel see ``value`` in plain argument ``i`` (handlers see it too)."""
        self.args = (*self.args[:i], value, *self.args[i + 1:])
        self.regs.set_arg(i, value)
        self.rewritten = True

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
        """``data`` where the kernel reads it for the call: below the caller's stack, or in the
        hypervisor for a notified call, which the hypervisor makes itself (notify.perform)."""
        if self.t.notice is not None:
            buf = ctypes.create_string_buffer(data, len(data))
            self._kept.append(buf)
            return ctypes.addressof(buf)
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
            import socket  # here: start-up does not pay for it (~2 ms of umvu true)

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
        self.sc = self.sc.with_args(tuple("lpath" if k == i else a for k, a in enumerate(self.sc.args)))
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
                        t.files.may_place and t.files.view_of(t.tid, dirfd) is not None
                        and real_flags(t.tid, dirfd) & os.O_PATH):
                    raise OSError(errno.EBADF, "an O_PATH fd")  # do_utimes_fd: fdget, unlike a lookup from it
                if of is not None:
                    return Resolved(of.path, of.mount, None, of=of)
                if locate:
                    return await self._locate_fd(dirfd)
                if not t.files.may_place or t.files.view_of(t.tid, dirfd) is None:
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
            if t.fs.gone is not None:
                dead = self._from_dead_cwd(path)
                if isinstance(dead, Resolved):
                    return dead
                start, path = dead
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
                view = t.files.view_of(t.tid, dirfd, start) if t.files.may_place else None
                if view is not None:  # a real directory fd a module handed out
                    start, virtual_base = view, True
        if not hv.registry and not virtual_base and not confined:
            return None
        if len(path) >= PATH_MAX:
            raise OSError(errno.ENAMETOOLONG, "path too long")
        if t.proc.net_pid is not None and path.startswith(NET_SYSFS) and t.fs.root == "/":
            # sysfs's network devices are its mounter's namespace's: a stack's are under its process
            self._rewrite(i, dirfd_i, f"/proc/{t.proc.net_pid}/root{path}")
            return None
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
        if locate or r.of is not None:  # an unnamed open file: only its module reaches it
            return r
        m = r.mount
        if m is None and sc.family in ("open", "openat2") and hv.registry.phantoms(r.path) \
                and not self.open_flags() & os.O_PATH and os.path.isdir(r.path):
            return Resolved(r.path, hv.phantom_dirs, r.st, True)  # its listing shows the nodes mounted in it
        if m is None and r.path.startswith("/proc/"):
            net = hv.proc.net_of(r.path)
            if net is not None:  # a process with a network stack of the view: its /proc/PID/net is the stack's
                self._rewrite(i, dirfd_i, net)
                return None
            if sc.family in SYNTHETIC_FAMILIES:
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
                    sc.family in ("open", "openat2") and r.st is not None and claimed_device(hv, r.st)):
                host = await maybe(m.fs.host_path(m.inner(r.path), intent, r.st))
                if host is None and r.st is not None and stat_mod.S_ISFIFO(r.st.st_mode) \
                        and sc.family in ("open", "openat2"):
                    fl = self.oflags if self.oflags is not None else argcheck.effective_open_flags(self.arg("oflags"))
                    mask = {os.O_RDONLY: MAY_READ, os.O_WRONLY: MAY_WRITE}.get(fl & os.O_ACCMODE, MAY_READ | MAY_WRITE)
                    if not m.fs.open_permitted(r.st, mask):  # the kernel's check at an open it serves itself
                        raise OSError(errno.EACCES, "permission denied")
                    host = hv.shadows.fifo(m, r.st)  # a pipe, which no module is asked to open
                if host is None and sc.family == "sockaddr":
                    host = await self._socket_stand_in(m, r, intent)
                if host is not None:
                    self.handed = (r.path, host)
                    self.handed_dir = r.st is not None and stat_mod.S_ISDIR(r.st.st_mode)
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

    def _from_dead_cwd(self, path: str) -> Resolved | tuple[str, str]:
        """A relative path from a removed cwd: "." is the dead directory itself, ".." its parent
        (where the walk goes on), any other name is ENOENT, as lookups in a dead directory are."""
        parts = [p for p in path.split("/") if p]
        while parts and parts[0] == ".":
            parts.pop(0)
        cwd = self.t.fs.cwd or "/"
        if not parts:
            if cwd not in self.hv.dead_dirs.fs.attrs:  # not a host directory (Hypervisor.removed)
                raise OSError(errno.ENOENT, "the current directory was removed")
            return Resolved(cwd, self.hv.dead_dirs, self.t.fs.gone, True)
        if parts[0] != "..":
            raise OSError(errno.ENOENT, "the current directory was removed")
        parent = cwd.rsplit("/", 1)[0] or "/"
        return parent, "/".join(parts[1:]) or "."

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

    async def _socket_stand_in(self, m: Mount, r: Resolved, intent: Any) -> str | None:
        """A host socket standing for one in a tree only a module holds, as the session's FIFOs
        stand for a module's FIFOs (Shadows.socket): bind makes the module's node (mknod S_IFSOCK,
        with the caller's umask) and binds the real socket at the session's name for it, which is
        made open to every process of the session (the node's mode is what is checked); connect
        and sendto reach it there, after the node's own write-permission check.  None: no socket
        can stand there, and the handler answers as Linux does for that name."""
        shadows = self.hv.shadows
        inner = m.inner(r.path)
        if intent == "bind":
            if r.st is not None:
                return None  # EADDRINUSE, the handler says
            try:
                await maybe(m.fs.mknod(inner, stat_mod.S_IFSOCK | (0o777 & ~self.t.fs.umask), 0))
            except OSError as e:
                if e.errno in (errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP):
                    return None  # a file system that cannot hold sockets: EPERM, the handler says
                raise
            st = await maybe(m.fs.lstat(inner))
            host = shadows.socket(m, st, fresh=True)
            if host is None:
                await maybe(m.fs.unlink(inner))
                return None

            async def bound(ret: int) -> None:
                if ret < 0:  # the kernel refused the bind: the node goes, as if never made
                    try:
                        await maybe(m.fs.unlink(inner))
                    except OSError:
                        pass
                else:
                    os.chmod(host, 0o777)

            self.after.append(bound)
            return host
        if r.st is None or not stat_mod.S_ISSOCK(r.st.st_mode):
            return None
        if not permitted(r.st, MAY_WRITE, current()):  # unix_find_bsd: write permission on the socket
            raise OSError(errno.EACCES, "permission denied")
        host = shadows.socket(m, r.st)
        return host if host is not None and os.path.exists(host) else None

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
        ret = await self.run_in_kernel()
        for then in self.after:
            await then(ret)
        if ret >= 0 and self.handed is not None and self.sc.family in ("open", "openat2"):
            m = self.via.get(self.sc.path_args[0])
            fast = self.hv.fast
            # a real fd: remember where it is in the view
            placed = m is not None and fast is not None and fast.rule_for(m)
            t.files.hand(ret, *self.handed, self.handed_dir, placed)
            if placed and m.fs.host_layers() is not None:
                fast.mark(t, ret)  # the library takes it as the view's (a layer's own, by its host name, is not)
            if m is not None:
                if self.hv.shadows.is_fifo(self.handed[1]):
                    # the session's FIFO carries the data; the file's attributes and xattrs are the module's
                    await self.add_layer(ret, bpf.STAND_IN_CALLS)
                elif m.fs.guard_handed(self.handed[1], m.readonly):
                    guard = frozenset()
                    if fast is None or not fast.guarded(t):
                        # fchmod & co. must not reach that file (once they stop everywhere, the
                        # fd is found by its host name: FdTable.view_of)
                        guard = bpf.METADATA_CALLS
                    if self.handed_dir and not m.fs.real_dirs and not (t.proc.fast_fstat and placed):
                        guard |= bpf.FSTAT_CALLS | bpf.DUP_CALLS  # the view's st_dev is the mount's (view_dev)
                    if guard:
                        await self.add_layer(ret, guard)
        self.resume_with(ret)

    async def run_in_kernel(self) -> int:
        """The kernel's result of the call with the arguments the handlers left (rewritten or the
        caller's).  The caller waits at the call's exit stop, or still in its notification: the
        hypervisor made the call for it (notify.perform)."""
        t = self.t
        if t.notice is not None:
            return notify.perform(t.tid, t.proc.tgid, self.sc, self.args, self.regs.args())
        return await t.finish_syscall(self.regs if self.rewritten else self.orig.copy())

    def skip(self, ret: int) -> None:
        """Skip the kernel's call: it returns ``ret`` (seccomp(2): nr = -1)."""
        self.t.answer(ret, self.orig)

    def resume_with(self, ret: int) -> None:
        """At an exit stop: restore the caller's registers, with ``ret``."""
        if self.t.notice is not None:
            self.t.answer(ret)
            return
        r = self.orig.copy()
        r.ret = ret
        arch.setregs(self.t.tid, r)
        self.t.cont()

    def ended(self, ret: int) -> _Sentinel:
        """At an exit stop the handler brought the call to: restore the caller's registers with
        ``ret`` and resume it; DONE, for the handler to return (the log shows ``ret``)."""
        self.resume_with(ret)
        self.result = ret
        return DONE

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
            await self.add_layer(fd, bpf.BACKING_STOPS if of.passthrough is not None and not of.base else None)

    async def guard_copy(self, old: int, fd: int) -> None:
        """``fd`` is a copy of the guarded real fd ``old`` (dup, F_DUPFD): it names the same place of the
        view, and the same calls on it stop (bpf.METADATA_CALLS, STAND_IN_CALLS)."""
        t = self.t
        entry = t.files.hosted.get(old)
        if entry is not None:  # (else an fd umvu never saw: its place follows from its host name)
            t.files.hosted[fd] = entry
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


def fs_call(r: Resolved, method: str, *args: Any) -> Any:
    return maybe(getattr(r.mount.fs, method)(r.mount.inner(r.path), *args))


def need(r: Resolved) -> os.stat_result:
    if r.st is None:
        raise OSError(errno.ENOENT, "no such file")
    return r.st


def claimed_device(hv: Hypervisor, st: os.stat_result) -> bool:
    """Whether ``st`` is a char or block node whose number a module's driver serves (then an
    open of it is never handed to the kernel: the host has no such driver)."""
    kind = "c" if stat_mod.S_ISCHR(st.st_mode) else "b" if stat_mod.S_ISBLK(st.st_mode) else None
    return kind is not None and hv.registry.device(kind, st.st_rdev) is not None


SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path)


def view_path(c: Call, path: str) -> str:
    """A canonical path as the caller shows it: relative to its root."""
    seen = seen_from(path, c.t.fs.root)
    return "(unreachable)" + path if seen is None else seen


def chosen(c: Call) -> OpenFile:
    """The virtual open file chosen for a call whose handler serves nothing else (a handed-out
    real fd reaches it only for the stand-in calls, which these are not)."""
    assert c.of is not None, c.sc.name
    return c.of
