"""Kernel structures written into tracee memory, for this architecture.

Modules speak Python (os.stat_result, DirEntry, StatFs); this module turns
those into the bytes the kernel would have written (x86_64 layouts).
"""

from __future__ import annotations

import collections
import ctypes
import errno
import os
import stat
import struct
import threading
from typing import NamedTuple

from umvu import libc
from umvu.vfs import DirEntry

STATX_BASIC_STATS = 0x7FF
STATX_BTIME = 0x800
STATX__RESERVED = 0x80000000


def _field(st: os.stat_result, name: str, default: int) -> int:
    """An optional stat field: absent, or None in a stat_result made from 10 values."""
    v = getattr(st, name, None)
    return default if v is None else v


def _ns(st: os.stat_result, name: str) -> tuple[int, int]:
    ns = getattr(st, name + "_ns", None)
    if ns is None:
        ns = int((getattr(st, name) or 0) * 1_000_000_000)
    return divmod(ns, 1_000_000_000)


def _blocks(st: os.stat_result) -> tuple[int, int]:
    return _field(st, "st_blocks", (st.st_size + 511) // 512), _field(st, "st_blksize", 4096)


_STAT = struct.Struct("<QQQIIIiQqqqqqqqqqqqq")


def pack_stat(st: os.stat_result, dev: int | None = None) -> bytes:
    """struct stat (asm/stat.h, x86_64): 144 bytes; ``dev`` replaces st_dev (the mount's)."""
    try:  # every field there (a stat of the host, or one made whole): the one struct call
        a, m, c = divmod(st.st_atime_ns, 1_000_000_000), divmod(st.st_mtime_ns, 1_000_000_000), \
            divmod(st.st_ctime_ns, 1_000_000_000)
        return _STAT.pack(st.st_dev if dev is None else dev, st.st_ino, st.st_nlink, st.st_mode, st.st_uid,
                          st.st_gid, 0, st.st_rdev, st.st_size, st.st_blksize, st.st_blocks,
                          a[0], a[1], m[0], m[1], c[0], c[1], 0, 0, 0)
    except (TypeError, AttributeError, struct.error):  # made from ten values: the rest has defaults
        pass
    blocks, blksize = _blocks(st)
    a, m, c = _ns(st, "st_atime"), _ns(st, "st_mtime"), _ns(st, "st_ctime")
    return _STAT.pack(
        st.st_dev if dev is None else dev, st.st_ino, st.st_nlink, st.st_mode, st.st_uid, st.st_gid, 0,
        _field(st, "st_rdev", 0), st.st_size, blksize, blocks,
        a[0], a[1], m[0], m[1], c[0], c[1], 0, 0, 0,
    )


def pack_statx(st: os.stat_result, mask: int, dev: int | None = None) -> bytes:
    """struct statx (linux/stat.h): 256 bytes, basic stats (and btime if known)."""
    blocks, blksize = _blocks(st)
    if dev is None:
        dev = st.st_dev
    got = STATX_BASIC_STATS
    btime = (0, 0)
    if getattr(st, "st_birthtime", None) is not None:
        got |= STATX_BTIME
        btime = _ns(st, "st_birthtime")
    rdev = _field(st, "st_rdev", 0)
    ts = [_ns(st, "st_atime"), btime, _ns(st, "st_ctime"), _ns(st, "st_mtime")]
    out = struct.pack(
        "<IIQIIIHHQQQQ",
        got, blksize, 0, st.st_nlink, st.st_uid, st.st_gid, st.st_mode & 0xFFFF, 0,
        st.st_ino, st.st_size, blocks, 0,
    )
    for sec, nsec in ts:
        out += struct.pack("<qIi", sec, nsec, 0)
    out += struct.pack(
        "<IIIIQ", os.major(rdev), os.minor(rdev), os.major(dev), os.minor(dev), 0
    )
    return out + bytes(256 - len(out))


def dtype_of(mode: int) -> int:
    return stat.S_IFMT(mode) >> 12


def dtype_of_entry(e: os.DirEntry) -> int:
    """d_type of a scandir entry without a stat (which a directory without x would refuse)."""
    try:
        if e.is_symlink():
            return stat.S_IFLNK >> 12
        if e.is_dir(follow_symlinks=False):
            return stat.S_IFDIR >> 12
        if e.is_file(follow_symlinks=False):
            return stat.S_IFREG >> 12
        return dtype_of(e.stat(follow_symlinks=False).st_mode)
    except OSError:
        return 0  # DT_UNKNOWN: the caller stats if it cares


def pack_dirent64(e: DirEntry, next_off: int) -> bytes:
    name = os.fsencode(e.name) + b"\0"
    reclen = (19 + len(name) + 7) & ~7
    return struct.pack("<QqHB", e.ino, next_off, reclen, e.type) + name + bytes(reclen - 19 - len(name))


def pack_dirent(e: DirEntry, next_off: int) -> bytes:
    """The old struct linux_dirent (getdents): d_type sits in the last byte."""
    name = os.fsencode(e.name) + b"\0"
    reclen = (18 + len(name) + 1 + 7) & ~7
    body = struct.pack("<QQH", e.ino, next_off, reclen) + name
    return body + bytes(reclen - len(body) - 1) + bytes([e.type])


# struct flock (asm-generic/fcntl.h, 64-bit): l_type, l_whence, l_start, l_len, l_pid
FLOCK = struct.Struct("<hh4xqqi4x")  # struct flock: l_start is 8-aligned (32 bytes)


class StatFs(NamedTuple):
    f_type: int
    f_bsize: int
    f_blocks: int
    f_bfree: int
    f_bavail: int
    f_files: int
    f_ffree: int
    f_fsid: tuple[int, int]
    f_namelen: int
    f_frsize: int
    f_flags: int


_STATFS = struct.Struct("<qqQQQQQiiqqq32x")


def pack_statfs(s: StatFs) -> bytes:
    """struct statfs (asm/statfs.h, x86_64): 120 bytes."""
    return _STATFS.pack(
        s.f_type, s.f_bsize, s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree,
        s.f_fsid[0], s.f_fsid[1], s.f_namelen, s.f_frsize, s.f_flags,
    )


def host_statfs(path: str | int) -> StatFs:
    """statfs(2) of a host path, or fstatfs(2) of a host fd (os.statvfs lacks f_type and fsid)."""
    buf = ctypes.create_string_buffer(_STATFS.size)
    if isinstance(path, int):
        ret = libc.raw_syscall(138, path, buf)
    else:
        ret = libc.raw_syscall(137, ctypes.c_char_p(os.fsencode(path)), buf)
    if ret < 0:
        raise OSError(-ret, os.strerror(-ret), path)
    v = _STATFS.unpack(buf.raw)
    return StatFs(v[0], v[1], v[2], v[3], v[4], v[5], v[6], (v[7], v[8]), v[9], v[10], v[11])


def renameat2(old: str, new: str, flags: int) -> None:
    """rename(2) with RENAME_NOREPLACE/EXCHANGE (Python's os.rename has no flags)."""
    if not flags:
        os.rename(old, new)
        return
    ret = libc.raw_syscall(316, -100, ctypes.c_char_p(os.fsencode(old)), -100, ctypes.c_char_p(os.fsencode(new)),
                           flags)
    if ret < 0:
        raise OSError(-ret, os.strerror(-ret))


def link_fd(fd: int, new: str) -> None:
    """Name the file a host fd holds (an O_TMPFILE file too): linkat of its /proc link with
    AT_SYMLINK_FOLLOW, which needs no privilege (AT_EMPTY_PATH does).  os.link cannot say it
    without a directory fd: it calls link(2), which would link the /proc symlink itself."""
    ret = libc.raw_syscall(265, -100, ctypes.c_char_p(f"/proc/self/fd/{fd}".encode()), -100,
                           ctypes.c_char_p(os.fsencode(new)), 0x400)
    if ret < 0:
        raise OSError(-ret, os.strerror(-ret), new)


PATH_MAX = 4096
_SHORT_KEPT = 256  # directory fds that stand for long prefixes, the oldest closed first
_short: collections.OrderedDict[str, tuple[int, str]] = collections.OrderedDict()  # short name -> (fd, long)
_short_lock = threading.Lock()  # modules' worker threads make names too


def short_path(path: str) -> str:
    """A name for host ``path`` that the kernel takes even when ``path`` is PATH_MAX long or more
    (a view's name, short enough for the caller, plus the mount's prefix): a directory fd held
    here for a long prefix, named through /proc/PID/fd/N, which any process of the session's user
    can walk (a passthrough's real call too).  The fd lives for the next few hundred long names.
    When the prefix cannot be walked, the name fails the same way (ENOENT, ENOTDIR, EACCES) at
    the same component, never at its end (which an O_CREAT would make)."""
    if len(path) < PATH_MAX:
        return path
    head, tail = path, ""
    while len(tail) < PATH_MAX // 2 or len(head) >= PATH_MAX - 64:  # a prefix to open, a rest to walk
        head, _, name = head.rpartition("/")
        tail = name + ("/" + tail if tail else "")
        if not head:
            raise OSError(errno.ENAMETOOLONG, "a name too long", path)
    if len(tail) >= PATH_MAX - 64:
        raise OSError(errno.ENAMETOOLONG, "a component walk too long", path)
    fd, failing = _open_long_dir(head)
    rest = tail if failing is None else failing + "/" + tail.split("/", 1)[0]
    short = f"/proc/{os.getpid()}/fd/{fd}/{rest}"
    with _short_lock:
        _short[short] = (fd, path)
        while len(_short) > _SHORT_KEPT:
            os.close(_short.popitem(last=False)[1][0])
    return short


def long_path(name: str) -> str:
    """The host path a ``short_path`` name stands for (any other name: itself)."""
    kept = _short.get(name)
    return kept[1] if kept is not None else name


def _open_long_dir(path: str) -> tuple[int, str | None]:
    """An O_PATH fd of directory ``path``, opened in pieces shorter than PATH_MAX; or of the last
    directory that could be opened, with the piece whose walk failed from it."""
    flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    fd = os.open("/", flags)
    rest = path.lstrip("/")
    while rest:
        if len(rest) < PATH_MAX - 64:
            piece, rest = rest, ""
        else:
            cut = rest.rfind("/", 0, PATH_MAX - 64)
            if cut <= 0:
                os.close(fd)
                raise OSError(errno.ENAMETOOLONG, "a name too long", path)
            piece, rest = rest[:cut], rest[cut + 1:]
        try:
            nfd = os.open(piece, flags, dir_fd=fd)
        except OSError:
            fd, failing = _failing_component(fd, piece)
            if failing is not None:
                return fd, failing
            continue  # it opened this time (a race): on from it
        os.close(fd)
        fd = nfd
    return fd, None


def _failing_component(fd: int, piece: str) -> tuple[int, str | None]:
    """Walk ``piece`` from ``fd`` one name at a time: the last directory reached, and the name
    that stops the walk (then one more, so that it is never the last); None: none stopped it."""
    flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    names = piece.split("/")
    for k, name in enumerate(names):
        try:
            nfd = os.open(name, flags, dir_fd=fd)
        except OSError:
            return fd, name + "/" + (names[k + 1] if k + 1 < len(names) else "x")
        os.close(fd)
        fd = nfd
    return fd, None


def take_fd(pid: int, fd: int) -> int:
    """A copy of fd ``fd`` of process ``pid`` (of the session's user: a module's helper), as a new
    close-on-exec fd of ours (pidfd_getfd), sharing its open file as dup does."""
    pidfd = os.pidfd_open(pid)
    try:
        ret = libc.raw_syscall(438, pidfd, fd, 0)
    finally:
        os.close(pidfd)
    if ret < 0:
        raise OSError(-ret, os.strerror(-ret))
    return ret


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2) with its mode (os.posix_fallocate has none: no holes punched, no ranges zeroed)."""
    ret = libc.raw_syscall(285, fd, mode, offset & 0xFFFFFFFFFFFFFFFF, length & 0xFFFFFFFFFFFFFFFF)
    if ret < 0:
        raise OSError(-ret, os.strerror(-ret))
