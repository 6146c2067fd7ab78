"""Opening and closing: open, openat2, close, close_range, dup, fcntl, flock.

An open of a virtual file leaves a placeholder fd in the caller (the kernel
allocates the number) and an OpenFile in the process's fd table; the open
file carries its operations (the file system's, or a device driver's).
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from collections.abc import Callable
from typing import Any

from umvu import abi, argcheck, devices, memory
from umvu.borrowed import take_fd
from umvu.calls.call import (
    AT_FDCWD,
    DONE,
    EFD_NONBLOCK,
    NR_EVENTFD2,
    NR_LSEEK,
    NR_OPENAT,
    PLACEHOLDER,
    REAL,
    Call,
    chosen,
    family,
    maybe,
    s32,
)
from umvu.calls.sockets import hand_socket
from umvu.creds import MAY_READ, MAY_WRITE
from umvu.fdtable import OpenFile
from umvu.readiness import Readiness
from umvu.registry import DeviceClaim, Mount
from umvu.vfs import Connect, FileSystem


def _open_intent(flags: int) -> Callable[[os.stat_result | None], str | None]:
    def intent(st: os.stat_result | None) -> str | None:
        if flags & os.O_PATH:
            return "read"
        if flags & argcheck.O_TMPFILE_BIT:
            return "tmpfile"
        if st is None:
            return "create" if flags & os.O_CREAT else None
        if flags & os.O_CREAT and flags & os.O_EXCL:
            return None  # EEXIST, said here
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            return "write"
        return "list" if stat_mod.S_ISDIR(st.st_mode) else "read"

    return intent


@family("open")
async def fam_open(c: Call) -> Any:
    """The module opens the file; the caller gets a placeholder fd the kernel allocates, or, for a module
    whose files are host files (vufs), the real file: its I/O then never stops."""
    if c.sc.name == "creat":
        flags, mode = os.O_CREAT | os.O_WRONLY | os.O_TRUNC, c.args[1]
    else:
        flags, mode = s32(c.arg("oflags")), c.arg("mode")
    return await _open(c, argcheck.effective_open_flags(flags), mode)  # unknown bits dropped; O_PATH drops most


async def _open(c: Call, flags: int, mode: int) -> Any:
    # Without O_CREAT the mode register is whatever the caller left there; the
    # kernel keeps only the permission bits either way.
    mode &= 0o7777
    acc = flags & os.O_ACCMODE
    if flags & os.O_CREAT and not flags & os.O_PATH and c.read_str(c.sc.path_args[0]).endswith("/") \
            and (c.hv.registry or not c.t.fs.plain):
        await c.locate_name(c.sc.path_args[0])  # open_last_lookups: the parent is walked first
        raise OSError(errno.EISDIR, "O_CREAT with a trailing slash")
    r = await c.target(intent=_open_intent(flags))
    if r is None:
        return REAL
    st = r.st
    if st is None:
        if not flags & os.O_CREAT:
            raise OSError(errno.ENOENT, "no such file")
        if c.read_str(c.sc.path_args[0]).endswith("/"):
            raise OSError(errno.EISDIR, "is a directory")
        mode &= ~c.t.fs.umask
    else:
        tmpfile = flags & argcheck.O_TMPFILE_BIT  # an unnamed file in the directory named
        if tmpfile and not stat_mod.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, "O_TMPFILE in what is not a directory")
        if flags & os.O_CREAT and flags & os.O_EXCL:
            raise OSError(errno.EEXIST, "exists")
        if flags & os.O_DIRECTORY and not stat_mod.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, "not a directory")  # do_open, before may_open's ELOOP
        if stat_mod.S_ISLNK(st.st_mode) and not flags & os.O_PATH:
            raise OSError(errno.ELOOP, "is a symlink (O_NOFOLLOW)")
        if tmpfile:
            mode &= ~c.t.fs.umask
        elif stat_mod.S_ISDIR(st.st_mode) and (acc != os.O_RDONLY or flags & (os.O_CREAT | os.O_TRUNC)) \
                and not flags & os.O_PATH:
            raise OSError(errno.EISDIR, "is a directory")  # may_open: O_TRUNC asks for write access too
    claim = _device_of(c, r.mount, st) if st is not None and not flags & os.O_PATH else None
    if claim is not None:  # the driver's file operations, the node's attributes (devices.DeviceFile)
        mask = {os.O_RDONLY: MAY_READ, os.O_WRONLY: MAY_WRITE}.get(acc, MAY_READ | MAY_WRITE)
        if not r.mount.fs.open_permitted(st, mask):  # type: ignore[arg-type]
            raise OSError(errno.EACCES, "permission denied")  # may_open, before the driver's open
        fs = devices.DeviceFile(claim.driver, r.mount.fs, r.mount.inner(r.path), st.st_mode,  # type: ignore[union-attr]
                                claim.module)
        handle = await maybe(claim.driver.open(st.st_rdev, flags & ~os.O_CLOEXEC))  # type: ignore[union-attr]
    elif r.of is not None:  # /proc/self/fd/N of a file with no name: a new open of the file itself
        fs = r.of.ops
        handle = await maybe(fs.reopen(r.of.handle, flags & ~os.O_CLOEXEC, None))
    else:
        fs = r.mount.fs
        handle = await maybe(fs.open(r.mount.inner(r.path), flags & ~os.O_CLOEXEC, mode))
    if isinstance(handle, Connect):
        return await hand_socket(c, handle, flags)
    # st None: this open made a regular file (asking its type again would be a lookup the kernel
    # does not make, which may be refused by then); so did O_TMPFILE
    of = OpenFile(r.mount, handle, r.path, flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_CLOEXEC | os.O_NOCTTY
                                                     | argcheck.O_TMPFILE),
                  st is not None and stat_mod.S_ISDIR(st.st_mode) and not flags & argcheck.O_TMPFILE_BIT, ops=fs)
    of.named = not flags & argcheck.O_TMPFILE_BIT
    try:
        fd = await _placeholder(c, of, flags, st)
    except BaseException:  # the caller vanished (or was woken): nobody else will close what the module opened
        c.hv.release(of)
        raise
    if fd < 0:
        await maybe(fs.close(handle))
        c.resume_with(fd)
        return DONE
    c.hv.opened(of)
    await c.install_vfd(of, fd)  # from here the fd table holds it: its going releases it
    return c.ended(fd)


async def _placeholder(c: Call, of: OpenFile, flags: int, st: os.stat_result | None) -> int:
    """Open the fd the caller gets in place of its open (or -errno): the kernel allocates its
    number, keeps close-on-exec and shares it over fork and dup.  What it is decides what the
    kernel does with the fd by itself, with no stop:

    - a disk whose bytes are a host file's: that file, so that the kernel moves its data
      (vfs.Device.backing);
    - a file whose readiness changes: an eventfd whose count shows it to poll, select and epoll
      (umvu.readiness);
    - a file whose locks no service keeps: the file's lock file, so that flock and fcntl locks
      are the kernel's (Shadows.lock_file);
    - else /dev/null, read-only: always ready, as a regular file.

    None is a directory, whatever the virtual file is: the fast path's library walks names only
    from a dirfd that is a directory, and so leaves every name relative to a virtual fd to umvu.

    A placeholder the caller cannot open (it changed its uid; O_DIRECT on memory) gives way to
    /dev/null, and the service serves what the kernel would have.
    """
    cloexec = flags & os.O_CLOEXEC
    fs, handle = of.ops, of.handle
    backing = _backing(fs, handle, flags)
    if backing is not None:
        fd = await _open_instead(c, backing[0], flags & (os.O_ACCMODE | os.O_CLOEXEC | os.O_DIRECT | os.O_SYNC))
        if fd < 0:
            return await _open_instead(c, PLACEHOLDER, os.O_RDONLY | cloexec, at_exit=True)
        of.base, of.passthrough = backing[1], backing[2]
        if of.base:  # the fd's offset is the file's: the disk starts there
            await c.t.inject(NR_LSEEK, fd, of.base, os.SEEK_SET)
        return fd
    ready = None if flags & os.O_PATH or of.is_dir else \
        Readiness(-1, lambda wake: fs.poll(handle, wake), c.hv.tracer.call_soon, c.hv.log)
    mask = ready.ask() if ready is not None else None
    if ready is not None and mask is not None:
        regs = c.regs
        regs.nr = NR_EVENTFD2
        regs.set_arg(0, 0)
        regs.set_arg(1, EFD_NONBLOCK | cloexec)  # EFD_CLOEXEC is O_CLOEXEC
        fd = await c.t.finish_syscall(regs)
        if fd >= 0:
            ready.efd = take_fd(c.t.proc.tgid, fd)
            of.ready = ready
            ready.show(mask)
        return fd
    if not flags & os.O_PATH and _kernel_locks(fs):
        if st is None:  # this open made the file (O_CREAT, O_TMPFILE)
            st = await maybe(fs.fstat(handle))
        of.lockfile = (of.mount.id, st.st_ino)
        fd = await _open_instead(c, c.hv.shadows.lock_file(of.lockfile),
                                 (os.O_RDONLY if of.is_dir else flags & os.O_ACCMODE) | cloexec)
        if fd >= 0:
            return fd
        c.hv.shadows.unlock_file(of.lockfile)
        of.lockfile = None
        return await _open_instead(c, PLACEHOLDER, os.O_RDONLY | cloexec, at_exit=True)
    return await _open_instead(c, PLACEHOLDER, os.O_RDONLY | cloexec)


async def _open_instead(c: Call, path: str, oflags: int, at_exit: bool = False) -> int:
    """openat(AT_FDCWD, path, oflags) made by the caller in place of its call (at its entry stop),
    or after it (``at_exit``: a first placeholder failed)."""
    addr = c.put_scratch(os.fsencode(path) + b"\0")
    if at_exit:
        return await c.t.inject(NR_OPENAT, AT_FDCWD, addr, oflags, 0)
    regs = c.regs
    regs.nr = NR_OPENAT
    for i, v in enumerate((AT_FDCWD, addr, oflags, 0)):
        regs.set_arg(i, v)
    return await c.t.finish_syscall(regs)


def _backing(ops: Any, handle: Any, flags: int) -> tuple[str, int, int] | None:
    """The host file an open device's placeholder can be, where the device starts in it, and its
    size: its driver says its bytes are a host file's (vfs.Device.backing).  The caller opens it
    by umvu's fd (/proc/PID/fd/N), so the file needs no name the caller can reach."""
    if flags & (os.O_APPEND | os.O_PATH) or not hasattr(ops, "backing"):
        return None
    got = ops.backing(handle)
    if got is None:
        return None
    fd, offset, size, writable = got
    if offset + size > os.fstat(fd).st_size or flags & os.O_ACCMODE != os.O_RDONLY and not writable:
        return None  # a file shorter than the disk (a block device's size 0): the driver's
    return f"/proc/{os.getpid()}/fd/{fd}", offset, size


