"""ioctl(2): the request's shape comes from one table (umvu.ioctls); requests on
any file (FIOCLEX, FIONBIO, FIONREAD...) are answered here, the rest go to
the device or file behind the fd.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import struct
from typing import Any

from umvu import devices, ioctls, memory
from umvu.calls.call import REAL, Call, chosen, family, maybe, real_flags, s32
from umvu.fdtable import OpenFile


@family("ioctl")
async def fam_ioctl(c: Call) -> Any:
    """The requests every open file takes (do_vfs_ioctl), then the open file's ops with the
    argument read and written as the request's entry in umvu.ioctls says (ENOTTY: unknown)."""
    of = chosen(c)
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
    flags = real_flags(c.t.tid, fd)
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
