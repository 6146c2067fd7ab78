"""Changing a file's attributes: chmod, chown, truncate, utimes, xattrs, on a
path or an fd, virtual or handed out by a module.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import struct
from typing import Any

from umvu import memory
from umvu.calls.call import (
    REAL,
    UTIME_NOW,
    UTIME_OMIT,
    Call,
    chosen,
    family,
    fs_call,
    maybe,
    need,
    real_flags,
    s32,
    s64,
)
from umvu.creds import current
from umvu.paths import Resolved


async def _path_or_fd(c: Call, intent: str = "write") -> Resolved | None:
    if c.sc.choice == "fd":
        of = c.of
        if of is None:
            return await handed_out(c, intent)
        if intent != "read" and of.mount.readonly:
            raise OSError(errno.EROFS, "read-only file system")
        return Resolved(of.path, of.mount, None, of=of)
    r = await c.target(intent=intent)
    if r is not None and r.of is None:
        need(r)
    return r


async def _change(r: Resolved, method: str, *args: Any) -> Any:
    """A metadata call (chmod, chown, utime, the xattr calls) on what ``r`` names: an open file goes
    to the module's f-method (the file itself, renamed, removed or never named), a name to the
    path method."""
    of = r.of
    if of is not None:
        named = of.mount.inner(of.path) if of.named else None
        return await maybe(getattr(of.ops, "f" + method)(of.handle, *args, named))
    return await fs_call(r, method, *args)


async def _attrs(r: Resolved) -> os.stat_result:
    """The attributes of what ``r`` names (an open file's by its handle)."""
    of = r.of
    if of is not None:
        return await maybe(of.ops.fstat(of.handle))
    return r.st if r.st is not None else await maybe(r.mount.fs.lstat(r.mount.inner(r.path)))


async def handed_out(c: Call, intent: str, path_ok: bool = False) -> Resolved | None:
    """fchmod & co. on a real fd a module handed out: the module changes the file (cow copies it up).
    An O_PATH fd is EBADF, as fdget finds it, unless the call takes one (``path_ok``: fstat)."""
    t = c.t
    fd = s32(c.args[0])
    view = t.files.view_of(t.tid, fd) if t.files.may_place else None
    m = c.hv.registry.lookup(view) if view is not None else None
    if m is None:
        return None
    if not path_ok and real_flags(t.tid, fd) & os.O_PATH:
        raise OSError(errno.EBADF, "an O_PATH fd")
    if intent != "read" and m.readonly:
        raise OSError(errno.EROFS, "read-only file system")
    try:
        st = await maybe(m.fs.lstat(m.inner(view)))
    except OSError:  # its name cannot be walked now (or is gone): the fd still names the file
        st = os.stat(f"/proc/{t.tid}/fd/{fd}")
    return Resolved(view, m, st)


@family("chmod")
async def fam_chmod(c: Call) -> Any:
    """The module's chmod (of a path, or of an open file)."""
    r = await _path_or_fd(c)
    if r is None:
        return REAL
    if r.st is not None and stat_mod.S_ISLNK(r.st.st_mode):
        raise OSError(errno.EOPNOTSUPP, "symlinks have no mode of their own")
    await _change(r, "chmod", c.arg("mode") & 0o7777)
    return 0


@family("chown")
async def fam_chown(c: Call) -> Any:
    """The module's chown (of a path, or of an open file)."""
    r = await _path_or_fd(c)
    if r is None:
        return REAL
    i = c.sc.args.index("int")
    uid, gid = c.args[i] & 0xFFFFFFFF, c.args[i + 1] & 0xFFFFFFFF  # uid_t and gid_t: 32 bits, -1 "unchanged"
    await _change(r, "chown", -1 if uid == 0xFFFFFFFF else uid, -1 if gid == 0xFFFFFFFF else gid)
    return 0


@family("truncate")
async def fam_truncate(c: Call) -> Any:
    """The module's truncate or ftruncate."""
    length = s64(c.args[1])
    if length < 0:
        raise OSError(errno.EINVAL, "negative length")
    if c.sc.choice == "fd":
        of = chosen(c)
        if not of.writable:
            raise OSError(errno.EINVAL, "not open for writing")
        await maybe(of.ops.ftruncate(of.handle, length))
        return 0
    r = await c.target(intent="write")
    if r is None:
        return REAL
    st = need(r)
    if stat_mod.S_ISDIR(st.st_mode):
        raise OSError(errno.EISDIR, "is a directory")
    if not stat_mod.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file")  # vfs_truncate
    await fs_call(r, "truncate", length)
    return 0


@family("utime")
async def fam_utime(c: Call) -> Any:
    """The module's utime, with UTIME_NOW and UTIME_OMIT resolved."""
    r = await _path_or_fd(c)
    if r is None:
        return REAL
    name, ptr = c.sc.name, c.arg("ptr")
    if not ptr:
        times = None
    elif name == "utime":
        a, m = struct.unpack("<qq", memory.read(c.t.tid, ptr, 16))
        times = (a * 10**9, m * 10**9)
    else:
        raw = struct.unpack("<qqqq", memory.read(c.t.tid, ptr, 32))
        scale = 1000 if name in ("utimes", "futimesat") else 1
        spec = [(raw[0], raw[1] * scale), (raw[2], raw[3] * scale)]
        if scale == 1 and all(ns == UTIME_NOW for _, ns in spec):
            times = None  # as no times at all: who may write the file may do it, not only its owner
        elif scale == 1 and any(ns in (UTIME_NOW, UTIME_OMIT) for _, ns in spec):
            st = await _attrs(r)
            now = __import__("time").time_ns()
            cur = (st.st_atime_ns, st.st_mtime_ns)
            times = tuple(now if ns == UTIME_NOW else cur[k] if ns == UTIME_OMIT else sec * 10**9 + ns
                          for k, (sec, ns) in enumerate(spec))
        else:
            if any(not 0 <= ns < 10**9 for _, ns in spec):
                raise OSError(errno.EINVAL, "bad time")
            times = tuple(sec * 10**9 + ns for sec, ns in spec)
    await _change(r, "utime", times)
    return 0


@family("xattr")
async def fam_xattr(c: Call) -> Any:
    """The module's xattr calls, after the kernel's rules for the namespaces (trusted.*, security.*, user.*)."""
    name = c.sc.name
    if name[0] in "lf" and name[1:] in ("getxattr", "setxattr", "listxattr", "removexattr"):
        name = name[1:]
    r = await _path_or_fd(c, "read" if name in ("getxattr", "listxattr") else "write")
    if r is None:
        return REAL
    if name == "listxattr":
        names = await _change(r, "listxattr")
        return c.give(c.args[1], c.args[2], b"".join(os.fsencode(n) + b"\0" for n in names))
    attr = c.read_str(1)
    await _xattr_permission(r, attr, write=name != "getxattr")
    if name == "getxattr":
        return c.give(c.args[2], c.args[3], bytes(await _change(r, "getxattr", attr)))
    if name == "setxattr":
        value = memory.read(c.t.tid, c.args[2], c.args[3])
        await _change(r, "setxattr", attr, value, s32(c.args[4]))
        return 0
    await _change(r, "removexattr", attr)
    return 0


async def _xattr_permission(r: Resolved, attr: str, write: bool) -> None:
    """The VFS's rules for the namespaces, before any file system is asked (xattr_permission,
    and commoncap's for security.*); whether the mode allows it is the file system's to say
    (vfs.xattr_mode_decides).

    Privilege is the caller's: root's.
    """
    root = current().uid == 0
    if attr.startswith("trusted.") and not root:
        raise OSError(errno.EPERM if write else errno.ENODATA, "trusted.* is root's")
    if attr.startswith("security.") and write and not root:
        raise OSError(errno.EPERM, "security.* is root's to change")
    if attr.startswith("user."):
        try:  # an fd's file may have no name left: then the file system alone answers
            st = await _attrs(r)
        except OSError:
            return
        if not (stat_mod.S_ISREG(st.st_mode) or stat_mod.S_ISDIR(st.st_mode)):
            raise OSError(errno.EPERM if write else errno.ENODATA, "user.* only on files and directories")
        if write and stat_mod.S_ISDIR(st.st_mode) and st.st_mode & stat_mod.S_ISVTX and not root \
                and st.st_uid != current().uid:
            raise OSError(errno.EPERM, "a sticky directory: only its owner")
