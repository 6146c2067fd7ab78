"""File-system semantics conformance checker.

Usage: ``python3 tests/fsconform.py DIR``   (FSCONFORM_SKIP=NAME,...: record those as "skipped")

Runs a battery of small, self-contained checks inside DIR (creating its own
fixtures in a fresh sub-directory) and prints one JSON object mapping check
names to results.  Every result is a deterministic value -- "ok", an errno
name, a bool, a list -- that does not depend on where DIR lives: no absolute
paths, inode numbers, device numbers, absolute timestamps, ids or free-space
figures ever end up in the output.

Why: umvu serves file systems from user space (vufs, unreal, ...).  Running
the same script once on a plain directory of a real Linux file system and
once through a virtual file system mounted in umvu, then diffing the two JSON
objects, shows exactly where the virtual implementation departs from the
kernel's semantics.  The differences are the report.

A check that raises unexpectedly is recorded as ``EXC:<Type>:<errno name>``
and the run continues with the next check.
"""

import ctypes
import errno
import fcntl
import hashlib
import json
import mmap
import os
import platform
import random
import socket
import stat
import sys
import tempfile
import time
from contextlib import contextmanager

CHECKS = []  # (name, function) in registration order

# renameat2(2) is not wrapped by Python's os module; call the raw syscall.
RENAMEAT2_NR = {"x86_64": 316, "aarch64": 276, "riscv64": 276, "i686": 353, "i386": 353}
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100

# Long enough for coarse-grained kernel clocks (jiffies at HZ=100) to tick.
TICK = 0.05


def check(name):
    """Register the decorated function as the check called *name*.

    The function receives a fresh, empty directory (absolute path) and
    returns the result to record.
    """

    def register(fn):
        if any(existing == name for existing, _ in CHECKS):
            raise ValueError(f"duplicate check name {name!r}")
        CHECKS.append((name, fn))
        return fn

    return register


def errname(exc):
    """The symbolic errno name of an OSError, e.g. 'ENOENT'."""
    if exc.errno is None:
        return "NOERRNO"
    return errno.errorcode.get(exc.errno, f"E{exc.errno}")


def attempt(fn, *args, **kwargs):
    """Call fn; return "ok" on success or the errno name of the OSError it raised."""
    try:
        fn(*args, **kwargs)
    except OSError as exc:
        return errname(exc)
    return "ok"


def is_root():
    return os.geteuid() == 0


@contextmanager
def opened(path, flags=os.O_RDONLY, mode=0o644, dir_fd=None):
    fd = os.open(path, flags, mode, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


def write_file(path, data=b"", mode=0o644):
    with opened(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode) as fd:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]


def read_file(path):
    chunks = []
    with opened(path) as fd:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    return b"".join(chunks)


def try_open(path, flags, mode=0o644):
    """Open and immediately close; "ok" or the errno name."""

    def do():
        os.close(os.open(path, flags, mode))

    return attempt(do)


def j(d, *parts):
    return os.path.join(d, *parts)


# ---------------------------------------------------------------------------
# error codes
# ---------------------------------------------------------------------------


@check("err.open_missing")
def _(d):
    return try_open(j(d, "missing"), os.O_RDONLY)


@check("err.mkdir_existing")
def _(d):
    os.mkdir(j(d, "x"))
    return attempt(os.mkdir, j(d, "x"))


@check("err.missing_parent_or_source")
def _(d):
    return {
        "stat": attempt(os.stat, j(d, "missing")),
        "unlink": attempt(os.unlink, j(d, "missing")),
        "rename_source": attempt(os.rename, j(d, "missing"), j(d, "x")),
        "mkdir_in_missing": attempt(os.mkdir, j(d, "nope", "x")),
        "creat_in_missing": try_open(j(d, "nope", "f"), os.O_WRONLY | os.O_CREAT),
    }


@check("err.rmdir_nonempty")
def _(d):
    os.mkdir(j(d, "x"))
    write_file(j(d, "x", "f"))
    return attempt(os.rmdir, j(d, "x"))


@check("err.rmdir_file")
def _(d):
    write_file(j(d, "f"))
    return attempt(os.rmdir, j(d, "f"))


@check("err.rmdir_dot")
def _(d):
    os.mkdir(j(d, "x"))
    return attempt(os.rmdir, j(d, "x", "."))


@check("err.unlink_dir")
def _(d):
    os.mkdir(j(d, "x"))
    return attempt(os.unlink, j(d, "x"))


@check("err.trailing_slash")
def _(d):
    write_file(j(d, "f"))
    return {
        "open_file_slash": try_open(j(d, "f") + "/", os.O_RDONLY),
        "stat_file_slash": attempt(os.stat, j(d, "f") + "/"),
        "creat_new_slash": try_open(j(d, "new") + "/", os.O_WRONLY | os.O_CREAT),
        "mkdir_new_slash": attempt(os.mkdir, j(d, "newdir") + "/"),
    }


@check("err.file_as_path_component")
def _(d):
    write_file(j(d, "f"))
    return [try_open(j(d, "f", "x"), os.O_RDONLY), attempt(os.stat, j(d, "f", "x"))]


@check("err.name_too_long")
def _(d):
    return {
        "name_255": try_open(j(d, "a" * 255), os.O_WRONLY | os.O_CREAT),
        "name_256": try_open(j(d, "b" * 256), os.O_WRONLY | os.O_CREAT),
        "mkdir_256": attempt(os.mkdir, j(d, "c" * 256)),
        "path_over_4096": attempt(os.stat, j(d, *(["c" * 200] * 21))),
    }


@check("err.symlink_loop")
def _(d):
    os.symlink("b", j(d, "a"))
    os.symlink("a", j(d, "b"))
    # Linux follows at most 40 links while resolving one path.
    write_file(j(d, "l0"), b"end")
    for i in range(1, 42):
        os.symlink(f"l{i - 1}", j(d, f"l{i}"))
    return {
        "open": try_open(j(d, "a"), os.O_RDONLY),
        "stat": attempt(os.stat, j(d, "a")),
        "lstat": attempt(os.lstat, j(d, "a")),
        "chain_40": try_open(j(d, "l40"), os.O_RDONLY),
        "chain_41": try_open(j(d, "l41"), os.O_RDONLY),
    }


@check("err.readlink_not_symlink")
def _(d):
    write_file(j(d, "f"))
    os.mkdir(j(d, "x"))
    return [attempt(os.readlink, j(d, "f")), attempt(os.readlink, j(d, "x"))]


@check("err.rename_dir_into_own_subdir")
def _(d):
    os.makedirs(j(d, "a", "b"))
    return attempt(os.rename, j(d, "a"), j(d, "a", "b", "c"))


@check("err.rename_dir_over_nonempty_dir")
def _(d):
    os.mkdir(j(d, "a"))
    os.mkdir(j(d, "b"))
    write_file(j(d, "b", "f"))
    return attempt(os.rename, j(d, "a"), j(d, "b"))


@check("err.rename_dir_over_file")
def _(d):
    os.mkdir(j(d, "a"))
    write_file(j(d, "f"))
    return attempt(os.rename, j(d, "a"), j(d, "f"))


@check("err.rename_file_over_dir")
def _(d):
    os.mkdir(j(d, "a"))
    write_file(j(d, "f"))
    return attempt(os.rename, j(d, "f"), j(d, "a"))


@check("err.link_dir")
def _(d):
    os.mkdir(j(d, "a"))
    return attempt(os.link, j(d, "a"), j(d, "b"))


@check("err.create_over_existing_name")
def _(d):
    write_file(j(d, "a"))
    write_file(j(d, "b"))
    return {
        "link": attempt(os.link, j(d, "a"), j(d, "b")),
        "symlink": attempt(os.symlink, "x", j(d, "b")),
        "mknod": attempt(os.mknod, j(d, "b"), 0o600 | stat.S_IFREG),
        "mkfifo": attempt(os.mkfifo, j(d, "b")),
    }


