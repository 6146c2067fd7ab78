"""What the kernel checks of a call's arguments before it looks a path or an fd up, in its order.

A call with bad flags and a bad path fails with EINVAL, not EFAULT or ENOENT,
because the kernel checks the flags first (do_unlinkat, do_mknodat,
build_open_flags...); a bad buffer size comes before the file (readlinkat), a
bad times pointer before the path (futimesat).  The dispatcher runs the check
for a call before its handler resolves anything (calls.serve), so whatever
the handler does afterwards, the caller sees the kernel's errno for the
kernel's first complaint.  Checks that come after the lookup stay in the
handlers.  Each function names the kernel code it follows (fs/, Linux 6.x).

Found and kept honest by tests/hostile.py, which makes the same seeded calls
natively and through views and compares every answer.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from umvu import memory
from umvu.syscalls import s32

if TYPE_CHECKING:
    from umvu.calls.call import Call

AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_EACCESS, AT_SYMLINK_FOLLOW = 0x100, 0x200, 0x200, 0x400
AT_NO_AUTOMOUNT, AT_EMPTY_PATH, AT_STATX_SYNC_TYPE = 0x800, 0x1000, 0x6000
STAT_FLAGS = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH | AT_STATX_SYNC_TYPE  # vfs_statx takes these
O_TMPFILE_BIT = 0o20000000  # __O_TMPFILE; O_TMPFILE is it with O_DIRECTORY
O_TMPFILE = O_TMPFILE_BIT | os.O_DIRECTORY
VALID_OPEN_FLAGS = (os.O_ACCMODE | os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_TRUNC | os.O_APPEND | os.O_NONBLOCK
                    | os.O_DSYNC | 0o20000 | os.O_DIRECT | os.O_LARGEFILE | os.O_DIRECTORY | os.O_NOFOLLOW
                    | os.O_NOATIME | os.O_CLOEXEC | os.O_PATH | O_TMPFILE_BIT | os.O_SYNC)
RESOLVE_ALL, RESOLVE_BENEATH, RESOLVE_IN_ROOT = 0x3F, 0x08, 0x10
OPEN_HOW = struct.Struct("<QQQ")
XATTR_CREATE, XATTR_REPLACE, XATTR_NAME_MAX, XATTR_SIZE_MAX = 1, 2, 255, 65536
STATX__RESERVED = 0x80000000
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
# fallocate: one operation of these (ALLOCATE 0, PUNCH_HOLE, COLLAPSE, ZERO, INSERT, UNSHARE,
# WRITE_ZEROES), each with KEEP_SIZE required (True), refused (False) or either (None)
FALLOC_FL_KEEP_SIZE, FALLOC_FL_MODE_MASK = 0x01, 0x02 | 0x08 | 0x10 | 0x20 | 0x40 | 0x80
FALLOC_OPS = {0: None, 0x02: True, 0x08: False, 0x10: None, 0x20: False, 0x40: None, 0x80: False}
SYNC_FILE_RANGE_ALL = 7
PAGE = 4096


def _einval(why: str) -> OSError:
    return OSError(errno.EINVAL, why)


def _u32(v: int) -> int:
    return v & 0xFFFFFFFF


def _s64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


O_PATH_FLAGS = os.O_DIRECTORY | os.O_NOFOLLOW | os.O_PATH | os.O_CLOEXEC


def effective_open_flags(flags: int) -> int:
    """build_open_how for open and openat: unknown bits are dropped, and O_PATH keeps only
    O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC beside it."""
    flags &= VALID_OPEN_FLAGS
    return flags & O_PATH_FLAGS if flags & os.O_PATH else flags


def open_flags(flags: int, mode: int | None = None) -> None:
    """build_open_how and build_open_flags.  open and openat drop unknown bits, and O_PATH drops all
    but a few; openat2 (``mode`` given) refuses them, and a mode without O_CREAT or O_TMPFILE.  Then
    both: O_CREAT with O_DIRECTORY is EINVAL, O_TMPFILE needs O_DIRECTORY and write access (the
    access mode 3 counts as write)."""
    if mode is None:
        flags = effective_open_flags(flags)
    else:
        if flags & ~VALID_OPEN_FLAGS:
            raise _einval("unknown open flags")
        if flags & (os.O_CREAT | O_TMPFILE_BIT):
            if mode & ~0o7777:
                raise _einval("mode bits beyond the permissions")
        elif mode:
            raise _einval("a mode without O_CREAT or O_TMPFILE")
    if flags & (os.O_CREAT | os.O_DIRECTORY) == os.O_CREAT | os.O_DIRECTORY:
        raise _einval("O_CREAT with O_DIRECTORY")
    if flags & O_TMPFILE_BIT:
        if not flags & os.O_DIRECTORY:
            raise _einval("O_TMPFILE needs O_DIRECTORY")
        if flags & os.O_ACCMODE == os.O_RDONLY:
            raise _einval("O_TMPFILE needs write access")
    if mode is not None and flags & os.O_PATH and flags & ~O_PATH_FLAGS:
        raise _einval("O_PATH with other flags")


def _open(c: Call) -> None:
    if c.sc.name != "creat":
        open_flags(s32(c.arg("oflags")))


def _openat2(c: Call) -> None:
    """sys_openat2 and copy_struct_from_user: the size, the struct (its tail must be zeros), then the flags."""
    size = c.args[3]
    if size < OPEN_HOW.size:
        raise _einval("struct open_how too small")
    if size > PAGE:
        raise OSError(errno.E2BIG, "struct open_how larger than a page")
    addr = c.args[2]
    if size > OPEN_HOW.size:
        tail = memory.read_some(c.t.tid, addr + OPEN_HOW.size, size - OPEN_HOW.size)
        if len(tail) < size - OPEN_HOW.size:
            raise OSError(errno.EFAULT, "bad struct open_how")
        if tail.strip(b"\0"):
            raise OSError(errno.E2BIG, "unknown fields in struct open_how")
    flags, mode, resolve = OPEN_HOW.unpack(memory.read(c.t.tid, addr, OPEN_HOW.size))
    if flags & ~VALID_OPEN_FLAGS or resolve & ~RESOLVE_ALL:
        raise _einval("unknown flags")
    if resolve & RESOLVE_BENEATH and resolve & RESOLVE_IN_ROOT:
        raise _einval("RESOLVE_BENEATH with RESOLVE_IN_ROOT")
    open_flags(flags, mode)


def _mknod(c: Call) -> None:
    """may_mknod, before the name is looked at: a directory is EPERM, an unknown type EINVAL."""
    kind = c.arg("mode") & 0o170000
    if kind == 0o040000:
        raise OSError(errno.EPERM, "mknod of a directory")
    if kind not in (0, 0o100000, 0o020000, 0o060000, 0o010000, 0o140000):
        raise _einval("unknown file type")


def _unlinkat(c: Call) -> None:
    if _u32(c.args[2]) & ~AT_REMOVEDIR:
        raise _einval("unlinkat flags")


def _linkat(c: Call) -> None:
    if _u32(c.args[4]) & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH):
        raise _einval("linkat flags")


def _renameat2(c: Call) -> None:
    flags = _u32(c.args[4])
    if flags & ~7 or flags & 2 and flags & 5:  # unknown; EXCHANGE with NOREPLACE or WHITEOUT
        raise _einval("renameat2 flags")


def _symlink(c: Call) -> None:
    """do_symlinkat: the target's name is read first (EFAULT, ENAMETOOLONG; empty: ENOENT)."""
    if not memory.read_cstring(c.t.tid, c.args[0]):
        raise OSError(errno.ENOENT, "empty symlink target")


