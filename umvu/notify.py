"""Calls answered through a seccomp user notification instead of a ptrace stop.

Why: on this machine a ptrace stop costs 30-40 us when the hypervisor is not already running
(the caller and the hypervisor wake each other through the scheduler, onto the other CPU); a
notification on a listener with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP costs about 2 us, because
the reply hands the CPU straight back (docs/benchmarks.md, "One intercepted call").

Which calls: those umvu can always finish without touching the caller's registers (CALLS).
A notification is answered with a value (SECCOMP_IOCTL_NOTIF_SEND's val or error), let go as
it is (SECCOMP_USER_NOTIF_FLAG_CONTINUE), or, when umvu would have rewritten its arguments (a
name reached through a virtual cwd or dirfd, a chroot), made by the hypervisor on the caller's
behalf (perform) and answered with the kernel's result.  Calls that change the caller (exec,
chdir, clone), hand it an fd, or need more than one stop keep their ptrace stop.

How it fits the filters: the kernel takes SECCOMP_RET_USER_NOTIF over SECCOMP_RET_TRACE
whatever the order of the filters, so a layer that asks a notification for CALLS decides them
for the path filter and the fd layers alike (bpf.notify_layer).  A process may have one
listener in its filter chain: each process the layer is stacked on gets its own, and its
children share it; the tracer polls every listener beside its signalfd.
"""

from __future__ import annotations

import ctypes
import errno
import os

from umvu import libc, memory, syscalls

CALLS = frozenset({"stat", "lstat", "newfstatat", "statx", "access", "faccessat", "faccessat2",
                   "readlink", "readlinkat", "getcwd"})

RET_USER_NOTIF = 0x7FC00000
# seccomp(2) flags for the layer: a listener; TSYNC that fails with ESRCH (its plain form returns a
# thread id, which a listener's fd would be mistaken for); the caller waits killably once umvu has
# its notification, as it does in a ptrace stop (a signal does not make it run the call again).
FILTER_FLAGS = (libc.SECCOMP_FILTER_FLAG_TSYNC | 1 << 3 | 1 << 4 | 1 << 5)
FLAG_CONTINUE = 1
_SYNC_WAKE_UP = 1
_IOCTL_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif)
_IOCTL_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp)
_IOCTL_SET_FLAGS = 0x40082104  # _IOW('!', 4, __u64)
_NR_PIDFD_OPEN = 434
_NR_PIDFD_GETFD = 438
_PIDFD_THREAD = os.O_EXCL


