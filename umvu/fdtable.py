"""Per-process fd tables for virtual fds, with the kernel's semantics.

A virtual fd is a real fd number in the tracee: the kernel holds a placeholder
(an O_PATH fd on /dev/null) there, so lowest-free allocation, CLOEXEC,
inheritance over fork and the sharing of CLONE_FILES are the kernel's own.
This table says which of those numbers are virtual and what open file
description they stand for.  Like the kernel, dup'ed fds share one
description (and its offset); the description is released, and the module's
``close`` called, when its last fd goes.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from umvu.registry import Mount
from umvu.vfs import DirEntry

PLACES_KEPT = 4096  # handed-out host paths remembered per table (a tree walk hands out one per directory)


class OpenFile:
    """A virtual open file description (the kernel's struct file).

    ``ops`` serves every call on it (read, write, fstat, getdents, close...,
    with ``handle``), as the kernel's f_op: the file system that opened it,
    by default.  ``mount`` is where it was opened (its flags, st_dev, the
    name inside it); no call reaches a module through it.
    """

    def __init__(self, mount: Mount, handle: Any, path: str, flags: int, is_dir: bool, offset: int = 0,
                 refs: int = 0, dents: list[DirEntry] | None = None, shadow: str | None = None, named: bool = True,
                 ops: Any = None, ready: Any = None, passthrough: int | None = None, base: int = 0,
                 lockfile: tuple[int, int] | None = None) -> None:
        self.mount = mount
        self.handle = handle
        self.path = path  # canonical path at open time (for fchdir, /proc-like display)
        self.flags = flags
        self.is_dir = is_dir
        self.offset = offset
        self.refs = refs
        self.dents = dents
        self.shadow = shadow  # a host copy mapped MAP_SHARED writable: written back at release
        self.named = named  # False: an O_TMPFILE file (``path`` is its directory's)
        self.ops = mount.fs if ops is None else ops
        self.ready = ready  # readiness.Readiness: an eventfd placeholder
        # The device's size when the placeholder is its backing file (vfs.Device.backing): the data
        # calls are the kernel's on the placeholder, and so is the offset (``kernel_offset``, less
        # ``base``).
        self.passthrough = passthrough
        self.base = base  # where the device's byte 0 is in that file (a partition's start)
        # (mount id, inode) when the placeholder is the file's lock file (Shadows.lock_file): flock
        # and fcntl locks on the fd are then the kernel's
        self.lockfile = lockfile

    def __repr__(self) -> str:
        return f"OpenFile({self.path!r}, flags={self.flags:#o}, refs={self.refs})"

    @property
    def readable(self) -> bool:
        return (self.flags & os.O_ACCMODE) in (os.O_RDONLY, os.O_RDWR) and not self.flags & os.O_PATH

    @property
    def writable(self) -> bool:
        return (self.flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR) and not self.flags & os.O_PATH


# /proc/TID/fdinfo/N files kept open: a read from offset 0 makes the kernel write them anew, with
# the offset of whatever file the number names then (1 us, where opening one costs 12 us).
_FDINFO: OrderedDict[tuple[int, int], int] = OrderedDict()
FDINFO_KEPT = 64


def kernel_offset(tid: int, fd: int) -> int:
    """The file offset the kernel holds for ``fd`` of thread ``tid`` (a passthrough file's)."""
    key = (tid, fd)
    kept = _FDINFO.get(key)
    if kept is not None:
        try:
            offset = int(os.pread(kept, 40, 0).split(None, 2)[1])  # "pos:\tN" comes first
            _FDINFO.move_to_end(key)
            return offset
        except (OSError, IndexError, ValueError):  # the thread is gone (its number may be another's)
            del _FDINFO[key]
            os.close(kept)
    kept = os.open(f"/proc/{tid}/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        offset = int(os.pread(kept, 40, 0).split(None, 2)[1])
    except BaseException:
        os.close(kept)
        raise
    _FDINFO[key] = kept
    if len(_FDINFO) > FDINFO_KEPT:
        os.close(_FDINFO.popitem(last=False)[1])
    return offset


def real_flags(tid: int, fd: int) -> int:
    """A real fd's file status flags, as /proc shows them (0 when it cannot be read)."""
    try:
        with open(f"/proc/{tid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0


class FdTable:
    """Virtual fds of one fd table (shared by CLONE_FILES, copied by fork)."""

    #: With the fast path on (umvu.fast.FastPath.place_of): where the view shows a host directory
    #: through a mount that shows it name for name, or in one of a layered mount's layers.  The
    #: library opens files there itself, so an fd umvu never saw may name a place in such a mount;
    #: it is found there, as the library finds it.  The second argument says whether the fd was
    #: opened in the view (asked only in a layer, where one opened by its host name is the host's:
    #: ``marked``).
    placing: Callable[[str, Callable[[], bool]], str | None] | None = None
    #: With the fast path on (umvu.fast.FastPath.marked, by thread id and fd)
    marked: Callable[[int, int], bool] | None = None

    def __init__(self) -> None:
        self.fds: dict[int, OpenFile] = {}
        self.users = 0  # threads/processes sharing this table
        # Real fds a module handed out (host_path): fd -> (view path, host path).  The
        # kernel owns them and closes them unseen, so an entry is trusted only while
        # the fd still names that host path.
        self.hosted: dict[int, tuple[str, str]] = {}
        # host path -> view path of what was handed out, most recent last: an unseen copy of a
        # handed-out fd (dup of an fd no layer guards) outlives the entry of its original, whose
        # number the process may close and reuse for another file.
        self.places: dict[str, str] = {}
        # Sockets whose writes a consumer takes (vfs.Connect), known good: fd -> consumer.  Every
        # way of putting another file at such a number stops (close, dup2, dup3, close_range;
        # exec), and empties this, so a FUSE reply needs no readlink to find its connection.
        self.consumers: dict[int, Any] = {}
        # for the fast path's page (umvu.fast): changes of the handed-out fds (virtual fds are not
        # on the page: their placeholders are never directories, and the library walks only from
        # a directory), and whether a module ever handed out a real directory fd (an unseen copy
        # of it names a host path that is a place in the view: no name relative to an fd umvu does
        # not know can be taken then)
        self.version = 0
        self.handed_dirs = False
        # handed-out fds whose place follows from their host path by a mount's rule (placing): the
        # library finds them by themselves, so they are not umvu's alone to walk from
        self.placed: set[int] = set()

    def view_of(self, tid: int, fd: int, link: str | None = None) -> str | None:
        """The view's path of real fd ``fd`` if a module handed it out, else None.

        ``link``: what /proc shows the fd to name, when the caller read it already.  Then an fd
        this table does not know is looked for by that name too: a copy made by a call that did
        not stop (dup of an fd no filter layer guards, the original closed since) names the same
        host file, so the same place in the view.  (A file the process opened by its host name
        is taken for the view's too: kcmp cannot tell once the original is closed.)
        """
        hosted = self.hosted
        entry = hosted.get(fd)
        if entry is None and link is None and FdTable.placing is None:
            return None
        if link is None:
            try:
                link = os.readlink(f"/proc/{tid}/fd/{fd}")
            except OSError:
                hosted.pop(fd, None)
                return None
        if entry is not None:
            if entry[1] == link:
                return entry[0]
            del hosted[fd]
        view = self.places.get(link)
        if view is not None:
            hosted[fd] = (view, link)
        elif FdTable.placing is not None:
            # an fd the fast path's library opened in a mount
            marked = FdTable.marked
            view = FdTable.placing(link, lambda: marked is not None and marked(tid, fd))
        return view

    @property
    def may_place(self) -> bool:
        """Whether view_of may find a real fd in the view (else every real fd is the host's)."""
        return bool(self.places) or FdTable.placing is not None

    def hand(self, fd: int, view: str, host: str, is_dir: bool = False, placed: bool = False) -> None:
        """Real fd ``fd`` names ``host``, which is ``view`` in the view (``placed``: by a mount's
        rule, which the fast path's library knows too)."""
        self.hosted[fd] = (view, host)
        self.version += 1
        if placed:
            self.placed.add(fd)
        else:
            self.placed.discard(fd)
            self.handed_dirs = self.handed_dirs or is_dir
        places = self.places
        places.pop(host, None)
        places[host] = view
        if len(places) > PLACES_KEPT:
            del places[next(iter(places))]

    def __bool__(self) -> bool:
        return bool(self.fds)

    def get(self, fd: int) -> OpenFile | None:
        return self.fds.get(fd)

    def install(self, fd: int, of: OpenFile) -> OpenFile | None:
        """Make ``fd`` name ``of``; returns a description that lost its last fd.

        Whether ``fd`` is CLOEXEC is the kernel's to know (it holds the
        placeholder); after an exec the table keeps what /proc shows open.
        """
        released = self.remove(fd)
        of.refs += 1
        self.fds[fd] = of
        return released

    def remove(self, fd: int) -> OpenFile | None:
        """Forget ``fd``; returns its description if that was its last fd."""
        of = self.fds.pop(fd, None)
        if of is None:
            return None
        of.refs -= 1
        return of if of.refs == 0 else None

    def copy(self) -> FdTable:
        new = FdTable()
        new.fds = dict(self.fds)
        new.hosted = dict(self.hosted)
        new.places = dict(self.places)
        new.handed_dirs = self.handed_dirs
        new.placed = set(self.placed)
        for of in new.fds.values():
            of.refs += 1
        return new

    def on_exec(self, still_open: set[int]) -> list[OpenFile]:
        """Drop the fds the kernel closed at exec; return the released descriptions."""
        released = []
        for fd in list(self.fds):
            if fd not in still_open:
                of = self.remove(fd)
                if of is not None:
                    released.append(of)
        return released

    def umvus(self, limit: int) -> bytes:
        """A bitmap of the fds below ``limit`` a module handed out that no rule places: the fast
        path's library walks no name from them (a virtual fd it tells by itself: not a directory)."""
        bits = bytearray(limit // 8)
        placed = self.placed
        for fd in self.hosted:
            if fd in placed:
                continue
            if 0 <= fd < limit:
                bits[fd >> 3] |= 1 << (fd & 7)
        return bytes(bits)

    def release_all(self) -> list[OpenFile]:
        return [of for fd in list(self.fds) if (of := self.remove(fd)) is not None]
