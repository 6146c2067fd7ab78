"""A fake root's calls (umvu.fakeroot): chown and chmod recorded, device nodes made as plain
files and recorded, every stat shown with the records.

Each call is first served as ever (a virtual file's module, or the kernel), then its result is
changed: the stat buffers are rewritten; chown never reaches a file (the real one stays the
user's); chmod reaches it with a mode that keeps it usable by the user; a device node is made as
an empty regular file.  Permission rules are the kernel's against the virtual ids (a virtual
ordinary user may not chown what it does not own), and then the real file system's (a fake
root can chmod only what the user could).
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from collections.abc import Awaitable, Callable
from typing import Any

from umvu import memory
from umvu.calls.call import DONE, REAL, Call, maybe, need, s32
from umvu.calls.stat import view_dev
from umvu.fakeroot import Record, Records
from umvu.identity import NO_ID
from umvu.registry import Mount

STAT_CALLS = frozenset({"stat", "fstat", "lstat", "newfstatat", "statx"})
CHOWN_CALLS = frozenset({"chown", "fchown", "lchown", "fchownat"})
CHMOD_CALLS = frozenset({"chmod", "fchmod", "fchmodat", "fchmodat2"})
MKNOD_CALLS = frozenset({"mknod", "mknodat"})
REMOVE_CALLS = frozenset({"unlink", "unlinkat", "rmdir"})
XATTR_CALLS = frozenset(p + k for p in ("", "l", "f") for k in ("setxattr", "getxattr", "listxattr", "removexattr"))
CALLS = STAT_CALLS | CHOWN_CALLS | CHMOD_CALLS | MKNOD_CALLS | REMOVE_CALLS | XATTR_CALLS
# calls that do not always stop otherwise: on real fds, and on an fd's own file (AT_EMPTY_PATH,
# which the path filter lets through: bpf._empty_path_fast)
FD_CALLS = frozenset({"fstat", "fchown", "fchmod", "newfstatat", "statx", "fchownat", "fchmodat2", "fsetxattr",
                      "fgetxattr", "flistxattr", "fremovexattr"})

Handle = Callable[[Call], Awaitable[Any]]


async def serve(c: Call, records: Records, handle: Handle) -> Any:
    """Serve a call of CALLS for a session with a fake root; ``handle`` serves it as ever."""
    name = c.sc.name
    if name in STAT_CALLS:
        return await _stat(c, records, handle)
    if name in CHOWN_CALLS:
        return await _chown(c, records)
    if name in CHMOD_CALLS:
        return await _chmod(c, records, handle)
    if name in MKNOD_CALLS:
        return await _mknod(c, records, handle)
    if name in XATTR_CALLS:
        return await _xattr(c, records, handle)
    return await _remove(c, records, handle)


async def _finish(c: Call, res: Any) -> int:
    """The call's result, running it in the kernel if ``handle`` left it there (REAL)."""
    if res is REAL:
        return await c.run_in_kernel()
    return res


async def _stat(c: Call, records: Records, handle: Handle) -> Any:
    res = await handle(c)
    if res is DONE:
        return res
    ret = await _finish(c, res)
    if ret == 0:
        statx = c.sc.name == "statx"
        addr = c.args[4] if statx else c.args[c.sc.arg_index("ptr")]
        buf = memory.read(c.t.tid, addr, 256 if statx else 144)
        new = records.patch_statx(buf) if statx else records.patch_stat(buf)
        if new is not None:
            c.write(addr, new)
    return ret if res is not REAL else c.ended(ret)


