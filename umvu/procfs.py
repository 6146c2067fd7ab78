"""What /proc must show of the view rather than of the host.

The hypervisor walks paths in its own process, where /proc/self is itself:
the magic links (/proc/self, /proc/PID/cwd, root, fd/N) are answered here for
the traced process they name, in the view's terms.  And /proc/PID/mounts and
mountinfo (hence /proc/mounts and /etc/mtab, symlinks to them) list the
virtual mounts after the host's, so findmnt, df, mount and umount see them;
/proc/PID/fdinfo/N of a virtual fd shows its open file (offset, flags, mount,
inode), not the placeholder the kernel holds at that number.
"""

from __future__ import annotations

import errno
import os
import re
from typing import TYPE_CHECKING, Any

from umvu import identity
from umvu import mounts as mounts_mod
from umvu.registry import Mount
from umvu.vfs import FileSystem

if TYPE_CHECKING:
    from umvu.fdtable import OpenFile
    from umvu.tracer import Tracee, Tracer

_PID_PATH = re.compile(r"^/proc/(\d+)(?:/task/(\d+))?/(cwd|root|exe|fd/\d+|fdinfo/\d+|mounts|mountinfo|status)$")
_NET_PATH = re.compile(r"^/proc/(\d+)(?:/task/(\d+))?/net(/.*)?$")
O_LARGEFILE = 0o100000


class MountTableFS(FileSystem):
    """/proc/PID/mounts, mountinfo, fdinfo/N of a virtual fd and status of a process with virtual
    ids: a snapshot taken at open, as the kernel's seq_file."""

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

    async def open(self, path: str, flags: int, mode: int) -> bytes:
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise OSError(errno.EACCES, "read-only")
        pid, name = self._parse(path)
        t = self.tracer.tracees.get(pid)
        if name.startswith("fdinfo/"):
            return await self._fdinfo(t, pid, int(name[7:]))
        if name == "status":
            with open(f"/proc/{pid}/status", "rb") as f:
                text = f.read()
            proc = t.proc if t is not None else None
            return identity.status_text(text, proc.ids) if proc is not None and proc.ids is not None else text
        root = t.fs.root if t is not None else "/"
        render = mounts_mod.mountinfo if name == "mountinfo" else mounts_mod.mounts
        return render(pid, list(self.tracer.registry), root).encode()

    async def _fdinfo(self, t: Tracee | None, pid: int, fd: int) -> bytes:
        of = t.files.get(fd) if t is not None else None
        if of is None:  # closed since the lookup: the host's answer
            with open(f"/proc/{pid}/fdinfo/{fd}", "rb") as f:
                return f.read()
        st = of.ops.fstat(of.handle)
        if hasattr(st, "__await__"):
            st = await st
        cloexec, pos = 0, of.offset
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:  # the kernel holds close-on-exec with the number
            for line in f:
                if line.startswith("flags:"):
                    cloexec = int(line.split()[1], 8) & os.O_CLOEXEC
                elif line.startswith("pos:") and of.passthrough is not None:
                    pos = int(line.split()[1]) - of.base  # a disk whose placeholder is its file: the kernel's
        flags = of.flags | cloexec | (0 if of.flags & os.O_PATH else O_LARGEFILE)
        return f"pos:\t{pos}\nflags:\t0{flags:o}\nmnt_id:\t{of.mount.id}\nino:\t{st.st_ino}\n".encode()

    def read(self, handle: bytes, size: int, offset: int) -> bytes:
        return handle[offset : offset + size]

    def fstat(self, handle: bytes) -> os.stat_result:
        return os.lstat("/proc/self/mounts")


class PartitionsFS(FileSystem):
    """/proc/partitions: the host's, then the block devices modules publish (vu.publish_block)."""

    fstype = "proc"

    def __init__(self, disks: dict[str, tuple[int, int]]) -> None:
        self.disks = disks  # name -> (device number, size in bytes)

    def lstat(self, path: str) -> os.stat_result:
        return os.lstat("/proc/partitions")

    def open(self, path: str, flags: int, mode: int) -> bytes:
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise OSError(errno.EACCES, "read-only")
        with open("/proc/partitions", "rb") as f:
            text = f.read().decode().rstrip("\n") + "\n"
        for name, (rdev, size) in self.disks.items():
            text += f"{os.major(rdev):4d} {os.minor(rdev):7d} {size // 1024:10d} {name}\n"
        return text.encode()

    def read(self, handle: bytes, size: int, offset: int) -> bytes:
        return handle[offset : offset + size]

    def fstat(self, handle: bytes) -> os.stat_result:
        return os.lstat("/proc/partitions")


class ProcView:
    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self.table = Mount("/proc", MountTableFS(tracer), "proc", "proc", "", "core")
        self.disks: dict[str, tuple[int, int]] = {}  # published block devices, for /proc/partitions
        self.partitions = Mount("/proc", PartitionsFS(self.disks), "proc", "proc", "", "core")
        try:
            self.table.dev = self.partitions.dev = os.lstat("/proc").st_dev
        except OSError:
            pass

    def magic(self, caller: Tracee, path: str) -> tuple[str, Any] | None:
        """Where a /proc magic link leads in the view: ("text", link text), ("place", canonical path),
        ("final", host path the kernel must open) or ("file", OpenFile): a virtual file with no name.

        ``path`` is a host path under /proc that is a symlink; None: the host's answer is right.
        """
        if path == "/proc/self":
            return "text", str(caller.proc.tgid)
        if path == "/proc/thread-self":
            return "text", f"{caller.proc.tgid}/task/{caller.tid}"
        m = _PID_PATH.match(path)
        if m and m.group(3).startswith("fd/"):
            of = self._unnamed(m)
            if of is not None:  # no name leads to it: the link is the open file itself
                return "file", of
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

    def _unnamed(self, m: re.Match) -> OpenFile | None:
        """The virtual open file an fd/N link names, when it has no name of its own (O_TMPFILE)."""
        t = self.tracer.tracees.get(int(m.group(2) or m.group(1)))
        of = t.files.get(int(m.group(3)[3:])) if t is not None else None
        return of if of is not None and not of.named else None

    def _place(self, caller: Tracee, path: str) -> str | None:
        m = _PID_PATH.match(path)
        if not m or m.group(3) in ("mounts", "mountinfo", "status") or m.group(3).startswith("fdinfo/"):
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

    def net_of(self, path: str) -> str | None:
        """/proc/PID/net/... of a process whose network is a stack of the view (Process.net_pid):
        the same name under the stack's own process, which the kernel shows for that stack."""
        m = _NET_PATH.match(path)
        if not m:
            return None
        t = self.tracer.tracees.get(int(m.group(2) or m.group(1)))
        if t is None or t.proc.net_pid is None:
            return None
        return f"/proc/{t.proc.net_pid}/net{m.group(3) or ''}"

    def synthetic(self, path: str) -> Mount | None:
        """The mount serving a /proc file umvu must write itself (the mount tables, a virtual fd's
        fdinfo)."""
        if path == "/proc/partitions":
            return self.partitions if self.disks else None
        m = _PID_PATH.match(path)
        if not m or not self.tracer.registry:
            return None
        what = m.group(3)
        if what.startswith("fdinfo/"):
            t = self.tracer.tracees.get(int(m.group(2) or m.group(1)))
            return self.table if t is not None and t.files.get(int(what[7:])) is not None else None
        if what == "status":
            t = self.tracer.tracees.get(int(m.group(2) or m.group(1)))
            return self.table if t is not None and t.proc.ids is not None else None
        return self.table if what in ("mounts", "mountinfo") else None
