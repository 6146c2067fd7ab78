"""What a name or fd says about itself: stat, statx, statfs, readlink, access.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from typing import Any

from umvu import abi, creds
from umvu.calls.attrs import handed_out
from umvu.calls.call import (
    AT_EACCESS,
    AT_EMPTY_PATH,
    AT_SYMLINK_NOFOLLOW,
    REAL,
    Call,
    family,
    fs_call,
    maybe,
    need,
    s32,
    view_path,
)
from umvu.registry import Mount


async def _stat_of(c: Call) -> tuple[os.stat_result, int] | None:
    """The stat a stat-family call asks for, and the st_dev to show; None when it is real."""
    if c.sc.choice == "fd":
        of = c.of
        if of is None:  # a real fd that stands in for a module's file (a FIFO)
            r = await handed_out(c, "read", path_ok=True)
            return None if r is None else view_dev(r.mount, need(r))
        return view_dev(of.mount, await maybe(of.ops.fstat(of.handle)))
    r = await c.target()
    if r is None:
        return None
    of = r.of
    if of is not None:
        return view_dev(of.mount, await maybe(of.ops.fstat(of.handle)))
    return view_dev(r.mount, need(r))


def view_dev(m: Mount, st: os.stat_result) -> tuple[os.stat_result, int]:
    """The stat and the st_dev to show: the mount's, or the host's for a host file handed out as such."""
    fs = m.fs
    if fs.real_files and (fs.real_dirs or not stat_mod.S_ISDIR(st.st_mode)):
        return st, st.st_dev
    return st, m.dev


@family("stat")
async def fam_stat(c: Call) -> Any:
    """The module's lstat or fstat, with the mount's st_dev (a host file handed out keeps its own)."""
    got = await _stat_of(c)
    if got is None:
        return REAL
    c.write(c.args[c.sc.arg_index("ptr")], abi.pack_stat(*got))
    return 0


@family("statx")
async def fam_statx(c: Call) -> Any:
    """As stat, in struct statx."""
    mask = c.args[3] & 0xFFFFFFFF  # flags and mask checked already (argcheck)
    got = await _stat_of(c)
    if got is None:
        return REAL
    c.write(c.args[4], abi.pack_statx(got[0], mask, got[1]))
    return 0


@family("statfs")
async def fam_statfs(c: Call) -> Any:
    """The module's statfs of its file system; through an open file, without a walk to its name
    (which the caller may no longer be allowed to walk)."""
    if c.sc.choice == "fd":
        of = c.of
        if of is not None:
            s = await maybe(of.ops.fstatfs(of.handle, of.mount.inner(of.path) if of.named else None))
        else:
            fd = s32(c.args[0])
            view = c.t.files.view_of(c.t.tid, fd) if c.t.files.may_place else None
            m = c.hv.registry.lookup(view) if view is not None else None
            if m is None:
                return REAL
            try:  # a real fd a module handed out: the view's file system
                s = await maybe(m.fs.statfs(m.inner(view)))
            except OSError:  # its name cannot be walked now: the file the fd holds tells
                s = abi.host_statfs(f"/proc/{c.t.tid}/fd/{fd}")
    else:
        r = await c.target()
        if r is None:
            return REAL
        need(r)
        s = await maybe(r.mount.fs.statfs(r.mount.inner(r.path)))
    c.write(c.args[1], abi.pack_statfs(s))
    return 0


async def _link_text(c: Call, link: tuple[str, Any]) -> str:
    """What a magic link reads as: a place by its name in the view; an unnamed file as the kernel's
    d_path writes one (its directory, "#" and its inode, " (deleted)")."""
    kind, where = link
    if kind == "place":
        return view_path(c, where)
    if kind == "file":
        st = await maybe(where.ops.fstat(where.handle))
        return f"{view_path(c, where.path).rstrip('/')}/#{st.st_ino} (deleted)"
    return where


@family("readlink")
async def fam_readlink(c: Call) -> Any:
    """The module's readlink; /proc's magic links (cwd, root, exe, fd/N) are answered for the view."""
    r = await c.target()
    if r is None:
        real = c.real
        if real is None or not real.path.startswith("/proc/") or real.path.startswith("/proc/self"):
            return REAL
        link = await c._magic(None, real.path, None)  # /proc/PID/cwd, root, fd/N of a process with a virtual one
        if link is None:
            return REAL
        data = os.fsencode(await _link_text(c, link))[: s32(c.args[c.sc.arg_index("size")])]  # a size > 0 (argcheck)
        c.write(c.args[c.sc.arg_index("ptr")], data)
        return len(data)
    size = s32(c.args[c.sc.arg_index("size")])
    st = need(r)
    if not stat_mod.S_ISLNK(st.st_mode):  # do_readlinkat: "" names the dirfd's file, which is ENOENT then
        raise OSError(errno.ENOENT if not c.strings.get(c.sc.path_args[0]) else errno.EINVAL, "not a symlink")
    link = await c._magic(r.mount, r.path, st)  # /proc bound into the view (a chroot's)
    if link is not None and link[0] != "final":
        target = os.fsencode(await _link_text(c, link))[:size]
    else:
        target = os.fsencode(await fs_call(r, "readlink"))[:size]
    c.write(c.args[c.sc.arg_index("ptr")], target)
    return len(target)


@family("access")
async def fam_access(c: Call) -> Any:
    """The module's access check (EROFS for a write on a read-only mount), made with the caller's real
    ids unless AT_EACCESS, walk included (as access_override_creds)."""
    mode = s32(c.arg("mode"))
    if mode & ~7:
        return REAL
    if c.sc.name == "faccessat2" and c.arg("atflags") & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        return REAL
    who = c.t.caller_creds()
    if (who.ruid != who.uid or who.rgid != who.gid) and not (c.sc.name == "faccessat2"
                                                            and c.arg("atflags") & AT_EACCESS):
        c.t.acting = who.real()
        outer = creds.serve(c.t.acting)
        try:
            return await _access(c, mode)
        finally:
            c.t.acting = None
            creds.serve(outer)
    return await _access(c, mode)


async def _access(c: Call, mode: int) -> Any:
    r = await c.target(intent=None if mode & os.W_OK else "read")
    if r is None:
        return REAL
    st = need(r)
    if mode & os.W_OK and r.mount.readonly and not stat_mod.S_ISLNK(st.st_mode):
        raise OSError(errno.EROFS, "read-only file system")
    await fs_call(r, "access", mode)
    return 0
