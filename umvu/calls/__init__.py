"""The system call handlers, by subject, and the path every stopped call walks.

on_syscall() takes a seccomp stop: the table gives the call's shape; if
nothing virtual can be involved (no mounts, no virtual fds, a real cwd) the
tracee resumes at once.  Otherwise ``serve`` makes the choice the table's
column names and runs the handler for the call's family: it either lets the
kernel run the call (REAL, with a rewritten path when the caller's cwd or
dirfd is virtual) or serves it from the module and skips the kernel call,
returning the value in the same stop.

Errors are one mechanism: a handler (or a module under it) raises OSError and
the tracee gets -errno; any other exception is a bug, logged, and EIO.

One module per subject; each registers its families with ``@family`` when it
is imported, which this package does for all of them:

- call: the Call being served, REAL and DONE, what handlers share
- serve: the choice step, the argument checks, the entry point
- files: open, close, dup, fcntl, flock
- readwrite: read, write, lseek, getdents, fsync, fallocate
- copy: copy_file_range, sendfile, splice, tee
- stat: stat, statx, statfs, readlink, access
- attrs: chmod, chown, truncate, utimes, xattrs
- names: mkdir, rmdir, unlink, rename, link, symlink, mknod
- cwd: getcwd, chdir, chroot, umask
- ids: set*id, and a virtual identity's get*id, getgroups, capget, capset
- exec: execve, mmap, munmap
- ioctl: ioctl
- sockets: unix socket names in views, sockets handed out by modules
- mount: mount, umount, vu_control
- hostonly: what only the kernel can do on host files
- service: calls a module claimed by number or address family
"""

# each registers its families
from umvu.calls import (  # noqa: F401
    attrs,
    copy,
    cwd,
    exec,
    fake,
    files,
    hostonly,
    ids,
    ioctl,
    mount,
    names,
    readwrite,
    service,
    sockets,
    stat,
)
from umvu.calls.call import FAMILIES, MAX_RW_COUNT, Call, maybe, s32
from umvu.calls.serve import serve
from umvu.calls.sockets import FD_REPLACING, WRITE_CALLS, consume_write, consumer_of

__all__ = ["FAMILIES", "FD_REPLACING", "MAX_RW_COUNT", "WRITE_CALLS", "Call", "consume_write", "consumer_of", "maybe",
           "s32", "serve"]
