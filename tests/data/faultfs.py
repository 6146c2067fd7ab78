"""A test module: /faulty/f0 ... /faulty/f9, whose open and read run in a worker thread (a few
milliseconds each), so its callers wait for a module as they would for a slow one."""

import os
import stat
import time

from umvu.api import DirEntry, FileSystem, hookimpl, to_thread

NAMES = [f"f{i}" for i in range(10)]


def _st(mode, size=0, ino=1):
    return os.stat_result((mode, ino, 99, 1, os.getuid(), os.getgid(), size, 0, 0, 0))


def content(name):
    return (name + "\n").encode() * 100


class FaultFS(FileSystem):
    fstype = "faulty"

    def lstat(self, path):
        if path == "/":
            return _st(stat.S_IFDIR | 0o755)
        if path[1:] in NAMES:
            return _st(stat.S_IFREG | 0o644, len(content(path[1:])), 2 + NAMES.index(path[1:]))
        raise FileNotFoundError(2, path)

    async def open(self, path, flags, mode):
        await to_thread(time.sleep, 0.002)
        return path

    async def read(self, handle, size, offset):
        await to_thread(time.sleep, 0.001)
        return content(handle[1:])[offset : offset + size]

    def fstat(self, handle):
        return self.lstat(handle)

    def getdents(self, handle):
        return [DirEntry(n, 1, 4) for n in (".", "..")] + [DirEntry(n, 2 + i, 8) for i, n in enumerate(NAMES)]


@hookimpl
def vu_module_describe():
    return "files served from a worker thread, for the fault tests"


@hookimpl
def vu_module_load(vu):
    vu.mount("/faulty", FaultFS())
