"""Calls only the kernel can do on a host file (watches, handles, swap, the new
mount API), and calls whose work would bypass the view (io_uring).
"""

from __future__ import annotations

import errno
from typing import Any

from umvu.calls.call import REAL, Call, family

# What hostonly refuses a virtual file with: the kernel's answer for a file system that cannot.
HOSTONLY_ERRNO = {"inotify_add_watch": errno.ENOSYS, "fanotify_mark": errno.ENOSYS,
                  "name_to_handle_at": errno.EOPNOTSUPP, "uselib": errno.ENOEXEC}


HOSTONLY_WRITES = frozenset({"acct", "swapon", "setxattrat", "removexattrat", "file_setattr"})


@family("hostonly")
async def fam_hostonly(c: Call) -> Any:
    """Only the kernel can do it, on a host file: a virtual one goes as the host file behind it
    (vufs), else the call fails (ENOSYS for watches, EOPNOTSUPP for handles, EINVAL for mounts).

    Watches (inotify, fanotify), file handles, swap, process accounting, the
    new mount API and the *xattrat calls work on the kernel's inodes; a name
    in a view must never reach the host's file of the same name.
    """
    for i in c.sc.path_args:
        if not c.args[i]:
            continue  # NULL: the call names its dirfd, or nothing (acct(NULL))
        r = await c.target(i, "write" if c.sc.name in HOSTONLY_WRITES else "read")
        if r is not None:
            raise OSError(HOSTONLY_ERRNO.get(c.sc.name, errno.EINVAL),
                          f"{c.sc.name} on a file only a module holds")
    return REAL


@family("bypass")
async def fam_bypass(c: Call) -> Any:
    """Calls whose work the kernel would do out of umvu's sight (io_uring opens files itself)."""
    if not c.hv.registry and c.t.fs.plain:
        return REAL
    raise OSError(errno.ENOSYS, f"{c.sc.name} would bypass the view: use the plain system calls")
