"""Device files: an open char or block node whose number a module's driver claims.

The kernel splits an open device in two: its file operations are the
driver's (init_special_inode, chrdev_open), its inode (mode, owner, times,
xattrs) stays the node's file system's.  DeviceFile is that split for a
virtual open file (``OpenFile.ops``).  NodeFS is a file system of one node,
for a module that puts a device in the view (/dev/fuse) with no tree of its
own to hold it; HostDirWithNodes lists a host directory with the nodes
mounted in it that the host does not have (/dev/ram0 in the host's /dev).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from typing import TYPE_CHECKING, Any

from umvu.abi import StatFs, dtype_of, dtype_of_entry, host_statfs
from umvu.creds import as_caller
from umvu.vfs import Device, DirEntry, FileSystem

if TYPE_CHECKING:
    from umvu.registry import MountRegistry


class DeviceFile(FileSystem):
    """The operations of one open device: I/O to ``driver``, attributes to the node at ``path`` of
    ``fs`` (by name: a module's node is not renamed under an open device)."""

    def __init__(self, driver: Device, fs: FileSystem, path: str, mode: int, module: str = "") -> None:
        self.driver, self.fs, self.path, self._mode = driver, fs, path, mode
        self.module = module  # the driver's: its files keep it in use (vu_rmmod)

    # the driver's
    def close(self, handle: Any) -> Any:
        return self.driver.close(handle)

    def flush(self, handle: Any) -> Any:
        return self.driver.flush(handle)

    def read(self, handle: Any, size: int, offset: int) -> Any:
        return self.driver.read(handle, size, offset)

    def write(self, handle: Any, data: bytes, offset: int) -> Any:
        return self.driver.write(handle, data, offset)

    def fsync(self, handle: Any, datasync: bool) -> Any:
        return self.driver.fsync(handle, datasync)

    def ioctl(self, handle: Any, request: int, arg: bytes | int | None) -> Any:
        return self.driver.ioctl(handle, request, arg)

    def size(self, handle: Any) -> Any:
        return self.driver.size(handle)

    def poll(self, handle: Any, wake: Any) -> int | None:
        return self.driver.poll(handle, wake)

    def backing(self, handle: Any) -> tuple[int, int, int, bool] | None:
        return self.driver.backing(handle)

    def fallocate(self, handle: Any, mode: int, offset: int, length: int) -> Any:
        if not stat.S_ISBLK(self._mode):
            raise OSError(errno.ENODEV, "not a file or a block device")  # vfs_fallocate
        return self.driver.fallocate(handle, mode, offset, length)

    def ftruncate(self, handle: Any, length: int) -> None:
        raise OSError(errno.EINVAL, "not a regular file")  # do_sys_ftruncate

    # the node's
    def fstat(self, handle: Any) -> Any:
        return self.fs.lstat(self.path)

    def lstat(self, path: str) -> Any:
        return self.fs.lstat(path)

    def chmod(self, path: str, mode: int) -> Any:
        return self.fs.chmod(path, mode)

    def chown(self, path: str, uid: int, gid: int) -> Any:
        return self.fs.chown(path, uid, gid)

    def utime(self, path: str, times_ns: tuple[int, int] | None) -> Any:
        return self.fs.utime(path, times_ns)

    def getxattr(self, path: str, name: str) -> Any:
        return self.fs.getxattr(path, name)

    def listxattr(self, path: str) -> Any:
        return self.fs.listxattr(path)

    def setxattr(self, path: str, name: str, value: bytes, flags: int) -> Any:
        return self.fs.setxattr(path, name, value, flags)

    def removexattr(self, path: str, name: str) -> Any:
        return self.fs.removexattr(path, name)

    def statfs(self, path: str) -> Any:
        return self.fs.statfs(path)


class NodeFS(FileSystem):
    """One device node, mounted where the module wants it (hidden from the mount table: on Linux
    it is a file of /dev).  Its number reaches the driver that claims it; unclaimed, ENXIO."""

    fstype = "devtmpfs"

    def __init__(self, kind: str, rdev: int, mode: int, owner: tuple[int, int] = (0, 0)) -> None:
        self.mode = (stat.S_IFCHR if kind == "c" else stat.S_IFBLK) | mode & 0o7777
        self.rdev, self.owner, self.born = rdev, owner, time.time_ns()

    def lstat(self, path: str) -> os.stat_result:
        if path != "/":
            raise OSError(errno.ENOTDIR, "not a directory")
        ns = self.born
        uid, gid = self.owner
        return os.stat_result((self.mode, self.rdev, 0, 1, uid, gid, 0, ns // 10**9, ns // 10**9, ns // 10**9),
                              {"st_rdev": self.rdev, "st_atime_ns": ns, "st_mtime_ns": ns, "st_ctime_ns": ns})

    def open(self, path: str, flags: int, mode: int) -> Any:
        raise OSError(errno.ENXIO, "no driver for this device")

    def statfs(self, path: str) -> StatFs:
        return host_statfs("/dev")  # the file system a node of /dev is on


@as_caller
class HostDirWithNodes(FileSystem):
    """A host directory opened by a process, whose listing also shows the device nodes mounted in
    it at names the host does not have (registry.phantoms): ls /dev and globs find /dev/ram0.
    Everything else is the host directory's; names in it are looked up as ever."""

    fstype = "host"
    real_files = real_dirs = True  # the host's st_dev

    def __init__(self, registry: MountRegistry) -> None:
        self.registry = registry

    def lstat(self, path: str) -> os.stat_result:
        return os.lstat(path)

    def open(self, path: str, flags: int, mode: int) -> int:
        return os.open(path, flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC) | os.O_CLOEXEC)

    def close(self, handle: int) -> None:
        os.close(handle)

    def fstat(self, handle: int) -> os.stat_result:
        return os.fstat(handle)

    def getdents(self, handle: int) -> list[DirEntry]:
        path = os.readlink(f"/proc/self/fd/{handle}")
        st, parent = os.fstat(handle), os.stat(os.path.dirname(path))
        entries = [DirEntry(".", st.st_ino, dtype_of(st.st_mode)),
                   DirEntry("..", parent.st_ino, dtype_of(parent.st_mode))]
        with os.scandir(handle) as it:
            for e in it:
                entries.append(DirEntry(e.name, e.inode(), dtype_of_entry(e)))
        have = {e.name for e in entries}
        for name, m in sorted(self.registry.phantoms(path).items()):
            if name not in have:
                node = m.fs.lstat("/")
                entries.append(DirEntry(name, node.st_ino, dtype_of(node.st_mode)))
        return entries

    def statfs(self, path: str) -> StatFs:
        return host_statfs(path)

    def fstatfs(self, handle: int, path: str | None) -> StatFs:
        return host_statfs(handle)


class SyntheticTree(FileSystem):
    """A read-only tree of small text files computed when opened, with directories and symlinks:
    what sysfs shows of a virtual device (/sys/block/ram0...).  ``tree`` maps names to a string, a
    function giving one, a dict (a directory) or ``("link", target)``; the root may be a link."""

    fstype = "sysfs"

    def __init__(self, tree: Any) -> None:
        self.tree, self.born = tree, int(time.time())

    def _node(self, path: str) -> tuple[Any, int]:
        node, ino = self.tree, 1
        for name in filter(None, path.split("/")):
            if not isinstance(node, dict) or name not in node:
                raise OSError(errno.ENOENT if isinstance(node, dict) else errno.ENOTDIR, "no such file")
            ino = ino * 131 + list(node).index(name) + 2
            node = node[name]
        return node, ino & 0xFFFFFFFF

    def lstat(self, path: str) -> os.stat_result:
        node, ino = self._node(path)
        t = self.born
        if isinstance(node, dict):
            return os.stat_result((stat.S_IFDIR | 0o755, ino, 0, 2, 0, 0, 0, t, t, t))
        if isinstance(node, tuple):
            return os.stat_result((stat.S_IFLNK | 0o777, ino, 0, 1, 0, 0, len(node[1]), t, t, t))
        return os.stat_result((stat.S_IFREG | 0o444, ino, 0, 1, 0, 0, 4096, t, t, t))

    def readlink(self, path: str) -> str:
        node, _ino = self._node(path)
        if not isinstance(node, tuple):
            raise OSError(errno.EINVAL, "not a symlink")
        return node[1]

    def open(self, path: str, flags: int, mode: int) -> Any:
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise OSError(errno.EACCES, "read-only")
        node, ino = self._node(path)
        if isinstance(node, dict):
            return (path, node, ino)
        return (path, (node() if callable(node) else node).encode(), ino)

    def read(self, handle: Any, size: int, offset: int) -> bytes:
        if isinstance(handle[1], dict):
            raise OSError(errno.EISDIR, "a directory")
        return handle[1][offset : offset + size]

    def fstat(self, handle: Any) -> os.stat_result:
        return self.lstat(handle[0])

    def getdents(self, handle: Any) -> list[DirEntry]:
        entries = [DirEntry(".", handle[2], 4), DirEntry("..", 1, 4)]
        for name in handle[1]:
            st = self.lstat(handle[0].rstrip("/") + "/" + name)
            entries.append(DirEntry(name, st.st_ino, dtype_of(st.st_mode)))
        return entries