def _readlink(c: Call) -> None:
    if s32(c.arg("size")) <= 0:
        raise _einval("a buffer size of zero or less")


def _at_flags(allowed: int) -> Callable[[Call], int | None]:
    def check(c: Call) -> None:
        if _u32(c.arg("atflags")) & ~allowed:
            raise _einval(f"{c.sc.name} flags")
    return check


def _access(c: Call) -> None:
    if _u32(c.arg("mode")) & ~7:
        raise _einval("access mode")
    if c.sc.name == "faccessat2" and _u32(c.arg("atflags")) & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise _einval("faccessat2 flags")


def _names_the_fd(c: Call, flags: int) -> bool:
    """getname_maybe_null: AT_EMPTY_PATH with a NULL or empty path and an fd (not AT_FDCWD) makes
    fstatat and statx calls on the fd, where fewer flags are checked (a path that faults is not one)."""
    if not flags & AT_EMPTY_PATH or s32(c.args[0]) < 0:
        return False
    try:
        return not c.args[1] or memory.read(c.t.tid, c.args[1], 1) == b"\0"
    except OSError:
        return False


def _fstatat(c: Call) -> None:
    """vfs_fstatat (Linux 6.11+): with AT_EMPTY_PATH, a NULL or empty path and an fd (not AT_FDCWD),
    the call is vfs_fstat of the fd and no other flag is looked at; otherwise vfs_statx checks them
    before the path (a path that faults is EINVAL with bad flags)."""
    flags = _u32(c.arg("atflags"))
    if flags & ~STAT_FLAGS and not _names_the_fd(c, flags):
        raise _einval("newfstatat flags")  # vfs_statx's mask: newfstatat takes statx's sync bits too


