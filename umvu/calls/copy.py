"""Copies between fds in the kernel: copy_file_range, sendfile, splice, tee,
with either end virtual.
"""

from __future__ import annotations

import errno
import os
import signal as signal_mod
import stat as stat_mod
import struct
from typing import Any

from umvu import libc, memory
from umvu.borrowed import Borrowed
from umvu.calls.call import MAX_RW_COUNT, POLLIN, POLLOUT, REAL, Call, family, maybe, s32
from umvu.fdtable import OpenFile
from umvu.vfs import HostFdFiles

SPLICE_F_NONBLOCK, SPLICE_F_ALL = 2, 0xF


COPY_CHUNK = 1 << 20


LOFF = struct.Struct("<q")


class _End:
    """One end of copy_file_range, sendfile or splice: a virtual open file, or the caller's real
    fd borrowed for the call (umvu/borrowed.py: the same open file, offset and all), or both: a
    disk whose placeholder is its file (OpenFile.passthrough) moves its data through the
    borrowed fd, from ``base`` in it, no further than its end (``limit``)."""

    def __init__(self, fd: int, of: OpenFile | None, real: Borrowed | None) -> None:
        self.fd, self.of, self.real = fd, of, real  # fd: its number in the caller
        self.st: os.stat_result | None = real.st if real is not None else None
        self.disk = of is not None and real is not None
        self.base, self.limit = (of.base, of.passthrough) if self.disk else (0, 0)  # type: ignore[union-attr]

    @classmethod
    def open(cls, c: Call, i: int) -> _End:
        """Argument ``i``'s fd; EBADF when it is not open (the borrowed fd is closed by ``close``)."""
        fd = s32(c.args[i])
        of = c.vfd(i)
        if of is not None and of.passthrough is None:
            return cls(fd, of, None)
        real = Borrowed(c.t.proc.tgid, fd)
        if real.flags & os.O_PATH:  # fdget: an O_PATH fd is no file for these calls
            os.close(real.fd)
            raise OSError(errno.EBADF, "an O_PATH fd")
        end = cls(fd, of, real)
        end.st = None if of is not None else real.st  # a disk's attributes are its node's
        return end

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
        if self.real is None:
            return self.of.offset
        return os.lseek(self.real.fd, 0, os.SEEK_CUR) - self.base if self.real.seekable else 0

    def set_position(self, pos: int) -> None:
        if self.real is None:
            self.of.offset = pos
        else:
            os.lseek(self.real.fd, self.base + pos, os.SEEK_SET)

    def same_file(self, other: _End) -> bool:
        a, b = self.st, other.st
        if self.of is not None and other.of is not None:
            return self.of.mount is other.of.mount and a is not None and b is not None and a.st_ino == b.st_ino
        return self.real is not None and other.real is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    async def read(self, size: int, pos: int | None) -> bytes:
        if self.real is None:
            data = await maybe(self.of.ops.read(self.of.handle, size, self.of.offset if pos is None else pos))
            if pos is None:
                self.of.offset += len(data)
            return bytes(data)
        if self.disk:  # within the disk, and the caller's offset moves as its own read's would
            at = self.position if pos is None else pos
            data = self.real.read(max(0, min(size, self.limit - at)), self.base + at)
            if pos is None:
                self.set_position(at + len(data))
            return data
        return self.real.read(size, pos)

    async def write(self, c: Call, data: bytes, pos: int | None) -> int:
        if self.real is None:
            n = await maybe(self.of.ops.write(self.of.handle, data, self.of.offset if pos is None else pos))
            if pos is None:
                self.of.offset += n
            return n
        if self.disk:  # no further than its end (blkdev_write_iter)
            at = self.position if pos is None else pos
            if data and at >= self.limit:
                raise OSError(errno.ENOSPC, "past the end of the device")
            n = self.real.write(data[: self.limit - at], self.base + at)
            if pos is None:
                self.set_position(at + n)
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
            if src.real is None or src.real.seekable:
                src.set_position(src.position - (len(data) - n))
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
            _write_limits(dst, pos_out)
            return 0
        n = await _pump(c, src, pos_in, dst, pos_out, min(count, MAX_RW_COUNT))
        if n > 0:
            for ptr, end, pos in ((off_in, src, pos_in), (off_out, dst, pos_out)):
                if ptr:
                    c.write(ptr, LOFF.pack(pos + n))
                else:
                    end.set_position(pos + n)
        return n
    finally:
        src.close()
        dst.close()


def _write_limits(end: _End, pos: int) -> None:
    """copy_file_range checks the target's limits (generic_write_check_limits: its file system's
    largest file) before the copy is cut to the source's end: nothing to copy, to an offset past
    them, is EFBIG.  Only the kernel knows a host file's limit: asked with a copy of nothing, from
    past the end of a file of umvu's own (a module's files that are no host file have none)."""
    fd = end.real.fd if end.real is not None else None
    if fd is None and end.of is not None and isinstance(end.of.ops, HostFdFiles) and isinstance(end.of.handle, int):
        fd = end.of.handle
    if fd is None:
        return
    src = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.copy_file_range(src, fd, 1, 1 << 62, pos)
    except OSError as e:
        if e.errno == errno.EFBIG:
            raise
    finally:
        os.close(src)


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
        if pos is not None and (src.pipe or src.real is not None and stat_mod.S_ISSOCK(src.real.st.st_mode)):
            raise OSError(errno.ESPIPE, "an offset for a file read in order")  # no FMODE_PREAD
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
            src.set_position(start + n)
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
                dst.set_position(start + n)
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
                src.set_position(start + n)
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
