"""unreal: the host's / seen again at /unreal (and at /unreal/unreal).

It proves the whole path of a virtual call (resolution, registry, virtual
fds, results written back) with nothing but the ``os`` module: what a program
sees under /unreal must be exactly what it sees at the real path.  Paths under
/unreal/unreal map to / too, so one mount shows the nesting (as VUOS's
unreal test module does).
"""

from __future__ import annotations

import os
import stat

from umvu.api import (
    DirEntry,
    FileSystem,
    HostFdFiles,
    HostFdLocks,
    StatFs,
    as_caller,
    dtype_of,
    dtype_of_entry,
    hookimpl,
    host_statfs,
    link_fd,
    renameat2,
    short_path,
)


@as_caller  # the host's kernel judges each call as the caller's
class Unreal(HostFdFiles, HostFdLocks, FileSystem):
    fstype = "unreal"

    def __init__(self, root: str = "/") -> None:
        self.root = root

    host_exceptions = ("/unreal",)  # /unreal/unreal shows / again: not the host's /unreal

    def host_prefix(self) -> str | None:
        """Names show the host's, with the mount's st_dev: the fast path stats them in-process."""
        return self.root

    def real(self, path: str) -> str:
        if path == "/unreal" or path.startswith("/unreal/"):
            path = path[len("/unreal"):] or "/"
        return short_path(os.path.join(self.root, path.lstrip("/")) if self.root != "/" else path)

    def lstat(self, path: str) -> os.stat_result:
        return os.lstat(self.real(path))

    def host_path(self, path: str, intent: str, st: os.stat_result | None) -> str | None:
        """Special files go to the kernel: a FIFO, a device or a socket is the host node's to serve,
        and opening a FIFO here would block the hypervisor (everything else is served in-process)."""
        if intent in ("bind", "connect"):  # sockets are made and found by the kernel
            return self.real(path)
        if st is not None and (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                               or stat.S_ISSOCK(st.st_mode)):
            return self.real(path)
        return None

    def readlink(self, path: str) -> str:
        return os.readlink(self.real(path))

    def access(self, path: str, mode: int) -> None:
        if not os.access(self.real(path), mode, effective_ids=True, follow_symlinks=False):
            raise PermissionError(13, "permission denied")

    def statfs(self, path: str) -> StatFs:
        return host_statfs(self.real(path))

    def open(self, path: str, flags: int, mode: int) -> int:
        return os.open(self.real(path), flags | os.O_CLOEXEC, mode)

    def close(self, handle: int) -> None:
        os.close(handle)

    def read(self, handle: int, size: int, offset: int) -> bytes:
        return os.pread(handle, size, offset)

    def write(self, handle: int, data: bytes, offset: int) -> int:
        return os.pwrite(handle, data, offset)

    def fstat(self, handle: int) -> os.stat_result:
        return os.fstat(handle)

    def getdents(self, handle: int) -> list[DirEntry]:
        st = os.fstat(handle)
        # not "..": looking it up needs search permission on a directory that may only be readable
        parent = os.stat(os.path.dirname(os.readlink(f"/proc/self/fd/{handle}")))
        entries = [DirEntry(".", st.st_ino, dtype_of(st.st_mode)),
                   DirEntry("..", parent.st_ino, dtype_of(parent.st_mode))]
        with os.scandir(handle) as it:
            for e in it:
                entries.append(DirEntry(e.name, e.inode(), dtype_of_entry(e)))
        return entries

    def fsync(self, handle: int, datasync: bool) -> None:
        (os.fdatasync if datasync else os.fsync)(handle)

    def ftruncate(self, handle: int, length: int) -> None:
        os.ftruncate(handle, length)

    def mkdir(self, path: str, mode: int) -> None:
        os.mkdir(self.real(path), mode)

    def rmdir(self, path: str) -> None:
        os.rmdir(self.real(path))

    def unlink(self, path: str) -> None:
        os.unlink(self.real(path))

    def rename(self, old: str, new: str, flags: int) -> None:
        renameat2(self.real(old), self.real(new), flags)

    def mknod(self, path: str, mode: int, dev: int) -> None:
        os.mknod(self.real(path), mode, dev)

    def link(self, old: str, new: str) -> None:
        os.link(self.real(old), self.real(new), follow_symlinks=False)

    def symlink(self, target: str, path: str) -> None:
        os.symlink(target, self.real(path))

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(self.real(path), mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        os.chown(self.real(path), uid, gid, follow_symlinks=False)

    def truncate(self, path: str, length: int) -> None:
        os.truncate(self.real(path), length)

    def utime(self, path: str, times_ns: tuple[int, int] | None) -> None:
        if times_ns is None:
            os.utime(self.real(path), follow_symlinks=False)
        else:
            os.utime(self.real(path), ns=times_ns, follow_symlinks=False)

    def flink(self, handle: int, new: str, path: str | None) -> None:
        link_fd(handle, self.real(new))

    def getxattr(self, path: str, name: str) -> bytes:
        return os.getxattr(self.real(path), name, follow_symlinks=False)

    def listxattr(self, path: str) -> list[str]:
        return os.listxattr(self.real(path), follow_symlinks=False)

    def setxattr(self, path: str, name: str, value: bytes, flags: int) -> None:
        os.setxattr(self.real(path), name, value, flags, follow_symlinks=False)

    def removexattr(self, path: str, name: str) -> None:
        os.removexattr(self.real(path), name, follow_symlinks=False)


@hookimpl
def vu_module_describe() -> str:
    return "view of / under /unreal and /unreal/unreal"


@hookimpl
def vu_module_load(vu) -> None:
    vu.mount("/unreal", Unreal("/"), source="/", fstype="unreal")
