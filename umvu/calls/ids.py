"""Who a process is: the set*id calls, and under a virtual identity (umvu.identity) the get*id
calls, getgroups, capget and capset answered from it.

A process with the host's identity makes its set*id calls in the kernel, and its credentials
(creds.py) are read again when next needed.  One with virtual ids changes them here by the
kernel's rules, and the kernel's call never runs: its real ids stay the user's.
"""

from __future__ import annotations

import errno
import struct
from typing import Any

from umvu import identity, memory
from umvu.calls.call import REAL, Call, family, s32
from umvu.identity import NGROUPS_MAX, Ids


@family("setid")
async def fam_setid(c: Call) -> Any:
    """The kernel's for a host identity; the virtual ids' rules for a virtual one."""
    ids = c.t.proc.ids
    c.t.creds = None
    if ids is None:
        return REAL
    a = [x & 0xFFFFFFFF for x in c.args[:3]]
    name = c.sc.name
    ret = 0
    if name == "setfsuid":
        new, ret = ids.setfsuid(a[0])
    elif name == "setfsgid":
        new, ret = ids.setfsgid(a[0])
    elif name == "setgroups":
        new = ids.setgroups(_groups(c, s32(c.args[0]), c.args[1]))
    else:
        new = getattr(ids, name)(*a[: len(c.sc.args)])
    c.hv.identity.change(c.t.proc, new)
    return ret


def _groups(c: Call, size: int, addr: int) -> tuple[int, ...]:
    if not 0 <= size <= NGROUPS_MAX:
        raise OSError(errno.EINVAL, "too many groups")
    if not identity_capable(c):
        raise OSError(errno.EPERM, "operation not permitted")  # before the list is read (may_setgroups)
    return struct.unpack(f"<{size}I", memory.read(c.t.tid, addr, 4 * size)) if size else ()


def identity_capable(c: Call) -> bool:
    ids = c.t.proc.ids
    return ids is not None and ids.capable


def serve_ids(c: Call) -> Any:
    """A get*id call, getgroups, capget or capset of a process with virtual ids (None: the kernel's)."""
    ids: Ids | None = c.t.proc.ids
    name = c.sc.name
    if ids is None or name not in identity.GETTERS | identity.CAP_CALLS:
        return None
    if name in ("getuid", "geteuid", "getgid", "getegid"):
        return {"getuid": ids.ruid, "geteuid": ids.euid, "getgid": ids.rgid, "getegid": ids.egid}[name]
    if name in ("getresuid", "getresgid"):
        three = (ids.ruid, ids.euid, ids.suid) if name == "getresuid" else (ids.rgid, ids.egid, ids.sgid)
        for addr, v in zip(c.args[:3], three, strict=True):
            c.write(addr, struct.pack("<I", v))
        return 0
    if name == "getgroups":
        size = s32(c.args[0])
        if size < 0:
            raise OSError(errno.EINVAL, "negative size")
        if size == 0:
            return len(ids.groups)
        if size < len(ids.groups):
            raise OSError(errno.EINVAL, "the list is larger")
        if ids.groups:
            c.write(c.args[1], struct.pack(f"<{len(ids.groups)}I", *ids.groups))
        return len(ids.groups)
    return _caps(c, ids)


def _caps(c: Call, ids: Ids) -> int:
    """capget answers what the ids hold (a root euid: every capability); capset may keep or drop
    nothing but what they hold, and changes nothing: capabilities follow the ids here."""
    version, pid = struct.unpack("<Ii", memory.read(c.t.tid, c.args[0], 8))
    if version != identity.CAP_VERSION_3:
        c.write(c.args[0], struct.pack("<I", identity.CAP_VERSION_3))  # the kernel's answer to an unknown one
        if c.args[1]:
            raise OSError(errno.EINVAL, "unknown capability version")
        return 0
    if c.sc.name == "capget":
        if pid not in (0, c.t.proc.tgid, c.t.tid):
            return REAL if pid < 0 else _other_caps(c, pid)
        if c.args[1]:
            c.write(c.args[1], identity.capget_data(ids))
        return 0
    if pid not in (0, c.t.proc.tgid, c.t.tid):
        raise OSError(errno.EPERM, "only one's own capabilities")
    eff0, prm0, inh0, eff1, prm1, inh1 = struct.unpack("<6I", memory.read(c.t.tid, c.args[1], 24))
    have = int.from_bytes(identity.capget_data(ids)[4:8], "little") | int.from_bytes(
        identity.capget_data(ids)[16:20], "little") << 32
    asked = eff0 | prm0 | inh0 | (eff1 | prm1 | inh1) << 32
    if asked & ~have:
        raise OSError(errno.EPERM, "more capabilities than held")
    return 0


def _other_caps(c: Call, pid: int) -> Any:
    proc = c.hv.tracer.process(pid)
    if proc is None or proc.ids is None:
        return REAL  # the host's answer for a host identity
    if c.args[1]:
        c.write(c.args[1], identity.capget_data(proc.ids))
    return 0
