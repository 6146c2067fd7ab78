"""Where sockets meet the view: unix socket names in virtual trees (bind,
connect, getsockname) and sockets a module hands out in place of an open
(vfs.Connect), whose writes may be consumed before dispatch.

The socket module is imported by the functions that use it: start-up does not pay for it
(~2 ms of `umvu true`, tools/startup_imports.py).
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from umvu import abi, memory
from umvu.calls.call import (
    DONE,
    MAX_RW_COUNT,
    NR_CLOSE,
    NR_CONNECT,
    NR_SOCKET,
    REAL,
    SUN_PATH_MAX,
    Call,
    family,
    need,
    s32,
)
from umvu.creds import MAY_WRITE, current, permitted
from umvu.vfs import Connect

if TYPE_CHECKING:
    from umvu.hypervisor import Hypervisor


async def hand_socket(c: Call, want: Connect, flags: int) -> Any:
    """The open becomes socket(2) plus connect(2) to the hypervisor (see vfs.Connect)."""
    import socket

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
    return c.ended(fd)


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


def consume_write(tid: int, consumer: Callable[[bytes], int], name: str, args: list[int]) -> int:
    """Hand a write(2)/writev(2)'s bytes to ``consumer``: the call's result, or -errno."""
    try:
        data = written(tid, name, args)
    except OSError as e:
        return -(e.errno or errno.EFAULT)
    return consumer(data)


def _sun_path(c: Call, i: int) -> str | None:
    """The path an AF_UNIX address argument names; None (the kernel's to judge) for other families,
    abstract and unnamed addresses, and addresses the kernel refuses (bad length, bad pointer)."""
    import socket

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
        if c.sc.name == "connect" and c.hv.uplinks:
            return await _uplink(c)
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
    st = need(r)  # unix_find_bsd: the name, write permission on it, then a socket bound to it
    if not permitted(st, MAY_WRITE, current()):
        raise OSError(errno.EACCES, "permission denied")
    raise OSError(errno.ECONNREFUSED, "no socket is bound there")


@family("sockname")
async def fam_sockname(c: Call) -> Any:
    """getsockname and getpeername: an AF_UNIX name umvu bound at a host path reads as the name the
    process gave to bind."""
    import socket

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


NR_DUP3 = 292


async def _uplink(c: Call) -> Any:
    """connect(2) of a socket a service gave with an uplink (ServiceCall.hand_fd): made where the
    socket is; with no route there (ENETUNREACH), the fd becomes a host socket of the same kind,
    which connects to the address the uplink gives, on the host's network."""
    import socket

    t = c.t
    fd = s32(c.args[0])
    try:
        ino = os.stat(f"/proc/{t.tid}/fd/{fd}").st_ino
    except OSError:
        return REAL
    uplink = c.hv.uplinks.get(ino)
    if uplink is None:
        return REAL
    ret = await t.finish_syscall(c.orig.copy())
    if ret != -errno.ENETUNREACH:
        return c.ended(ret)
    try:
        there = uplink(memory.read(t.tid, c.args[1], c.args[2] & 0xFFFFFFFF))
    except OSError:
        there = None
    if there is None:
        return c.ended(ret)
    theirs = socket.socket(fileno=abi.take_fd(t.tid, fd))
    try:
        ours = socket.socket(theirs.family, theirs.type)
        ours.setblocking(theirs.getblocking())
    finally:
        theirs.close()
    with open(f"/proc/{t.tid}/fdinfo/{fd}") as f:
        cloexec = any(line.startswith("flags:") and int(line.split()[1], 8) & os.O_CLOEXEC for line in f)
    try:
        got = await c.fd_from(os.getpid(), ours.fileno())
        if got < 0:
            return c.ended(ret)
        await t.inject(NR_DUP3, got, fd, os.O_CLOEXEC if cloexec else 0)
        await t.inject(NR_CLOSE, got)
    finally:
        ours.close()
    c.hv.uplinks.pop(ino, None)
    [at] = t.scratch(t.getregs(), there)
    return c.ended(await t.inject(NR_CONNECT, fd, at, len(there)))
