"""The entry point: every stopped call walks serve().

The table (syscalls.py) gives the call's shape and its choice column; the
choice step decides once whether any service is involved (a virtual fd, or
a path call that must resolve); the argument checks the kernel makes before
any lookup run next (argcheck), and then the family's handler.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

from umvu import arch, argcheck, bpf
from umvu.calls.call import AT_FDCWD, DONE, FAMILIES, REAL, Answer, Call, Restart, s32, s64
from umvu.calls.fake import CALLS as FAKE_CALLS
from umvu.calls.fake import serve as serve_fake
from umvu.calls.files import F_DUPFD, F_DUPFD_CLOEXEC, F_DUPFD_QUERY, F_GETFD, F_GETFL, F_SETFD
from umvu.syscalls import Syscall

if TYPE_CHECKING:
    from umvu.hypervisor import Hypervisor
    from umvu.tracer import Tracee


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
        if c.of is not None and c.of.passthrough is not None and not c.of.base and c.sc.name in bpf.NATIVE_ON_BACKING:
            return False  # the placeholder is the disk's file: the kernel reads it (an older layer stopped it)
        return c.of is not None or c.sc.name in bpf.STAND_IN_CALLS and bool(t.files.may_place) \
            and t.files.view_of(t.tid, fd) is not None
    if c.sc.choice == "nr":  # a module's claim comes before the core's own handler (calls.service)
        c.service = c.hv.registry.call("nr", c.sc.name)
    elif c.sc.choice == "family":
        c.service = c.hv.registry.call("family", s32(c.args[0]))
        return c.service is not None
    return True


async def _handle(c: Call) -> Any:
    """The call served by the choice column's service and its family's handler."""
    if not _choose(c):
        return REAL
    if (res := _precheck(c)) is not None:
        return res
    return await FAMILIES["service" if c.service is not None else c.sc.family](c)


async def serve(hv: Hypervisor, t: Tracee, sc: Syscall, regs: arch.Regs) -> None:
    c = Call(hv, t, sc, regs)
    try:
        if hv.fake is not None and sc.name in FAKE_CALLS:
            res = await serve_fake(c, hv.fake, _handle)
        else:
            res = await _handle(c)
    except Answer as a:
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
    if c.of is not None and c.of.ready is not None:
        c.of.ready.show()  # the call may have changed what the file is ready for (umvu.readiness)
    if res is REAL:
        if hv.debug > 1:
            hv.log(format_call(c, "(real)"))
        await c.run_real()
        return
    if res is DONE:
        res = c.result if c.result is not None else "(done)"
    else:
        c.skip(res)
    if hv.debug:
        hv.log(format_call(c, res))
