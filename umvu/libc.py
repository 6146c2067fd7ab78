"""ctypes bindings to the few libc entry points the tracer needs.

No ``argtypes`` are set: ARCHITECTURE.md measured ~2 us more per call with
them, and these functions run on every stop.  Every 64-bit argument is
therefore wrapped in ``c_ulong`` by the callers here, never passed as a bare
int (ctypes would pass a 32-bit int into a 64-bit register).
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

_libc = ctypes.CDLL("libc.so.6", use_errno=True)  # glibc's soname on every Linux umvu runs on
_ptrace = _libc.ptrace
_ptrace.restype = ctypes.c_long
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_pvm_writev = _libc.process_vm_writev
_pvm_writev.restype = ctypes.c_ssize_t
_ulong = ctypes.c_ulong

# ptrace requests (include/uapi/linux/ptrace.h)
PTRACE_CONT = 7
PTRACE_KILL = 8
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_DETACH = 17
PTRACE_SYSCALL = 24
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208

PTRACE_O_TRACESYSGOOD = 0x01
PTRACE_O_TRACEFORK = 0x02
PTRACE_O_TRACEVFORK = 0x04
PTRACE_O_TRACECLONE = 0x08
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_EXITKILL = 0x100000

PTRACE_EVENT_FORK = 1
PTRACE_EVENT_VFORK = 2
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_SECCOMP = 7
PTRACE_EVENT_STOP = 128

WALL = 0x40000000  # __WALL: wait for threads too; os does not export it

# The kernel's own errnos for a call a signal ended, which a tracer sees in the result register
# (never a program): restart if the handler has SA_RESTART, else EINTR; restart whatever the
# handler; EINTR if there is a handler
ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND = 512, 513, 514

PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1


class PtraceError(OSError):
    pass


def _check(ret: int) -> int:
    if ret == -1:
        err = ctypes.get_errno()
        raise PtraceError(err, os.strerror(err))
    return ret


def ptrace(request: int, tid: int, addr: int = 0, data: int = 0) -> int:
    return _check(_ptrace(request, tid, _ulong(addr), _ulong(data)))


_NONE = _ulong(0)  # made once: two fresh c_ulong()s cost a ptrace call 0.4 us, and every stop makes four


def ptrace_ptr(request: int, tid: int, obj: ctypes._CData, ref: Any = None) -> int:
    """A request whose data argument points at a ctypes object we own (``ref``: its byref, if kept)."""
    return _check(_ptrace(request, tid, _NONE, ctypes.byref(obj) if ref is None else ref))


def try_ptrace(request: int, tid: int, addr: int = 0, data: int = 0) -> int:
    """Like ptrace() but returns -errno instead of raising.

    Tracees die at any time (a SIGKILL from another process): a request on a
    vanished thread is ESRCH, which the loop treats as "it will report its
    death soon", not as an error.
    """
    ret = _ptrace(request, tid, _ulong(addr) if addr else _NONE, _ulong(data) if data else _NONE)
    if ret == -1:
        return -ctypes.get_errno()
    return ret


_eventmsg = _ulong()


def geteventmsg(tid: int) -> int:
    _check(_ptrace(PTRACE_GETEVENTMSG, tid, _ulong(0), ctypes.byref(_eventmsg)))
    return _eventmsg.value


class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_local = iovec()
_remote = iovec()
# Made once: building byref()s and c_ulong()s for every call doubled its cost (2.5 -> 4.2 us).
_local_ref, _remote_ref = ctypes.byref(_local), ctypes.byref(_remote)
_ONE, _ZERO = _ulong(1), _ulong(0)


def vm_write_from(tid: int, addr: int, src: int, size: int) -> int:
    """Copy ``size`` bytes at our address ``src`` into the tracee at ``addr``; count or -errno."""
    _local.base = src
    _local.len = size
    _remote.base = addr
    _remote.len = size
    n = _pvm_writev(tid, _local_ref, _ONE, _remote_ref, _ONE, _ZERO)
    if n < 0:
        return -ctypes.get_errno()
    return n


def vm_write(tid: int, addr: int, data: bytes) -> int:
    """Copy ``data`` into the tracee at ``addr``; returns count or -errno."""
    return vm_write_from(tid, addr, ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value, len(data))


def ioctl(fd: int, request: int, arg: int | Any) -> int:
    """ioctl(2) with a pointer (a ctypes byref) or a value; -errno on failure (never raises)."""
    ret = _libc.ioctl(fd, _ulong(request), _ulong(arg) if isinstance(arg, int) else arg)
    if ret == -1:
        return -ctypes.get_errno()
    return ret


def prctl(option: int, arg2: int = 0) -> int:
    return _check(_libc.prctl(option, _ulong(arg2), _ulong(0), _ulong(0), _ulong(0)))


def raw_syscall(nr: int, *args: int | ctypes._CData) -> int:
    """syscall(2) returning -errno on failure (never raises)."""
    conv = [_ulong(a) if isinstance(a, int) else a for a in args]
    ret = _syscall(_ulong(nr), *conv)
    if ret == -1:
        return -ctypes.get_errno()
    return ret


SFD_NONBLOCK, SFD_CLOEXEC = 0o4000, 0o2000000


def signalfd(signals: set[int]) -> int:
    """A new signalfd(2) for ``signals`` (which must be blocked): readable while one is pending."""
    mask = (ctypes.c_ulong * 16)()  # sigset_t: 1024 bits
    for sig in signals:
        mask[(sig - 1) // 64] |= 1 << ((sig - 1) % 64)
    return _check(_libc.signalfd(-1, ctypes.byref(mask), SFD_NONBLOCK | SFD_CLOEXEC))


def sched_yield() -> None:
    _libc.sched_yield()


M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def keep_freed_memory(limit: int = 64 << 20) -> None:
    """Let malloc reuse freed blocks instead of returning them to the kernel.

    Large writes through a virtual file allocate a megabyte or so per call;
    glibc's defaults map and unmap each one, and every page then faults in
    again (a 100 MB write through FUSE: 220 ms of reads from the writer
    become 70 ms).  The heap keeps at most ``limit`` of free memory.
    """
    _libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
    _libc.mallopt(M_TRIM_THRESHOLD, limit)