def _kernel_locks(ops: Any) -> bool:
    """Whether the kernel keeps the locks of files ``ops`` serves (on their lock files): the
    service has no lock methods of its own (vfs.HostFdLocks has, for host fds)."""
    cls = type(ops)
    if isinstance(ops, devices.DeviceFile):
        return True  # a device's locks are the node's inode's, which no driver keeps
    return cls.flock is FileSystem.flock and cls.lock is FileSystem.lock


def _device_of(c: Call, m: Mount, st: os.stat_result) -> DeviceClaim | None:
    """The driver claim for a char or block node of a view, if a module claims its number (else
    the node's file system opens it, as a host-backed tree opens the host's device).  A nodev
    mount opens no device node (may_open: EACCES)."""
    if not (stat_mod.S_ISCHR(st.st_mode) or stat_mod.S_ISBLK(st.st_mode)):
        return None
    if "nodev" in m.flags:
        raise OSError(errno.EACCES, "device nodes are not opened on a nodev mount")
    return c.hv.registry.device("c" if stat_mod.S_ISCHR(st.st_mode) else "b", st.st_rdev)


@family("openat2")
async def fam_openat2(c: Call) -> Any:
    """As openat; with RESOLVE_ flags, on a real path only (a file only a module holds: ENOSYS)."""
    flags, mode, how = argcheck.OPEN_HOW.unpack(memory.read(c.t.tid, c.args[2], 24))  # checked (argcheck)
    c.oflags = flags
    if not how:
        return await _open(c, flags, mode)
    # RESOLVE_* flags name the dirfd, which a rewrite loses: they go to the kernel on real paths only.
    r = await c.target(intent=None)
    if r is None:
        return REAL
    raise OSError(errno.ENOSYS, "openat2 with RESOLVE_ flags on a virtual path: umvu does not resolve them yet")


