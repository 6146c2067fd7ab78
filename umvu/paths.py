"""Path resolution in a process's view: the one walk every path call takes.

A path is resolved component by component from the caller's cwd, root or
dirfd, through real and virtual trees alike: each component is looked up in
whichever tree holds it (the mount registry is asked one dict lookup per
component), symlinks are followed with the kernel's rules (40 links at most,
absolute targets restart at the process's root, ".." is lexical on the
resolved prefix, so it climbs out of a mount point as on Linux).  The result is
canonical, so the registry's longest-prefix answer is the responsible module.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from collections.abc import Awaitable, Callable
from typing import Any

from umvu.creds import current, may_search
from umvu.registry import Mount, MountRegistry
from umvu.vfs import FileSystem

MAXSYMLINKS = 40


class FsView:
    """cwd, root and umask of a process: the kernel's fs_struct, shared by CLONE_FS.

    ``cwd`` is canonical.  When it is real the kernel's cwd is the same
    directory; ``cwd`` may then be None, meaning "ask /proc when needed",
    because real chdirs run natively.  When it is virtual the kernel's cwd is
    stale and every relative path is resolved, and rewritten, by umvu.
    """

    __slots__ = ("cwd", "cwd_virtual", "root", "umask", "gone", "moved")

    def __init__(self, cwd: str | None = None, cwd_virtual: bool = False, root: str = "/", umask: int = 0o022,
                 gone: os.stat_result | None = None) -> None:
        self.cwd, self.cwd_virtual, self.root, self.umask = cwd, cwd_virtual, root, umask
        # the attributes of a virtual cwd since its directory was removed (a chdir elsewhere forgets
        # them): only "." and ".." lead anywhere from it then, as from the kernel's dead dentry
        self.gone = gone
        self.moved = 0  # chdirs so far: a real cwd of None changed too (umvu.fast reads the kernel's then)

    def __repr__(self) -> str:
        return f"FsView(cwd={self.cwd!r}, cwd_virtual={self.cwd_virtual}, root={self.root!r}, umask={self.umask:#o})"

    def enter(self, cwd: str | None, virtual: bool) -> None:
        """A chdir: the new cwd (canonical; None: the kernel's, read when needed)."""
        self.cwd, self.cwd_virtual, self.gone = cwd, virtual, None
        self.moved += 1

    @property
    def plain(self) -> bool:
        """Nothing of the view shows in this process's cwd or root."""
        return not self.cwd_virtual and self.root == "/"

    def copy(self) -> FsView:
        return FsView(self.cwd, self.cwd_virtual, self.root, self.umask, self.gone)


class Resolved:
    """Where a walk ended."""

    __slots__ = ("path", "mount", "st", "crossed", "of")

    def __init__(self, path: str, mount: Mount | None, st: os.stat_result | None, crossed: bool = False,
                 of: Any = None) -> None:
        self.path = path  # canonical
        self.mount = mount  # None: the real file system
        self.st = st  # lstat of the final component, if it was looked up and exists
        self.crossed = crossed  # the walk went through a virtual tree: the kernel cannot repeat it
        self.of = of  # the virtual open file itself, when the name is an fd's (AT_EMPTY_PATH, /proc/self/fd/N)

    def __repr__(self) -> str:
        return f"Resolved({self.path!r}, {self.mount!r}, crossed={self.crossed})"


class RealWalkError(OSError):
    """A lookup in the real file system failed: the kernel will say the same."""

    @property
    def virtual(self) -> bool:
        return self.mount is not None


def _join(parent: str, name: str) -> str:
    return "/" + name if parent == "/" else parent + "/" + name


def _parent(path: str, root: str) -> str:
    if path == root or path == "/":
        return path
    return path.rsplit("/", 1)[0] or "/"


async def _maybe(value):
    if isinstance(value, Awaitable):
        return await value
    return value


async def lstat_at(mount: Mount, dir_handle: object, name: str, path: str) -> os.stat_result:
    """lstat of ``name`` in a directory the module opened (FileSystem.lstat_at)."""
    st = mount.fs.lstat_at(dir_handle, name, mount.inner(path))
    if st.__class__ is os.stat_result:
        return st
    return await st if hasattr(st, "__await__") else st


async def fstat_of(mount: Mount, handle: object) -> os.stat_result:
    return await _maybe(mount.fs.fstat(handle))


async def lstat_in(mount: Mount | None, path: str, walk: bool = False) -> os.stat_result:
    """``walk``: only the type is wanted, of a directory or symlink on the way (FileSystem.lstat_walk)."""
    if mount is None:
        try:
            return os.lstat(path)
        except FileNotFoundError:
            raise
        except OSError as e:
            raise RealWalkError(e.errno, e.strerror) from None
    fs = mount.fs
    st = (fs.lstat_walk if walk else fs.lstat)(mount.inner(path))
    if st.__class__ is os.stat_result:  # the common answer, told apart without inspect's checks
        return st
    return await st if hasattr(st, "__await__") else st


async def readlink_in(mount: Mount | None, path: str) -> str:
    if mount is None:
        return os.readlink(path)
    target = await _maybe(mount.fs.readlink(mount.inner(path)))
    return os.fsdecode(target)


# (mount, canonical path, lstat) of a symlink -> ("text", link text), ("place", canonical path),
# ("final", host path the kernel must open itself), ("file", open file): a virtual open file with no
# name (O_TMPFILE), which the walk ends on, as the kernel's nd_jump_link to the file's own path; or
# None (an ordinary symlink)
Magic = Callable[[Mount | None, str, os.stat_result], Awaitable[tuple[str, Any] | None]]


def within(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root + "/")


def seen_from(path: str, root: str) -> str | None:
    """Canonical ``path`` as a process chrooted at ``root`` names it; None: outside its root."""
    if root == "/":
        return path
    if path == root:
        return "/"
    if path.startswith(root + "/"):
        return path[len(root):]
    return None


async def resolve(registry: MountRegistry, start: str, path: str, follow: bool, root: str = "/",
                  magic: Magic | None = None, opened: tuple[Mount, object] | None = None,
                  made: bool = False, itself: bool = False) -> Resolved:
    """See _resolve; ``magic`` answers /proc's magic links for the calling process.

    ``itself``: ``path`` is "." standing for an empty path (AT_EMPTY_PATH): ``start`` itself, with
    no name looked up in it (LOOKUP_EMPTY), so no search permission is needed.

    ``made``: the last component is a name the call makes or removes (mkdir, unlink, rename...):
    the kernel looks up its parent and never follows it, whatever slashes come after it.

    ``opened``: when ``start`` is a directory a module opened (a virtual dirfd), its mount and
    handle: the walk starts in that mount (the one it was opened in, even if something was
    mounted on it since), and a path of one name is looked up in the directory itself
    (FileSystem.lstat_at).
    """
    state = {"crossed": False, "magic": magic}
    try:
        if itself:
            mount = opened[0] if opened is not None else registry.lookup(start) if registry else None
            state["crossed"] = mount is not None
            return Resolved(start, mount, await lstat_in(mount, start), mount is not None)
        return await _resolve(registry, start, path, follow, root, state, opened, made)
    except RealWalkError as e:
        if state["crossed"]:  # the kernel could not repeat this walk: our error stands
            raise OSError(e.errno, e.strerror) from None
        raise


async def _resolve(registry: MountRegistry, start: str, path: str, follow: bool, root: str, state: dict,
                   opened: tuple[Mount, object] | None = None, made: bool = False) -> Resolved:
    """Resolve ``path`` (relative to canonical ``start``) as the kernel would.

    A missing last component is not an error (``st`` is None): the caller
    decides (open with O_CREAT, mkdir... want that).  A missing or non-directory
    intermediate component raises ENOENT or ENOTDIR, a loop ELOOP.
    """
    if not path:
        raise OSError(errno.ENOENT, "empty path")
    if path.endswith("/") and not made:
        follow = True  # "link/" names the directory the link points to
    from_start = not path.startswith("/") and within(start, root)  # no way out of a chroot
    cur = start if from_start else root
    if opened is not None and from_start:
        mount, start_handle = opened
    else:
        mount = registry.lookup(cur) if registry else None
        start_handle = None
    stack = [p for p in reversed(path.split("/")) if p]
    links = 0
    crossed = state["crossed"] = mount is not None
    st: os.stat_result | None = None
    if not stack:  # "/"
        st = await lstat_in(mount, cur)
        return Resolved(cur, mount, st, crossed)
    # One name in an open directory of the module: asked of that directory, not of its path
    in_dir = start_handle is not None and len(stack) == 1
    dir_st: os.stat_result | None = None  # cur's attributes, once they were needed
    checked = current().uid != 0  # root searches any directory: the walk checks nothing then
    while stack:
        name = stack.pop()
        if checked and (crossed or mount is not None
                               or (registry is not None and registry.at(_join(cur, name)) is not None)) \
                and (mount is None or not mount.fs.checks_search):
            # may_lookup: every name, "." and ".." too, is looked up in a directory the caller
            # may search; the kernel cannot check a walk it does not make
            if dir_st is None:
                dir_st = await (fstat_of(mount, start_handle) if start_handle is not None and cur == start
                                else lstat_in(mount, cur))
            if not (may_search(dir_st) if mount is None else mount.fs.search_permitted(dir_st)):
                raise OSError(errno.EACCES, "permission denied")
        if name == ".":
            if not stack:
                st = await lstat_in(mount, cur)
            continue
        if name == "..":
            if cur != root:
                cur = _parent(cur, root)
                mount = registry.lookup(cur) if registry else None
                dir_st = None
            st = None
            if not stack:
                st = dir_st = await lstat_in(mount, cur)
            continue
        nxt = _join(cur, name)
        nmount = (registry.at(nxt) if registry else None) or mount
        if nmount is not None and len(name) > nmount.fs.name_max:  # a host name is the host's to judge
            raise OSError(errno.ENAMETOOLONG, "name too long")
        crossed = crossed or nmount is not None
        state["crossed"] = crossed
        last = not stack
        try:
            if in_dir and nmount is mount and name != "..":
                st = await lstat_at(mount, start_handle, name, nxt)  # type: ignore[arg-type]
            else:
                st = await lstat_in(nmount, nxt, walk=not last)
            in_dir = False  # only the first name is the open directory's (a symlink may lead on)
        except FileNotFoundError as e:
            if last:
                return Resolved(nxt, nmount, None, crossed)
            if nmount is None:
                raise RealWalkError(e.errno, e.strerror) from None
            raise
        if stat_mod.S_ISLNK(st.st_mode) and (follow or not last):
            links += 1
            if links > MAXSYMLINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links")
            magic = state["magic"]
            jump = None
            if magic is not None and (nmount is not None or nxt.startswith("/proc/")):
                jump = await magic(nmount, nxt, st)
            if jump is not None and jump[0] == "final":  # only the kernel can open it (a pipe, a tty)
                if stack:
                    raise OSError(errno.ENOTDIR, "not a directory")
                return Resolved(jump[1], None, st, True)
            if jump is not None and jump[0] == "file":
                if stack:
                    raise OSError(errno.ENOTDIR, "not a directory")
                of = jump[1]
                return Resolved(of.path, of.mount, await _maybe(of.ops.fstat(of.handle)), True, of)
            if jump is not None and jump[0] == "place":  # a magic link: it leads to a place, not to a text
                cur = jump[1]
                crossed = state["crossed"] = True  # the kernel would go elsewhere: rewrite
                mount = registry.lookup(cur) if registry else None
                dir_st = None
                if not stack:
                    st = await lstat_in(mount, cur)
                    return Resolved(cur, mount, st, crossed)
                continue
            target = jump[1] if jump is not None else await readlink_in(nmount, nxt)
            if not target:
                raise OSError(errno.ENOENT, "empty symlink")
            stack.extend(p for p in reversed(target.split("/")) if p)
            if target.startswith("/"):
                cur = root
                mount = registry.lookup(cur) if registry else None
                dir_st = None
            if not stack:  # a link to "/" or "."
                st = await lstat_in(mount, cur)
                return Resolved(cur, mount, st, crossed)
            continue
        if not last and not stat_mod.S_ISDIR(st.st_mode):
            raise (OSError if nmount else RealWalkError)(errno.ENOTDIR, "not a directory")
        cur, mount, dir_st = nxt, nmount, st
    if path.endswith("/") and st is not None and not stat_mod.S_ISDIR(st.st_mode) and not made:
        raise OSError(errno.ENOTDIR, "not a directory")
    return Resolved(cur, mount, st, crossed)


class DeadDirs(FileSystem):
    """The directories removed while they were some process's virtual cwd: what "." still names
    (FsView.gone).  Its attributes stay (nlink 0); listing it is ENOENT, which the C library
    takes for the end of the directory, as the kernel's iterate_dir says of a dead directory."""

    def __init__(self) -> None:
        self.attrs: dict[str, os.stat_result] = {}

    def lstat(self, path: str) -> os.stat_result:
        st = self.attrs.get(path)
        if st is None:
            raise OSError(errno.ENOENT, "no such file or directory")
        return st

    def open(self, path: str, flags: int, mode: int) -> str:
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_CREAT:
            raise OSError(errno.ENOENT, "the directory was removed")
        self.lstat(path)
        return path

    def fstat(self, handle: str) -> os.stat_result:
        return self.lstat(handle)

    def getdents(self, handle: str) -> list:
        raise OSError(errno.ENOENT, "the directory was removed")

    def close(self, handle: str) -> None:
        pass
