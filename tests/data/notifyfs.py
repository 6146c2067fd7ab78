"""A pyfuse3 file system that changes under its clients and says so (FUSE notifications).

/a holds "one".  Writing to /ctl:
  "rename"  renames /a to /b and sends INVAL_ENTRY for "a"
  "delete"  removes /b and sends DELETE ("b", with its node)
Entries and attributes are cached for 300 s, so only the notification can make a client see a change.

Usage: notifyfs.py MOUNTPOINT
"""

import errno
import os
import stat
import sys

import pyfuse3
import trio

TTL = 300.0
A, CTL = 2, 3


class NotifyFS(pyfuse3.Operations):
    def __init__(self):
        super().__init__()
        self.names = {b"a": A, b"ctl": CTL}
        self.data = {A: b"one\n", CTL: b""}

    def _attr(self, node):
        e = pyfuse3.EntryAttributes()
        e.st_ino = node
        e.entry_timeout = e.attr_timeout = TTL
        if node == pyfuse3.ROOT_INODE:
            e.st_mode, e.st_nlink = stat.S_IFDIR | 0o755, 2
        else:
            e.st_mode, e.st_nlink, e.st_size = stat.S_IFREG | 0o666, 1, len(self.data[node])
        e.st_uid, e.st_gid = os.getuid(), os.getgid()
        return e

    async def getattr(self, node, ctx=None):
        if node != pyfuse3.ROOT_INODE and node not in self.data:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(node)

    async def setattr(self, node, attr, fields, fh, ctx):
        return self._attr(node)  # the shell's O_TRUNC on /ctl: nothing to keep

    async def lookup(self, parent, name, ctx=None):
        if parent != pyfuse3.ROOT_INODE or name not in self.names:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(self.names[name])

    async def opendir(self, node, ctx):
        return node

    async def readdir(self, fh, start, token):
        for i, (name, node) in enumerate(sorted(self.names.items())):
            if i >= start and not pyfuse3.readdir_reply(token, name, self._attr(node), i + 1):
                break

    async def open(self, node, flags, ctx):
        return pyfuse3.FileInfo(fh=node)

    async def read(self, fh, off, size):
        return self.data[fh][off : off + size]

    async def write(self, fh, off, buf):
        if fh != CTL:
            raise pyfuse3.FUSEError(errno.EACCES)
        what = buf.strip()
        if what == b"rename":
            self.names[b"b"] = self.names.pop(b"a")
            pyfuse3.invalidate_entry_async(pyfuse3.ROOT_INODE, b"a")
        elif what == b"delete":
            node = self.names.pop(b"b")
            pyfuse3.invalidate_entry_async(pyfuse3.ROOT_INODE, b"b", deleted=node)
        return len(buf)


def main():
    pyfuse3.init(NotifyFS(), sys.argv[1], {"fsname=notifyfs"})
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close()


if __name__ == "__main__":
    main()
