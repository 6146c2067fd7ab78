"""Where a process stands: getcwd, chdir, fchdir, chroot and its umask."""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from typing import Any

from umvu.calls.call import DONE, REAL, Call, family, fs_call, maybe, need, s32, view_path
from umvu.paths import resolve


@family("getcwd")
async def fam_getcwd(c: Call) -> Any:
    """The view's cwd, as the caller's root shows it, when it is virtual or the caller is chrooted."""
    fs = c.t.fs
    if not fs.cwd_virtual and fs.root == "/":
        return REAL
    if fs.cwd_virtual:
        try:
            gone = (await resolve(c.hv.registry, "/", fs.cwd, True)).st is None
        except OSError:
            gone = True
        if gone:
            raise OSError(errno.ENOENT, "the current directory was removed")
    data = os.fsencode(view_path(c, c.cwd())) + b"\0"
    if c.args[1] < len(data):
        raise OSError(errno.ERANGE, "buffer too small")
    c.write(c.args[0], data)
    return len(data)


@family("chdir")
async def fam_chdir(c: Call) -> Any:
    """A virtual directory becomes the process's cwd in the view (the kernel's stays where it was)."""
    fs = c.t.fs
    if c.sc.name == "fchdir":
        of = c.vfd(0)
        if of is None:
            view = None
            if c.t.files.may_place:  # a copy of a handed-out directory fd, made unseen, is found by its name
                try:
                    view = c.t.files.view_of(c.t.tid, s32(c.args[0]),
                                             os.readlink(f"/proc/{c.t.tid}/fd/{s32(c.args[0])}"))
                except OSError:
                    pass
            if view is None:
                fs.enter(None, False)
                return REAL
            ret = await c.t.finish_syscall(c.regs)  # the kernel checks the real directory
            if ret == 0:  # a real directory fd a module handed out names a place in the view
                fs.enter(view, True)
            c.resume_with(ret)
            return DONE
        if not of.is_dir:
            raise OSError(errno.ENOTDIR, "not a directory")
        fs_ = of.ops  # MAY_EXEC | MAY_CHDIR on the directory itself, whatever its name is now
        if not fs_.checks_search:
            try:
                st = await maybe(fs_.fstat(of.handle))
            except OSError:  # a module that knows it by its name alone, which cannot be walked now
                st = None
            if st is not None and not fs_.search_permitted(st):
                raise OSError(errno.EACCES, "permission denied")
        fs.enter(of.path, True)
        return 0
    r = await c.target(intent=None)
    if r is None:
        if fs.root != "/":  # the kernel goes to the canonical path; the view's cwd is that
            ret = await c.t.finish_syscall(c.regs)
            if ret == 0:
                fs.enter(c.real.path, False)
            return c.ended(ret)
        fs.enter(None, False)  # the kernel's answer, read when needed
        return REAL
    st = need(r)
    if not stat_mod.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, "not a directory")
    await fs_call(r, "access", os.X_OK)
    fs.enter(r.path, True)
    return 0


@family("umask")
async def fam_umask(c: Call) -> Any:
    """Noted for the view (files the modules make take it), then the kernel's."""
    c.t.fs.umask = c.args[0] & 0o777
    return REAL


@family("chroot")
async def fam_chroot(c: Call) -> Any:
    """The process's root in the view: from then on umvu resolves every path it names, never above that root."""
    r = await c.locate(0)
    st = need(r)
    if not stat_mod.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, "not a directory")
    if r.mount is not None:
        await fs_call(r, "access", os.X_OK)
    elif not os.access(r.path, os.X_OK):
        raise OSError(errno.EACCES, "permission denied")
    c.t.fs.root = r.path
    c.hv.trace_paths()  # every path of this process must now be seen
    return 0
