"""Whose calls these are, and the kernel's rule for what a caller may do to a file.

Every call is served as its caller.  While a handler runs for a process,
``current()`` is that process's credentials (its fsuid, fsgid, supplementary
groups and real ids).  A module whose files are host files (unreal, vufs) is
decorated ``as_caller``: its methods run with the caller's fs ids held by the
serving thread, so that the host's kernel makes the checks on what they do
(chmod by a non-owner, sticky directories, who owns a new file) exactly as
it would for the process.  The core's own work (/proc, tracee memory, private
copies of files) stays the session's: a process that gave up root is not
dumpable, and its /proc files are root's.  All this matters when umvu runs
as root: an ordinary user's processes can take no other ids, so their
credentials are always the session's and nothing is switched.

A check the kernel would make and cannot (the walk through a module's tree,
a FUSE file system with default_permissions, access(2) on a virtual file) is
made here, with one rule: generic_permission's, against ``current()``.

Bookkeeping that is the module's own and not the caller's (a copy-on-write
module's copy-up and whiteouts) runs ``as_session()``, as overlayfs's
copy-up runs with the mounter's credentials.  (The identity issue makes
these credentials virtual; here they are the processes' real ones.)
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import stat
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

from umvu import libc
from umvu.syscalls import BY_NAME

MAY_EXEC, MAY_WRITE, MAY_READ = 1, 2, 4


class Creds(NamedTuple):
    uid: int  # the fsuid: what file checks and new files' owners use
    gid: int  # the fsgid
    supplementary: tuple[int, ...]
    ruid: int  # the real ids: access(2) checks with them
    rgid: int
    # a virtual identity's (umvu.identity): the process's real credentials, which the host's
    # kernel judges host files by (as_caller holds these, never the virtual ones)
    host: Creds | None = None

    def real(self) -> Creds:
        """As access(2) checks (access_override_creds): the real ids in place of the fs ones."""
        return self._replace(uid=self.ruid, gid=self.rgid)

    @property
    def groups(self) -> frozenset[int]:
        """The groups a file's group is matched against (in_group_p): the fsgid and the supplementary ones."""
        return frozenset((self.gid, *self.supplementary))

    @classmethod
    def own(cls) -> Creds:
        return cls(os.geteuid(), os.getegid(), tuple(sorted(set(os.getgroups()))), os.getuid(), os.getgid())

    @classmethod
    def of(cls, tid: int) -> Creds | None:
        """Thread ``tid``'s credentials as the kernel holds them (None if it is gone)."""
        uid = gid = ruid = rgid = None
        groups: tuple[int, ...] = ()
        try:
            with open(f"/proc/{tid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"Uid:"):
                        ruid, uid = (int(line.split()[i]) for i in (1, 4))  # real, effective, saved, fs
                    elif line.startswith(b"Gid:"):
                        rgid, gid = (int(line.split()[i]) for i in (1, 4))
                    elif line.startswith(b"Groups:"):
                        groups = tuple(sorted({int(g) for g in line.split()[1:]}))
                        break
        except (OSError, ValueError, IndexError):
            return None
        if uid is None or gid is None or ruid is None or rgid is None:
            return None
        return cls(uid, gid, groups, ruid, rgid)


SESSION = Creds.own()
#: whether the hypervisor can take its callers' ids (root, or root in a user namespace): else every
#: caller's credentials are the session's
SWITCHES = SESSION.uid == 0

_NR = {name: BY_NAME[name].nr for name in ("setfsuid", "setfsgid", "setgroups")}


class _Acting(threading.local):
    creds: Creds = SESSION  # whose call the thread serves
    applied: Creds = SESSION  # the ids the thread holds in the kernel


_acting = _Acting()


def current() -> Creds:
    """The credentials of the process whose call this thread is serving (the session's between calls)."""
    return _acting.creds


def serve(creds: Creds) -> Creds:
    """From now on this thread serves a call of ``creds``: what ``current()`` says, and what a
    module's ``as_caller`` methods act with.  Nothing changes in the kernel here (the core's own
    work, /proc included, stays the session's).  Returns the previous caller's, to restore."""
    if creds is not SESSION and not _armed:
        _arm()
    outer, _acting.creds = _acting.creds, creds
    return outer


def serving_others() -> bool:
    """Whether a caller other than the session's user was ever served (until then every caller's
    credentials are the session's, and nothing needs to be said per call)."""
    return _armed


def _apply(creds: Creds) -> None:
    """Hold ``creds``'s fs ids in the kernel, in this thread only.

    The raw calls change this thread's ids alone (glibc's wrappers would
    change every thread's), and only what differs is changed: a session whose
    processes keep its ids makes none.  Leaving fsuid 0 also drops root's
    file capabilities (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER...) for the
    thread, and taking it back restores them: the kernel's own rule.
    """
    now = _acting.applied
    if now[:3] == creds[:3]:
        return
    groups = now.supplementary
    if creds.supplementary != groups:
        arr = (ctypes.c_uint * max(1, len(creds.supplementary)))(*creds.supplementary)
        if libc.raw_syscall(_NR["setgroups"], len(creds.supplementary), arr) == 0:
            groups = creds.supplementary  # (refused in a user namespace that denies setgroups)
    if creds.gid != now.gid:
        libc.raw_syscall(_NR["setfsgid"], creds.gid)  # answers the old fsgid, whatever happens
    if creds.uid != now.uid:
        libc.raw_syscall(_NR["setfsuid"], creds.uid)
    _acting.applied = creds._replace(supplementary=groups)


T = TypeVar("T", bound=type)
_armed = False  # a caller other than the session's user was served: as_caller classes are wrapped
_callers: list[type] = []  # the as_caller classes


def as_caller(cls: T) -> T:
    """Class decorator for a module whose files are host files: every method it defines runs with
    the caller's fs ids held, so that the host's kernel judges what it does as the caller's act.

    The public methods (the core's entry points) are wrapped, inherited ones too; the private
    helpers they call run inside them.  Nothing is wrapped until a process that is not the
    session's user makes a call (a root session where nobody switches users pays nothing), nor
    ever when the session cannot take other ids (not root).
    """
    if SWITCHES:
        _callers.append(cls)
        if _armed:
            _wrap(cls)
    return cls


def _arm() -> None:
    global _armed
    _armed = True
    for cls in _callers:
        _wrap(cls)


def _wrap(cls: type) -> None:
    names = {n for klass in cls.__mro__[:-1] for n, v in vars(klass).items()
             if isinstance(v, types.FunctionType) and not n.startswith("_")}
    for name in names:
        fn = getattr(cls, name)
        if not getattr(fn, "_holds", False):
            setattr(cls, name, _holding(fn))


def _holding(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def held(*args: Any, **kwargs: Any) -> Any:
        outer, want = _acting.applied, _acting.creds
        if want.host is not None:
            want = want.host
        if want is outer:  # the common case: the caller is the session's user (see Tracee.caller_creds)
            return fn(*args, **kwargs)
        _apply(want)
        try:
            return fn(*args, **kwargs)
        finally:
            _apply(outer)

    held._holds = True  # type: ignore[attr-defined]
    return held


@contextmanager
def as_session() -> Iterator[None]:
    """Run a block as the session (a module's own bookkeeping, not the caller's act: a copy-up)."""
    outer = _acting.applied
    _apply(SESSION)
    try:
        yield
    finally:
        _apply(outer)


def permitted(st: os.stat_result, mask: int, creds: Creds) -> bool:
    """The kernel's generic_permission for ``mask`` (MAY_*), with root's capabilities when uid is 0:
    read and write anything, execute what has an x bit somewhere, search any directory.
    (Modes only: an ACL that grants more is not seen.)"""
    mode = st.st_mode
    bits = mode >> 6 if creds.uid == st.st_uid else mode >> 3 if st.st_gid in creds.groups else mode
    if not mask & ~bits & 7:
        return True
    return creds.uid == 0 and (not mask & MAY_EXEC or stat.S_ISDIR(mode) or bool(mode & 0o111))


def may_search(st: os.stat_result, creds: Creds | None = None) -> bool:
    """Whether the caller may look a name up in directory ``st`` (may_lookup's MAY_EXEC)."""
    creds = creds or current()
    return creds.uid == 0 or permitted(st, MAY_EXEC, creds)


def check_delete(dir_st: os.stat_result, victim_st: os.stat_result, creds: Creds | None = None) -> None:
    """The kernel's may_delete, for a removal its checks cannot see (a whiteout hides a lower file):
    write and search on the directory (EACCES), and the sticky bit's rule (check_sticky: EPERM)."""
    creds = creds or current()
    if not permitted(dir_st, MAY_WRITE | MAY_EXEC, creds):
        raise OSError(errno.EACCES, "permission denied")
    if dir_st.st_mode & stat.S_ISVTX and creds.uid not in (0, dir_st.st_uid, victim_st.st_uid):
        raise OSError(errno.EPERM, "a sticky directory: not the owner")