def _statx(c: Call) -> None:
    """do_statx and vfs_statx; do_statx_fd checks only the sync type and the mask."""
    flags, mask = _u32(c.args[2]), _u32(c.args[3])
    if flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE or mask & STATX__RESERVED:
        raise _einval("statx flags or mask")
    if flags & ~STAT_FLAGS and not _names_the_fd(c, flags):
        raise _einval("statx flags")


def _utime(c: Call) -> int | None:
    """The times are read (and, for utimes and futimesat, their microseconds checked) before the path;
    utimensat's nanoseconds after it, and its flags before it; both UTIME_OMIT is 0 at once."""
    name, ptr = c.sc.name, c.arg("ptr")
    if ptr:
        if name == "utime":
            memory.read(c.t.tid, ptr, 16)
        elif name in ("utimes", "futimesat"):
            t = struct.unpack("<qqqq", memory.read(c.t.tid, ptr, 32))
            if not (0 <= t[1] < 1_000_000 and 0 <= t[3] < 1_000_000):
                raise _einval("microseconds out of range")
        else:
            memory.read(c.t.tid, ptr, 32)
    if name == "utimensat":
        if ptr:
            t = struct.unpack("<qqqq", memory.read(c.t.tid, ptr, 32))
            if t[1] == UTIME_OMIT and t[3] == UTIME_OMIT:
                return 0  # nothing to do: the kernel does not even look at the path
        flags = _u32(c.args[3])
        if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) or flags and not c.args[1] and s32(c.args[0]) != -100:
            raise _einval("utimensat flags")  # do_utimes_fd (a NULL path: the fd) takes none
    return None


def _xattr_name(c: Call) -> None:
    """import_xattr_name: EFAULT, and ERANGE for an empty name or one past XATTR_NAME_MAX."""
    try:
        name = memory.read_cstring(c.t.tid, c.args[1], XATTR_NAME_MAX + 1)
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise OSError(errno.ERANGE, "xattr name too long") from None
        raise
    if not name:
        raise OSError(errno.ERANGE, "empty xattr name")


def _setxattr(c: Call) -> None:
    """setxattr_copy: the flags, the name, the size, then the value, all before the file."""
    if s32(c.args[4]) & ~(XATTR_CREATE | XATTR_REPLACE):
        raise _einval("setxattr flags")
    _xattr_name(c)
    size = c.args[3]
    if size > XATTR_SIZE_MAX:
        raise OSError(errno.E2BIG, "xattr value too large")
    if size:
        memory.read(c.t.tid, c.args[2], size)


def _fallocate(c: Call) -> None:
    """vfs_fallocate: the range, then the mode (one operation, KEEP_SIZE where it goes), before the
    fd's access mode."""
    mode, offset, length = _u32(c.args[1]), _s64(c.args[2]), _s64(c.args[3])
    if offset < 0 or length <= 0:
        raise _einval("bad range")
    op = mode & FALLOC_FL_MODE_MASK
    if mode & ~(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE) or op not in FALLOC_OPS \
            or FALLOC_OPS[op] is not None and bool(mode & FALLOC_FL_KEEP_SIZE) != FALLOC_OPS[op]:
        raise OSError(errno.EOPNOTSUPP, "fallocate mode")


def _sync_file_range(c: Call) -> None:
    offset, nbytes, flags = _s64(c.args[1]), _s64(c.args[2]), _u32(c.args[3])
    end = offset + nbytes
    if flags & ~SYNC_FILE_RANGE_ALL or offset < 0 or end < 0 or end < offset:
        raise _einval("sync_file_range arguments")


