"""Moving data through a virtual fd: read, write and their vector and positioned
forms, lseek, getdents, fsync, fallocate.

The module reads or writes at the open file's offset; umvu copies between
its bytes and the caller's buffers.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from umvu import abi, devices, memory
from umvu.calls.call import MAX_RW_COUNT, NR_LSEEK, REAL, Answer, Call, chosen, family, maybe, s32, s64
from umvu.fdtable import OpenFile, kernel_offset

RWF_SUPPORTED = 0x1FF  # RWF_HIPRI ... RWF_NOSIGNAL: preadv2 and pwritev2 refuse other bits (EOPNOTSUPP)


RWF_ATOMIC, RWF_NOWAIT, RWF_APPEND, RWF_NOAPPEND, RWF_DONTCACHE = 0x40, 0x08, 0x10, 0x20, 0x80


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
            raise Answer(0)  # vfs_readv, vfs_writev: nothing to move is 0, before anything else
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
    if rwf & RWF_DONTCACHE and not of.ops.uncached_io:
        raise OSError(errno.EOPNOTSUPP, "RWF_DONTCACHE: the file system does not take it")
    return bufs, off


@family("read")
async def fam_read(c: Call) -> Any:
    """The module reads at the fd's offset (or pread's), into the caller's buffers; a buffer that
    faults part way ends the read there, with what was copied (EFAULT if nothing was)."""
    of = chosen(c)
    bufs, off = _rw_args(c, of, write=False)
    if of.is_dir:
        raise OSError(errno.EISDIR, "is a directory")
    if of.passthrough is not None:
        return await _on_backing(c, of, bufs, off, write=False)
    total = sum(n for _, n in bufs)
    pos = of.offset if off is None else off
    data = await maybe(of.ops.read(of.handle, total, pos)) if total else b""
    done = _scatter(c.t.tid, bufs, data)
    if off is None:
        of.offset += done
    return done


def _scatter(tid: int, bufs: list[tuple[int, int]], data: bytes) -> int:
    """Copy ``data`` into the caller's buffers, up to the first byte that faults: how much was
    copied (EFAULT if that is the first)."""
    done = 0
    for addr, n in bufs:
        if done >= len(data):
            break
        piece = data[done : done + n]
        if not piece:
            continue  # a zero-length buffer
        copied = memory.write_some(tid, addr, piece)
        done += copied
        if copied < len(piece):
            if not done:
                raise OSError(errno.EFAULT, "bad buffer")
            break
    return done


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


@family("write")
async def fam_write(c: Call) -> Any:
    """The module writes what the caller's buffers hold, at the fd's offset, pwrite's, or the end (O_APPEND,
    pwrite's too, as on Linux); a buffer that faults part way ends the write there (EFAULT if nothing
    could be read)."""
    of = chosen(c)  # a socket with a consumer was served before dispatch (Hypervisor.on_syscall)
    bufs, off = _rw_args(c, of, write=True)
    if of.passthrough is not None:
        return await _on_backing(c, of, bufs, off, write=True)
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


def disk_size(of: OpenFile, write: bool) -> int | None:
    """The size of the disk behind passthrough ``of`` for a read or a write (a disk may have
    shrunk since the open, or turned read-only: None for a write then, which is EPERM)."""
    assert of.passthrough is not None
    if not write:
        return of.passthrough
    got = of.ops.backing(of.handle)
    return None if got is None or not got[3] else min(of.passthrough, got[2])


async def _on_backing(c: Call, of: OpenFile, bufs: list[tuple[int, int]], off: int | None, write: bool) -> Any:
    """A read or write of a disk whose placeholder is its host file (OpenFile.passthrough, the
    disk at ``of.base`` in it), checked as blkdev_read_iter and blkdev_write_iter check it: a
    read-only disk EPERM, nothing to move 0, from the end on 0 read or ENOSPC written.  Within
    the disk the kernel moves the data, between the caller's buffers and the file (an explicit
    offset moved by ``base``); across its end umvu moves what fits (a short count, as Linux)
    and sets the fd's offset past it."""
    base, size = of.base, disk_size(of, write)
    if size is None:
        raise OSError(errno.EPERM, "read-only disk")
    rwf = c.args[5] & 0xFFFFFFFF if c.sc.name in ("preadv2", "pwritev2") else 0
    total = sum(n for _b, n in bufs)
    if not total:
        return 0
    fd = s32(c.args[0])
    if write and (of.flags & os.O_APPEND or rwf & RWF_APPEND) and not rwf & RWF_NOAPPEND:
        pos = size  # generic_write_checks: at the end, which a disk never passes
    else:
        pos = off if off is not None else kernel_offset(c.t.tid, fd) - base
    if pos >= size:
        if write:
            raise OSError(errno.ENOSPC, "past the end of the device")
        return 0
    if pos + total <= size:
        if off is None or not base:
            return REAL  # the kernel's offset is base + pos already, or the offset needs no move
        regs = c.regs
        regs.set_arg(3, base + off)  # pread64, preadv, preadv2 and the writes: the offset's low half
        ret = await c.t.finish_syscall(regs)
    else:
        if write:
            n = await maybe(of.ops.write(of.handle, _gather(c.t.tid, bufs)[: size - pos], pos))
        else:
            n = _scatter(c.t.tid, bufs, await maybe(of.ops.read(of.handle, size - pos, pos)))
        if off is not None:
            return n
        regs = c.regs  # the caller's offset moves past what was moved: an lseek in place of the call
        regs.nr = NR_LSEEK
        regs.set_arg(1, base + pos + n)
        regs.set_arg(2, os.SEEK_SET)
        ret = await c.t.finish_syscall(regs)
        ret = n if ret >= 0 else ret
    return c.ended(ret)


@family("lseek")
async def fam_lseek(c: Call) -> Any:
    """The open file's offset, with the module's SEEK_DATA and SEEK_HOLE where it has them."""
    of = chosen(c)
    off, whence = s64(c.args[1]), s32(c.args[2])
    if whence == os.SEEK_SET:
        new = off
    elif whence == os.SEEK_CUR:
        new = (of.offset if of.passthrough is None else kernel_offset(c.t.tid, s32(c.args[0])) - of.base) + off
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
    if of.passthrough is not None:  # the offset is the kernel's, on the placeholder: set it there
        regs = c.regs
        regs.set_arg(1, of.base + new)
        regs.set_arg(2, os.SEEK_SET)
        ret = await c.t.finish_syscall(regs)
        ret = ret - of.base if ret >= 0 else ret
        return c.ended(ret)
    of.offset = new
    return new


@family("getdents")
async def fam_getdents(c: Call) -> Any:
    """The module's listing of the open directory, packed as the kernel's dirents."""
    of = chosen(c)
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
    of = chosen(c)
    if c.sc.name in ("fsync", "fdatasync"):
        await maybe(of.ops.fsync(of.handle, c.sc.name == "fdatasync"))
    return 0


@family("fdnoop")
async def fam_fdnoop(c: Call) -> Any:
    """Advice the module does not need (readahead, fadvise): 0."""
    chosen(c)
    return 0


@family("fallocate")
async def fam_fallocate(c: Call) -> Any:
    """The module's fallocate (EOPNOTSUPP where it has none)."""
    of = chosen(c)
    if not of.writable:  # after the range and the mode (argcheck)
        raise OSError(errno.EBADF, "not open for writing")
    mode, offset, length = s32(c.args[1]), s64(c.args[2]), s64(c.args[3])
    await maybe(of.ops.fallocate(of.handle, mode, offset, length))
    return 0
