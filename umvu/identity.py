"""Virtual identities: the ids a process has in the view, and the kernel's rules for changing them.

A process whose ``Process.ids`` is None has the host's identity (the common case: nothing here
runs for it).  One that has Ids (set by ``vusu``, or by ``umvu --fakeroot`` for the whole session)
sees them in the get*id calls, getgroups, capget, /proc/PID/status and its auxiliary vector, and
is judged by them wherever umvu judges (a module's tree, FUSE's default_permissions); the host's
kernel keeps judging host files by the process's real ids, so a virtual root can do no more to a
host file than its user can (as fakeroot, and as VUOS's vusu over real files).

The set*id calls follow kernel/sys.c against the virtual ids: a virtual root (euid 0, which
holds every capability here) may take any ids; an ordinary virtual user only its own real,
effective or saved ones (EPERM otherwise: unlike VUOS, setuid(0) is not free).  Ids are kept per
process, not per thread: glibc makes every thread change its ids together.
"""

from __future__ import annotations

import errno
import struct
from typing import Any, NamedTuple

from umvu.creds import Creds

NGROUPS_MAX = 65536
NO_ID = 0xFFFFFFFF  # (uid_t)-1: "leave unchanged", and never a valid id
# capget: _LINUX_CAPABILITY_VERSION_3; every capability up to CAP_CHECKPOINT_RESTORE (40)
CAP_VERSION_3 = 0x20080522
ALL_CAPS = (1 << 41) - 1

UIDS = ("ruid", "euid", "suid", "fsuid")
GIDS = ("rgid", "egid", "sgid", "fsgid")

# The calls answered from the ids (their choice column is "nr"; setid's always stop)
GETTERS = frozenset({"getuid", "geteuid", "getgid", "getegid", "getgroups", "getresuid", "getresgid"})
CAP_CALLS = frozenset({"capget", "capset"})


class Ids(NamedTuple):
    """A process's credentials, as the kernel's struct cred holds them (immutable: fork shares it).
    A named tuple, not a dataclass: start-up does not pay for importing dataclasses."""

    ruid: int
    euid: int
    suid: int
    fsuid: int
    rgid: int
    egid: int
    sgid: int
    fsgid: int
    groups: tuple[int, ...]

    @classmethod
    def of_user(cls, uid: int, gid: int, groups: tuple[int, ...] = ()) -> Ids:
        return cls(uid, uid, uid, uid, gid, gid, gid, gid, tuple(groups))

    def creds(self, host: Creds) -> Creds:
        """What umvu judges by (fs ids, groups, real ids); ``host``: the real ones, which a module
        serving host files acts with (creds.as_caller)."""
        return Creds(self.fsuid, self.fsgid, self.groups, self.ruid, self.rgid, host)

    @property
    def capable(self) -> bool:
        """CAP_SETUID, CAP_SETGID and the rest: a root effective uid holds them all here."""
        return self.euid == 0

    @property
    def secure(self) -> bool:
        """AT_SECURE: the program runs with ids other than its caller's (a set-user-ID exec)."""
        return self.euid != self.ruid or self.egid != self.rgid

    # -- the set*id calls (kernel/sys.c), each returning the new ids or raising ----------------
    # The uid and gid calls are one rule each, over the four uid fields or the four gid fields.
    def setuid(self, uid: int) -> Ids:
        return self._set(UIDS, uid)

    def setgid(self, gid: int) -> Ids:
        return self._set(GIDS, gid)

    def setreuid(self, ruid: int, euid: int) -> Ids:
        return self._setre(UIDS, ruid, euid)

    def setregid(self, rgid: int, egid: int) -> Ids:
        return self._setre(GIDS, rgid, egid)

    def setresuid(self, ruid: int, euid: int, suid: int) -> Ids:
        return self._setres(UIDS, ruid, euid, suid)

    def setresgid(self, rgid: int, egid: int, sgid: int) -> Ids:
        return self._setres(GIDS, rgid, egid, sgid)

    def setfsuid(self, uid: int) -> tuple[Ids, int]:
        """The new ids and the call's result: the old fsuid, whether it changed or not."""
        return self._setfs(UIDS, uid)

    def setfsgid(self, gid: int) -> tuple[Ids, int]:
        return self._setfs(GIDS, gid)

    def _get(self, fields: tuple[str, ...]) -> tuple[int, ...]:
        return tuple(getattr(self, f) for f in fields)

    def _set(self, fields: tuple[str, str, str, str], x: int) -> Ids:
        """setuid/setgid: all four for a capable caller; else the effective and fs ones, to the
        real or saved id."""
        _valid(x)
        real, eff, saved, fs = fields
        if self.capable:
            return self._replace(**{real: x, eff: x, saved: x, fs: x})
        if x in self._get((real, saved)):
            return self._replace(**{eff: x, fs: x})
        raise _eperm()

    def _setre(self, fields: tuple[str, str, str, str], r: int, e: int) -> Ids:
        """setreuid/setregid: the real id to the real or effective one, the effective to any of
        the three; the saved id follows the effective when the real is set or the effective
        leaves the real."""
        real, eff, saved, fs = fields
        old_real = getattr(self, real)
        new = self
        if r != NO_ID:
            if not self.capable and r not in self._get((real, eff)):
                raise _eperm()
            new = new._replace(**{real: r})
        if e != NO_ID:
            if not self.capable and e not in self._get((real, eff, saved)):
                raise _eperm()
            new = new._replace(**{eff: e})
        if r != NO_ID or (e != NO_ID and e != old_real):
            new = new._replace(**{saved: getattr(new, eff)})
        return new._replace(**{fs: getattr(new, eff)})

    def _setres(self, fields: tuple[str, str, str, str], *asked: int) -> Ids:
        """setresuid/setresgid: each to one of the three current ids unless capable; -1 keeps."""
        mine = self._get(fields[:3])
        if not self.capable and any(x != NO_ID and x not in mine for x in asked):
            raise _eperm()
        new = self._replace(**{f: _keep(x, old) for f, x, old in zip(fields[:3], asked, mine, strict=True)})
        return new._replace(**{fields[3]: getattr(new, fields[1])})

    def _setfs(self, fields: tuple[str, str, str, str], x: int) -> tuple[Ids, int]:
        old = getattr(self, fields[3])
        if x != NO_ID and (x in self._get(fields) or self.capable):
            return self._replace(**{fields[3]: x}), old
        return self, old

    def setgroups(self, groups: tuple[int, ...]) -> Ids:
        if not self.capable:
            raise _eperm()
        return self._replace(groups=tuple(sorted(set(groups))))

    def exec_as(self, st_mode: int, st_uid: int, st_gid: int, nosuid: bool) -> Ids:
        """The ids after an exec of a file with these attributes (the view's: a recorded owner
        counts): set-user-ID and set-group-ID (with group execute) as bprm_fill_uid does."""
        new = self
        if not nosuid:
            if st_mode & 0o4000:
                new = new._replace(euid=st_uid)
            if st_mode & 0o2010 == 0o2010:
                new = new._replace(egid=st_gid)
        return new._replace(suid=new.euid, fsuid=new.euid, sgid=new.egid, fsgid=new.egid)

    # -- what the process is shown ---------------------------------------------------------
    def status_lines(self) -> dict[bytes, bytes]:
        """/proc/PID/status's lines for these ids (by their key), as the kernel writes them."""
        caps = f"{ALL_CAPS if self.euid == 0 else 0:016x}".encode()
        bound = f"{ALL_CAPS:016x}".encode()
        return {
            b"Uid:": b"\t".join(str(x).encode() for x in (self.ruid, self.euid, self.suid, self.fsuid)),
            b"Gid:": b"\t".join(str(x).encode() for x in (self.rgid, self.egid, self.sgid, self.fsgid)),
            b"Groups:": b" ".join(str(g).encode() for g in self.groups) + b" ",
            b"CapInh:": b"0" * 16,
            b"CapPrm:": f"{ALL_CAPS if 0 in (self.ruid, self.euid, self.suid) else 0:016x}".encode(),
            b"CapEff:": caps,
            b"CapBnd:": bound,
        }


