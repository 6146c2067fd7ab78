"""What /proc must show of the view rather than of the host.

The hypervisor walks paths in its own process, where /proc/self is itself:
the magic links (/proc/self, /proc/PID/cwd, root, fd/N) are answered here for
the traced process they name, in the view's terms.  And /proc/PID/mounts and
mountinfo (hence /proc/mounts and /etc/mtab, symlinks to them) list the
virtual mounts after the host's, so findmnt, df, mount and umount see them.
"""

from __future__ import annotations

import errno
import os
import re
from typing import TYPE_CHECKING

from umvu import mounts as mounts_mod
from umvu.registry import Mount
from umvu.vfs import FileSystem

if TYPE_CHECKING:
    from umvu.tracer import Tracee, Tracer

_PID_PATH = re.compile(r"^/proc/(\d+)(?:/task/(\d+))?/(cwd|root|exe|fd/\d+|mounts|mountinfo)$")


class MountTableFS(FileSystem):
    """/proc/PID/mounts and mountinfo: a snapshot taken at open, as the kernel's seq_file."""

    fstype = "proc"

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def _parse(self, path: str) -> tuple[int, str]:
        m = _PID_PATH.match("/proc" + path)
        if not m:
            raise OSError(errno.ENOENT, "no such file")
        return int(m.group(2) or m.group(1)), m.group(3)

    def lstat(self, path: str) -> os.stat_result:
        pid, name = self._parse(path)
        return os.lstat(f"/proc/{pid}/{name}")

    def access(self, path: str, mode: int) -> None:
        if mode & (os.W_OK | os.X_OK):
            raise OSError(errno.EACCES, "read-only")

    def open(self, path: str, flags: int, mode: int) -> bytes:
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise OSError(errno.EACCES, "read-only")
        pid, name = self._parse(path)
        t = self.tracer.tracees.get(pid)
        root = t.fs.root if t is not None else "/"
        render = mounts_mod.mountinfo if name == "mountinfo" else mounts_mod.mounts
        return render(pid, list(self.tracer.registry), root).encode()

    def read(self, handle: bytes, size: int, offset: int) -> bytes:
        return handle[offset : offset + size]

    def fstat(self, handle: bytes) -> os.stat_result:
        return os.lstat("/proc/self/mounts")


class ProcView:
    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self.table = Mount("/proc", MountTableFS(tracer), "proc", "proc", "", "core")
        try:
            self.table.dev = os.lstat("/proc").st_dev
        except OSError:
            pass

    def magic(self, caller: Tracee, path: str) -> tuple[str, str] | None:
        """Where a /proc magic link leads in the view: ("text", link text) or ("place", canonical path).

        ``path`` is a host path under /proc that is a symlink; None: the host's answer is right.
        """
        if path == "/proc/self":
            return "text", str(caller.proc.tgid)
        if path == "/proc/thread-self":
            return "text", f"{caller.proc.tgid}/task/{caller.tid}"
        m = _PID_PATH.match(path)
        if m and m.group(3).startswith("fd/") and caller.fs.root != "/":
            # In a chroot the host's text would be re-read under the root: go where the fd is.
            place = self._place(caller, path)
            if place is not None:
                return "place", place
            try:
                text = os.readlink(path)
            except OSError:
                return None
            if text.startswith("/") and not text.endswith(" (deleted)"):
                return "place", text
            return "final", path  # a pipe, a socket, a deleted file: the kernel opens it
        place = self._place(caller, path)
        return None if place is None else ("place", place)

    def _place(self, caller: Tracee, path: str) -> str | None:
        m = _PID_PATH.match(path)
        if not m or m.group(3) in ("mounts", "mountinfo"):
            return None
        t = self.tracer.tracees.get(int(m.group(2) or m.group(1)))
        if t is None:
            return None
        what = m.group(3)
        if what == "root":  # a chrooted caller never reaches above its own root this way
            root = caller.fs.root
            inside = root == "/" or t.fs.root == root or t.fs.root.startswith(root + "/")
            return t.fs.root if inside else root
        if what == "exe":
            return t.proc.exe  # the program as the view named it (None: the host's answer is right)
        if what == "cwd":
            if t.fs.cwd_virtual:
                return t.fs.cwd
            if caller.fs.root == "/":
                return None
            try:
                return os.readlink(f"/proc/{t.tid}/cwd")
            except OSError:
                return None
        of = t.files.get(int(what[3:]))
        if of is not None:
            return of.path
        return t.files.view_of(t.tid, int(what[3:]))  # a real fd a module handed out

    def synthetic(self, path: str) -> Mount | None:
        """The mount serving a /proc file umvu must write itself (the mount tables)."""
        m = _PID_PATH.match(path)
        if m and m.group(3) in ("mounts", "mountinfo") and self.tracer.registry:
            return self.table
        return None