@family("close")
async def fam_close(c: Call) -> Any:
    """As the kernel's close: the fd goes first, then the file is flushed (its error is close's),
    then, if that was the last fd, released (RELEASE after FLUSH's answer)."""
    of = c.vfd(0)
    released = c.t.files.remove(s32(c.args[0]))
    if of is None or of.flags & os.O_PATH or of.is_dir or type(of.ops).flush is FileSystem.flush:
        if released is not None:  # nothing to flush: no stop at the call's exit
            c.hv.release(released)
        return REAL  # the kernel closes the placeholder
    failed = None
    try:
        ret = await c.t.finish_syscall()  # the placeholder's number is free from here, as in the kernel
        try:
            await maybe(of.ops.flush(of.handle))
        except OSError as e:
            failed = e
        except Exception as e:  # a module's bug: logged, and the fd is still closed
            c.hv.log(f"{of.mount.module}: flush of {of.path} failed: {e!r}")
            failed = OSError(errno.EIO, "flush failed")
    finally:  # even if the caller died meanwhile: the open file must be released
        if released is not None:
            c.hv.release(released)
    c.resume_with(ret if failed is None else -(failed.errno or errno.EIO))
    return DONE


@family("close_range")
async def fam_close_range(c: Call) -> Any:
    """The virtual fds in the range are released (their modules' close); the kernel closes the placeholders."""
    first, last, flags = c.args[0] & 0xFFFFFFFF, c.args[1] & 0xFFFFFFFF, c.args[2]
    files = c.t.files
    if files and not flags & 4:  # CLOSE_RANGE_CLOEXEC: the kernel marks, exec decides
        if flags & 2 and files.users > 1:  # CLOSE_RANGE_UNSHARE
            shared = files
            c.t.files = files = shared.copy()
            files.users = 1
            shared.users -= 1
        for fd in [fd for fd in files.fds if first <= fd <= last]:
            released = files.remove(fd)
            if released is not None:
                c.hv.release(released)
    return REAL