class Identities:
    """The session's virtual identities: which processes have one, and what the core watches for
    them.  The first one makes the get*id calls stop, and path calls too (/proc/PID/status is
    written for the view); a session that never has one pays nothing."""

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer
        self.active = False

    def give(self, proc: Any, ids: Ids) -> None:
        """``proc`` has ``ids`` from now on (vusu, a fake root)."""
        self.activate()
        self.change(proc, ids)

    def activate(self) -> None:
        if not self.active:
            self.active = True
            self.tracer.registry.watching = True
            self.tracer.trace_paths()
            self.tracer.trace_calls(set(GETTERS | CAP_CALLS))

    def change(self, proc: Any, ids: Ids) -> None:
        proc.ids = ids
        for t in self.tracer.tracees.values():
            if t.proc is proc:
                t.creds = None  # what the core judges by is read again (Tracee.caller_creds)


def _keep(new: int, old: int) -> int:
    return old if new == NO_ID else new


def _valid(x: int) -> None:
    if x == NO_ID:
        raise OSError(errno.EINVAL, "not a valid id")


def _eperm() -> OSError:
    return OSError(errno.EPERM, "operation not permitted")


def status_text(text: bytes, ids: Ids) -> bytes:
    """/proc/PID/status with the virtual ids' lines in place of the host's."""
    lines = ids.status_lines()
    out = []
    for line in text.split(b"\n"):
        key = line.split(b"\t", 1)[0] if b"\t" in line else line.split(b" ", 1)[0]
        out.append(key + b"\t" + lines[key] if key in lines else line)
    return b"\n".join(out)


def capget_data(ids: Ids) -> bytes:
    """Two struct __user_cap_data_struct (effective, permitted, inheritable) for version 3."""
    eff = ALL_CAPS if ids.euid == 0 else 0
    prm = ALL_CAPS if 0 in (ids.ruid, ids.euid, ids.suid) else 0
    return struct.pack("<6I", eff & 0xFFFFFFFF, prm & 0xFFFFFFFF, 0, eff >> 32, prm >> 32, 0)