class Notif(ctypes.Structure):
    """struct seccomp_notif, with its struct seccomp_data inline."""

    _fields_ = [("id", ctypes.c_uint64), ("pid", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("nr", ctypes.c_int32), ("arch", ctypes.c_uint32), ("ip", ctypes.c_uint64),
                ("args", ctypes.c_uint64 * 6)]


class Resp(ctypes.Structure):
    """struct seccomp_notif_resp."""

    _fields_ = [("id", ctypes.c_uint64), ("val", ctypes.c_int64), ("error", ctypes.c_int32),
                ("flags", ctypes.c_uint32)]


class Listener:
    """The hypervisor's copy of one layer's listener fd."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.notif = Notif()
        self._notif_ref = ctypes.byref(self.notif)
        self._resp = Resp()
        self._resp_ref = ctypes.byref(self._resp)
        libc.ioctl(fd, _IOCTL_SET_FLAGS, _SYNC_WAKE_UP)  # before Linux 6.6 it fails: the plain wake-up

    def receive(self) -> Notif | None:
        """The next notification (the same object each time); None when its caller went away
        between the poll and here (a signal ended its call, or it was killed)."""
        ctypes.memset(self._notif_ref, 0, ctypes.sizeof(Notif))  # the kernel wants it zeroed
        if libc.ioctl(self.fd, _IOCTL_RECV, self._notif_ref) < 0:
            return None
        return self.notif

    def answer(self, ident: int, ret: int) -> None:
        """The call returns ``ret`` (-errno: fails).  A caller gone meanwhile (ENOENT) is no error."""
        r = self._resp
        r.id = ident
        if ret == -libc.ERESTARTSYS:  # a wait a signal ended: nothing makes the kernel restart the call here
            ret = -errno.EINTR
        r.val, r.error, r.flags = (ret, 0, 0) if ret >= 0 else (0, ret, 0)
        libc.ioctl(self.fd, _IOCTL_SEND, self._resp_ref)

    def let_go(self, ident: int) -> None:
        """The kernel runs the call as the caller made it."""
        r = self._resp
        r.id, r.val, r.error, r.flags = ident, 0, 0, FLAG_CONTINUE
        libc.ioctl(self.fd, _IOCTL_SEND, self._resp_ref)

    def close(self) -> None:
        os.close(self.fd)


def fetch(tid: int, fd: int) -> int:
    """A copy of thread ``tid``'s fd ``fd`` (its new listener) in the hypervisor; -errno on failure."""
    pidfd = libc.raw_syscall(_NR_PIDFD_OPEN, tid, _PIDFD_THREAD)
    if pidfd < 0:
        return pidfd
    try:
        return libc.raw_syscall(_NR_PIDFD_GETFD, pidfd, fd, 0)
    finally:
        os.close(pidfd)


_NR = {name: syscalls.BY_NAME[name].nr for name in ("newfstatat", "statx", "faccessat2", "readlinkat")}
_STAT_SIZE, _STATX_SIZE = 144, 256  # struct stat, struct statx
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100


def perform(tid: int, tgid: int, sc: syscalls.Syscall, orig: tuple[int, ...], args: tuple[int, ...]) -> int:
    """Make call ``sc`` of CALLS for thread ``tid`` with the arguments a handler gave it (``args``;
    the caller's were ``orig``): its result, its output copied into the caller.

    A path argument that differs from the caller's was rewritten into the hypervisor's memory
    (Call.put_scratch), canonical, so /proc/self in it was resolved for the caller already; one
    that does not is read from the caller.  A relative name is looked up from the caller's cwd or
    dirfd, through /proc/TID.  The hypervisor's thread holds the caller's credentials (Tracer._step).
    """
    if not sc.path_args:
        raise ValueError(f"{sc.name} is never rewritten: it is not made by the hypervisor")
    i = sc.path_args[0]
    if args[i] != orig[i]:
        name = ctypes.string_at(args[i])
    elif orig[i]:
        name = _own_proc(memory.read_cstring(tid, orig[i]), tid, tgid)
    else:
        name = b""
    d = sc.arg_index("dirfd")
    dirfd = syscalls.s32(args[d]) if d is not None else AT_FDCWD
    flags_i = sc.arg_index("atflags")
    flags = args[flags_i] & 0xFFFFFFFF if flags_i is not None else AT_SYMLINK_NOFOLLOW if sc.name == "lstat" else 0
    opened = None
    if not name.startswith(b"/"):
        where = f"/proc/{tid}/cwd" if dirfd == AT_FDCWD else f"/proc/{tid}/fd/{dirfd}"
        try:
            opened = os.open(where, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return -errno.EBADF if dirfd != AT_FDCWD else -errno.ENOENT
    at = AT_FDCWD if opened is None else opened
    path = ctypes.create_string_buffer(name)
    out = None
    ptr = args[sc.arg_index("ptr")] if sc.arg_index("ptr") is not None else 0
    try:
        if sc.family == "stat":
            out = ctypes.create_string_buffer(_STAT_SIZE)
            ret = libc.raw_syscall(_NR["newfstatat"], at, path, out, flags)
        elif sc.family == "statx":
            out = ctypes.create_string_buffer(_STATX_SIZE)
            ret = libc.raw_syscall(_NR["statx"], at, path, flags, args[3] & 0xFFFFFFFF, out)
        elif sc.family == "access":
            mode = args[sc.arg_index("mode")] & 0xFFFFFFFF
            ret = libc.raw_syscall(_NR["faccessat2"], at, path, mode, flags if sc.name == "faccessat2" else 0)
        elif sc.family == "readlink":
            size = syscalls.s32(args[sc.arg_index("size")])
            if size <= 0:
                return -errno.EINVAL
            out = ctypes.create_string_buffer(min(size, memory.PATH_MAX))
            ret = libc.raw_syscall(_NR["readlinkat"], at, path, out, len(out))
        else:
            raise ValueError(f"{sc.name} is not answered through a notification")
    finally:
        if opened is not None:
            os.close(opened)
    if ret >= 0 and out is not None:
        data = out.raw[:ret] if sc.family == "readlink" else out.raw
        try:
            memory.write(tid, ptr, data)
        except OSError as e:
            return -(e.errno or errno.EFAULT)
    return ret


def _own_proc(name: bytes, tid: int, tgid: int) -> bytes:
    """``name`` with a leading /proc/self or /proc/thread-self made the caller's."""
    for magic, real in ((b"/proc/self", b"/proc/%d" % tgid), (b"/proc/thread-self", b"/proc/%d/task/%d" % (tgid, tid))):
        if name == magic or name.startswith(magic + b"/"):
            return real + name[len(magic):]
    return name
