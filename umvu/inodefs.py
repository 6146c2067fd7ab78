"""Path calls over a file system that speaks in node ids: FUSE's model.

The core hands a module absolute paths; FUSE daemons (and pyfuse3's
Operations) know nodes: LOOKUP a name in a directory node, then GETATTR,
OPEN... the node.  :class:`InodeFS` walks a path one LOOKUP per component,
keeping what the kernel keeps: a dentry cache and an attribute cache, each
entry valid for the time the file system said (entry_valid, attr_valid; 0
means ask every time), and each node's lookup count, returned with FORGET
once no name or open file refers to the node any more.  It also remembers
the operations a file system answered with ENOSYS and does not ask again,
falling back the way the kernel does.

A transport (``NodeOps``) carries the requests: modules/fuse.py over a
/dev/fuse connection to a daemon, modules/vufuse.py to a pyfuse3
Operations object in this process.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from typing import Any, NamedTuple

from umvu.abi import StatFs
from umvu.creds import MAY_EXEC, MAY_READ, MAY_WRITE, current, permitted
from umvu.vfs import FMODE_EXEC, DirEntry, FileSystem, xattr_mode_decides

ROOT = 1  # FUSE_ROOT_ID
# A zero timeout still covers the call that got the answer: the kernel compares in jiffies, so
# attributes a LOOKUP just returned serve the stat that asked for them.
GRACE = 0.002
FOPEN_DIRECT_IO, FOPEN_NOFLUSH = 1 << 0, 1 << 5
FUSE_NAME_MAX = 1024  # the kernel's fuse_lookup refuses longer names
O_TMPFILE_BIT = 0o20000000
O_LARGEFILE = 0o100000  # in every f_flags on 64-bit (force_o_largefile): OPEN and CREATE carry it


class Entry(NamedTuple):
    """A LOOKUP's answer (fuse_entry_out); node 0 is a negative entry (the name is absent)."""

    node: int
    st: os.stat_result | None
    entry_ttl: float
    attr_ttl: float


class DirItem(NamedTuple):
    name: str
    ino: int
    type: int  # DT_*
    next: int  # the offset to continue after this entry
    entry: Entry | None  # READDIRPLUS: the entry, counted as a lookup


class Opened(NamedTuple):
    fh: int
    flags: int  # FOPEN_*