async def _target(c: Call, copy_up: bool = False) -> tuple[os.stat_result, int, Mount | None]:
    """The file the call names, as the process sees it: its attributes, the st_dev it shows, and
    the mount it is in (None: a host file).  ``copy_up``: a record is about to be made for it."""
    if c.sc.choice == "fd":
        fd = s32(c.args[0])
        of = c.t.files.get(fd)
        if of is not None:
            return (*view_dev(of.mount, await maybe(of.ops.fstat(of.handle))), of.mount)
        try:
            st = os.stat(f"/proc/{c.t.tid}/fd/{fd}")
        except OSError:
            raise OSError(errno.EBADF, "bad file descriptor") from None
        view = c.t.files.view_of(c.t.tid, fd) if c.t.files.may_place else None
        return st, st.st_dev, c.hv.registry.lookup(view) if view is not None else None
    i = c.sc.path_args[0]
    r = await c.locate(i)
    if r.of is not None:
        return (*view_dev(r.of.mount, await maybe(r.of.ops.fstat(r.of.handle))), r.of.mount)
    st = need(r)
    if r.mount is None:
        return st, st.st_dev, None
    if copy_up and r.mount.fs.fakeroot_records() is not None:
        # the record is kept with the file's upper copy, which a later write would make anyway
        await maybe(r.mount.fs.host_path(r.mount.inner(r.path), "write", st))
        st = need(await c.locate(i))
    return (*view_dev(r.mount, st), r.mount)


def _record(c: Call, records: Records, mount: Mount | None, key: tuple[int, int], record: Record | None) -> None:
    """Keep ``record`` for file ``key`` (None: drop it), in the session's records and, for a mount
    that keeps its files' records itself (FileSystem.fakeroot_records), in its file too."""
    if mount is not None and mount.id not in records.kept:
        path = mount.fs.fakeroot_records()
        if path is not None:
            records.keep(mount.id, path, mount.dev)
    if record is None:
        records.drop(*key)
    else:
        records.put(*key, record)
    if mount is not None:
        records.note(mount.id, key)


def _ids(c: Call):
    ids = c.t.proc.ids
    assert ids is not None  # a fake root's session gives every process ids
    return ids


async def _chown(c: Call, records: Records) -> int:
    """chown_common's rules against the virtual ids, then a record; the file is not touched."""
    name = c.sc.name
    i = 2 if name == "fchownat" else 1
    uid, gid = c.args[i] & 0xFFFFFFFF, c.args[i + 1] & 0xFFFFFFFF
    st, dev, mount = await _target(c, copy_up=True)
    mode, owner, group, rdev = records.shown(st, dev)
    ids = _ids(c)
    if not ids.capable:
        if uid != NO_ID and not (ids.fsuid == owner and uid == owner):
            raise OSError(errno.EPERM, "operation not permitted")
        if gid != NO_ID and not (ids.fsuid == owner and (gid == group or gid in ids.groups or gid == ids.fsgid)):
            raise OSError(errno.EPERM, "operation not permitted")
    if not stat_mod.S_ISDIR(mode) and (uid != NO_ID or gid != NO_ID):
        mode &= ~(stat_mod.S_ISUID | (stat_mod.S_ISGID if mode & stat_mod.S_IXGRP else 0))
    record = Record(mode, owner if uid == NO_ID else uid, group if gid == NO_ID else gid, rdev)
    # what the file shows with no record: none is kept
    _record(c, records, mount, (dev, st.st_ino), None if record == Record(st.st_mode, 0, 0, st.st_rdev) else record)
    return 0


async def _chmod(c: Call, records: Records, handle: Handle) -> Any:
    """The mode recorded whole; the real file gets its permission bits, with the user's own
    read and write (and search, for a directory) kept, as fakeroot(1) does."""
    i = c.sc.arg_index("mode")
    asked = c.args[i] & 0o7777
    st, dev, mount = await _target(c, copy_up=True)
    mode, owner, group, rdev = records.shown(st, dev)
    if stat_mod.S_ISLNK(mode):
        return await handle(c)  # fchmodat2 AT_SYMLINK_NOFOLLOW: the kernel's EOPNOTSUPP
    ids = _ids(c)
    if not ids.capable and ids.fsuid != owner:
        raise OSError(errno.EPERM, "operation not permitted")
    if not ids.capable and group not in ids.groups and group != ids.fsgid:
        asked &= ~stat_mod.S_ISGID  # setattr_should_drop_sgid
    _record(c, records, mount, (dev, st.st_ino), Record(stat_mod.S_IFMT(mode) | asked, owner, group, rdev))
    real = (asked & 0o777) | (0o700 if stat_mod.S_ISDIR(st.st_mode) else 0o600)
    c.set_arg(i, real)
    try:
        res = await handle(c)
    except PermissionError:
        return 0  # a file the user cannot chmod: the record is what the fake root sees
    if res is DONE:
        return res
    ret = await _finish(c, res)
    if ret in (-errno.EPERM, -errno.EACCES):
        ret = 0
    return ret if res is not REAL else c.ended(ret)