def _truncate(c: Call) -> None:
    """do_sys_truncate and do_sys_ftruncate: a negative length, before the file."""
    if _s64(c.args[1]) < 0:
        raise _einval("negative length")


def _position(c: Call) -> None:
    """pread64, pwrite64, preadv, pwritev (and the v2 calls with a position): a negative one is
    EINVAL before the fd is looked at."""
    pos = _s64(c.args[3])
    if pos < 0 and not (pos == -1 and c.sc.name in ("preadv2", "pwritev2")):
        raise _einval("negative offset")


def _flock(c: Call) -> int | None:
    """sys_flock: LOCK_MAND is ignored (0, before anything), an unknown operation is EINVAL."""
    op = _u32(c.args[1])
    if op & 32:
        return 0
    if op & ~4 not in (1, 2, 8):
        raise _einval("flock operation")
    return None


def _splice(c: Call) -> int | None:
    """sys_splice and sys_tee: a length of zero is 0, unknown flags EINVAL, before the fds."""
    count, flags = (c.args[4], c.args[5]) if c.sc.name == "splice" else (c.args[2], c.args[3])
    if c.sc.name == "splice" and not count:
        return 0
    if _u32(flags) & ~0xF:
        raise _einval("splice flags")
    if c.sc.name == "tee" and not count:
        return 0
    return None


def _sendfile(c: Call) -> None:
    """sys_sendfile64 reads the offset before it looks at either fd, and writes it back after, even
    when it failed: an offset it cannot write back is EFAULT whatever else went wrong."""
    if c.args[2]:
        pos = memory.read(c.t.tid, c.args[2], 8)
        if memory.write_some(c.t.tid, c.args[2], pos) < 8:
            raise OSError(errno.EFAULT, "the offset cannot be written back")


def _fadvise(c: Call) -> None:
    """generic_fadvise: a negative length or an unknown advice (after the fd)."""
    if _s64(c.args[2]) < 0 or _u32(c.args[3]) > 5:
        raise _einval("fadvise arguments")


def _readahead(c: Call) -> None:
    """ksys_readahead: the fd must be open for reading (EBADF), then be a file (EINVAL)."""
    of = c.vfd(0)
    if of is not None and not of.readable:
        raise OSError(errno.EBADF, "not open for reading")
    if of is not None and of.is_dir or _s64(c.args[2]) < 0:  # then vfs_fadvise: a negative length
        raise _einval("not a file, or a negative count")


# call name -> its check (raising the errno, or returning the call's result when the kernel
# answers without a lookup).  BEFORE: checks the kernel makes before it looks at any fd or path
# (an O_PATH or closed fd is EBADF after them); AFTER_FD: checks it makes once the fd the call
# names is known to be open (run when it is a virtual one: a real fd goes to the kernel).
BEFORE: dict[str, Callable[[Call], int | None]] = {
    "open": _open, "openat": _open, "creat": _open, "openat2": _openat2,
    "mknod": _mknod, "mknodat": _mknod,
    "unlinkat": _unlinkat, "linkat": _linkat, "renameat2": _renameat2,
    "symlink": _symlink, "symlinkat": _symlink,
    "readlink": _readlink, "readlinkat": _readlink,
    "fchmodat2": _at_flags(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH),
    "fchownat": _at_flags(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH),
    "newfstatat": _fstatat,
    "statx": _statx,
    "access": _access, "faccessat": _access, "faccessat2": _access,
    "utime": _utime, "utimes": _utime, "futimesat": _utime, "utimensat": _utime,
    "setxattr": _setxattr, "lsetxattr": _setxattr,
    "getxattr": _xattr_name, "lgetxattr": _xattr_name, "removexattr": _xattr_name, "lremovexattr": _xattr_name,
    "fgetxattr": _xattr_name, "fremovexattr": _xattr_name, "fsetxattr": _setxattr,
    "truncate": _truncate, "ftruncate": _truncate,
    "pread64": _position, "pwrite64": _position, "preadv": _position, "pwritev": _position,
    "preadv2": _position, "pwritev2": _position,
    "flock": _flock, "splice": _splice, "tee": _splice, "sendfile": _sendfile,
}
AFTER_FD: dict[str, Callable[[Call], int | None]] = {
    "fallocate": _fallocate, "sync_file_range": _sync_file_range,
    "fadvise64": _fadvise, "readahead": _readahead,
}