class SetAttr(NamedTuple):
    """What a SETATTR changes; None leaves it.  Times in ns, or "now"."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    atime: int | str | None = None
    mtime: int | str | None = None


class NodeOps:
    """The transport's side: one coroutine per FUSE opcode, raising OSError(errno).

    Names and arguments follow linux/fuse.h; see modules/fuse.py for the
    wire encoding.  An operation a file system lacks raises ENOSYS.
    """

    #: the server truncates at OPEN with O_TRUNC in its flags (FUSE_ATOMIC_O_TRUNC, libfuse3's
    #: default); else an open with O_TRUNC is followed by a SETATTR of the size, as the kernel does
    atomic_o_trunc = False

    async def lookup(self, parent: int, name: str) -> Entry: ...
    def forget(self, nodes: list[tuple[int, int]]) -> None: ...
    async def getattr(self, node: int, fh: int | None) -> tuple[os.stat_result, float]: ...
    async def setattr(self, node: int, fh: int | None, change: SetAttr) -> tuple[os.stat_result, float]: ...
    async def readlink(self, node: int) -> str: ...
    async def symlink(self, parent: int, name: str, target: str) -> Entry: ...
    async def mknod(self, parent: int, name: str, mode: int, rdev: int) -> Entry: ...
    async def mkdir(self, parent: int, name: str, mode: int) -> Entry: ...
    async def unlink(self, parent: int, name: str) -> None: ...
    async def rmdir(self, parent: int, name: str) -> None: ...
    async def rename(self, parent: int, name: str, newparent: int, newname: str, flags: int) -> None: ...
    async def link(self, node: int, newparent: int, newname: str) -> Entry: ...
    async def open(self, node: int, flags: int) -> Opened: ...
    async def opendir(self, node: int, flags: int) -> Opened: ...
    async def create(self, parent: int, name: str, flags: int, mode: int) -> tuple[Entry, Opened]: ...
    # Any size: the transport splits them as its channel needs (FUSE's max_read, max_write).
    # ``direct``: opened with FOPEN_DIRECT_IO; else the kernel would read through its page cache,
    # and a caught signal would not end the wait.
    async def read(self, node: int, fh: int, offset: int, size: int, direct: bool) -> bytes: ...
    async def write(self, node: int, fh: int, offset: int, data: bytes) -> int: ...
    async def statfs(self, node: int) -> StatFs: ...
    # close(2) of an fd: FLUSH, awaited, its error close's.  ENOSYS is remembered by the transport.
    async def flush(self, node: int, fh: int) -> None: ...
    # The last fd is gone: sent, not awaited.  FLUSH first when ``flush`` (an fd that went without
    # close(2): exit, exec, dup2), then RELEASE with the open flags (None: no OPEN was made).
    def release(self, node: int, fh: int, flags: int | None, flush: bool) -> None: ...
    def releasedir(self, node: int, fh: int, flags: int) -> None: ...
    async def fsync(self, node: int, fh: int, datasync: bool) -> None: ...
    async def fsyncdir(self, node: int, fh: int, datasync: bool) -> None: ...
    async def readdir(self, node: int, fh: int, offset: int) -> list[DirItem]: ...
    async def access(self, node: int, mask: int) -> None: ...
    async def getxattr(self, node: int, name: str) -> bytes: ...
    async def listxattr(self, node: int) -> list[str]: ...
    async def setxattr(self, node: int, name: str, value: bytes, flags: int) -> None: ...
    async def removexattr(self, node: int, name: str) -> None: ...
    async def lseek(self, node: int, fh: int, offset: int, whence: int) -> int: ...
    async def fallocate(self, node: int, fh: int, mode: int, offset: int, length: int) -> None: ...
    # Optional, not async (the core asks at once): readiness for poll, select and epoll of an open
    # file, as vfs.FileSystem.poll; ``unpoll(kh)`` when a file that was asked (h.kh) is released.
    # def poll(self, h: Handle, wake: Callable[[], None]) -> int | None
    # def unpoll(self, kh: int) -> None


class Handle:
    __slots__ = ("node", "fh", "is_dir", "flags", "direct", "noflush", "flushed", "kh")

    def __init__(self, node: int, opened: Opened, is_dir: bool, flags: int) -> None:
        self.node = node
        self.fh = opened.fh
        self.is_dir = is_dir
        self.flags = flags
        self.direct = bool(opened.flags & FOPEN_DIRECT_IO)
        self.noflush = bool(opened.flags & FOPEN_NOFLUSH)  # the daemon wants no FLUSH at close
        self.flushed = False  # FLUSHed by a close(2), and not written since
        self.kh = 0  # the poll handle the transport gave it (NodeOps.poll), 0: none yet


def make_stat(ino: int, mode: int, nlink: int, uid: int, gid: int, rdev: int, size: int, blocks: int,
              blksize: int, atime_ns: int, mtime_ns: int, ctime_ns: int) -> os.stat_result:
    """An os.stat_result from what FUSE tells of a node (st_dev is the mount's, set by the core)."""
    if _STAT_POSITIONAL:  # every field in order: a seventh of the time of naming the extra ones
        return os.stat_result((mode, ino, 0, nlink, uid, gid, size, atime_ns // 10**9, mtime_ns // 10**9,
                               ctime_ns // 10**9, atime_ns / 1e9, mtime_ns / 1e9, ctime_ns / 1e9, atime_ns,
                               mtime_ns, ctime_ns, blksize or 4096, blocks, rdev))
    return os.stat_result(
        (mode, ino, 0, nlink, uid, gid, size, atime_ns // 10**9, mtime_ns // 10**9, ctime_ns // 10**9),
        {"st_atime": atime_ns / 1e9, "st_mtime": mtime_ns / 1e9, "st_ctime": ctime_ns / 1e9,
         "st_atime_ns": atime_ns, "st_mtime_ns": mtime_ns, "st_ctime_ns": ctime_ns,
         "st_blksize": blksize or 4096, "st_blocks": blocks, "st_rdev": rdev},
    )


def _positional_ok() -> bool:
    """Whether this Python's stat_result has Linux's 19 fields in the order make_stat gives them."""
    try:
        st = os.stat_result(tuple(range(19)))
    except TypeError:
        return False
    return (st.st_atime_ns, st.st_ctime_ns, st.st_blksize, st.st_blocks, st.st_rdev) == (13, 15, 16, 17, 18)


_STAT_POSITIONAL = _positional_ok()




def _protected_hardlinks() -> bool:
    """The host's sysctl, read at each link (it may change; links are rare)."""
    try:
        with open("/proc/sys/fs/protected_hardlinks") as f:
            return f.read().strip() == "1"
    except OSError:
        return False
# The operations whose ENOSYS the kernel remembers (fc->no_open, no_flush...): the others, SETATTR
# among them, are asked again (touch's time change may be ENOSYS, and the next truncate work).
REMEMBERED_NOSYS = frozenset({"open", "opendir", "create", "flush", "fsync", "fsyncdir", "access", "getxattr",
                              "listxattr", "setxattr", "removexattr", "fallocate", "rename2", "lseek"})


def _fh(h: Handle) -> int | None:
    """The fh a SETATTR through an open file names (the kernel's FATTR_FH): an open file's, not a
    directory's or an O_PATH one's."""
    return None if h.is_dir or h.flags & os.O_PATH else h.fh


def _split(path: str) -> tuple[str, str]:
    head, _, name = path.rpartition("/")
    return head or "/", name


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


class InodeFS(FileSystem):
    """A FileSystem whose files are nodes of ``ops``, with the kernel's caches."""

    fstype = "fuse"
    removed_dirs_open = False  # OPENDIR of a removed node reaches the daemon
    name_max = FUSE_NAME_MAX  # longer names go to the daemon, which says what it takes
    #: check permissions from the files' modes, owners and groups, as the kernel does for FUSE's
    #: default_permissions (else they are the file system's to check)
    default_permissions = False
    #: lookups check search permission themselves (_node), refreshing attributes on a refusal as FUSE does
    checks_search = True

    def __init__(self, ops: NodeOps) -> None:
        self.ops = ops
        self._dentries: dict[tuple[int, str], tuple[int, float]] = {}  # (parent, name) -> (node, until)
        self._attrs: dict[int, tuple[os.stat_result, float]] = {}  # node -> (attrs, until)
        self._lookups: dict[int, int] = {}  # node -> lookups not yet forgotten
        self._refs: dict[int, int] = {}  # node -> dentries and open files naming it
        # Directories walked to lately: inner path -> (node, when the first name on the way times
        # out).  A find stats every entry of a directory by a path that walks the same names down
        # to it; each entry stays right while no name is dropped or changed (that empties it).
        self._walked: dict[str, tuple[int, float]] = {}
        self._linked: dict[int, set[int]] = {}  # st_ino -> the nodes of a file with several names
        self.nosys: set[str] = set()  # operations answered with ENOSYS: not asked again

    # whose call this is (creds.py): the caller's fsuid and groups
    @property
    def uid(self) -> int:
        return current().uid

    @property
    def groups(self) -> frozenset[int]:
        return current().groups

    # -- caches ---------------------------------------------------------------------------
    def _ref(self, node: int, n: int) -> None:
        refs = self._refs.get(node, 0) + n
        if refs > 0:
            self._refs[node] = refs
            return
        self._refs.pop(node, None)
        self._attrs.pop(node, None)
        count = self._lookups.pop(node, 0)
        if count and node != ROOT:
            self.ops.forget([(node, count)])

    def _learn(self, parent: int, name: str, e: Entry) -> int:
        """Record a lookup's answer; the node (0: negative entry)."""
        now = time.monotonic()
        until = now + max(e.entry_ttl, GRACE)
        old = self._dentries.get((parent, name))
        if old is not None and old[0] != e.node:
            self._walked.clear()
        if e.node:
            self._lookups[e.node] = self._lookups.get(e.node, 0) + 1
            self._ref(e.node, 1)
            if e.st is not None:
                self._keep(e.node, e.st, now + max(e.attr_ttl, GRACE))
        if e.node or e.entry_ttl > 0:
            self._dentries[(parent, name)] = (e.node, until)
        else:
            self._dentries.pop((parent, name), None)
        if old is not None and old[0]:
            self._ref(old[0], -1)
        return e.node

    def _unlearn(self, parent: int, name: str, changed: bool = True) -> None:
        """Drop the name; ``changed``: by an unlink or rename (not a lookup that found nothing),
        so the attributes of the file and of its directory are stale too."""
        old = self._dentries.pop((parent, name), None)
        if old is not None:
            self._walked.clear()
        if old is not None and old[0]:
            if changed:
                self._stale_inode(old[0])  # its nlink and ctime changed
            self._ref(old[0], -1)
        if changed:
            self._stale(parent)

    def forget_all(self) -> None:
        """At unmount: every node the daemon still counts is returned (the kernel evicts them)."""
        batch = [(n, c) for n, c in self._lookups.items() if n != ROOT and c]
        self._dentries.clear()
        self._walked.clear()
        self._attrs.clear()
        self._linked.clear()
        self._lookups.clear()
        self._refs.clear()
        if batch:
            self.ops.forget(batch)

    #: the transport can take requests now (FuseMount: once the daemon answered INIT)
    ready = True

    async def _started(self) -> None:
        """Wait until the transport is ready, or raise why it will not be."""

    async def _call(self, op: str, *args: Any, key: str | None = None) -> Any:
        """``ops.op(*args)``; ``key`` names it for the ENOSYS memory when one method carries two
        opcodes (rename with flags is RENAME2)."""
        if not self.ready:
            await self._started()
        key = key or op
        if key in self.nosys:
            raise OSError(errno.ENOSYS, f"{key} is not implemented by this file system")
        try:
            return await getattr(self.ops, op)(*args)
        except OSError as e:
            if e.errno == errno.ENOSYS and key in REMEMBERED_NOSYS:
                self.nosys.add(key)
            raise

    def open_permitted(self, st: os.stat_result, mask: int) -> bool:
        """FUSE's: the mode decides with default_permissions; else nothing is checked (fuse_permission
        asks the daemon only for access(2) and chdir, and a FIFO's open never reaches it)."""
        return not self.default_permissions or permitted(st, mask, current())

    def caller_allowed(self) -> bool:
        """Whether the caller may use this file system at all (FUSE: the mounter alone, unless
        allow_other, as fuse_allow_current_process); else every walk and stat is EACCES."""
        return True

    def _check_caller(self) -> None:
        if not self.caller_allowed():
            raise OSError(errno.EACCES, "permission denied (mounted without allow_other)")

    async def _child(self, parent: int, name: str, stale_ok: bool = False) -> int:
        self._check_caller()
        if self.default_permissions:  # may_lookup: search permission, at every step
            await self._may(parent, MAY_EXEC, fresh=not stale_ok)
        cached = self._dentries.get((parent, name))
        if cached is not None and cached[0] and stale_ok:
            return cached[0]
        if cached is not None and cached[1] > time.monotonic():
            if not cached[0]:
                raise OSError(errno.ENOENT, "no such file (cached)")
            return cached[0]
        if len(name) > FUSE_NAME_MAX:
            raise OSError(errno.ENAMETOOLONG, "name too long")
        try:
            e = await self._call("lookup", parent, name)
        except OSError as err:
            if err.errno == errno.ENOENT:
                self._unlearn(parent, name, changed=False)
            raise
        node = self._learn(parent, name, e)
        if not node:
            raise OSError(errno.ENOENT, "no such file")
        return node

    async def _node(self, path: str) -> int:
        """The node ``path`` names.

        Only the last name is revalidated when its entry timed out: the
        directories above it are taken from the cache as long as they are in
        it.  The core hands whole paths where the kernel often has a directory
        already (find's openat and fstatat on a dirfd): this walks as the
        kernel does then.  If the last step fails under a directory taken
        that way, the walk is done again asking for everything that timed out.
        """
        parts = _parts(path)
        if not parts:
            self._check_caller()
            return ROOT
        node, trusted = await self._parent(path, parts)
        try:
            return await self._child(node, parts[-1])
        except OSError as e:
            if not trusted or e.errno not in (errno.ENOENT, errno.ESTALE, errno.ENOTDIR):
                raise
        node = ROOT
        for name in parts:
            node = await self._child(node, name)
        return node

    async def _parent(self, path: str, parts: list[str]) -> tuple[int, bool]:
        """The node of the directory holding ``path``'s last name, walked to from the dentry cache,
        and whether a name on the way timed out (see _node)."""
        if len(parts) == 1:
            return ROOT, False
        head = path.rpartition("/")[0]
        walked = self._walked.get(head)
        if walked is not None:  # with default_permissions each step is checked: never kept
            return walked[0], walked[1] <= time.monotonic()
        node, first_out = ROOT, float("inf")
        for name in parts[:-1]:
            cached = self._dentries.get((node, name))
            if cached is not None and cached[1] < first_out:
                first_out = cached[1]
            node = await self._child(node, name, stale_ok=True)
        if not self.default_permissions and head == "/" + "/".join(parts[:-1]):  # canonical: the core's
            if len(self._walked) >= 256:
                self._walked.clear()
            self._walked[head] = (node, first_out)
        return node, first_out <= time.monotonic()

    async def _may(self, node: int, mask: int, fresh: bool = True) -> None:
        """EACCES unless the session may ``mask`` the node (with default_permissions only).

        ``fresh=False``: attributes cached past their timeout will do, for the
        directories above the last one of a path (see _node: the kernel would
        often start from a dirfd below them, and not look at them at all).
        """
        if not self.default_permissions:
            return
        cached = self._attrs.get(node)
        asked = cached is None or fresh and cached[1] <= time.monotonic()
        if permitted(await self._attr(node) if asked else cached[0], mask, current()):
            return
        if not asked:  # the kernel asks the daemon again before it says no (fuse_permission)
            self._stale(node)
            if permitted(await self._attr(node), mask, current()):
                return
        raise OSError(errno.EACCES, "permission denied")

    async def _may_create(self, parent: int, name: str) -> None:
        """May a name be made in ``parent``: the kernel says EEXIST before EACCES."""
        if not self.default_permissions or permitted(await self._attr(parent), MAY_WRITE | MAY_EXEC, current()):
            return
        try:
            await self._child(parent, name)
        except OSError:
            raise OSError(errno.EACCES, "permission denied") from None
        raise OSError(errno.EEXIST, "exists")

    async def _may_delete(self, parent: int, name: str) -> int:
        """May ``name`` go from ``parent`` (the kernel's may_delete); its node."""
        node = await self._child(parent, name)
        if self.default_permissions:
            await self._may(parent, MAY_WRITE | MAY_EXEC)
            dst = await self._attr(parent)
            if dst.st_mode & stat.S_ISVTX and self.uid not in (0, dst.st_uid, (await self._attr(node)).st_uid):
                raise OSError(errno.EPERM, "a sticky directory: not the owner")
        return node

    async def _may_change(self, node: int, owner_only: bool) -> None:
        """chmod, chown, utime: the owner (or root); ``not owner_only``: or who may write it."""
        if not self.default_permissions or self.uid == 0:
            return
        st = await self._attr(node)
        if st.st_uid == self.uid:
            return
        if owner_only or not permitted(st, MAY_WRITE, current()):
            raise OSError(errno.EPERM if owner_only else errno.EACCES, "not the owner")

    # -- a server's notifications (FUSE_NOTIFY_*) ------------------------------------------------
    def _known(self, node: int) -> None:
        if node != ROOT and node not in self._refs and node not in self._attrs:
            raise OSError(errno.ENOENT, "no such node in the caches")  # ilookup found no inode

    def notify_inval_inode(self, node: int, check_only: bool = False) -> None:
        """The server changed the node: its attributes are asked again."""
        self._known(node)
        if not check_only:
            self._stale(node)

    def notify_inval_entry(self, parent: int, name: str, child: int = 0) -> None:
        """The server dropped or changed the name (child: deleted it): it is looked up again."""
        self._known(parent)
        cached = self._dentries.get((parent, name))
        if child and cached is not None and cached[0] != child:
            raise OSError(errno.ENOENT, "the name is another node's")
        self._unlearn(parent, name, changed=True)

    def _keep(self, node: int, st: os.stat_result, until: float) -> None:
        self._attrs[node] = (st, until)
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):  # one of several names of a file
            self._linked.setdefault(st.st_ino, set()).add(node)

    def _stale_inode(self, node: int) -> None:
        """A link count changed: the attributes of every node known for the same file are stale
        (a high-level libfuse daemon gives each name of a hard-linked file its own node)."""
        self._stale(node)
        cached = self._attrs.get(node)
        for other in self._linked.pop(cached[0].st_ino, ()) if cached is not None else ():
            self._stale(other)

    def _stale(self, node: int) -> None:
        """The node's attributes changed: ask again before showing them, but keep them for path
        walks, which want only the type (lstat_walk)."""
        cached = self._attrs.get(node)
        if cached is not None:
            self._attrs[node] = (cached[0], 0.0)

    async def _attr(self, node: int, fh: int | None = None) -> os.stat_result:
        cached = self._attrs.get(node)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        st, ttl = await self._call("getattr", node, fh)
        self._keep(node, st, time.monotonic() + max(ttl, GRACE))
        return st

    async def _setattr(self, node: int, fh: int | None, change: SetAttr) -> None:
        st, ttl = await self._call("setattr", node, fh, change)
        self._keep(node, st, time.monotonic() + max(ttl, GRACE))

    # -- names ------------------------------------------------------------------------------
    async def lstat(self, path: str) -> os.stat_result:
        return await self._attr(await self._node(path))

    async def lstat_at(self, dir_handle: Handle, name: str, path: str) -> os.stat_result:
        """From the directory's node, as the kernel looks a name up from a dirfd's inode."""
        return await self._attr(await self._child(dir_handle.node, name))

    async def lstat_walk(self, path: str) -> os.stat_result:
        node = await self._node(path)
        cached = self._attrs.get(node)
        return cached[0] if cached is not None else await self._attr(node)

    async def readlink(self, path: str) -> str:
        node = await self._node(path)
        if not stat.S_ISLNK((await self._attr(node)).st_mode):
            raise OSError(errno.EINVAL, "not a symlink")
        return await self._call("readlink", node)

    async def access(self, path: str, mode: int) -> None:
        node = await self._node(path)
        if self.default_permissions:  # the kernel answers from the mode, and sends no ACCESS
            return await self._may(node, mode & 7)
        if "access" not in self.nosys:
            try:
                return await self._call("access", node, mode)
            except OSError as e:
                if e.errno != errno.ENOSYS:
                    raise
        # no ACCESS: the kernel answers 0 and lets the daemon decide at open

    async def statfs(self, path: str) -> StatFs:
        try:
            return await self._call("statfs", await self._node(path))
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise
        return StatFs(0x65735546, 512, 0, 0, 0, 0, 0, (0, 0), 255, 512, 0)  # the kernel's answer then

    # -- open files -------------------------------------------------------------------------
    async def open(self, path: str, flags: int, mode: int) -> Handle:
        return await self._open(path, flags, mode)

    async def _open(self, path: str, flags: int, mode: int, created: bool = False) -> Handle:
        """``created``: just made by MKNOD for this open, which the kernel then does not check."""
        if flags & O_TMPFILE_BIT:  # FUSE_TMPFILE is not spoken here: the kernel's answer without it
            raise OSError(errno.EOPNOTSUPP, "O_TMPFILE is not supported by this file system")
        if flags & os.O_PATH:  # the kernel ignores the rest (no O_CREAT: a missing file is ENOENT)
            flags &= os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY | os.O_NOFOLLOW
        node = 0
        if flags & os.O_CREAT:
            try:
                node = await self._node(path)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise
            if not node:
                return await self._create(path, flags, mode)
        if not node:
            node = await self._node(path)
        st = await self._attr(node)
        is_dir = stat.S_ISDIR(st.st_mode)
        if flags & os.O_PATH:  # a name held, not a file opened: the kernel sends no OPEN
            self._ref(node, 1)
            return Handle(node, Opened(0, 0), is_dir, flags)
        acc = flags & os.O_ACCMODE
        if flags & FMODE_EXEC:  # the kernel's open_exec: to run it, not to read it
            await self._may(node, MAY_EXEC)
        elif not created:
            await self._may(node, (MAY_READ if acc != os.O_WRONLY else 0)
                            | (MAY_WRITE if acc != os.O_RDONLY or flags & os.O_TRUNC else 0))
        # do_open truncates any regular file, read-only opens too, whatever size is cached
        truncate = bool(flags & os.O_TRUNC) and stat.S_ISREG(st.st_mode)
        atomic = truncate and self.ops.atomic_o_trunc
        wire = flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOCTTY | (0 if atomic else os.O_TRUNC)) | O_LARGEFILE
        op = "opendir" if is_dir else "open"
        try:
            opened = await self._call(op, node, wire)
        except OSError as e:  # FUSE_NO_OPEN_SUPPORT: ENOSYS means "stateless, go on"
            if e.errno != errno.ENOSYS:
                raise
            opened = Opened(0, 0)
        self._ref(node, 1)
        h = Handle(node, opened, is_dir, flags)
        if atomic:
            self._stale(node)  # the server truncated (or chose not to): ask it
        elif truncate:
            # the kernel's SETATTR (fuse_do_setattr, ATTR_OPEN) names no fh: the one just opened
            # may be read-only.  It carries the size alone, with the kill of setuid bits
            # (do_truncate): no time, as for ftruncate, since the daemon's truncate is to set mtime
            # (update_mtime in the kernel's fuse), and a daemon that cannot set times still truncates
            try:
                await self._setattr(node, None, SetAttr(size=0, mode=await self._killed_mode(node)))
            except BaseException:
                self._close(h)
                raise
        return h

    async def _create(self, path: str, flags: int, mode: int) -> Handle:
        head, name = _split(path)
        parent = await self._node(head)
        await self._may_create(parent, name)
        wire = flags & ~os.O_NOCTTY | O_LARGEFILE  # the file's f_flags, as the kernel sends them
        if "create" not in self.nosys:
            try:
                e, opened = await self._call("create", parent, name, wire, stat.S_IFREG | mode)
            except OSError as err:
                if err.errno != errno.ENOSYS:
                    raise
            else:
                self._stale(parent)
                node = self._learn(parent, name, e)
                self._ref(node, 1)
                return Handle(node, opened, False, flags)
        e = await self._call("mknod", parent, name, stat.S_IFREG | mode, 0)
        self._stale(parent)
        self._learn(parent, name, e)
        return await self._open(path, flags & ~os.O_CREAT, mode, created=True)

    def close(self, h: Handle) -> None:
        if h.kh and hasattr(self.ops, "unpoll"):
            self.ops.unpoll(h.kh)
        self._close(h)

    def poll(self, h: Handle, wake: Any) -> int | None:
        """The transport's answer (NodeOps.poll) when it has one: FUSE's POLL."""
        poll = getattr(self.ops, "poll", None)
        if poll is None or h.is_dir or h.flags & os.O_PATH:
            return None
        return poll(h, wake)

    def _close(self, h: Handle) -> None:
        try:
            if h.flags & os.O_PATH:
                pass
            elif h.is_dir:
                if "opendir" not in self.nosys:
                    self.ops.releasedir(h.node, h.fh, h.flags)
            else:  # RELEASE follows FLUSH's answer (the transport orders them), as the kernel's
                self.ops.release(h.node, h.fh, None if "open" in self.nosys else h.flags,
                                 flush=not (h.flushed or h.noflush))
        finally:
            self._ref(h.node, -1)

    async def flush(self, h: Handle) -> None:
        if h.is_dir or h.noflush:
            return  # the kernel flushes files only, and not those opened with FOPEN_NOFLUSH
        h.flushed = True
        await self.ops.flush(h.node, h.fh)

    async def read(self, h: Handle, size: int, offset: int) -> bytes:
        return await self._call("read", h.node, h.fh, offset, size, h.direct)  # the transport splits it

    async def write(self, h: Handle, data: bytes, offset: int) -> int:
        h.flushed = False
        mode = await self._killed_mode(h.node)  # file_remove_privs, before the data goes
        if mode is not None:
            await self._setattr(h.node, h.fh, SetAttr(mode=mode))
        self._stale(h.node)  # size and mtime change
        try:
            n = await self._call("write", h.node, h.fh, offset, data)
        finally:  # and not the size a stat cached while the write was on its way
            self._stale(h.node)
        if n > len(data):
            raise OSError(errno.EIO, "the file system wrote more than it was given")
        return n

    async def fstat(self, h: Handle) -> os.stat_result:
        self._check_caller()
        fh = None if h.is_dir or h.flags & os.O_PATH else h.fh  # the kernel names only open files' fh
        return await self._attr(h.node, fh)

    async def getdents(self, h: Handle) -> list[DirEntry]:
        listing: list[DirEntry] = []
        offset = 0
        op = "readdir"
        while True:
            items = await self._call(op, h.node, h.fh, offset)
            if not items:
                break
            for it in items:
                if not it.name or len(it.name) > FUSE_NAME_MAX or "/" in it.name:
                    # the kernel's parse_dirfile: such an entry is the file system's corruption
                    raise OSError(errno.EIO, f"the file system listed a bad name {it.name!r}")
                if it.entry is not None and it.name not in (".", ".."):
                    self._learn(h.node, it.name, it.entry)
                listing.append(DirEntry(it.name, it.ino, it.type))
            offset = items[-1].next
        names = {e.name for e in listing}
        extra = [DirEntry(n, 1 if h.node == ROOT else h.node, 4) for n in (".", "..") if n not in names]
        return extra + listing

    async def fsync(self, h: Handle, datasync: bool) -> None:
        try:
            await self._call("fsyncdir" if h.is_dir else "fsync", h.node, h.fh, datasync)
        except OSError as e:
            if e.errno != errno.ENOSYS:  # the kernel treats a missing fsync as success
                raise

    async def ftruncate(self, h: Handle, length: int) -> None:
        await self._setattr(h.node, h.fh, SetAttr(size=length, mode=await self._killed_mode(h.node)))

    async def fallocate(self, h: Handle, mode: int, offset: int, length: int) -> None:
        try:
            await self._call("fallocate", h.node, h.fh, mode, offset, length)
        except OSError as e:
            if e.errno == errno.ENOSYS:
                raise OSError(errno.EOPNOTSUPP, "fallocate is not supported by this file system") from None
            raise
        self._stale(h.node)

    async def seek(self, h: Handle, offset: int, whence: int) -> int | None:
        if "lseek" in self.nosys:
            return None
        try:
            return await self._call("lseek", h.node, h.fh, offset, whence)
        except OSError as e:
            if e.errno == errno.ENOSYS:
                return None
            raise

    # -- changes by name ----------------------------------------------------------------------
    async def _make(self, op: str, path: str, *args: Any) -> None:
        head, name = _split(path)
        parent = await self._node(head)
        await self._may_create(parent, name)
        if op == "mknod" and (stat.S_ISCHR(args[0]) or stat.S_ISBLK(args[0])) and self.uid != 0:
            raise OSError(errno.EPERM, "only root makes device nodes")  # vfs_mknod's CAP_MKNOD
        e = await self._call(op, parent, name, *args)
        self._stale(parent)
        self._learn(parent, name, e)

    async def mkdir(self, path: str, mode: int) -> None:
        await self._make("mkdir", path, mode)

    async def mknod(self, path: str, mode: int, dev: int) -> None:
        await self._make("mknod", path, mode, dev)

    async def symlink(self, target: str, path: str) -> None:
        await self._make("symlink", path, target)

    async def _remove(self, op: str, path: str) -> None:
        head, name = _split(path)
        parent = await self._node(head)
        if self.default_permissions:
            await self._may_delete(parent, name)
        await self._call(op, parent, name)
        self._unlearn(parent, name)

    async def unlink(self, path: str) -> None:
        await self._remove("unlink", path)

    async def rmdir(self, path: str) -> None:
        await self._remove("rmdir", path)

    async def rename(self, old: str, new: str, flags: int) -> None:
        (ohead, oname), (nhead, nname) = _split(old), _split(new)
        op, np = await self._node(ohead), await self._node(nhead)
        try:
            same = await self._node(old) == await self._node(new)
        except OSError:
            same = False
        if same:  # the same file (or two links of it): Linux does nothing, and asks no file system
            if flags & 1:  # RENAME_NOREPLACE
                raise OSError(errno.EEXIST, "exists")
            return
        if self.default_permissions:
            await self._may_rename(op, oname, np, nname, flags)
        try:
            await self._call("rename", op, oname, np, nname, flags, key="rename2" if flags else "rename")
        except OSError as e:
            if e.errno == errno.ENOSYS and flags:
                raise OSError(errno.EINVAL, "rename flags not supported by this file system") from None
            raise
        moved = self._dentries.get((op, oname))
        self._unlearn(np, nname)
        if flags & 2 and moved is not None:  # RENAME_EXCHANGE: both names stay, swapped: ask again
            self._unlearn(op, oname)
        elif moved is not None:
            self._dentries.pop((op, oname), None)
            self._dentries[(np, nname)] = moved
            self._walked.clear()
            self._stale(moved[0])  # ctime
        self._stale(op)

    async def _may_rename(self, op: int, oname: str, np: int, nname: str, flags: int) -> None:
        """The kernel's checks, in its order: EEXIST/ENOENT for the target first, then may_delete
        of the source, and of a target that exists (the sticky bit) or may_create of a new one."""
        try:
            target: int | None = await self._child(np, nname)
        except OSError as e:
            if e.errno != errno.ENOENT or flags & 2:  # RENAME_EXCHANGE needs both
                raise
            target = None
        if target is not None and flags & 1:  # RENAME_NOREPLACE
            raise OSError(errno.EEXIST, "exists")
        node = await self._may_delete(op, oname)
        if target is None:
            await self._may(np, MAY_WRITE | MAY_EXEC)
        else:
            await self._may_delete(np, nname)
        if np != op:  # a directory moved to another parent: its ".." changes
            for moved in (node, target if flags & 2 else None):
                if moved is not None and stat.S_ISDIR((await self._attr(moved)).st_mode):
                    await self._may(moved, MAY_WRITE)

    async def link(self, old: str, new: str) -> None:
        node = await self._node(old)
        head, name = _split(new)
        parent = await self._node(head)
        await self._may_create(parent, name)
        await self._may_link(node)
        try:
            e = await self._call("link", node, parent, name)
        except OSError as err:
            if err.errno == errno.ENOSYS:  # the kernel's fuse_link: no hard links here
                raise OSError(errno.EPERM, "hard links are not supported by this file system") from None
            raise
        self._stale(parent)
        self._stale_inode(node)
        self._learn(parent, name, e)

    async def _may_link(self, node: int) -> None:
        """fs.protected_hardlinks (the kernel's may_linkat): another's file only if it is a plain
        regular file the session may read and write (the mode decides with default_permissions)."""
        if self.uid == 0 or not _protected_hardlinks():
            return
        st = await self._attr(node)
        if st.st_uid == self.uid:
            return
        mode = st.st_mode
        if not stat.S_ISREG(mode) or mode & stat.S_ISUID or mode & (stat.S_ISGID | stat.S_IXGRP) == \
                stat.S_ISGID | stat.S_IXGRP or self.default_permissions and \
                not permitted(st, MAY_READ | MAY_WRITE, current()):
            raise OSError(errno.EPERM, "fs.protected_hardlinks: not yours to link")

    async def chmod(self, path: str, mode: int) -> None:
        await self._chmod(await self._node(path), None, mode)

    async def fchmod(self, h: Handle, mode: int, path: str | None) -> None:
        await self._chmod(h.node, _fh(h), mode)

    async def _chmod(self, node: int, fh: int | None, mode: int) -> None:
        await self._may_change(node, owner_only=True)
        kind = stat.S_IFMT((await self._attr(node)).st_mode)  # the kernel sends the type bits too
        await self._setattr(node, fh, SetAttr(mode=kind | (mode & 0o7777)))

    async def chown(self, path: str, uid: int, gid: int) -> None:
        await self._chown(await self._node(path), None, uid, gid)

    async def fchown(self, h: Handle, uid: int, gid: int, path: str | None) -> None:
        await self._chown(h.node, _fh(h), uid, gid)

    async def _chown(self, node: int, fh: int | None, uid: int, gid: int) -> None:
        if self.default_permissions and self.uid != 0:  # the kernel's chown_ok and chgrp_ok
            st = await self._attr(node)
            owner = st.st_uid == self.uid
            if uid != -1 and not (owner and uid == st.st_uid) \
                    or gid != -1 and not (owner and (gid == st.st_gid or gid in self.groups)):
                raise OSError(errno.EPERM, "only root gives files away")
        # chown_common: a non-directory loses setuid (and setgid with group exec), even root's
        mode = await self._killed_mode(node, always=True)
        await self._setattr(node, fh, SetAttr(mode=mode, uid=None if uid == -1 else uid,
                                              gid=None if gid == -1 else gid))

    async def _killed_mode(self, node: int, always: bool = False) -> int | None:
        """The mode without setuid and setgid (with group exec) when the kernel would drop them, which
        for FUSE it does by a mode change in the SETATTR (the daemon is not told to handle killpriv):
        at chown of a non-directory (``always``), and at write and truncate of a regular file by a
        caller without CAP_FSETID.  None: nothing to drop."""
        if not always and self.uid == 0:
            return None
        st = await self._attr(node)
        mode = st.st_mode
        if stat.S_ISDIR(mode) or not always and not stat.S_ISREG(mode):
            return None
        gx = mode & (stat.S_ISGID | stat.S_IXGRP) == stat.S_ISGID | stat.S_IXGRP
        if not mode & stat.S_ISUID and not gx:
            return None
        # Measured against the kernel's FUSE (pyfuse3's tmpfs.py keeps what it is sent): the mode it
        # sends drops the sticky bit too (07777 becomes 0777, 07666 02666; ext4 keeps it: 01777).
        return mode & ~(stat.S_ISUID | stat.S_ISVTX | (stat.S_ISGID if gx else 0))

    async def truncate(self, path: str, length: int) -> None:
        node = await self._node(path)
        await self._may(node, MAY_WRITE)
        await self._setattr(node, None, SetAttr(size=length, mode=await self._killed_mode(node)))

    async def utime(self, path: str, times_ns: tuple[int, int] | None) -> None:
        await self._utime(await self._node(path), None, times_ns)

    async def futime(self, h: Handle, times_ns: tuple[int, int] | None, path: str | None) -> None:
        await self._utime(h.node, _fh(h), times_ns)

    async def _utime(self, node: int, fh: int | None, times_ns: tuple[int, int] | None) -> None:
        a, m = ("now", "now") if times_ns is None else times_ns
        await self._may_change(node, owner_only=times_ns is not None)  # "now": who may write it, too
        await self._setattr(node, fh, SetAttr(atime=a, mtime=m))

    # -- extended attributes --------------------------------------------------------------------
    async def _xattr(self, op: str, node: int, *args: Any) -> Any:
        if op != "listxattr" and xattr_mode_decides(args[0]):
            await self._may(node, MAY_READ if op == "getxattr" else MAY_WRITE)  # the core checked the rest
        try:
            return await self._call(op, node, *args)
        except OSError as e:
            if e.errno == errno.ENOSYS:  # the kernel: no xattrs here
                raise OSError(errno.EOPNOTSUPP, "no xattrs") from None
            raise

    async def getxattr(self, path: str, name: str) -> bytes:
        return await self._xattr("getxattr", await self._node(path), name)

    async def listxattr(self, path: str) -> list[str]:
        return await self._xattr("listxattr", await self._node(path))

    async def setxattr(self, path: str, name: str, value: bytes, flags: int) -> None:
        await self._xattr("setxattr", await self._node(path), name, value, flags)

    async def removexattr(self, path: str, name: str) -> None:
        await self._xattr("removexattr", await self._node(path), name)

    async def fgetxattr(self, h: Handle, name: str, path: str | None) -> bytes:
        return await self._xattr("getxattr", h.node, name)

    async def flistxattr(self, h: Handle, path: str | None) -> list[str]:
        return await self._xattr("listxattr", h.node)

    async def fsetxattr(self, h: Handle, name: str, value: bytes, flags: int, path: str | None) -> None:
        await self._xattr("setxattr", h.node, name, value, flags)

    async def fremovexattr(self, h: Handle, name: str, path: str | None) -> None:
        await self._xattr("removexattr", h.node, name)