@family("dup")
async def fam_dup(c: Call) -> Any:
    """The new fd shares the virtual open file (its offset, its flags); the kernel allocates the number."""
    of = c.vfd(0)
    two = c.sc.name != "dup"
    newfd = s32(c.args[1]) if two else -1
    old = s32(c.args[0])
    guarded = of is None and old in c.t.proc.meta_layers and c.t.files.view_of(c.t.tid, old) is not None
    if of is None and not guarded and not (two and c.t.files.get(newfd)):
        return REAL
    if two and newfd == old:
        return REAL
    fd = await c.t.finish_syscall()
    if fd >= 0:
        if of is None:
            released = c.t.files.remove(fd)  # a real fd replaced a virtual one
            if released is not None:
                c.hv.release(released)
            if guarded:
                await c.guard_copy(old, fd)
        else:
            await c.install_vfd(of, fd)
    c.resume_with(fd)
    return DONE


F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW = 0, 1, 2, 3, 4, 5, 6, 7


F_DUPFD_CLOEXEC = 1030


F_DUPFD_QUERY = 1027  # Linux 6.10: whether two fds share a description (the placeholders answer)


F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38


SETFL_MASK = os.O_APPEND | os.O_NONBLOCK | os.O_DIRECT | os.O_NOATIME | 0o20000  # O_ASYNC


@family("fcntl")
async def fam_fcntl(c: Call) -> Any:
    """Status flags and record locks are the open file's (the module's lock, for modules that hold host fds);
    F_DUPFD shares it; F_GETFD and F_SETFD run on the placeholder, with no stop."""
    of = c.vfd(0)
    cmd = s32(c.args[1])
    if of is None:
        old = s32(c.args[0])
        if cmd not in (F_DUPFD, F_DUPFD_CLOEXEC) or old not in c.t.proc.meta_layers \
                or c.t.files.view_of(c.t.tid, old) is None:
            return REAL
        fd = await c.t.finish_syscall()  # a copy of a guarded real fd: guarded too
        if fd >= 0:
            await c.guard_copy(old, fd)
        c.resume_with(fd)
        return DONE
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        fd = await c.t.finish_syscall()
        if fd >= 0:
            await c.install_vfd(of, fd)
        c.resume_with(fd)
        return DONE
    if cmd == F_GETFL:
        return of.flags | (0o100000 if of.flags & os.O_PATH == 0 else 0)  # O_LARGEFILE, as the kernel shows
    if cmd == F_SETFL:
        of.flags = (of.flags & ~SETFL_MASK) | (c.args[2] & SETFL_MASK)
        return 0
    if cmd in (F_GETLK, F_OFD_GETLK, F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW):
        return await _record_lock(c, of, cmd)
    return REAL  # the rest act on the placeholder (F_GETFD/F_SETFD do not even stop: bpf.NATIVE_ON_PLACEHOLDER)


