"""The file system service contract: what a module implements to serve a mount.

Methods have the shape of the system calls (as VUOS's vumodule.h), so a module
that mirrors a host directory is almost the ``os`` module itself (see
modules/unreal.py).  The core resolves every path before calling: ``path`` is
always absolute *inside the mount* ("/" is the mount's root), "." and ".."
are gone and every symlink on the way has been followed; only the last
component may be a symlink, and only for the calls that do not follow it
(lstat, readlink, unlink...).

Errors are raised as ``OSError(errno, ...)``: the tracee gets exactly that
errno.  Any other exception becomes EIO and a log line.  Every method may be
``async def``; the tracee that asked waits stopped while others run.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from umvu.creds import current, may_search, permitted

# In ``open``'s flags: the core opens the file to run it (execve, or as a program's interpreter),
# as the kernel marks its own open for exec (__FMODE_EXEC; FUSE daemons see it too).  Permission
# is to execute, not to read: a file that is --x runs.  os.open ignores the bit.
FMODE_EXEC = 0x20


def xattr_mode_decides(name: str) -> bool:
    """Whether the file's mode may refuse this xattr (the kernel's inode_permission): not for
    security.*, system.* and trusted.*, which the core rules by privilege alone."""
    return not name.startswith(("security.", "system.", "trusted."))


class DirEntry(NamedTuple):
    name: str
    ino: int
    type: int  # DT_* value (the S_IFMT bits >> 12), 0 if unknown


class Connect(NamedTuple):
    """What ``open`` may return to give the process a real socket, not a virtual file.

    The process's fd becomes a Unix socket of type ``kind`` connected to the
    hypervisor; ``connected(our_end, inode)`` gets the hypervisor's end and
    the inode of the process's end (how later calls name it, as in
    /proc/PID/fd).  Its reads never stop.  If ``connected`` returns a
    function, the process's write(2) and writev(2) on the fd stop and hand it
    the bytes instead, and what it returns is the call's result (a length or
    -errno): the fuse module hands out /dev/fuse this way, one SOCK_SEQPACKET
    message per request, and checks each reply as the kernel does.
    """

    kind: int
    connected: Callable[[Any, int], Callable[[bytes], int] | None]


def _named(path: str | None) -> str:
    if path is None:
        raise OSError(errno.EOPNOTSUPP, "this file system cannot change an open file that has no name")
    return path


def _nosys(what: str) -> OSError:
    return OSError(errno.ENOSYS, f"{what} is not implemented by this file system")


class FileSystem:
    """Base class for a mounted file system; override what you serve.

    Methods not overridden fail with ENOSYS (EOPNOTSUPP for the xattr calls,
    as Linux file systems without xattrs do), so a read-only file system only
    needs lstat, readlink, open, read, getdents and close.
    """

    #: shown by findmnt/df later, and in vu_lsmod
    fstype = "vfs"
    #: non-directories are host files handed out by ``host_path``: stat shows
    #: their host st_dev, as fstat of the real fd a process gets does
    real_files = False
    #: directories too (a bind: Linux shows a bind mount with its source's st_dev)
    real_dirs = False
    #: the longest name a path component may have (ENAMETOOLONG past it): each file system's own,
    #: as in the kernel (ext4 and most: NAME_MAX, 255; FUSE: 1024, the daemon may refuse less)
    name_max = 255
    #: whether a directory removed while it was a process's cwd still opens as "." (and lists as
    #: empty): a local file system's does; a FUSE daemon is asked, and answers ENOENT for a node
    #: it removed (Hypervisor.removed)
    removed_dirs_open = True
    #: whether reads and writes with RWF_DONTCACHE are taken: the kernel asks the file system
    #: (FOP_DONTCACHE); ext4 takes them, FUSE does not (EOPNOTSUPP)
    uncached_io = False

    def busy(self) -> bool:
        """Whether something the core cannot see still uses this mount (a network stack some
        process uses): umount without MNT_DETACH is then EBUSY, as for open files and cwds."""
        return False

    def unmount(self) -> None:
        """The mount is gone (for a lazy unmount: from the tree; open files may go on)."""

    # -- names ------------------------------------------------------------
    def lstat(self, path: str) -> os.stat_result:
        raise _nosys("lstat")

    def lstat_walk(self, path: str) -> os.stat_result:
        """lstat of a directory or symlink a path walk goes through: only the file type is used.

        A file system that caches attributes may answer from its cache, even
        stale: a file's type never changes, and the kernel walks through a
        FUSE directory without asking its attributes (no GETATTR).
        """
        return self.lstat(path)

    #: True: this file system checks search permission in its own lookups, and umvu's walk does not
    checks_search = False

    def search_permitted(self, st: os.stat_result) -> bool:
        """Whether the caller may look names up in the directory whose attributes are ``st``.

        The walk through a view is umvu's, so the kernel's may_lookup is made
        here, for every name ("." and ".." too) before it is looked up
        (unless ``checks_search``).  By default the mode decides
        (generic_permission).
        """
        return may_search(st)

    def open_permitted(self, st: os.stat_result, mask: int) -> bool:
        """Whether the caller may open what the kernel serves without this module: a FIFO (the
        core gives the process a host FIFO that stands for it, which any caller may open).  By
        default the mode decides (generic_permission, ``mask`` of MAY_READ and MAY_WRITE)."""
        return permitted(st, mask, current())

    def lstat_at(self, dir_handle: Any, name: str, path: str) -> os.stat_result:
        """lstat of ``name`` in the directory this module opened as ``dir_handle`` (its path now:
        ``path``, the name's full path).

        The *at calls with a directory fd are the commonest lookup of all
        (find, fts, git stat every entry that way): a file system that knows
        its directories by something cheaper than a path (a node) answers
        here without walking to it again, as the kernel starts from the
        dirfd's inode.  By default it is lstat(path).
        """
        return self.lstat(path)

    def readlink(self, path: str) -> str:
        raise OSError(errno.EINVAL, "not a symlink")

    def access(self, path: str, mode: int) -> None:
        """Default: the permission bits of lstat for the caller's uid/gid."""
        st = self.lstat(path)
        if mode != os.F_OK and not permitted(st, mode, current()):  # R_OK, W_OK, X_OK are MAY_*'s values
            raise OSError(errno.EACCES, "permission denied")

    def statfs(self, path: str) -> os.statvfs_result:
        raise _nosys("statfs")

    def fstatfs(self, handle: Any, path: str | None) -> os.statvfs_result:
        """statfs through an open file (``path``: its name now, None if it has none); the kernel's
        needs no walk to the file.  By default: statfs of the name, or of the root."""
        return self.statfs(path if path is not None else "/")

    # -- open files ---------------------------------------------------------
    def open(self, path: str, flags: int, mode: int) -> Any:
        """Return any handle; the core passes it back to read/write/close.

        ``flags`` may hold FMODE_EXEC (above)."""
        raise _nosys("open")

    def close(self, handle: Any) -> None:
        """The last fd naming the open file is gone (closed, or its process exited)."""

    def flush(self, handle: Any) -> None:
        """close(2) of one fd naming the open file (each of them, dups too; not directories).

        An error is close's result, although the fd is closed all the same:
        a file system that writes back at close reports its failure here,
        as the kernel's flush does.
        """

    def read(self, handle: Any, size: int, offset: int) -> bytes:
        raise OSError(errno.EINVAL, "read not supported")

    def write(self, handle: Any, data: bytes, offset: int) -> int:
        raise OSError(errno.EINVAL, "write not supported")

    def fstat(self, handle: Any) -> os.stat_result:
        raise _nosys("fstat")

    def getdents(self, handle: Any) -> list[DirEntry]:
        """The whole listing of an open directory, "." and ".." included."""
        raise OSError(errno.ENOTDIR, "not a directory")

    def fsync(self, handle: Any, datasync: bool) -> None:
        pass

    def poll(self, handle: Any, wake: Callable[[], None]) -> int | None:
        """Readiness for poll, select and epoll: a mask of select.POLLIN and select.POLLOUT, or
        None (the default): always ready for both, as a regular file or a disk.  Asked when the
        file is opened and after each call the core serves on it (read, write, ioctl...); when
        it changes for another reason (data from a thread, another file's write), call
        ``wake()`` (from any thread) and it is asked again.  It must answer at once: it is not
        awaited.  The waiting itself is the kernel's (umvu.readiness)."""
        return None

    def ioctl(self, handle: Any, request: int, arg: bytes | int | None) -> tuple[int, bytes | None]:
        """A request the core does not serve itself (it does FIONREAD, FIONBIO, FIGETBSZ... for
        every file): as Device.ioctl.  Default: ENOTTY, as for a file system with none."""
        raise OSError(errno.ENOTTY, "inappropriate ioctl for device")

    def fallocate(self, handle: Any, mode: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "fallocate is not supported here")

    def seek(self, handle: Any, offset: int, whence: int) -> int | None:
        """SEEK_DATA or SEEK_HOLE answered by the file system, or None: the core's answer
        (the whole file is data)."""
        return None

    def ftruncate(self, handle: Any, length: int) -> None:
        raise _nosys("ftruncate")

    def flock(self, handle: Any, op: int) -> None:
        """flock(2) on an open file, for a file system that keeps locks itself (HostFdLocks: its
        handles are host fds).  Not overridden (with ``lock``): the kernel keeps them, on a lock
        file that is the placeholder of every open of the file (Shadows.lock_file), and this is
        never called."""

    def lock(self, handle: Any, how: str, l_type: int, start: int, length: int) -> tuple | None:
        """fcntl record locks, as ``flock``: ``how`` is "get", "set" or "wait"; for "get" the
        conflicting lock as (l_type, SEEK_SET, start, length, pid), or None: no conflict."""
        return None

    # -- changes by name ------------------------------------------------------
    def mkdir(self, path: str, mode: int) -> None:
        raise _nosys("mkdir")

    def mknod(self, path: str, mode: int, dev: int) -> None:
        """A fifo, socket, device or empty regular file (``mode`` has the S_IFMT bits)."""
        raise OSError(errno.EPERM, "mknod not supported")

    def rmdir(self, path: str) -> None:
        raise _nosys("rmdir")

    def unlink(self, path: str) -> None:
        raise _nosys("unlink")

    def rename(self, old: str, new: str, flags: int) -> None:
        raise _nosys("rename")

    def link(self, old: str, new: str) -> None:
        raise _nosys("link")

    def symlink(self, target: str, path: str) -> None:
        raise _nosys("symlink")

    def chmod(self, path: str, mode: int) -> None:
        raise _nosys("chmod")

    def chown(self, path: str, uid: int, gid: int) -> None:
        """``uid`` and ``gid`` are the kernel's (32-bit, unsigned); -1 leaves one as it is."""
        raise _nosys("chown")

    def truncate(self, path: str, length: int) -> None:
        raise _nosys("truncate")

    def utime(self, path: str, times_ns: tuple[int, int] | None) -> None:
        """Set (atime, mtime) in ns; None means now. UTIME_OMIT arrives resolved."""
        raise _nosys("utime")

    # -- changes through an open file -------------------------------------------------
    # fchmod, fchown, futimens, the f*xattr calls (and the *at calls on an fd itself): the kernel
    # changes the open file, whatever its name is now.  ``path`` is the name it was opened by (None:
    # it never had one, O_TMPFILE).  By default these change that name, which is right while the
    # file keeps it; a module that can reach the open file itself (a host fd, a node) does so.
    def fchmod(self, handle: Any, mode: int, path: str | None) -> None:
        return self.chmod(_named(path), mode)

    def fchown(self, handle: Any, uid: int, gid: int, path: str | None) -> None:
        return self.chown(_named(path), uid, gid)

    def futime(self, handle: Any, times_ns: tuple[int, int] | None, path: str | None) -> None:
        return self.utime(_named(path), times_ns)

    def fgetxattr(self, handle: Any, name: str, path: str | None) -> bytes:
        return self.getxattr(_named(path), name)

    def flistxattr(self, handle: Any, path: str | None) -> list[str]:
        return self.listxattr(_named(path))

    def fsetxattr(self, handle: Any, name: str, value: bytes, flags: int, path: str | None) -> None:
        return self.setxattr(_named(path), name, value, flags)

    def fremovexattr(self, handle: Any, name: str, path: str | None) -> None:
        return self.removexattr(_named(path), name)

    def flink(self, handle: Any, new: str, path: str | None) -> None:
        """Give the open file the name ``new`` (linkat of /proc/self/fd/N or with AT_EMPTY_PATH): how
        an O_TMPFILE file gets its name."""
        if path is None:
            raise OSError(errno.ENOENT, "this file system cannot name a file that has none")  # as nlink 0
        return self.link(path, new)

    def reopen(self, handle: Any, flags: int, path: str | None) -> Any:
        """A new open of the open file itself (open of /proc/self/fd/N): a new handle."""
        return self.open(_named(path), flags, 0)

    # -- passthrough ----------------------------------------------------------------
    def host_path(self, path: str, intent: str, st: os.stat_result | None) -> str | None:
        """A host path the kernel can run this call on by itself, or None: serve it here.

        A module whose files are real files elsewhere (vufs) answers with
        their host path: the call is rewritten and runs natively, and an
        open gives the process a real fd, so its reads, writes, mmap and
        exec never stop again.  ``intent`` says what the call will do:
        "read" (stat, open read-only, readlink...), "list" (an open of a
        directory for reading: a host directory whose listing is this one's;
        unless ``real_dirs``, an fstat of the fd still shows the mount's
        st_dev, which the core keeps), "exec", "write" (open for
        writing, chmod, truncate...: a copy-on-write module copies the file
        up first), "create" (mkdir, symlink, open O_CREAT: the name may not
        exist yet), "remove" (unlink, rmdir) and "rename" (each name of
        rename and link); "bind" (an AF_UNIX socket is to be made at the
        name) and "connect" (one is to be reached there, by connect or
        sendto): only a host name can hold a socket, so a module that
        answers None for these holds none (bind is EPERM, as on a file
        system without mknod); "tmpfile" (an O_TMPFILE open of the directory:
        a module that answers with a path hands out a real fd, which the
        process can name later only by a linkat the kernel makes, so within
        that host directory; answer None to serve it, and FileSystem.flink
        names it).  ``st`` is the lstat the core already has (None:
        no such name).  The core has already refused writes on a read-only
        mount (EROFS) and exec on a noexec one.
        """
        return None

    #: inner paths below which ``host_prefix`` does not hold: the module answers them itself
    #: (unreal's /unreal, which shows / once more)
    host_exceptions: tuple[str, ...] = ()

    def host_prefix(self) -> str | None:
        """A host directory this mount shows name for name, or None.

        Say one only when, for every name P below the mount point (but
        ``host_exceptions``), reading P is reading the host's DIR/P with the
        kernel's answers: the same attributes, the same listing, the same
        permission checks (the caller's), the same symlinks.  Then the
        in-process fast path (umvu's default) walks such names itself on the
        host, with no stop; a name that meets a symlink or leaves the mount
        by ".." still comes to the module.  With ``real_files`` and
        ``real_dirs`` (``host_path`` hands out DIR/P for reading: a bind,
        vufs) opens are made there too; without ``real_files`` (the module
        serves its files, with the mount's st_dev: unreal) only stat, access,
        readlink, realpath and getcwd are, showing the mount's st_dev.  A
        union or a copy-on-write tree has none (see ``host_layers``).  The
        answer must not change while mounted.
        """
        return None

    def host_layers(self) -> tuple[str, str, str] | None:
        """Two host directories this mount shows as one, overlayfs's way, or None.

        (UPPER, LOWER, WHITEOUT): a name P below the mount point is UPPER/P
        where that exists; else no such name, if the upper layer holds
        WHITEOUT followed by the last component of P, or of a directory above
        it, beside it; else LOWER/P.  Files show the lstat of the layer's
        file, directories the same with the mount's st_dev.  Then the fast
        path's library stats such names itself (statx with the basic fields),
        checks access other than for writing and reads links, with no stop;
        opens, symlinks on the way and every change stay the module's.  Say
        it only if the module changes its layers only while serving a call
        that stops (umvu then keeps the library from looking meanwhile: a
        change made in several steps is never seen half made).  vufs's cow
        mounts say it.
        """
        return None

    def fakeroot_records(self) -> str | None:
        """A host file where a fake root (umvu --fakeroot) keeps the owners, modes and device
        numbers it records for this mount's files, so that a later session that mounts the same
        tree sees them (a copy-on-write module's upper directory); None: the session's alone."""
        return None

    def guard_handed(self, host: str, readonly: bool) -> bool:
        """Whether the real fd handed out for ``host`` must not change the file by itself.

        Then fchmod, fchown, fsetxattr and fremovexattr on it stop and reach
        this module (a copy-on-write module copies the file up; a read-only
        mount says EROFS).  Default: on a read-only mount.
        """
        return readonly

    # -- extended attributes ----------------------------------------------------
    def getxattr(self, path: str, name: str) -> bytes:
        raise OSError(errno.EOPNOTSUPP, "no xattrs")

    def listxattr(self, path: str) -> list[str]:
        raise OSError(errno.EOPNOTSUPP, "no xattrs")

    def setxattr(self, path: str, name: str, value: bytes, flags: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "no xattrs")

    def removexattr(self, path: str, name: str) -> None:
        raise OSError(errno.EOPNOTSUPP, "no xattrs")


class HostFdFiles:
    """The calls on an open file, for a file system whose handles are host fds (mix in before
    FileSystem; a handle that is not an int goes to the next class's method).

    They reach the file itself, whatever its name is now (renamed, removed, or never named: an
    O_TMPFILE file), as the kernel's do.  fchownat, fchmodat2 and utimensat with AT_EMPTY_PATH
    take an O_PATH fd too, which the f-calls refuse: its /proc link reaches the same file.
    """

    #: host files: the host's file system decides, and ext4, the one measured, takes RWF_DONTCACHE
    uncached_io = True

    @staticmethod
    def _itself(fd: int) -> int | str:
        import fcntl

        return f"/proc/self/fd/{fd}" if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_PATH else fd

    def fchmod(self, handle: Any, mode: int, path: str | None) -> None:
        if not isinstance(handle, int):
            return super().fchmod(handle, mode, path)  # type: ignore[misc]
        os.chmod(self._itself(handle), mode)

    def fchown(self, handle: Any, uid: int, gid: int, path: str | None) -> None:
        if not isinstance(handle, int):
            return super().fchown(handle, uid, gid, path)  # type: ignore[misc]
        os.chown(self._itself(handle), uid, gid)

    def futime(self, handle: Any, times_ns: tuple[int, int] | None, path: str | None) -> None:
        if not isinstance(handle, int):
            return super().futime(handle, times_ns, path)  # type: ignore[misc]
        if times_ns is None:
            os.utime(self._itself(handle))
        else:
            os.utime(self._itself(handle), ns=times_ns)

    def fgetxattr(self, handle: Any, name: str, path: str | None) -> bytes:
        if not isinstance(handle, int):
            return super().fgetxattr(handle, name, path)  # type: ignore[misc]
        return os.getxattr(handle, name)

    def flistxattr(self, handle: Any, path: str | None) -> list[str]:
        if not isinstance(handle, int):
            return super().flistxattr(handle, path)  # type: ignore[misc]
        return os.listxattr(handle)

    def fsetxattr(self, handle: Any, name: str, value: bytes, flags: int, path: str | None) -> None:
        if not isinstance(handle, int):
            return super().fsetxattr(handle, name, value, flags, path)  # type: ignore[misc]
        os.setxattr(handle, name, value, flags)

    def fremovexattr(self, handle: Any, name: str, path: str | None) -> None:
        if not isinstance(handle, int):
            return super().fremovexattr(handle, name, path)  # type: ignore[misc]
        os.removexattr(handle, name)

    def reopen(self, handle: Any, flags: int, path: str | None) -> Any:
        if not isinstance(handle, int):
            return super().reopen(handle, flags, path)  # type: ignore[misc]
        return os.open(f"/proc/self/fd/{handle}", flags | os.O_CLOEXEC)

    def fallocate(self, handle: Any, mode: int, offset: int, length: int) -> None:
        if not isinstance(handle, int):
            return super().fallocate(handle, mode, offset, length)  # type: ignore[misc]
        from umvu.abi import fallocate

        fallocate(handle, mode, offset, length)

    def seek(self, handle: Any, offset: int, whence: int) -> int | None:
        if not isinstance(handle, int):
            return super().seek(handle, offset, whence)  # type: ignore[misc]
        return os.lseek(handle, offset, whence)  # SEEK_DATA and SEEK_HOLE: the file's own holes

    def fstatfs(self, handle: Any, path: str | None) -> Any:
        if not isinstance(handle, int):
            return super().fstatfs(handle, path)  # type: ignore[misc]
        from umvu.abi import host_statfs

        return host_statfs(handle)


class HostFdLocks:
    """Locks for a file system whose handles are host fds (mix in before FileSystem).

    Each virtual open file has its own host fd, so open-file-description locks
    on it (flock, and fcntl's OFD locks) conflict exactly between open files,
    as the kernel's do.  Record locks are taken as OFD locks: POSIX per-process
    locks would all belong to the hypervisor.  A lock that must wait is retried
    every 20 ms from a worker thread, so the waiting process can be
    interrupted and no lock is taken for a caller that is gone.
    """

    async def flock(self, handle: int, op: int) -> None:
        import fcntl

        if not isinstance(handle, int):
            return  # not a host fd (a directory listed by the module): granted
        while True:
            try:
                fcntl.flock(handle, op | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if op & fcntl.LOCK_NB:
                    raise
            await _pause()

    async def lock(self, handle: int, how: str, l_type: int, start: int, length: int) -> tuple | None:
        import fcntl

        from umvu.abi import FLOCK as layout

        if not isinstance(handle, int):
            return None
        if how == "get":
            got = layout.unpack(fcntl.fcntl(handle, 36, layout.pack(l_type, 0, start, length, 0)))  # F_OFD_GETLK
            return None if got[0] == 2 else got
        while True:
            try:
                fcntl.fcntl(handle, 37, layout.pack(l_type, 0, start, length, 0))  # F_OFD_SETLK
                return None
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or how != "wait":
                    raise
            await _pause()


async def _pause() -> None:
    import time

    from umvu.aio import to_thread

    await to_thread(time.sleep, 0.02)


class Device:
    """A device driver: what opening a char or block node reaches, by its number.

    A module claims numbers with ``vu.claim_device(kind, major, minors,
    driver)``; then opening any node with such a number in a virtual tree (one
    the module put in the view with ``vu.device_node``, or one made with mknod
    in a tree that takes them) comes here, as the kernel's chrdev_open goes to
    the driver whatever file system holds the node.  The node keeps its own
    attributes: stat, chmod, chown and xattrs of an open device are its file
    system's.  Handles as FileSystem's: ``open`` returns any object (or a
    Connect, to hand out a real socket), the other methods take it back.
    """

    def open(self, rdev: int, flags: int) -> Any:
        raise OSError(errno.ENXIO, "no such device")

    def close(self, handle: Any) -> None:
        """The last fd naming the open device is gone."""

    def flush(self, handle: Any) -> None:
        """close(2) of one fd naming it."""

    def read(self, handle: Any, size: int, offset: int) -> bytes:
        raise OSError(errno.EINVAL, "read not supported")

    def write(self, handle: Any, data: bytes, offset: int) -> int:
        raise OSError(errno.EINVAL, "write not supported")

    def fsync(self, handle: Any, datasync: bool) -> None:
        pass

    def size(self, handle: Any) -> int | None:
        """A block device's size in bytes (lseek SEEK_END; stat shows 0 for a device, as Linux);
        None: not seekable from the end (lseek SEEK_END is then the offset alone, as /dev/zero)."""
        return None

    def backing(self, handle: Any) -> tuple[int, int, int, bool] | None:
        """Where the open device's bytes are, when they are a host file's: ``(fd, offset, size,
        writable)``, bytes offset..offset+size of the file umvu's ``fd`` names (kept open while
        the device is), and whether a write may go there now.  None (the default): every read
        and write is the driver's.  A whole file (offset 0, the file's size) becomes the
        caller's fd itself: the kernel moves the data, reads with no stop, writes after one
        stop that checks them against the end (docs/architecture.md, "Devices by number").
        Asked at open, and at each write."""
        return None

    def fallocate(self, handle: Any, mode: int, offset: int, length: int) -> None:
        """blkdev_fallocate: FALLOC_FL_ZERO_RANGE, PUNCH_HOLE (with KEEP_SIZE)."""
        raise OSError(errno.EOPNOTSUPP, "fallocate is not supported here")

    def poll(self, handle: Any, wake: Callable[[], None]) -> int | None:
        """Readiness for poll, select and epoll, as FileSystem.poll (vuecho: readable while
        something is queued)."""
        return None

    def ioctl(self, handle: Any, request: int, arg: bytes | int | None) -> tuple[int, bytes | None]:
        """ioctl(2): ``arg`` is what the request's table entry (umvu.ioctls) says: the bytes behind
        the pointer ("in", "inout"), the value itself ("value"), or None.  Returns the call's result
        and the bytes to write back ("out", "inout"; None: nothing).  Unknown requests: ENOTTY."""
        raise OSError(errno.ENOTTY, "inappropriate ioctl for device")


class CallService:
    """A service chosen by call number or address family (VUOS's choice by "sc" and by "socket").

    A module claims calls with ``vu.claim_call(name, service)`` (uname, getuid, clock_settime...:
    the calls with choice ``nr`` in umvu/syscalls.py) or an address family with
    ``vu.claim_family(family, service)`` (socket(2) and socketpair(2) with that family).  From
    then on the call stops in every process and comes here, until the module is removed; an
    unclaimed call is the kernel's (or the core's own handler's) and costs no stop.
    """

    def call(self, call: Any) -> int | None | Awaitable[int | None]:
        """Serve ``call`` (calls.service.ServiceCall: its name, args, pid, the caller's memory,
        and ``real()``, which runs it in the kernel first): its result, or None to let the
        kernel run it as it is.  Raise OSError for -errno.  May be ``async``."""
        return None
