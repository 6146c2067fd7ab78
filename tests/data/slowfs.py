"""A test module: /slow/file answers after 1.5 s (in a worker thread); /slow/boom raises at open,
/slow/closebug at close; /slow/slowstat (not listed) is a file whose lstat takes 1.5 s."""

import os
import stat
import time

from umvu.api import DirEntry, FileSystem, hookimpl, to_thread


def _st(mode):
    return os.stat_result((mode, 1, 99, 1, os.getuid(), os.getgid(), 5, 0, 0, 0))


class SlowFS(FileSystem):
    fstype = "slow"

    def lstat(self, path):
        if path == "/slowstat":
            return self._slow_lstat()
        if path == "/":
            return _st(stat.S_IFDIR | 0o755)
        if path in ("/file", "/boom", "/closebug"):
            return _st(stat.S_IFREG | 0o644)
        raise FileNotFoundError(2, path)

    async def _slow_lstat(self):
        await to_thread(time.sleep, 1.5)
        return _st(stat.S_IFREG | 0o644)

    def open(self, path, flags, mode):
        if path == "/boom":
            raise RuntimeError("this module has a bug")
        return path

    async def read(self, handle, size, offset):
        await to_thread(time.sleep, 1.5)
        return b"slow\n"[offset : offset + size]

    def flush(self, handle):
        if handle == "/closebug":
            raise RuntimeError("this module's flush has a bug")

    def fstat(self, handle):
        return self.lstat(handle)

    def getdents(self, handle):
        if handle != "/":
            return super().getdents(handle)
        return [DirEntry(n, 1, t) for n, t in ((".", 4), ("..", 4), ("boom", 8), ("closebug", 8), ("file", 8))]


@hookimpl
def vu_module_describe():
    return "slow and buggy, for tests"


@hookimpl
def vu_module_load(vu):
    vu.mount("/slow", SlowFS())