async def _record_lock(c: Call, of: OpenFile, cmd: int) -> Any:
    """fcntl record locks on a virtual fd: the kernel's on the file's lock file (Shadows.lock_file),
    else the module's ``lock`` decides (see vfs.HostFdLocks)."""
    if of.lockfile is not None:
        return await _kernel_record_lock(c, of, cmd)
    l_type, whence, start, length, _pid = abi.FLOCK.unpack(memory.read(c.t.tid, c.args[2], abi.FLOCK.size))
    if l_type not in (0, 1, 2):  # F_RDLCK, F_WRLCK, F_UNLCK
        raise OSError(errno.EINVAL, "bad lock type")
    if l_type == 0 and not of.readable or l_type == 1 and not of.writable:
        raise OSError(errno.EBADF, "the fd's access mode does not allow this lock")
    if whence == os.SEEK_CUR:
        start, whence = start + of.offset, os.SEEK_SET
    elif whence == os.SEEK_END:
        start, whence = start + (await maybe(of.ops.fstat(of.handle))).st_size, os.SEEK_SET
    elif whence != os.SEEK_SET:
        raise OSError(errno.EINVAL, "bad whence")
    if start < 0:
        raise OSError(errno.EINVAL, "negative start")
    get = cmd in (F_GETLK, F_OFD_GETLK)
    wait = cmd in (F_SETLKW, F_OFD_SETLKW)
    got = await maybe(of.ops.lock(of.handle, "get" if get else "wait" if wait else "set", l_type, start, length))
    if get:
        c.write(c.args[2], abi.FLOCK.pack(*(got or (2, 0, start, length, 0))))
    return 0


async def _kernel_record_lock(c: Call, of: OpenFile, cmd: int) -> Any:
    """The kernel takes the lock on the placeholder, the file's lock file.  A start from the
    offset or the end (SEEK_CUR, SEEK_END) is the virtual file's, which the lock file does not
    know: the kernel is given a copy of the struct flock from the start (SEEK_SET), and a
    F_GETLK's answer is copied back."""
    raw = memory.read(c.t.tid, c.args[2], abi.FLOCK.size)
    l_type, whence, start, length, pid = abi.FLOCK.unpack(raw)
    if whence == os.SEEK_SET or whence not in (os.SEEK_CUR, os.SEEK_END):
        return REAL  # the kernel's answer, EINVAL for a bad whence included
    base = of.offset if whence == os.SEEK_CUR else (await maybe(of.ops.fstat(of.handle))).st_size
    if base + start < 0:
        raise OSError(errno.EINVAL, "the lock would start before the file")
    copy = c.put_scratch(abi.FLOCK.pack(l_type, os.SEEK_SET, base + start, length, pid))
    regs = c.regs
    regs.set_arg(2, copy)
    ret = await c.t.finish_syscall(regs)
    if ret >= 0 and cmd in (F_GETLK, F_OFD_GETLK):
        c.write(c.args[2], memory.read(c.t.tid, copy, abi.FLOCK.size))
    return c.ended(ret)


@family("flock")
async def fam_flock(c: Call) -> Any:
    """The module's flock (enforced by modules whose files are host fds)."""
    of = chosen(c)
    if of.lockfile is not None:
        return REAL  # the kernel's, on the file's lock file
    op = s32(c.args[1])  # checked already (argcheck)
    if op & ~4 != 8 and not (of.readable or of.writable):  # open with the access mode 3
        raise OSError(errno.EBADF, "neither open for reading nor for writing")
    await maybe(of.ops.flock(of.handle, op))
    return 0
