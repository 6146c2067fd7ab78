"""Private host copies of virtual files, for what only the kernel can do with a file.

The kernel execs and maps host files only.  A file that a module holds and
cannot name on the host (no ``host_path``) is copied, once per version, to a
private directory of the session, and the kernel is given the copy (VUOS does
the same).  The copies go when the session ends.
"""

from __future__ import annotations

import atexit
import itertools
import os
from typing import Any

from umvu import creds
from umvu.registry import Mount
from umvu.vfs import FMODE_EXEC

CHUNK = 1 << 20
FIFO_PREFIX = "fifo-"


async def _maybe(v):
    if hasattr(v, "__await__"):
        return await v
    return v


class Shadows:
    def __init__(self) -> None:
        self._dir: str | None = None
        self._fifos: str | None = None
        self._cache: dict[tuple[int, str], tuple[str, tuple[int, int, int]]] = {}
        self._serial = itertools.count()  # every copy a new name: a running old copy stays intact
        self._locks: dict[tuple[int, int], tuple[str, int]] = {}  # (mount id, inode) -> (path, opens)

    def _directory(self) -> str:
        if self._dir is None:
            import shutil  # here: start-up does not pay for what the first shadow needs
            import tempfile

            self._dir = tempfile.mkdtemp(prefix="umvu-shadow-")
            atexit.register(shutil.rmtree, self._dir, True)
        return self._dir

    def lock_file(self, key: tuple[int, int]) -> str:
        """The host file whose locks are a virtual file's (``key``: its mount's id and inode): the
        placeholder of every open of that file, so that flock and fcntl locks on it are the
        kernel's own, between open files and processes exactly as on Linux (per open file for
        flock and OFD locks, per process for record locks, blocking and interruptible).  Empty;
        every process of the session may open it; gone with the file's last open (unlock_file)."""
        path, opens = self._locks.get(key, ("", 0))
        if not opens:
            path = os.path.join(self._fifo_directory(), f"lock-{key[0]}-{key[1]}")
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
            try:
                if creds.SWITCHES:  # a process that switched users opens it too (the directory is secret)
                    os.fchmod(fd, 0o666)
            finally:
                os.close(fd)
        self._locks[key] = (path, opens + 1)
        return path

    def unlock_file(self, key: tuple[int, int]) -> None:
        path, opens = self._locks[key]
        if opens > 1:
            self._locks[key] = (path, opens - 1)
            return
        del self._locks[key]
        try:
            os.unlink(path)
        except OSError:
            pass

    def _fifo_directory(self) -> str:
        """Where FIFOs go: every process of the session must reach them, whoever it is (a root
        session's processes may have switched users).  The session's directory is then 0711 and the
        FIFOs are in a subdirectory no one outside can name (searchable, not listable)."""
        if self._fifos is None:
            top = self._directory()
            if not creds.SWITCHES:
                self._fifos = top
            else:
                os.chmod(top, 0o711)
                self._fifos = os.path.join(top, os.urandom(16).hex())
                os.mkdir(self._fifos, 0o711)
                os.chmod(self._fifos, 0o711)
        return self._fifos

    def fifo(self, mount: Mount, st: os.stat_result) -> str:
        """A host FIFO standing for the FIFO ``st`` of a module that has no host file for it.

        The kernel treats a FIFO inode as a pipe wherever it lives (a FUSE file system's too: the
        daemon never sees its data), so every process of the session that opens the same virtual
        FIFO meets the others in one real FIFO, and opens, reads and writes block in the kernel,
        not in the module.
        """
        path = os.path.join(self._fifo_directory(), f"{FIFO_PREFIX}{mount.id}-{st.st_ino}")
        if not os.path.exists(path):
            os.mkfifo(path, 0o600)
            # the module's rule was applied (FileSystem.open_permitted): the host's checks nothing
            os.chmod(path, 0o666)
        return path

    def socket(self, mount: Mount, st: os.stat_result, fresh: bool = False) -> str | None:
        """The host name of the socket standing for socket node ``st`` of a module with no host
        file for it (calls.call's _socket_stand_in).  ``fresh``: for a bind, with no old socket
        of a reused inode number left in its way.  None: the name would not fit a sun_path."""
        path = os.path.join(self._fifo_directory(), f"sock-{mount.id}-{st.st_ino}")
        if len(os.fsencode(path)) >= 108:
            return None
        if fresh:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        return path

    def is_fifo(self, host: str) -> bool:
        """Whether ``host`` is one of the session's FIFOs standing for a module's."""
        return self._fifos is not None and host.startswith(os.path.join(self._fifos, FIFO_PREFIX))

    async def copy_of(self, mount: Mount, path: str, st: os.stat_result, handle: Any = None) -> str:
        """A host path with the content of virtual file ``path`` (canonical) as ``st`` describes it.

        Read through ``handle`` (an mmap's open file: the kernel asks no
        permission again), or else a file opened to run it (FMODE_EXEC:
        a program that is --x runs, as the kernel's).
        """
        key = (mount.id, path)
        version = (st.st_mtime_ns, st.st_size, st.st_ino)
        hit = self._cache.get(key)
        if hit is not None and hit[1] == version and os.path.exists(hit[0]):
            return hit[0]
        fs, inner = mount.fs, mount.inner(path)
        dest = os.path.join(self._directory(), f"{next(self._serial)}-{os.path.basename(path) or 'file'}")
        own = handle is None
        if own:
            handle = await _maybe(fs.open(inner, os.O_RDONLY | FMODE_EXEC, 0))
        try:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o700)
            try:
                offset = 0
                while True:
                    data = await _maybe(fs.read(handle, CHUNK, offset))
                    if not data:
                        break
                    os.write(fd, data)
                    offset += len(data)
            finally:
                os.close(fd)
        finally:
            if own:
                await _maybe(fs.close(handle))
        os.chmod(dest, (st.st_mode & 0o777) | 0o600)
        self._cache[key] = (dest, version)
        return dest
