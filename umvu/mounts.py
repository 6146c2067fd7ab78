"""mount(2)'s vocabulary, and the mount table as /proc shows it.

Options arrive two ways: as MS_* flags (util-linux ``mount`` turns ``ro`` or
``noexec`` into bits) and as the comma-separated data string (``vumount``
passes everything there).  Both are folded into one set of generic flags,
which the core enforces for every module (EROFS, noexec), and the rest, which
belong to the file system.

/proc/PID/mounts and /proc/PID/mountinfo are the host's lines followed by the
virtual mounts, in mount order, in the kernel's format, so that findmnt, df,
mount and umount (util-linux reads them through libmount) see the view.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable

from umvu.paths import seen_from
from umvu.registry import Mount

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MS_MGC_MSK = 0xFFFF0000
MS_MGC_VAL = 0xC0ED0000

MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# generic option -> (flag bit, set or clear)
_FLAG_OPTIONS = {
    "ro": (MS_RDONLY, True), "rw": (MS_RDONLY, False),
    "nosuid": (MS_NOSUID, True), "suid": (MS_NOSUID, False),
    "nodev": (MS_NODEV, True), "dev": (MS_NODEV, False),
    "noexec": (MS_NOEXEC, True), "exec": (MS_NOEXEC, False),
    "sync": (MS_SYNCHRONOUS, True), "async": (MS_SYNCHRONOUS, False),
    "noatime": (MS_NOATIME, True), "atime": (MS_NOATIME, False),
    "nodiratime": (MS_NODIRATIME, True), "diratime": (MS_NODIRATIME, False),
    "relatime": (MS_RELATIME, True), "norelatime": (MS_RELATIME, False),
    "strictatime": (MS_STRICTATIME, True), "lazytime": (MS_LAZYTIME, True),
    "nosymfollow": (MS_NOSYMFOLLOW, True),
}
_IGNORED = {"defaults", "auto", "noauto", "user", "nouser", "users", "_netdev", "nofail", "silent", "loud"}
# flag bit -> the name /proc shows when set (order as the kernel prints them)
_SHOWN = [(MS_NOSUID, "nosuid"), (MS_NODEV, "nodev"), (MS_NOEXEC, "noexec"), (MS_SYNCHRONOUS, "sync"),
          (MS_NOSYMFOLLOW, "nosymfollow"), (MS_NOATIME, "noatime"), (MS_NODIRATIME, "nodiratime"),
          (MS_RELATIME, "relatime"), (MS_LAZYTIME, "lazytime")]
_KNOWN_FLAGS = (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_SYNCHRONOUS | MS_REMOUNT | MS_MANDLOCK
                | MS_DIRSYNC | MS_NOSYMFOLLOW | MS_NOATIME | MS_NODIRATIME | MS_BIND | MS_MOVE | MS_REC
                | MS_SILENT | MS_UNBINDABLE | MS_PRIVATE | MS_SLAVE | MS_SHARED | MS_RELATIME
                | MS_STRICTATIME | MS_LAZYTIME | (1 << 26))  # MS_ACTIVE and friends are ignored


def parse(flags: int, data: str) -> tuple[frozenset[str], str]:
    """(generic flags as names, file-system options) from mount(2)'s flags and data."""
    if flags & MS_MGC_MSK == MS_MGC_VAL:
        flags &= ~MS_MGC_MSK
    bits = flags & _KNOWN_FLAGS
    rest = []
    for opt in (o.strip() for o in data.split(",")):
        if not opt or opt in _IGNORED:
            continue
        if opt in _FLAG_OPTIONS:
            bit, on = _FLAG_OPTIONS[opt]
            bits = bits | bit if on else bits & ~bit
        else:
            rest.append(opt)
    names = {name for bit, name in _SHOWN if bits & bit}
    if bits & MS_RDONLY:
        names.add("ro")
    if not bits & (MS_NOATIME | MS_STRICTATIME | MS_RELATIME):
        names.add("relatime")  # the kernel's default
    return frozenset(names), ",".join(rest)


def generic_options(m: Mount) -> str:
    """The per-mount options column: rw/ro then the flags, as the kernel prints them."""
    words = ["ro" if m.readonly else "rw"]
    words += [name for _, name in _SHOWN if name in m.flags]
    return ",".join(words)


def _escape(s: str) -> str:
    out = []
    for ch in s:
        if ch in " \t\n\\":
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return "".join(out)


def unescape(s: str) -> str:
    i, out = 0, []
    while i < len(s):
        if s[i] == "\\" and len(s[i + 1 : i + 4]) == 3 and s[i + 1 : i + 4].isdigit():
            out.append(chr(int(s[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _host(pid: int, name: str) -> str:
    try:
        with open(f"/proc/{pid}/{name}") as f:
            return f.read()
    except OSError:
        with open(f"/proc/self/{name}") as f:
            return f.read()


def _parent_id(m: Mount, virtual: Iterable[Mount], real: list[tuple[int, str]]) -> int:
    """The mount the mount point lies on: the longest containing point, virtual or real."""
    best_len, best = -1, 1
    for other in virtual:
        if other is m or other.id >= m.id:
            continue
        p = other.point
        if (m.point.startswith(p.rstrip("/") + "/") or p == "/") and len(p) > best_len:
            best_len, best = len(p), other.id
    for mid, p in real:
        if (m.point == p or m.point.startswith(p.rstrip("/") + "/")) and len(p) > best_len and m.point != p:
            best_len, best = len(p), mid
    return best


def mountinfo(pid: int, mounts: list[Mount], root: str = "/") -> str:
    host = _host(pid, "mountinfo")
    real = []
    for line in host.splitlines():
        f = line.split(" ")
        if len(f) > 4:
            real.append((int(f[0]), unescape(f[4])))
    lines = [host.rstrip("\n")] if host.strip() else []
    for m in mounts:
        point = seen_from(m.point, root)
        if point is None or m.extra.get("hidden"):
            continue
        dev = m.dev
        if getattr(m.fs, "real_dirs", False):  # a bind shows its source's device, as on Linux
            try:
                dev = os.stat(m.source).st_dev
            except OSError:
                pass
        major, minor = os.major(dev), os.minor(dev)
        sup = "ro" if m.readonly else "rw"
        if m.options:
            sup += "," + m.options
        lines.append(f"{m.id} {_parent_id(m, mounts, real)} {major}:{minor} / {_escape(point)} "
                     f"{generic_options(m)} - {_escape(m.fstype)} {_escape(m.source or 'none')} {_escape(sup)}")
    return "\n".join(lines) + "\n"


def mounts(pid: int, mounts: list[Mount], root: str = "/") -> str:
    host = _host(pid, "mounts")
    lines = [host.rstrip("\n")] if host.strip() else []
    for m in mounts:
        point = seen_from(m.point, root)
        if point is None or m.extra.get("hidden"):
            continue
        opts = generic_options(m) + ("," + m.options if m.options else "")
        lines.append(f"{_escape(m.source or 'none')} {_escape(point)} {_escape(m.fstype)} {_escape(opts)} 0 0")
    return "\n".join(lines) + "\n"


def check_umount_flags(flags: int) -> None:
    if flags & ~(MNT_FORCE | MNT_DETACH | MNT_EXPIRE | UMOUNT_NOFOLLOW):
        raise OSError(errno.EINVAL, "unknown umount2 flags")
    if flags & MNT_EXPIRE and flags & (MNT_FORCE | MNT_DETACH):
        raise OSError(errno.EINVAL, "MNT_EXPIRE with MNT_FORCE or MNT_DETACH")
