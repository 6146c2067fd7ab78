"""Making and removing names: mkdir, rmdir, unlink, rename, link, symlink, mknod.
"""

from __future__ import annotations

import errno
import stat as stat_mod
from typing import Any

from umvu.calls.call import AT_REMOVEDIR, REAL, Call, family, fs_call, maybe, need
from umvu.paths import Resolved


@family("mkdir")
async def fam_mkdir(c: Call) -> Any:
    """The module's mkdir, with the caller's umask applied."""
    r = await c.target(intent="create")
    if r is None:
        return REAL
    if r.st is not None:
        raise OSError(errno.EEXIST, "exists")
    await fs_call(r, "mkdir", c.arg("mode") & 0o1777 & ~c.t.fs.umask)  # no setuid or setgid asked
    return 0


def _last_name(c: Call) -> str:
    return c.read_str(c.sc.path_args[0]).rstrip("/").rsplit("/", 1)[-1]


@family("rmdir")
async def fam_rmdir(c: Call) -> Any:
    """The module's rmdir (EBUSY for a mount point, EINVAL for ".")."""
    i = c.sc.path_args[0]
    if c.read_str(i).endswith("/") and c.read_str(i).rstrip("/") and (c.hv.registry or not c.t.fs.plain):
        name = await c.locate_name(i)  # "link/" names the link, which rmdir does not follow
        if name.st is not None and stat_mod.S_ISLNK(name.st.st_mode) and (name.mount or name.crossed):
            raise OSError(errno.ENOTDIR, "a symlink")
    last = _last_name(c)
    if last in (".", "..") and (c.hv.registry or not c.t.fs.plain):
        r = await c.locate(c.sc.path_args[0])
        if r.mount is not None or not c.t.fs.plain:
            raise OSError(errno.EINVAL if last == "." else errno.ENOTEMPTY, "rmdir of . or ..")
    r = await c.target(intent="remove")
    if r is None:
        return REAL
    if not stat_mod.S_ISDIR(need(r).st_mode):
        raise OSError(errno.ENOTDIR, "not a directory")
    if r.path == r.mount.point:
        raise OSError(errno.EBUSY, "a mount point")
    await fs_call(r, "rmdir")
    c.hv.removed(r.mount, r.path, need(r))
    return 0


@family("unlink")
async def fam_unlink(c: Call) -> Any:
    """The module's unlink (unlinkat with AT_REMOVEDIR: its rmdir)."""
    if c.sc.name == "unlinkat" and c.args[2] & AT_REMOVEDIR:
        return await fam_rmdir(c)
    i = c.sc.path_args[0]
    if c.read_str(i).endswith("/") and (c.hv.registry or not c.t.fs.plain):
        r = await c.locate_name(i)  # the name itself, not followed: Linux judges it
        if r.mount is None and not r.crossed and c.t.fs.plain:
            return REAL
        if r.st is None:
            raise OSError(errno.ENOENT, "no such file or directory")
        raise OSError(errno.EISDIR if stat_mod.S_ISDIR(r.st.st_mode) else errno.ENOTDIR, "trailing slash")
    r = await c.target(intent="remove")
    if r is None:
        return REAL
    st = need(r)
    if stat_mod.S_ISDIR(st.st_mode):
        raise OSError(errno.EISDIR, "is a directory")
    await fs_call(r, "unlink")
    return 0


async def _two_paths(c: Call, whole_first: bool = False) -> tuple[Resolved | None, Resolved | None]:
    """Both names of rename/link; EXDEV unless one mount (or none) holds both.

    ``whole_first``: the first name must exist before the second is even read (do_linkat looks
    the old name up whole first; rename looks up both parents, then the names).
    """
    a, b = c.sc.path_args
    if whole_first:  # real or not: the kernel's lookup errors come before the second name
        old = await c.locate(a)
        of = old.of
        if old.st is None and of is not None:  # the name of a virtual fd (AT_EMPTY_PATH)
            old.st = await maybe(of.ops.fstat(of.handle))
        need(old)
    ra = await c.target(a, "rename")
    rb = await c.target(b, "rename")
    if c.mount_of(a, ra) is not c.mount_of(b, rb) or (ra is None) != (rb is None):
        raise OSError(errno.EXDEV, "across mounts")
    return ra, rb


def _same_mount(ra: Resolved | None, rb: Resolved | None) -> bool:
    """True when the kernel runs the call (both real, or both passed through)."""
    return ra is None


@family("rename")
async def fam_rename(c: Call) -> Any:
    """The module's rename, within one mount (EXDEV across mounts, as between file systems)."""
    flags = c.args[4] & 0xFFFFFFFF if c.sc.name == "renameat2" else 0  # checked already (argcheck)
    ra, rb = await _two_paths(c)
    if _same_mount(ra, rb):
        return REAL
    if _vfs_rename_checks(c, ra, rb, flags):
        return 0
    await maybe(ra.mount.fs.rename(ra.mount.inner(ra.path), rb.mount.inner(rb.path), flags))
    if not flags & RENAME_EXCHANGE:
        c.hv.moved(ra.path, rb.path)
    return 0


RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def _last_is_dot(raw: str) -> bool:
    """Whether a name's last component is ".", ".." or the root (the kernel's LAST_DOT and friends)."""
    return raw.rstrip("/").rsplit("/", 1)[-1] in ("", ".", "..")


def _vfs_rename_checks(c: Call, ra: Resolved, rb: Resolved, flags: int) -> bool:
    """do_renameat2's and vfs_rename's checks, in their order, made before any file system is asked;
    True when the kernel does nothing and returns 0 (both names are one file)."""
    a, b = c.sc.path_args
    raw_a, raw_b = c.read_str(a), c.read_str(b)
    if _last_is_dot(raw_a):
        raise OSError(errno.EBUSY, "renaming . or ..")
    if _last_is_dot(raw_b):
        raise OSError(errno.EEXIST if flags & RENAME_NOREPLACE else errno.EBUSY, "renaming onto . or ..")
    st = need(ra)
    target = rb.st
    if flags & RENAME_NOREPLACE and target is not None:
        raise OSError(errno.EEXIST, "exists")
    if flags & RENAME_EXCHANGE:
        if target is None:
            raise OSError(errno.ENOENT, "no such file or directory")
        if not stat_mod.S_ISDIR(target.st_mode) and raw_b.endswith("/"):
            raise OSError(errno.ENOTDIR, "a trailing slash, and not a directory")
    if not stat_mod.S_ISDIR(st.st_mode) and (raw_a.endswith("/") or not flags & RENAME_EXCHANGE
                                             and raw_b.endswith("/")):
        raise OSError(errno.ENOTDIR, "a trailing slash, and not a directory")
    if rb.path.startswith(ra.path + "/"):
        raise OSError(errno.EINVAL, "a directory into its own subtree")
    if ra.path.startswith(rb.path + "/"):
        raise OSError(errno.EINVAL if flags & RENAME_EXCHANGE else errno.ENOTEMPTY, "onto its own ancestor")
    if target is not None and (target.st_ino, target.st_dev) == (st.st_ino, st.st_dev):
        return True  # vfs_rename: source and target are one inode
    if target is not None and not flags & RENAME_EXCHANGE:
        if stat_mod.S_ISDIR(st.st_mode) and not stat_mod.S_ISDIR(target.st_mode):
            raise OSError(errno.ENOTDIR, "a directory over a file")
        if not stat_mod.S_ISDIR(st.st_mode) and stat_mod.S_ISDIR(target.st_mode):
            raise OSError(errno.EISDIR, "a file over a directory")
    registry = c.hv.registry
    if registry.at(ra.path) is not None or registry.at(rb.path) is not None:
        raise OSError(errno.EBUSY, "a mount point")
    return False


@family("link")
async def fam_link(c: Call) -> Any:
    """The module's link, within one mount (EXDEV across mounts)."""
    ra, rb = await _two_paths(c, whole_first=True)
    if _same_mount(ra, rb):
        return REAL
    st = need(ra)
    _new_name(c, rb)
    if stat_mod.S_ISDIR(st.st_mode):
        raise OSError(errno.EPERM, "a hard link to a directory")  # vfs_link, before any file system is asked
    if ra.of is not None:  # an fd's file (AT_EMPTY_PATH, /proc/self/fd/N): linked by itself, named or not
        of = ra.of
        await maybe(of.ops.flink(of.handle, rb.mount.inner(rb.path), of.mount.inner(of.path) if of.named else None))
    else:
        await maybe(ra.mount.fs.link(ra.mount.inner(ra.path), rb.mount.inner(rb.path)))
    return 0


@family("symlink")
async def fam_symlink(c: Call) -> Any:
    """The module's symlink."""
    r = await c.target(intent="create")
    if r is None:
        return REAL
    _new_name(c, r)
    await maybe(r.mount.fs.symlink(c.read_str(0), r.mount.inner(r.path)))
    return 0


def _new_name(c: Call, r: Resolved, i: int | None = None) -> None:
    """filename_create's rules for a name about to be made: EEXIST if it is there (a symlink is not
    followed), ENOENT if it is not and a slash follows it (only mkdir takes one)."""
    if r.st is not None:
        raise OSError(errno.EEXIST, "exists")
    if c.sc.family != "mkdir" and c.read_str(c.sc.path_args[-1] if i is None else i).endswith("/"):
        raise OSError(errno.ENOENT, "a trailing slash on a name that is not a directory's")


@family("mknod")
async def fam_mknod(c: Call) -> Any:
    """The module's mknod, with the caller's umask applied."""
    r = await c.target(intent="create")
    if r is None:
        return REAL
    _new_name(c, r)
    mode = c.arg("mode")
    if not stat_mod.S_IFMT(mode):
        mode |= stat_mod.S_IFREG
    dev = c.args[c.sc.args.index("hex")]
    await fs_call(r, "mknod", (mode & ~0o7777) | (mode & 0o7777 & ~c.t.fs.umask), dev)
    return 0
