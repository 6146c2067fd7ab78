"""The session's side of the in-process fast path (umvu/fastpath.c, issue 18).

Traced processes preload libumvufast.so.  For a path call on an absolute name that cannot lead
into anything virtual, the library makes the real call itself from a trampoline page at a fixed
address, which every seccomp program umvu stacks lets pass by instruction pointer (``door``);
everything else stops as before.  What it needs to decide, umvu publishes here:

* the snapshot: a file every process maps read-only, with the session's mount points and the
  trees umvu always serves (/proc, /sys), or "off" when every path is umvu's whatever is mounted
  (a fake root shows records on host files, virtual ids change access());
* each process's page (the page after the trampoline, private to the process, written with
  process_vm_writev): the fast path is on for it, and whether its root is virtual (a chroot).

Both are written under a sequence count (odd while written) that the library reads before and
after deciding: a decision made across a change is not taken.  The constants are the C file's
own ``#define`` lines, read from it: one place for each.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from typing import TYPE_CHECKING

from umvu import arch, memory

if TYPE_CHECKING:
    from umvu.tracer import Tracee

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "fastpath.c")
LIBRARY = os.path.join(HERE, "libumvufast.so")
ALWAYS = ("/proc", "/sys")  # served per process whatever is mounted (/proc/PID/status, a stack's /sys/class/net)
HEADER = struct.Struct("<QQII")  # magic, seq, flags, count
PAGE_HEADER = struct.Struct("<QII")  # seq, flags, pad


def _defines() -> dict[str, int]:
    found = {}
    with open(SOURCE) as f:
        for line in f:
            m = re.match(r"#define (\w+) (0x[0-9a-fA-F]+|\d+)[uUlL]*\b", line)
            if m:
                found[m.group(1)] = int(m.group(2), 0)
    return found


def _facts(t: Tracee) -> tuple:
    """What the page of ``t``'s process was written from."""
    return (id(t.files), t.files.version, t.fs.root, t.fs.cwd_virtual)


def _remove_stale(base: str) -> None:
    """Snapshots of sessions that ended with no clean-up (a SIGKILL to umvu): the file names the
    session's pid, and a file of ours whose session is gone is removed by the next one."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        m = re.fullmatch(r"umvu-fast-(\d+)-[0-9a-f]+", name)
        if m is None:
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # its session still runs (or another user's does)
        except ProcessLookupError:
            pass
        except OSError:
            continue
        path = os.path.join(base, name)
        try:
            if os.stat(path).st_uid == os.geteuid():
                os.unlink(path)
        except OSError:
            pass


def available() -> str | None:
    """Why the fast path cannot run here, or None."""
    if arch.NAME != "x86_64":
        return f"the fast path is for x86-64 (this is {arch.NAME})"
    if not os.path.exists(LIBRARY):
        return f"{LIBRARY} is not built (make)"
    return None


class FastPath:
    def __init__(self) -> None:
        d = _defines()
        self.trampoline, self.page_size = d["TRAMPOLINE"], d["PAGE"]
        self.magic, self.size, self.counter = d["SNAP_MAGIC"], d["SNAP_SIZE"], d["COUNTER_OFF"]
        self.on, self.rooted, self.cwd_virtual = d["PROC_ON"], d["PROC_ROOTED"], d["PROC_CWD_VIRTUAL"]
        self.no_dirfd, self.nfds = d["PROC_NO_DIRFD"], d["NFDS"]
        self.off, self.devices = d["SNAP_OFF"], d["SNAP_DEVICES"]
        self.page = self.trampoline + self.page_size
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else "/tmp"
        _remove_stale(base)
        self.path = os.path.join(base, f"umvu-fast-{os.getpid()}-{os.urandom(4).hex()}")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.ftruncate(fd, self.size)
            self.map = mmap.mmap(fd, self.size)
        finally:
            os.close(fd)
        self.seq = 0
        HEADER.pack_into(self.map, 0, self.magic, 0, self.off, 0)
        self.page_seq = 0

    def door(self) -> tuple[int, int]:
        """The instruction pointers every filter lets pass (bpf.DOOR): the trampoline page."""
        return self.trampoline, self.trampoline + self.page_size

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """The first process's environment: it and what it runs preload the library."""
        env = dict(env)
        env["LD_PRELOAD"] = LIBRARY + (" " + env["LD_PRELOAD"] if env.get("LD_PRELOAD") else "")
        env["UMVU_FAST_SNAPSHOT"] = self.path
        return env

    def publish(self, points: list[str], off: bool, devices: bool) -> None:
        """The snapshot anew: ``points`` and ALWAYS, or off; ``devices``: some device numbers are
        a module's, so the library opens only what it sees is a regular file or a directory."""
        data = b"".join(os.fsencode(p) + b"\0" for p in (*ALWAYS, *points))
        if HEADER.size + len(data) > self.counter:
            off, data = True, b""  # more mount points than fit: every path stops
        self.seq += 1  # odd: being written
        struct.pack_into("<Q", self.map, 8, self.seq)
        self.map[HEADER.size : HEADER.size + len(data)] = data
        flags = (self.off if off else 0) | (self.devices if devices else 0)
        struct.pack_into("<II", self.map, 16, flags, 0 if off else len(ALWAYS) + len(points))
        self.seq += 1
        struct.pack_into("<Q", self.map, 8, self.seq)

    def register(self, t: Tracee, addr: int) -> None:
        """The library of ``t``'s process says its page is at ``addr``: fill it."""
        if addr != self.page:
            raise OSError(22, "not the fast path's page")
        t.proc.fast_page = addr
        self.write_page(t)

    def sync(self, t: Tracee) -> None:
        """Before ``t`` runs again (Tracee.cont): the page anew if what it says changed meanwhile
        (the fds, by their table's version; the root or cwd, by chroot, chdir or fchdir)."""
        if t.proc.fast_synced != _facts(t):
            self.write_page(t)

    def write_page(self, t: Tracee) -> None:
        """The page says what umvu knows of ``t``'s process now: its root and cwd (after chroot,
        chdir, fchdir), the fds that are umvu's.  A process sharing its memory (a vfork child
        before its exec) shares the page with its parent: it turns the fast path off there (for
        both), and the parent's is written anew at its next stop.  One sharing its fd table
        with another process takes no dirfd."""
        proc, fs, files = t.proc, t.fs, t.files
        if proc.fast_page is None:
            return
        rooted, virtual = fs.root != "/", fs.cwd_virtual
        if proc.fast_shared:
            flags = 0
            if proc.fast_parent is not None:
                proc.fast_parent.fast_synced = None
        else:
            flags = self.on | (self.rooted if rooted else 0) | (self.cwd_virtual if virtual else 0)
            if files.handed_dirs or proc.files_shared:
                flags |= self.no_dirfd
        self.page_seq += 2
        body = files.umvus(self.nfds)
        try:
            memory.write(t.tid, proc.fast_page, PAGE_HEADER.pack(self.page_seq - 1, flags, 0))
            memory.write(t.tid, proc.fast_page + PAGE_HEADER.size, body)
            memory.write(t.tid, proc.fast_page, PAGE_HEADER.pack(self.page_seq, flags, 0))
        except OSError:
            proc.fast_page = None  # no page there (any more): nothing to tell
            return
        proc.fast_synced = _facts(t)

    def served(self) -> int:
        """Calls the libraries made themselves, in every process so far (they count in the
        snapshot's last page, the one part they write)."""
        if self.map.closed:
            return self.final
        return struct.unpack_from("<Q", self.map, self.counter)[0]

    def close(self) -> None:
        self.final = self.served()
        self.map.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