@check("err.open_dir_wronly")
def _(d):
    return [try_open(d, os.O_WRONLY), try_open(d, os.O_RDWR)]


@check("err.fd_misuse")
def _(d):
    write_file(j(d, "f"), b"data")
    with opened(j(d, "f"), os.O_RDONLY) as fd:
        w = attempt(os.write, fd, b"x")
        trunc_rdonly = attempt(os.ftruncate, fd, 0)
    with opened(j(d, "f"), os.O_WRONLY) as fd:
        r = attempt(os.read, fd, 4)
        seek = attempt(os.lseek, fd, -1, os.SEEK_SET)
        trunc = attempt(os.ftruncate, fd, -1)
    return {
        "write_rdonly": w,
        "ftruncate_rdonly": trunc_rdonly,
        "read_wronly": r,
        "negative_seek": seek,
        "negative_ftruncate": trunc,
    }


# ---------------------------------------------------------------------------
# open flags
# ---------------------------------------------------------------------------


@check("open.excl_existing")
def _(d):
    write_file(j(d, "f"))
    return try_open(j(d, "f"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)


@check("open.dangling_symlink")
def _(d):
    os.symlink("nowhere", j(d, "l"))
    excl = try_open(j(d, "l"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    created_by_excl = os.path.lexists(j(d, "nowhere"))
    creat = try_open(j(d, "l"), os.O_WRONLY | os.O_CREAT)
    return {
        "creat_excl": excl,
        "excl_created_target": created_by_excl,
        "creat": creat,
        "creat_created_target": os.path.isfile(j(d, "nowhere")),
    }


@check("open.trunc")
def _(d):
    write_file(j(d, "f"), b"0123456789")
    with opened(j(d, "f"), os.O_WRONLY | os.O_TRUNC) as fd:
        size_open = os.fstat(fd).st_size
        os.write(fd, b"ab")
    return [size_open, read_file(j(d, "f")).decode()]


@check("open.trunc_read_only")
def _(d):
    # O_TRUNC truncates a regular file whatever the access mode (it needs write permission)
    write_file(j(d, "f"), b"0123456789")
    with opened(j(d, "f"), os.O_RDONLY | os.O_TRUNC) as fd:
        size_open = os.fstat(fd).st_size
    os.chmod(j(d, "f"), 0o444)
    return [size_open, os.stat(j(d, "f")).st_size, try_open(j(d, "f"), os.O_RDONLY | os.O_TRUNC)
            if os.geteuid() else "root"]


@check("open.append_after_lseek0")
def _(d):
    write_file(j(d, "f"), b"hello")
    with opened(j(d, "f"), os.O_WRONLY | os.O_APPEND) as fd:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"WORLD")
        pos = os.lseek(fd, 0, os.SEEK_CUR)
    return [read_file(j(d, "f")).decode(), pos]


@check("open.append_pwrite")
def _(d):
    # On Linux, pwrite() on an O_APPEND descriptor appends regardless of offset.
    write_file(j(d, "f"), b"hello")
    with opened(j(d, "f"), os.O_WRONLY | os.O_APPEND) as fd:
        res = attempt(os.pwrite, fd, b"X", 1)
    return [res, read_file(j(d, "f")).decode()]


@check("open.directory_on_file")
def _(d):
    write_file(j(d, "f"))
    return [try_open(j(d, "f"), os.O_RDONLY | os.O_DIRECTORY), try_open(d, os.O_RDONLY | os.O_DIRECTORY)]


@check("open.nofollow_symlink")
def _(d):
    write_file(j(d, "f"))
    os.symlink("f", j(d, "l"))
    return [try_open(j(d, "l"), os.O_RDONLY | os.O_NOFOLLOW), try_open(j(d, "f"), os.O_RDONLY | os.O_NOFOLLOW)]


@check("open.path_fd")
def _(d):
    write_file(j(d, "f"), b"abc")
    os.symlink("target-text", j(d, "l"))
    with opened(j(d, "f"), os.O_PATH) as fd:
        st = os.fstat(fd)
        out = {
            "fstat_size": st.st_size,
            "fstat_isreg": stat.S_ISREG(st.st_mode),
            "read": attempt(os.read, fd, 3),
            "write": attempt(os.write, fd, b"x"),
        }
    with opened(j(d, "l"), os.O_PATH | os.O_NOFOLLOW) as fd:
        st = os.fstat(fd)
        out["symlink_nofollow"] = [stat.S_ISLNK(st.st_mode), st.st_size]
    return out


@check("open.tmpfile")
def _(d):
    try:
        fd = os.open(d, os.O_TMPFILE | os.O_RDWR, 0o600)
    except OSError as exc:
        return errname(exc)
    try:
        os.write(fd, b"anon")
        before = sorted(os.listdir(d))
        nlink = os.fstat(fd).st_nlink
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            # dst_dir_fd makes os.link use linkat(AT_SYMLINK_FOLLOW) on the magic link.
            linked = attempt(os.link, f"/proc/self/fd/{fd}", "named", dst_dir_fd=dfd, follow_symlinks=True)
        finally:
            os.close(dfd)
        content = read_file(j(d, "named")).decode() if linked == "ok" else None
        return {"listed_before": before, "nlink": nlink, "linkat": linked, "content": content}
    finally:
        os.close(fd)


@check("open.creat_mode_umask")
def _(d):
    os.umask(0o022)
    write_file(j(d, "f"), mode=0o777)
    os.mkdir(j(d, "x"), 0o777)
    os.umask(0o077)
    write_file(j(d, "g"), mode=0o666)
    modes = [oct(stat.S_IMODE(os.stat(j(d, n)).st_mode)) for n in ("f", "x", "g")]
    # O_CREAT on an existing file neither changes its mode nor its content.
    with opened(j(d, "g"), os.O_WRONLY | os.O_CREAT, 0o777) as fd:
        os.write(fd, b"k")
    return {"new": modes, "existing": oct(stat.S_IMODE(os.stat(j(d, "g")).st_mode))}


@check("open.fcntl_flags")
def _(d):
    write_file(j(d, "f"), b"base")
    with opened(j(d, "f"), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC) as fd:
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
        fdfl = fcntl.fcntl(fd, fcntl.F_GETFD)
        return {
            "append": bool(fl & os.O_APPEND),
            "accmode_wronly": (fl & os.O_ACCMODE) == os.O_WRONLY,
            "cloexec": bool(fdfl & fcntl.FD_CLOEXEC),
        }


@check("open.fcntl_setfl_append")
def _(d):
    write_file(j(d, "f"), b"base")
    with opened(j(d, "f"), os.O_WRONLY) as fd:
        before = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        after = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"+tail")
    return [before, after, read_file(j(d, "f")).decode()]


@check("open.offset_sharing")
def _(d):
    write_file(j(d, "f"), b"0123456789")
    with opened(j(d, "f")) as fd, opened(j(d, "f")) as other:
        fd2 = os.dup(fd)
        try:
            first = os.read(fd, 3)
            via_dup = os.read(fd2, 3)
        finally:
            os.close(fd2)
        via_other_open = os.read(other, 2)
    return {"dup": [first.decode(), via_dup.decode()], "separate_open": via_other_open.decode()}


# ---------------------------------------------------------------------------
# read / write / lseek
# ---------------------------------------------------------------------------


@check("io.pread_pwrite")
def _(d):
    write_file(j(d, "f"), b"0123456789")
    with opened(j(d, "f"), os.O_RDWR) as fd:
        os.pwrite(fd, b"AB", 4)
        got = os.pread(fd, 5, 3)
        pos = os.lseek(fd, 0, os.SEEK_CUR)
    return [got.decode(), pos, read_file(j(d, "f")).decode()]


@check("io.vectored")
def _(d):
    write_file(j(d, "f"), b"")
    with opened(j(d, "f"), os.O_RDWR) as fd:
        wrote = [os.writev(fd, [b"ab", b"", b"cde"]), os.pwritev(fd, [b"XY", b"Z"], 1)]
        bufs = [bytearray(2), bytearray(0), bytearray(3)]
        got = [os.preadv(fd, bufs, 0), [bytes(b).decode() for b in bufs], os.lseek(fd, 0, os.SEEK_CUR)]
    return [wrote, got, read_file(j(d, "f")).decode()]


@check("io.lseek_whence")
def _(d):
    write_file(j(d, "f"), b"0123456789")
    with opened(j(d, "f")) as fd:
        end = os.lseek(fd, -3, os.SEEK_END)
        tail = os.read(fd, 10)
        cur = os.lseek(fd, -5, os.SEEK_CUR)
        mid = os.read(fd, 2)
        beyond = os.lseek(fd, 100, os.SEEK_END)
        past = os.read(fd, 10)
    return [end, tail.decode(), cur, mid.decode(), beyond, past.decode()]


@check("io.seek_data_hole")
def _(d):
    write_file(j(d, "f"), b"x" * 100)
    with opened(j(d, "f")) as fd:
        return [
            os.lseek(fd, 0, os.SEEK_DATA),
            os.lseek(fd, 0, os.SEEK_HOLE),
            os.lseek(fd, 50, os.SEEK_HOLE),
            attempt(os.lseek, fd, 100, os.SEEK_DATA),
            attempt(os.lseek, fd, 200, os.SEEK_HOLE),
        ]


@check("io.write_past_end_zero_fills")
def _(d):
    write_file(j(d, "f"), b"a")
    with opened(j(d, "f"), os.O_RDWR) as fd:
        os.lseek(fd, 100000, os.SEEK_SET)
        os.write(fd, b"z")
        size = os.fstat(fd).st_size
    data = read_file(j(d, "f"))
    return [size, data[:1].decode(), data[1:100000] == bytes(99999), data[-1:].decode()]


@check("io.truncate_grow_shrink")
def _(d):
    write_file(j(d, "f"), b"abcdef")
    with opened(j(d, "f"), os.O_RDWR) as fd:
        os.ftruncate(fd, 10)
        grown = os.pread(fd, 100, 0)
        os.ftruncate(fd, 3)
        shrunk = os.pread(fd, 100, 0)
        pos = os.lseek(fd, 0, os.SEEK_CUR)
        size = os.fstat(fd).st_size
    write_file(j(d, "p"), b"abcdef")
    os.truncate(j(d, "p"), 2)
    by_path_shrunk = read_file(j(d, "p"))
    os.truncate(j(d, "p"), 5)
    by_path_grown = read_file(j(d, "p"))
    return {
        "ftruncate": [grown.hex(), shrunk.decode(), pos, size],
        "truncate_path": [by_path_shrunk.decode(), by_path_grown.hex()],
    }


@check("io.read_at_eof")
def _(d):
    write_file(j(d, "f"), b"abc")
    write_file(j(d, "empty"))
    with opened(j(d, "f")) as fd:
        first = os.read(fd, 3)
        out = [first.decode(), os.read(fd, 10), os.pread(fd, 10, 3), os.pread(fd, 10, 1000)]
    with opened(j(d, "empty")) as fd:
        out.append(os.read(fd, 10))
    return out


@check("io.unlinked_open_file")
def _(d):
    write_file(j(d, "f"), b"still here")
    with opened(j(d, "f"), os.O_RDWR) as fd:
        os.unlink(j(d, "f"))
        os.write(fd, b"STILL")
        st = os.fstat(fd)
        data = os.pread(fd, 100, 0)
        listed = os.listdir(d)
    return [data.decode(), st.st_nlink, st.st_size, listed]


@check("io.large_pattern_sha256")
def _(d):
    data = random.Random(20240607).randbytes(3 * 1024 * 1024 + 123)
    want = hashlib.sha256(data).hexdigest()
    sizes = [1, 4095, 4097, 65537, 12345, 131072, 7, 300001]
    with opened(j(d, "big"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC) as fd:
        off, i = 0, 0
        while off < len(data):
            chunk = data[off : off + sizes[i % len(sizes)]]
            written = os.write(fd, chunk)
            off += written
            i += 1
    h = hashlib.sha256()
    total = 0
    with opened(j(d, "big")) as fd:
        while chunk := os.read(fd, 65536):
            h.update(chunk)
            total += len(chunk)
    return {"size": os.stat(j(d, "big")).st_size, "read_total": total, "sha256_equal": h.hexdigest() == want}


@check("io.mmap_private_read")
def _(d):
    data = random.Random(7).randbytes(1024 * 1024 + 17)
    write_file(j(d, "m"), data)
    with opened(j(d, "m")) as fd:
        try:
            m = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
        except OSError as exc:
            return errname(exc)
        with m:
            return [len(m), m[:] == data]


@check("io.mmap_shared_write")
def _(d):
    write_file(j(d, "m"), b"." * 8192)
    with opened(j(d, "m"), os.O_RDWR) as fd:
        try:
            m = mmap.mmap(fd, 8192, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            return errname(exc)
        with m:
            m[4096:4101] = b"HELLO"
            m.flush()
    data = read_file(j(d, "m"))
    return [len(data), data[4094:4103].decode()]


# ---------------------------------------------------------------------------
# stat
# ---------------------------------------------------------------------------


@check("stat.sizes")
def _(d):
    out = []
    for n in (0, 1, 4096, 5000):
        write_file(j(d, f"f{n}"), b"q" * n)
        out.append(os.stat(j(d, f"f{n}")).st_size)
    return out


@check("stat.file_nlink")
def _(d):
    write_file(j(d, "f"), b"x")
    counts = [os.stat(j(d, "f")).st_nlink]
    os.link(j(d, "f"), j(d, "g"))
    counts.append(os.stat(j(d, "f")).st_nlink)
    same = os.stat(j(d, "f")).st_ino == os.stat(j(d, "g")).st_ino
    os.unlink(j(d, "g"))
    counts.append(os.stat(j(d, "f")).st_nlink)
    return {"nlink": counts, "same_inode": same}


@check("stat.dir_nlink")
def _(d):
    os.mkdir(j(d, "x"))
    counts = [os.stat(j(d, "x")).st_nlink]
    os.mkdir(j(d, "x", "sub"))
    counts.append(os.stat(j(d, "x")).st_nlink)
    write_file(j(d, "x", "file"))
    counts.append(os.stat(j(d, "x")).st_nlink)
    os.rmdir(j(d, "x", "sub"))
    counts.append(os.stat(j(d, "x")).st_nlink)
    return counts


@check("stat.chmod_mode_bits")
def _(d):
    write_file(j(d, "f"))
    os.mkdir(j(d, "x"))
    out = []
    for path, mode in ((j(d, "f"), 0o640), (j(d, "f"), 0o4711), (j(d, "f"), 0o2750), (j(d, "x"), 0o1777)):
        os.chmod(path, mode)
        out.append(oct(stat.S_IMODE(os.stat(path).st_mode)))
    with opened(j(d, "f")) as fd:
        os.fchmod(fd, 0o604)
        out.append(oct(stat.S_IMODE(os.fstat(fd).st_mode)))
    return out


@check("stat.symlink")
def _(d):
    write_file(j(d, "f"), b"12345")
    os.symlink("f", j(d, "l"))
    lst, st = os.lstat(j(d, "l")), os.stat(j(d, "l"))
    sizes = []
    for i, target in enumerate(["some/longer/relative/target", "x" * 200, "../" * 10 + "end"]):
        os.symlink(target, j(d, f"s{i}"))
        sizes.append(os.lstat(j(d, f"s{i}")).st_size == len(target))
    return {
        "lstat_islnk": stat.S_ISLNK(lst.st_mode),
        "lstat_size_is_target_len": lst.st_size == 1,
        "stat_isreg": stat.S_ISREG(st.st_mode),
        "stat_size": st.st_size,
        "longer_sizes_match": sizes,
    }


@check("stat.dir_fd_nofollow")
def _(d):
    os.mkdir(j(d, "x"))
    write_file(j(d, "x", "f"), b"abc")
    os.symlink("f", j(d, "x", "l"))
    with opened(j(d, "x"), os.O_RDONLY | os.O_DIRECTORY) as dfd:
        nf = os.stat("l", dir_fd=dfd, follow_symlinks=False)
        fo = os.stat("l", dir_fd=dfd)
        missing = attempt(os.stat, "nope", dir_fd=dfd)
    return [stat.S_ISLNK(nf.st_mode), nf.st_size, stat.S_ISREG(fo.st_mode), fo.st_size, missing]


@check("stat.fstat_equals_stat")
def _(d):
    write_file(j(d, "f"), b"hello world")
    st = os.stat(j(d, "f"))
    with opened(j(d, "f")) as fd:
        fst = os.fstat(fd)
    return {"equal": (st.st_ino, st.st_size, st.st_mode) == (fst.st_ino, fst.st_size, fst.st_mode)}


@check("stat.owner_is_self")
def _(d):
    write_file(j(d, "f"))
    os.mkdir(j(d, "x"))
    os.symlink("f", j(d, "l"))
    uid = os.geteuid()
    return [os.stat(j(d, "f")).st_uid == uid, os.stat(j(d, "x")).st_uid == uid, os.lstat(j(d, "l")).st_uid == uid]


@check("stat.statvfs")
def _(d):
    sv = os.statvfs(d)
    return {"bsize_positive": sv.f_bsize > 0, "namemax": sv.f_namemax}


# ---------------------------------------------------------------------------
# timestamps
# ---------------------------------------------------------------------------

OLD_NS = 1_000_000_000 * 1_000_000_000  # 2001-09-09, well in the past


@check("time.mtime_ctime_after_write")
def _(d):
    write_file(j(d, "f"), b"xyz")
    os.utime(j(d, "f"), ns=(OLD_NS, OLD_NS))
    before = os.stat(j(d, "f"))
    time.sleep(TICK)
    with opened(j(d, "f"), os.O_WRONLY) as fd:
        os.write(fd, b"y")
    after = os.stat(j(d, "f"))
    os.utime(j(d, "f"), ns=(OLD_NS, OLD_NS))
    os.truncate(j(d, "f"), 1)
    return {
        "mtime_changed": after.st_mtime_ns > before.st_mtime_ns,
        "ctime_changed": after.st_ctime_ns > before.st_ctime_ns,
        "truncate_changes_mtime": os.stat(j(d, "f")).st_mtime_ns > OLD_NS,
    }


@check("time.mtime_unchanged")
def _(d):
    write_file(j(d, "f"), b"xyz")
    os.utime(j(d, "f"), ns=(OLD_NS, OLD_NS))
    os.utime(d, ns=(OLD_NS, OLD_NS))
    read_file(j(d, "f"))
    file_after_read = os.stat(j(d, "f")).st_mtime_ns == OLD_NS
    with opened(j(d, "f"), os.O_WRONLY) as fd:
        os.write(fd, b"abcd")
    return {"file_after_read": file_after_read, "dir_after_child_write": os.stat(d).st_mtime_ns == OLD_NS}


@check("time.utime_exact")
def _(d):
    write_file(j(d, "f"))
    a, m = 1_234_567_890_123_456_789, 1_300_000_000_987_654_321
    os.utime(j(d, "f"), ns=(a, m))
    st = os.stat(j(d, "f"))
    exact_ns = [st.st_atime_ns == a, st.st_mtime_ns == m]
    os.utime(j(d, "f"), (1_000_000_000, 1_100_000_000))
    st = os.stat(j(d, "f"))
    exact_s = [st.st_atime_ns == 1_000_000_000 * 10**9, st.st_mtime_ns == 1_100_000_000 * 10**9]
    return {"ns": exact_ns, "seconds": exact_s}


@check("time.utime_targets")
def _(d):
    os.mkdir(j(d, "x"))
    write_file(j(d, "f"))
    os.symlink("f", j(d, "l"))
    os.utime(j(d, "x"), ns=(OLD_NS, OLD_NS + 1))
    with opened(j(d, "f")) as fd:
        os.utime(fd, ns=(OLD_NS + 2, OLD_NS + 3))
    sx, sf = os.stat(j(d, "x")), os.stat(j(d, "f"))
    out = {"dir": [sx.st_atime_ns - OLD_NS, sx.st_mtime_ns - OLD_NS]}
    out["fd"] = [sf.st_atime_ns - OLD_NS, sf.st_mtime_ns - OLD_NS]
    os.utime(j(d, "l"), ns=(OLD_NS + 4, OLD_NS + 4))  # follows to f
    out["through_symlink"] = os.stat(j(d, "f")).st_mtime_ns == OLD_NS + 4
    out["symlink_nofollow"] = attempt(os.utime, j(d, "l"), ns=(OLD_NS + 5, OLD_NS + 5), follow_symlinks=False)
    out["symlink_itself_set"] = os.lstat(j(d, "l")).st_mtime_ns == OLD_NS + 5
    out["target_untouched"] = os.stat(j(d, "f")).st_mtime_ns == OLD_NS + 4
    return out


@check("time.ctime_after_metadata_change")
def _(d):
    write_file(j(d, "f"))
    mtime = os.stat(j(d, "f")).st_mtime_ns
    out = {}
    for label, action in (
        ("chmod", lambda: os.chmod(j(d, "f"), 0o600)),
        ("link", lambda: os.link(j(d, "f"), j(d, "g"))),
        ("rename", lambda: os.rename(j(d, "g"), j(d, "h"))),
    ):
        before = os.stat(j(d, "f")).st_ctime_ns
        time.sleep(TICK)
        action()
        out[label] = os.stat(j(d, "f")).st_ctime_ns > before
    out["mtime_unchanged"] = os.stat(j(d, "f")).st_mtime_ns == mtime
    return out


@check("time.dir_mtime_after_entry_changes")
def _(d):
    os.mkdir(j(d, "x"))
    out = []
    for action in (
        lambda: write_file(j(d, "x", "f")),
        lambda: os.mkdir(j(d, "x", "sub")),
        lambda: os.rename(j(d, "x", "f"), j(d, "x", "g")),
        lambda: os.unlink(j(d, "x", "g")),
        lambda: os.rmdir(j(d, "x", "sub")),
    ):
        os.utime(j(d, "x"), ns=(OLD_NS, OLD_NS))
        action()
        out.append(os.stat(j(d, "x")).st_mtime_ns > OLD_NS)
    return out


# ---------------------------------------------------------------------------
# rename and link corner cases
# ---------------------------------------------------------------------------


def renameat2(old, new, flags):
    """renameat2(2) via the raw syscall; "ok" or the errno name."""
    nr = RENAMEAT2_NR.get(platform.machine())
    if nr is None:
        return "SKIP:arch"
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    rc = libc.syscall(
        ctypes.c_long(nr),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(os.fsencode(old)),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(os.fsencode(new)),
        ctypes.c_uint(flags),
    )
    if rc == 0:
        return "ok"
    e = ctypes.get_errno()
    return errno.errorcode.get(e, f"E{e}")


@check("rename.onto_itself")
def _(d):
    write_file(j(d, "f"), b"same")
    res = attempt(os.rename, j(d, "f"), j(d, "f"))
    return [res, read_file(j(d, "f")).decode(), os.listdir(d), os.stat(j(d, "f")).st_nlink]


@check("rename.file_over_file")
def _(d):
    write_file(j(d, "a"), b"from a")
    write_file(j(d, "b"), b"from b")
    with opened(j(d, "b")) as fd:
        os.rename(j(d, "a"), j(d, "b"))
        old_fd = [os.read(fd, 10).decode(), os.fstat(fd).st_nlink]
    return {"listing": _listing(d), "content": read_file(j(d, "b")).decode(), "replaced_open_fd": old_fd}


@check("rename.hardlinks_same_inode")
def _(d):
    write_file(j(d, "a"), b"x")
    os.link(j(d, "a"), j(d, "b"))
    res = attempt(os.rename, j(d, "a"), j(d, "b"))
    return [res, sorted(os.listdir(d)), os.stat(j(d, "a")).st_nlink]


@check("rename.dir_over_empty_dir")
def _(d):
    os.mkdir(j(d, "a"))
    write_file(j(d, "a", "f"), b"in a")
    os.mkdir(j(d, "b"))
    res = attempt(os.rename, j(d, "a"), j(d, "b"))
    return [res, sorted(os.listdir(d)), os.listdir(j(d, "b"))]


@check("rename.symlinks")
def _(d):
    write_file(j(d, "target"), b"target")
    os.mkdir(j(d, "sub"))
    os.symlink("target", j(d, "l"))
    write_file(j(d, "f"), b"moved")
    os.rename(j(d, "f"), j(d, "l"))
    over = [os.path.islink(j(d, "l")), read_file(j(d, "l")).decode(), read_file(j(d, "target")).decode()]
    os.symlink("target", j(d, "l2"))
    os.rename(j(d, "l2"), j(d, "sub", "l2"))
    moved = [os.readlink(j(d, "sub", "l2")), os.path.exists(j(d, "sub", "l2")), sorted(os.listdir(d))]
    return {"file_over_symlink": over, "move_symlink": moved}


@check("rename.across_dirs_open_cwd")
def _(d):
    os.makedirs(j(d, "a", "deep"))
    os.mkdir(j(d, "b"))
    write_file(j(d, "a", "deep", "f"), b"deep file")
    os.chdir(j(d, "a", "deep"))
    os.rename(j(d, "a"), j(d, "b", "moved"))
    return [read_file("f").decode(), os.path.basename(os.getcwd()), os.listdir(j(d, "b"))]


@check("rename.noreplace")
def _(d):
    write_file(j(d, "a"), b"A")
    write_file(j(d, "b"), b"B")
    clash = renameat2(j(d, "a"), j(d, "b"), RENAME_NOREPLACE)
    fresh = renameat2(j(d, "a"), j(d, "c"), RENAME_NOREPLACE)
    contents = {n: read_file(j(d, n)).decode() for n in sorted(os.listdir(d))}
    return {"existing": clash, "new": fresh, "contents": contents}


@check("rename.exchange")
def _(d):
    write_file(j(d, "a"), b"A")
    write_file(j(d, "b"), b"B")
    res = renameat2(j(d, "a"), j(d, "b"), RENAME_EXCHANGE)
    if res != "ok":
        return res
    out = {"files": [res, read_file(j(d, "a")).decode(), read_file(j(d, "b")).decode()]}
    os.mkdir(j(d, "x"))
    write_file(j(d, "x", "inner"), b"I")
    res = renameat2(j(d, "a"), j(d, "x"), RENAME_EXCHANGE)
    out["file_and_dir"] = [res, os.listdir(j(d, "a")), read_file(j(d, "x")).decode()]
    out["missing_target"] = renameat2(j(d, "a"), j(d, "nope"), RENAME_EXCHANGE)
    out["with_noreplace"] = renameat2(j(d, "a"), j(d, "b"), RENAME_EXCHANGE | RENAME_NOREPLACE)
    return out


# ---------------------------------------------------------------------------
# directories
# ---------------------------------------------------------------------------


def populate(d):
    os.mkdir(j(d, "subdir"))
    os.mkdir(j(d, "empty dir"))
    write_file(j(d, "file"), b"f")
    write_file(j(d, "name with spaces"), b"s")
    write_file(j(d, "new\nline"), b"n")
    write_file(j(d, ".hidden"), b"h")
    os.symlink("file", j(d, "link-file"))
    os.symlink("subdir", j(d, "link-dir"))
    os.symlink("dangling-target", j(d, "link-dangling"))


@check("dir.listing")
def _(d):
    populate(d)
    names = sorted(os.listdir(d))
    with opened(d, os.O_RDONLY | os.O_DIRECTORY) as dfd:
        by_fd = sorted(os.listdir(dfd))
    by_bytes = sorted(os.listdir(os.fsencode(d)))
    return {"names": names, "fd_equal": by_fd == names, "bytes_equal": by_bytes == sorted(map(os.fsencode, names))}


@check("dir.scandir_types")
def _(d):
    populate(d)
    with os.scandir(d) as it:
        entries = sorted(
            (
                e.name,
                e.is_dir(follow_symlinks=False),
                e.is_file(follow_symlinks=False),
                e.is_symlink(),
                e.is_dir(),
                e.is_file(),
            )
            for e in it
        )
    return {name: list(flags) for name, *flags in entries}


@check("dir.listing_after_unlink")
def _(d):
    populate(d)
    os.unlink(j(d, "file"))
    os.unlink(j(d, "link-dir"))
    os.rmdir(j(d, "empty dir"))
    write_file(j(d, "subdir", "f"))
    os.unlink(j(d, "subdir", "f"))
    return {"top": sorted(os.listdir(d)), "emptied_subdir": os.listdir(j(d, "subdir"))}


@check("dir.many_entries")
def _(d):
    names = [f"entry-{i:04d}-{'p' * (i % 40)}" for i in range(400)]
    for n in names:
        write_file(j(d, n))
    listed = os.listdir(d)
    with os.scandir(d) as it:
        scanned = sorted(e.name for e in it)
    return {
        "count": len(listed),
        "sorted_equal": sorted(listed) == sorted(names),
        "scandir_equal": scanned == sorted(names),
    }


@check("dir.chdir_getcwd")
def _(d):
    os.makedirs(j(d, "a", "sub"))
    os.chdir(j(d, "a", "sub"))
    cwd = os.getcwd()
    return [os.path.basename(os.path.dirname(cwd)), os.path.basename(cwd), os.path.samefile(cwd, j(d, "a", "sub"))]


@check("dir.relative_paths_after_chdir")
def _(d):
    os.makedirs(j(d, "a", "sub"))
    write_file(j(d, "a", "sub", "here"), b"here")
    write_file(j(d, "a", "sibling"), b"sibling")
    os.chdir(j(d, "a", "sub"))
    write_file("created", b"c")
    return [
        read_file("here").decode(),
        read_file("../sibling").decode(),
        read_file("./../sub/created").decode(),
        sorted(os.listdir(".")),
        sorted(os.listdir("..")),
    ]


@check("dir.dotdot_gets_back")
def _(d):
    os.makedirs(j(d, "a", "sub"))
    same_dotdot = os.path.samefile(j(d, "a", "sub", ".."), j(d, "a"))
    same_dot = os.path.samefile(j(d, "a", "."), j(d, "a"))
    os.chdir(j(d, "a", "sub"))
    os.chdir("..")
    up1 = os.path.samefile(".", j(d, "a"))
    os.chdir("../a/sub/../..")
    up2 = os.path.samefile(".", d)
    return [same_dotdot, same_dot, up1, up2, os.path.basename(os.getcwd()) == os.path.basename(d)]


@check("dir.fchdir")
def _(d):
    os.mkdir(j(d, "x"))
    write_file(j(d, "x", "f"), b"via fchdir")
    with opened(j(d, "x"), os.O_RDONLY | os.O_DIRECTORY) as fd:
        os.fchdir(fd)
    return [read_file("f").decode(), os.path.basename(os.getcwd())]


@check("dir.openat_relative")
def _(d):
    os.mkdir(j(d, "x"))
    with opened(j(d, "x"), os.O_RDONLY | os.O_DIRECTORY) as dfd:
        with opened("f", os.O_WRONLY | os.O_CREAT, dir_fd=dfd) as fd:
            os.write(fd, b"at")
        os.mkdir("sub", dir_fd=dfd)
        os.symlink("f", "l", dir_fd=dfd)
        os.rename("l", "sub/l2", src_dir_fd=dfd, dst_dir_fd=dfd)
        os.unlink("sub/l2", dir_fd=dfd)
    return [sorted(os.listdir(j(d, "x"))), read_file(j(d, "x", "f")).decode()]


@check("dir.removed_cwd")
def _(d):
    os.mkdir(j(d, "x"))
    os.chdir(j(d, "x"))
    os.rmdir(j(d, "x"))
    return [attempt(os.listdir, "."), attempt(write_file, "f"), attempt(os.getcwd)]


# ---------------------------------------------------------------------------
# symlinks
# ---------------------------------------------------------------------------


@check("symlink.relative")
def _(d):
    os.mkdir(j(d, "x"))
    write_file(j(d, "x", "target"), b"relative ok")
    os.symlink("x/target", j(d, "l"))
    os.symlink("../x/target", j(d, "x", "l2"))
    return [read_file(j(d, "l")).decode(), read_file(j(d, "x", "l2")).decode()]


@check("symlink.absolute_inside")
def _(d):
    write_file(j(d, "target"), b"absolute ok")
    os.mkdir(j(d, "x"))
    os.symlink(j(d, "target"), j(d, "x", "l"))
    return [read_file(j(d, "x", "l")).decode(), os.readlink(j(d, "x", "l")) == j(d, "target")]


@check("symlink.dangling")
def _(d):
    os.symlink("missing", j(d, "l"))
    return {
        "stat": attempt(os.stat, j(d, "l")),
        "lstat_islnk": stat.S_ISLNK(os.lstat(j(d, "l")).st_mode),
        "exists": os.path.exists(j(d, "l")),
        "lexists": os.path.lexists(j(d, "l")),
        "access_f_ok": os.access(j(d, "l"), os.F_OK),
    }


@check("symlink.dir_as_component")
def _(d):
    os.makedirs(j(d, "real", "inner"))
    write_file(j(d, "real", "inner", "f"), b"through link")
    os.symlink("real", j(d, "ldir"))
    write_file(j(d, "ldir", "created"), b"c")
    return [
        read_file(j(d, "ldir", "inner", "f")).decode(),
        sorted(os.listdir(j(d, "ldir"))),
        os.path.isfile(j(d, "real", "created")),
        os.path.samefile(j(d, "ldir", "inner", ".."), j(d, "real")),
    ]


@check("symlink.readlink_exact")
def _(d):
    targets = ["../x/./y//z", "plain", "trailing/", "a b\tc", "./dot"]
    out = []
    for i, t in enumerate(targets):
        os.symlink(t, j(d, f"l{i}"))
        out.append(os.readlink(j(d, f"l{i}")))
    with opened(d, os.O_RDONLY | os.O_DIRECTORY) as dfd:
        out.append(os.readlink("l1", dir_fd=dfd))
    return out


@check("symlink.realpath_chain")
def _(d):
    os.makedirs(j(d, "a", "b"))
    write_file(j(d, "a", "t"), b"t")
    os.symlink("l2", j(d, "l1"))
    os.symlink("a/b/l3", j(d, "l2"))
    os.symlink("../t", j(d, "a", "b", "l3"))
    os.symlink("a/b", j(d, "ld"))
    root = os.path.realpath(d)
    return [
        os.path.relpath(os.path.realpath(j(d, "l1")), root),
        os.path.relpath(os.path.realpath(j(d, "ld", "..", "t")), root),
        read_file(j(d, "l1")).decode(),
    ]


@check("symlink.trailing_slash")
def _(d):
    os.mkdir(j(d, "x"))
    write_file(j(d, "f"))
    os.symlink("x", j(d, "ldir"))
    os.symlink("f", j(d, "lfile"))
    return [
        stat.S_ISDIR(os.lstat(j(d, "ldir") + "/").st_mode),
        attempt(os.lstat, j(d, "lfile") + "/"),
        attempt(os.rmdir, j(d, "ldir")),
        attempt(os.unlink, j(d, "ldir") + "/"),
    ]


@check("symlink.unlink_removes_link_only")
def _(d):
    write_file(j(d, "f"), b"x")
    os.mkdir(j(d, "x"))
    os.symlink("f", j(d, "l"))
    os.symlink("x", j(d, "ld"))
    os.unlink(j(d, "l"))
    os.unlink(j(d, "ld"))
    return sorted(os.listdir(d))


@check("symlink.hardlink_to_symlink")
def _(d):
    os.symlink("target", j(d, "l"))
    res = attempt(os.link, j(d, "l"), j(d, "h"), follow_symlinks=False)
    if res != "ok":
        return res
    return [res, os.readlink(j(d, "h")), os.lstat(j(d, "l")).st_nlink]


# ---------------------------------------------------------------------------
# permissions (only meaningful for an unprivileged user)
# ---------------------------------------------------------------------------


@check("perm.open_mode_000")
def _(d):
    if is_root():
        return "root"
    write_file(j(d, "f"), b"secret", mode=0o000)
    os.chmod(j(d, "f"), 0o000)
    return [try_open(j(d, "f"), os.O_RDONLY), try_open(j(d, "f"), os.O_WRONLY)]


@check("perm.create_in_555_dir")
def _(d):
    if is_root():
        return "root"
    os.mkdir(j(d, "x"), 0o755)
    write_file(j(d, "x", "existing"), b"e")
    os.chmod(j(d, "x"), 0o555)
    try:
        return [
            try_open(j(d, "x", "f"), os.O_WRONLY | os.O_CREAT),
            attempt(os.mkdir, j(d, "x", "sub")),
            attempt(os.unlink, j(d, "x", "existing")),
            attempt(os.rename, j(d, "x", "existing"), j(d, "x", "renamed")),
            read_file(j(d, "x", "existing")).decode(),
        ]
    finally:
        os.chmod(j(d, "x"), 0o755)


@check("perm.search_without_x")
def _(d):
    if is_root():
        return "root"
    os.mkdir(j(d, "x"))
    write_file(j(d, "x", "f"), b"f")
    os.chmod(j(d, "x"), 0o644)
    try:
        return [attempt(os.stat, j(d, "x", "f")), sorted(os.listdir(j(d, "x")))]
    finally:
        os.chmod(j(d, "x"), 0o755)


@check("perm.access_640")
def _(d):
    if is_root():
        return "root"
    write_file(j(d, "f"), mode=0o640)
    os.chmod(j(d, "f"), 0o640)
    return [os.access(j(d, "f"), m) for m in (os.F_OK, os.R_OK, os.W_OK, os.X_OK)]


# ---------------------------------------------------------------------------
# extended attributes
# ---------------------------------------------------------------------------


@check("xattr.user_roundtrip")
def _(d):
    write_file(j(d, "f"))
    name = "user.fsconform"
    try:
        os.setxattr(j(d, "f"), name, b"value\x00bin")
    except OSError as exc:
        return {"set": errname(exc)}
    out = {"set": "ok"}
    try:
        out["get"] = os.getxattr(j(d, "f"), name).hex()
    except OSError as exc:
        out["get"] = errname(exc)
    try:
        out["list"] = sorted(n for n in os.listxattr(j(d, "f")) if n.startswith("user."))
    except OSError as exc:
        out["list"] = errname(exc)
    out["get_missing"] = attempt(os.getxattr, j(d, "f"), "user.absent")
    out["create_existing"] = attempt(os.setxattr, j(d, "f"), name, b"v", os.XATTR_CREATE)
    out["replace_missing"] = attempt(os.setxattr, j(d, "f"), "user.absent", b"v", os.XATTR_REPLACE)
    out["remove"] = attempt(os.removexattr, j(d, "f"), name)
    out["get_removed"] = attempt(os.getxattr, j(d, "f"), name)
    with opened(j(d, "f"), os.O_RDWR) as fd:
        out["set_by_fd"] = attempt(os.setxattr, fd, "user.fd", b"1")
    out["get_set_by_fd"] = attempt(os.getxattr, j(d, "f"), "user.fd")
    os.mkdir(j(d, "x"))
    out["set_on_dir"] = attempt(os.setxattr, j(d, "x"), "user.dir", b"2")
    return out


# ---------------------------------------------------------------------------
# sync, locks, special files
# ---------------------------------------------------------------------------


@check("sync.fsync_fdatasync")
def _(d):
    write_file(j(d, "f"), b"data")
    with opened(j(d, "f"), os.O_RDWR) as fd:
        f1, f2 = attempt(os.fsync, fd), attempt(os.fdatasync, fd)
    with opened(d, os.O_RDONLY | os.O_DIRECTORY) as dfd:
        d1, d2 = attempt(os.fsync, dfd), attempt(os.fdatasync, dfd)
    return {"file": [f1, f2], "dir": [d1, d2]}


@check("lock.flock")
def _(d):
    write_file(j(d, "f"))
    with opened(j(d, "f")) as a, opened(j(d, "f")) as b:
        ex = attempt(fcntl.flock, a, fcntl.LOCK_EX | fcntl.LOCK_NB)
        conflict = attempt(fcntl.flock, b, fcntl.LOCK_EX | fcntl.LOCK_NB)
        un = attempt(fcntl.flock, a, fcntl.LOCK_UN)
        after = attempt(fcntl.flock, b, fcntl.LOCK_SH | fcntl.LOCK_NB)
    return [ex, conflict, un, after]


@check("lock.fcntl_posix")
def _(d):
    write_file(j(d, "f"), b"0123456789")
    with opened(j(d, "f"), os.O_RDWR) as fd:
        return [
            attempt(fcntl.lockf, fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 0),
            attempt(fcntl.lockf, fd, fcntl.LOCK_UN, 5, 0),
        ]


@check("special.mkfifo")
def _(d):
    try:
        os.mkfifo(j(d, "fifo"), 0o600)
    except OSError as exc:
        return errname(exc)
    st = os.lstat(j(d, "fifo"))
    return ["ok", stat.S_ISFIFO(st.st_mode), oct(stat.S_IMODE(st.st_mode)), st.st_size]


@check("special.mknod_regular")
def _(d):
    try:
        os.mknod(j(d, "node"), 0o640 | stat.S_IFREG)
    except OSError as exc:
        return errname(exc)
    st = os.lstat(j(d, "node"))
    return ["ok", stat.S_ISREG(st.st_mode), oct(stat.S_IMODE(st.st_mode)), st.st_size]


# ---------------------------------------------------------------------------
# unix sockets at paths
# ---------------------------------------------------------------------------


def _unix(kind=socket.SOCK_STREAM):
    return socket.socket(socket.AF_UNIX, kind)


@check("sock.bind_stat_connect")
def _(d):
    name = j(d, "s")
    with _unix() as srv, _unix() as cli, _unix() as again:
        bound = attempt(srv.bind, name)
        if bound != "ok":
            return bound
        srv.listen(1)
        st = os.lstat(name)
        out = [bound, stat.S_ISSOCK(st.st_mode), attempt(cli.connect, name), attempt(again.bind, name)]
    out.append(attempt(os.unlink, name))
    out.append(os.path.lexists(name))
    return out


@check("sock.relative_name_and_getsockname")
def _(d):
    os.chdir(d)
    with _unix() as srv, _unix() as cli:
        bound = attempt(srv.bind, "rel")
        if bound != "ok":
            return bound
        srv.listen(1)
        return [bound, srv.getsockname(), sorted(os.listdir(".")), attempt(cli.connect, "rel"),
                os.path.exists(j(d, "rel"))]


@check("sock.connect_errors")
def _(d):
    write_file(j(d, "f"))
    os.mkdir(j(d, "dir"))
    out = []
    for target in ("missing", "f", "dir", "f/x"):
        with _unix() as cli:
            out.append(attempt(cli.connect, j(d, target)))
    with _unix(socket.SOCK_DGRAM) as cli:
        out.append(attempt(cli.sendto, b"x", j(d, "missing")))
    return out


# ---------------------------------------------------------------------------
# names: lengths, and "." and ".." where a name is removed
# ---------------------------------------------------------------------------


@check("name.relative_path_near_path_max")
def _(d):
    """A relative path of 4,000 bytes: Linux counts what the caller gives, not where it leads."""
    os.chdir(d)
    parts = ["d" * 199] * 20  # 3,999 bytes with the slashes
    made = ""
    for p in parts:
        made = os.path.join(made, p) if made else p
        if attempt(os.mkdir, made) != "ok":
            return ["mkdir", attempt(os.mkdir, made)]
    rel = os.path.join(made, "f")
    return [len(rel), try_open(rel, os.O_WRONLY | os.O_CREAT), attempt(os.stat, rel),
            attempt(os.stat, rel + "/" + "x" * 100)]


@check("name.dot_and_dotdot_removed")
def _(d):
    os.mkdir(j(d, "x"))
    os.mkdir(j(d, "x", "y"))
    return {
        "rename_dot": attempt(os.rename, j(d, "x", "y", "."), j(d, "z")),
        "rename_dotdot": attempt(os.rename, j(d, "x", "y", ".."), j(d, "z")),
        "rename_onto_dot": attempt(os.rename, j(d, "x", "y"), j(d, "x", ".")),
        "rmdir_dotdot": attempt(os.rmdir, j(d, "x", "y", "..")),
        "link_dot": attempt(os.link, j(d, "x", "."), j(d, "z")),
        "unlink_dot": attempt(os.unlink, j(d, "x", ".")),
        "still": sorted(os.listdir(j(d, "x"))),
    }


# ---------------------------------------------------------------------------
# another user (root only): a process that switched ids, in trees root made
# ---------------------------------------------------------------------------

OTHER, GROUP, STRANGER = 65534, 1234, 1235  # the switched-to uid (and gid), its extra group, someone else


def as_other(fn):
    """``fn()``'s result in a child that took uid and gid OTHER and the supplementary group GROUP."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([GROUP])
            os.setgid(OTHER)
            os.setuid(OTHER)
            out = normalise(fn())
        except BaseException as exc:  # noqa: BLE001  (the child must report, whatever happened)
            out = exc_result(exc)
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def other_check(name):
    """A check that needs root to switch users; an ordinary user records "not-root"."""

    def register(fn):
        def run(d):
            if not is_root():
                return "not-root"
            os.chmod(d, 0o755)  # whatever the umask: the other user passes through
            return fn(d)

        return check(name)(run)

    return register


def _open_dir(path):
    """A directory anyone may write in (whatever the umask): where the other user makes things."""
    os.mkdir(path)
    os.chmod(path, 0o777)
    return path


def _owned(path, uid, gid, mode):
    write_file(path, b"data\n")
    os.chown(path, uid, gid)
    os.chmod(path, mode)


@other_check("other.not_the_owner")
def _(d):
    f = j(d, "f")
    _owned(f, 0, 0, 0o644)
    return as_other(lambda: [attempt(os.chmod, f, 0o666), attempt(os.chown, f, OTHER, -1),
                             attempt(os.chown, f, -1, GROUP), attempt(os.utime, f, (1, 1)),
                             attempt(os.utime, f, None), attempt(os.truncate, f, 0), try_open(f, os.O_WRONLY),
                             os.access(f, os.W_OK), os.access(f, os.R_OK)])


@other_check("other.group_member")
def _(d):
    f = j(d, "f")
    _owned(f, 0, GROUP, 0o660)
    return as_other(lambda: [read_file(f), try_open(f, os.O_WRONLY | os.O_APPEND), attempt(os.utime, f, None),
                             attempt(os.utime, f, (1, 1)), os.access(f, os.W_OK), attempt(os.chmod, f, 0o600)])


@other_check("other.directory_of_root")
def _(d):
    os.mkdir(j(d, "r"))
    _owned(j(d, "r", "f"), 0, 0, 0o644)
    os.mkdir(j(d, "priv"), 0o700)
    os.chmod(j(d, "priv"), 0o700)
    _owned(j(d, "priv", "f"), 0, 0, 0o644)
    _owned(j(d, "secret"), 0, 0, 0o600)
    _open_dir(j(d, "o"))
    return as_other(lambda: {
        "unlink": attempt(os.unlink, j(d, "r", "f")),
        "rename_out": attempt(os.rename, j(d, "r", "f"), j(d, "o", "f")),
        "create": try_open(j(d, "r", "new"), os.O_WRONLY | os.O_CREAT),
        "mkdir": attempt(os.mkdir, j(d, "r", "sub")),
        "list_priv": attempt(os.listdir, j(d, "priv")),
        "stat_in_priv": attempt(os.stat, j(d, "priv", "f")),
        "read_secret": try_open(j(d, "secret"), os.O_RDONLY),
        "hardlink_secret": attempt(os.link, j(d, "secret"), j(d, "o", "l")),
        "mknod_device": attempt(os.mknod, j(d, "o", "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3)),
        "still": sorted(os.listdir(j(d, "r"))),
    })


@other_check("other.fifo_of_root")
def _(d):
    os.mkfifo(j(d, "fifo"), 0o600)
    os.chmod(j(d, "fifo"), 0o600)
    return as_other(lambda: [try_open(j(d, "fifo"), os.O_RDONLY | os.O_NONBLOCK), os.access(j(d, "fifo"), os.R_OK)])


def _listing(d):
    """The names in D but a FUSE daemon's .fuse_hidden* files: libfuse hides a file unlinked while
    it thinks it open, and the kernel's RELEASE of a file just closed comes in the background (a
    threaded daemon may serve the unlink first: the kernel's own runs showed one now and then)."""
    return sorted(n for n in os.listdir(d) if not n.startswith(".fuse_hidden"))


@other_check("other.sticky_directory")
def _(d):
    s = j(d, "s")
    os.mkdir(s)
    os.chmod(s, 0o1777)
    _owned(j(s, "theirs"), STRANGER, STRANGER, 0o666)

    def run():
        mine = j(s, "mine")
        return [attempt(os.unlink, j(s, "theirs")), attempt(os.rename, j(s, "theirs"), j(s, "moved")),
                try_open(j(s, "theirs"), os.O_WRONLY), try_open(mine, os.O_WRONLY | os.O_CREAT),
                attempt(os.rename, mine, j(s, "mine2")), attempt(os.unlink, j(s, "mine2")), _listing(s)]

    return as_other(run)


@other_check("other.owner_of_new_objects")
def _(d):
    o = _open_dir(j(d, "o"))

    def run():
        write_file(j(o, "f"))
        os.mkdir(j(o, "d"))
        os.mkfifo(j(o, "p"))
        os.symlink("f", j(o, "l"))
        return [(n, os.lstat(j(o, n)).st_uid == OTHER, os.lstat(j(o, n)).st_gid == OTHER) for n in "fdpl"]

    return as_other(run)


@other_check("other.setgid_directories")
def _(d):
    mine, theirs = j(d, "g"), j(d, "t")
    for path, gid in ((mine, GROUP), (theirs, STRANGER)):
        os.mkdir(path)
        os.chown(path, 0, gid)
        os.chmod(path, 0o2777)

    def run():
        out = []
        for path, gid in ((mine, GROUP), (theirs, STRANGER)):
            write_file(j(path, "f"))
            os.mkdir(j(path, "d"))
            f, sub = os.lstat(j(path, "f")), os.lstat(j(path, "d"))
            os.chmod(j(path, "f"), 0o2755)  # S_ISGID stays only for a member of the file's group
            out.append([f.st_gid == gid, sub.st_gid == gid, bool(sub.st_mode & stat.S_ISGID),
                        bool(os.lstat(j(path, "f")).st_mode & stat.S_ISGID)])
        return out

    return as_other(run)


@other_check("other.chown_own_file")
def _(d):
    o = _open_dir(j(d, "o"))

    def run():
        f = j(o, "f")
        write_file(f)
        return [attempt(os.chown, f, -1, GROUP), attempt(os.chown, f, -1, STRANGER), attempt(os.chown, f, 0, -1),
                attempt(os.chown, f, OTHER, -1), os.lstat(f).st_gid == GROUP]

    return as_other(run)


# ---------------------------------------------------------------------------
# runner
# ---------------------------------------------------------------------------


def normalise(value):
    """Make a result JSON-friendly and stable (tuples -> lists, bytes -> text)."""
    if isinstance(value, bytes):
        return "bytes:" + value.hex()
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    return value


def exc_result(exc):
    """How an unexpected exception is recorded: EXC:<type>[:<errno name>]."""
    if isinstance(exc, OSError):
        return f"EXC:{type(exc).__name__}:{errname(exc)}"
    return f"EXC:{type(exc).__name__}"


def run_check(fn, root, index, umask):
    """Run one check in its own fresh fixture directory, from a known cwd and the umask the checker
    was started with (run it under several: a view must apply the caller's umask alone)."""
    try:
        os.umask(umask)
        os.chdir(root)
        d = os.path.join(root, f"c{index:03d}")
        os.mkdir(d, 0o755)
        return normalise(fn(d))
    except Exception as exc:  # a broken check (or file system) must not stop the run
        return exc_result(exc)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: {os.path.basename(sys.argv[0])} DIR", file=sys.stderr)
        return 2
    base = os.path.abspath(argv[0])
    if not os.path.isdir(base):
        print(f"{base}: not a directory", file=sys.stderr)
        return 2
    root = tempfile.mkdtemp(prefix="fsconform-", dir=base)
    os.chmod(root, 0o755)  # another user's checks pass through it
    saved_cwd = os.getcwd()
    saved_umask = os.umask(0o022)
    results = {"umask": oct(saved_umask)}
    skip = set(filter(None, os.environ.get("FSCONFORM_SKIP", "").split(",")))
    try:
        for index, (name, fn) in enumerate(CHECKS):
            results[name] = "skipped" if name in skip else run_check(fn, root, index, saved_umask)
    finally:
        os.chdir(saved_cwd)
        os.umask(saved_umask)
    json.dump(results, sys.stdout, indent=1, sort_keys=False, ensure_ascii=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
