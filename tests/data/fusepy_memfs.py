"""A tiny fusepy (libfuse2) file system for the tests: files in a dict.

    python3 fusepy_memfs.py MOUNTPOINT      (foreground)
"""

import errno
import stat
import sys
import time

try:
    from fuse import FUSE, FuseOSError, Operations  # fusepy from PyPI
except ImportError:
    from fusepy import FUSE, FuseOSError, Operations  # Debian's python3-fusepy


class MemFS(Operations):
    def __init__(self):
        now = time.time()
        self.files = {"/": dict(st_mode=stat.S_IFDIR | 0o755, st_nlink=2, st_ctime=now, st_mtime=now, st_atime=now)}
        self.data = {}

    def getattr(self, path, fh=None):
        if path not in self.files:
            raise FuseOSError(errno.ENOENT)
        return self.files[path]

    def readdir(self, path, fh):
        return [".", ".."] + [p[1:] for p in self.files if p != "/"]

    def create(self, path, mode, fi=None):
        now = time.time()
        self.files[path] = dict(st_mode=stat.S_IFREG | mode, st_nlink=1, st_size=0, st_ctime=now, st_mtime=now,
                                st_atime=now)
        self.data[path] = b""
        return 0

    def read(self, path, size, offset, fh):
        return self.data[path][offset : offset + size]

    def write(self, path, data, offset, fh):
        self.data[path] = self.data[path][:offset] + data + self.data[path][offset + len(data) :]
        self.files[path]["st_size"] = len(self.data[path])
        return len(data)

    def truncate(self, path, length, fh=None):
        self.data[path] = self.data[path][:length].ljust(length, b"\0")
        self.files[path]["st_size"] = length

    def unlink(self, path):
        del self.files[path]
        del self.data[path]


if __name__ == "__main__":
    FUSE(MemFS(), sys.argv[1], foreground=True)
