"""Whose calls these are, and the kernel's rule for what a caller may do to a file.

A check the kernel would make and cannot (the walk through a module's tree,
a FUSE file system with default_permissions, access(2) on a virtual file) is
made here, with one rule: generic_permission's.  The caller is the session's
user today (an ordinary user's processes cannot take other ids); per-process
credentials replace SESSION when identity is virtualized.
"""

from __future__ import annotations

import os
import stat
from typing import NamedTuple

MAY_EXEC, MAY_WRITE, MAY_READ = 1, 2, 4


class Creds(NamedTuple):
    uid: int
    groups: frozenset[int]  # the effective gid and the supplementary groups

    @classmethod
    def own(cls) -> Creds:
        return cls(os.geteuid(), frozenset((os.getegid(), *os.getgroups())))


SESSION = Creds.own()


def permitted(st: os.stat_result, mask: int, uid: int, groups: frozenset[int]) -> bool:
    """The kernel's generic_permission for ``mask`` (MAY_*), with root's capabilities when uid is 0:
    read and write anything, execute what has an x bit somewhere, search any directory.
    (Modes only: an ACL that grants more is not seen.)"""
    mode = st.st_mode
    bits = mode >> 6 if uid == st.st_uid else mode >> 3 if st.st_gid in groups else mode
    if not mask & ~bits & 7:
        return True
    return uid == 0 and (not mask & MAY_EXEC or stat.S_ISDIR(mode) or bool(mode & 0o111))


def may_search(st: os.stat_result, creds: Creds = SESSION) -> bool:
    """Whether the caller may look a name up in directory ``st`` (may_lookup's MAY_EXEC)."""
    return creds.uid == 0 or permitted(st, MAY_EXEC, creds.uid, creds.groups)