async def _mknod(c: Call, records: Records, handle: Handle) -> Any:
    """A device node is made as an empty regular file with the node's permissions, and recorded."""
    i = c.sc.arg_index("mode")
    mode = c.args[i] & 0xFFFFFFFF
    kind = stat_mod.S_IFMT(mode)
    if kind not in (stat_mod.S_IFCHR, stat_mod.S_IFBLK) or not _ids(c).capable:
        return await handle(c)
    dev_i = i + 1
    rdev = c.args[dev_i] & 0xFFFFFFFF
    plain = stat_mod.S_IFREG | (mode & 0o7777)
    c.set_arg(i, plain)
    c.set_arg(dev_i, 0)
    res = await handle(c)
    if res is DONE:
        return res
    ret = await _finish(c, res)
    if ret == 0:
        st, dev, mount = await _target(c)
        record = Record(kind | (mode & 0o7777 & ~c.t.fs.umask), _ids(c).fsuid, _ids(c).fsgid, rdev)
        _record(c, records, mount, (dev, st.st_ino), record)
    return ret if res is not REAL else c.ended(ret)


async def _remove(c: Call, records: Records, handle: Handle) -> Any:
    """The last name of a file going: its record goes with it (an inode number comes back)."""
    try:
        st, dev, mount = await _target(c)
    except OSError:
        return await handle(c)  # the call's own error
    res = await handle(c)
    if res is DONE:
        return res
    ret = await _finish(c, res)
    if ret == 0 and (st.st_nlink <= 1 or stat_mod.S_ISDIR(st.st_mode)) and (dev, st.st_ino) in records.by_file:
        _record(c, records, mount, (dev, st.st_ino), None)
    return ret if res is not REAL else c.ended(ret)



XATTR_CREATE, XATTR_REPLACE = 1, 2


async def _xattr(c: Call, records: Records, handle: Handle) -> Any:
    """An attribute the user may not set (security.*, trusted.*, a file not the user's) is recorded
    for a fake root, and read, listed and removed from the record; the rest is the file's."""
    kind = c.sc.name if c.sc.name in ("setxattr", "getxattr", "listxattr", "removexattr") else c.sc.name[1:]
    try:
        st, dev, mount = await _target(c)
    except OSError:
        return await handle(c)  # the call's own error
    key = (dev, st.st_ino)
    kept = records.xattrs.get(key, {})
    if kind == "listxattr":
        return await _list(c, records, handle, kept)
    name = c.read_str(1)
    if kind == "getxattr":
        if name not in kept:
            return await handle(c)
        return c.give(c.args[2], c.args[3], kept[name])
    if kind == "removexattr":
        if name not in kept:
            return await handle(c)
        del kept[name]
        return 0
    flags = c.args[4] & 0xFFFFFFFF
    if name in kept:
        if flags & XATTR_CREATE:
            raise OSError(errno.EEXIST, "exists")
        kept[name] = memory.read(c.t.tid, c.args[2], c.args[3]) if c.args[3] else b""
        return 0
    res = await handle(c)
    if res is DONE:
        return res
    ret = await _finish(c, res)
    if ret in (-errno.EPERM, -errno.EACCES) and _ids(c).capable and not flags & XATTR_REPLACE:
        value = memory.read(c.t.tid, c.args[2], c.args[3]) if c.args[3] else b""
        records.xattrs.setdefault(key, {})[name] = value
        if mount is not None:
            records.note(mount.id, key)
        ret = 0
    return ret if res is not REAL else c.ended(ret)


async def _list(c: Call, records: Records, handle: Handle, kept: dict[str, bytes]) -> Any:
    if not kept:
        return await handle(c)
    extra = b"".join(os.fsencode(n) + b"\0" for n in kept)
    size = c.args[2]
    res = await handle(c)
    if res is DONE:
        return res
    ret = await _finish(c, res)
    if ret >= 0:
        if size == 0:
            ret += len(extra)
        elif ret + len(extra) > size:
            ret = -errno.ERANGE
        else:
            c.write(c.args[1] + ret, extra)
            ret += len(extra)
    return ret if res is not REAL else c.ended(ret)
