"""Device files: an open char or block node whose number a module's driver claims.

The kernel splits an open device in two: its file operations are the
driver's (init_special_inode, chrdev_open), its inode (mode, owner, times,
xattrs) stays the node's file system's.  DeviceFile is that split for a
virtual open file (``OpenFile.ops``).  NodeFS is a file system of one node,
for a module that puts a device in the view (/dev/fuse) with no tree of its
own to hold it.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from typing import Any

from umvu.abi import StatFs, host_statfs
from umvu.vfs import Device, FileSystem


class DeviceFile(FileSystem):
    """The operations of one open device: I/O to ``driver``, attributes to the node at ``path`` of
    ``fs`` (by name: a module's node is not renamed under an open device)."""

    def __init__(self, driver: Device, fs: FileSystem, path: str) -> None:
        self.driver, self.fs, self.path = driver, fs, path

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

    def __init__(self, kind: str, rdev: int, mode: int) -> None:
        self.mode = (stat.S_IFCHR if kind == "c" else stat.S_IFBLK) | mode & 0o7777
        self.rdev, self.born = rdev, time.time_ns()

    def lstat(self, path: str) -> os.stat_result:
        if path != "/":
            raise OSError(errno.ENOTDIR, "not a directory")
        ns = self.born
        return os.stat_result((self.mode, self.rdev, 0, 1, 0, 0, 0, ns // 10**9, ns // 10**9, ns // 10**9),
                              {"st_rdev": self.rdev, "st_atime_ns": ns, "st_mtime_ns": ns, "st_ctime_ns": ns})

    def open(self, path: str, flags: int, mode: int) -> Any:
        raise OSError(errno.ENXIO, "no driver for this device")

    def statfs(self, path: str) -> StatFs:
        return host_statfs("/dev")  # the file system a node of /dev is on
