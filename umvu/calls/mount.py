"""mount(2) and umount(2) in the view (module file systems by type, binds), and
the vu_control call the command-line tools use.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from umvu import memory
from umvu.calls.call import REAL, Call, family, maybe
from umvu.paths import Resolved


def _opt_str(c: Call, i: int, limit: int = 4096) -> str:
    """A string argument that may be NULL (mount's source, type and data)."""
    if not c.args[i]:
        return ""
    return os.fsdecode(memory.read_cstring(c.t.tid, c.args[i], limit))


async def _source_on_host(c: Call, source: str, fstype: str) -> str:
    """A path source (vufs, bind) as the host knows it; other sources pass as they are.

    Several directories (merge) are separated by ':'.
    """
    if not source or fstype not in c.hv.modules.path_sources():
        return source
    return ":".join([await _one_source(c, part) for part in source.split(":")])


async def _one_source(c: Call, source: str) -> str:
    c.strings[0] = source
    r = await c.locate(0)
    if r.st is None:
        raise OSError(errno.ENOENT, f"{source}: no such file or directory")
    if r.mount is None:
        return r.path
    host = await maybe(r.mount.fs.host_path(r.mount.inner(r.path), "read", r.st))
    if host is None:
        raise OSError(errno.EINVAL, f"{source} is served by {r.mount.fstype}, not a real directory")
    return host


@family("mount")
async def fam_mount(c: Call) -> Any:
    """A type a loaded module serves is mounted in the view; a kernel type, a propagation change or a move
    goes to the kernel."""
    hv = c.hv
    fstype, flags = _opt_str(c, 2, 256), c.args[3] & 0xFFFFFFFF
    data = _opt_str(c, 4)
    bind = flags & 4096  # MS_BIND
    remount = flags & 32
    if not remount and not hv.autoload("vufs" if bind else fstype):
        known = _kernel_filesystems()
        if bind or fstype in known or flags & (1 << 17 | 1 << 18 | 1 << 19 | 1 << 20 | 8192):
            # a kernel file system, a propagation change, a move: the kernel decides, on the place the view names
            return _kernel_mount(c, 1, await c.locate(1))
        hv.mount_errors[c.t.tid] = f"unknown file system type '{fstype}'"
        raise OSError(errno.ENODEV, "unknown file system type")
    target = await c.locate(1)
    if target.st is None and not (fstype in hv.modules.node_types() and not remount):
        raise OSError(errno.ENOENT, "mount point does not exist")  # a device's node is made by its mount
    if remount and target.mount is None:
        return _kernel_mount(c, 1, target)
    try:
        source = await _source_on_host(c, _opt_str(c, 0), "vufs" if bind else fstype)
        hv.caller = c.t.tid
        try:
            hv.mount(fstype, source, target.path, flags, data, phantom=target.st is None)
        finally:
            hv.caller = 0
    except OSError as e:
        hv.mount_errors[c.t.tid] = e.strerror or os.strerror(e.errno or errno.EIO)
        raise
    return 0


def _kernel_mount(c: Call, i: int, target: Resolved) -> Any:
    """Let the kernel mount or unmount the host directory ``target`` names; never one of the view's."""
    if target.mount is not None:
        raise OSError(errno.EINVAL, "a kernel mount on a virtual directory")
    if target.crossed or not c.t.fs.plain or c.read_str(i) != target.path:
        c._rewrite(i, None, target.path)
    return REAL


def _host_mount_points() -> set[str]:
    from umvu.mounts import unescape

    try:
        with open("/proc/self/mountinfo") as f:
            return {unescape(line.split(" ")[4]) for line in f}
    except (OSError, IndexError):
        return set()


def _kernel_filesystems() -> set[str]:
    try:
        with open("/proc/filesystems") as f:
            return {line.split()[-1] for line in f if line.strip()}
    except OSError:
        return set()


@family("umount")
async def fam_umount(c: Call) -> Any:
    """A mount of the view goes (EBUSY while used; MNT_DETACH at once); the host's go to the kernel."""
    flags = c.args[1] & 0xFFFFFFFF
    if flags & 8:  # UMOUNT_NOFOLLOW: the target is looked up like an lstat
        c.sc = c.sc.with_args(("lpath", "hex"))
    try:
        r = await c.locate(0)
    except OSError as e:
        # The root of a FUSE mount whose daemon died answers ENOTCONN, yet unmounts on Linux:
        # its name is enough.
        point = os.path.normpath(os.path.join(c.cwd(), c.read_str(0)))
        if e.errno != errno.ENOTCONN or c.hv.registry.at(point) is None:
            raise
        c.hv.umount(point, flags)
        return 0
    if r.st is None:
        raise OSError(errno.ENOENT, "no such file or directory")
    if c.hv.registry.at(r.path) is None:
        if r.mount is None and r.path in _host_mount_points():
            return _kernel_mount(c, 0, r)  # the host's: the kernel decides (EPERM for an ordinary user)
        raise OSError(errno.EINVAL, "not a mount point")
    try:
        c.hv.umount(r.path, flags)
    except OSError as e:
        c.hv.mount_errors[c.t.tid] = e.strerror or ""
        raise
    return 0


@family("control")
async def fam_control(c: Call) -> Any:
    """umvu's own call: vu_insmod, vu_rmmod, vu_lsmod, vumount's messages."""
    return await c.hv.control(c)
