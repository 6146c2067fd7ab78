"""fuse: a virtual /dev/fuse, so unmodified FUSE daemons mount inside umvu.

The hypervisor plays the kernel's side of the FUSE protocol
(linux/fuse.h).  Opening /dev/fuse gives the daemon a real SOCK_SEQPACKET
socket connected to the hypervisor: one request per message, so the
daemon's read(2), blocking in any number of threads, runs natively.  Its
write(2) of a reply stops (a per-fd filter layer) and is taken straight from
its memory: a malformed reply gets EINVAL there, as from the kernel, and the
request it garbled fails with EIO.

mount(2) of type ``fuse`` or ``fuse.NAME`` with libfuse's options
(``fd=N,rootmode=M,user_id=U,group_id=G``) mounts the daemon's connection;
libfuse then never needs fusermount.  Unmounting sends DESTROY and, once
answered, makes the daemon's reads fail with ENODEV, so its loop ends as
under the kernel.  A daemon that dies leaves its mount answering ENOTCONN.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
import struct
import threading
from collections.abc import Iterable
from typing import Any

from umvu.api import (
    Connect,
    Device,
    DirItem,
    Entry,
    FileSystem,
    InodeFS,
    NodeOps,
    Opened,
    Promise,
    SetAttr,
    StatFs,
    Wait,
    current,
    hookimpl,
    make_stat,
)
from umvu.inodefs import FUSE_NAME_MAX

# opcodes (enum fuse_opcode)
LOOKUP, FORGET, GETATTR, SETATTR, READLINK, SYMLINK = 1, 2, 3, 4, 5, 6
MKNOD, MKDIR, UNLINK, RMDIR, RENAME, LINK, OPEN, READ, WRITE, STATFS, RELEASE = 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18
FSYNC, SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR, FLUSH, INIT = 20, 21, 22, 23, 24, 25, 26
OPENDIR, READDIR, RELEASEDIR, FSYNCDIR, ACCESS, CREATE, INTERRUPT, DESTROY = 27, 28, 29, 30, 34, 35, 36, 38
BATCH_FORGET, FALLOCATE, READDIRPLUS, RENAME2, LSEEK = 42, 43, 44, 45, 46
POLL = 40
POLL_SCHEDULE_NOTIFY = 1  # FUSE_POLL_SCHEDULE_NOTIFY: the daemon keeps kh and sends NOTIFY_POLL
POLL_IN = struct.Struct("<QQII")  # fh, kh, flags, events
POLL_ASKED = select.POLLIN | select.POLLOUT | select.POLLPRI
NOTIFY_REPLY = 41
# Notifications a daemon writes (unique 0, the code in the error field)
NOTIFY_POLL, NOTIFY_INVAL_INODE, NOTIFY_INVAL_ENTRY, NOTIFY_STORE, NOTIFY_RETRIEVE, NOTIFY_DELETE = 1, 2, 3, 4, 5, 6

# Sent with uid, gid and pid 0, as the kernel's (their args are "nocreds", or built bare): no one's call
NOCREDS = frozenset({INIT, FORGET, BATCH_FORGET, RELEASE, RELEASEDIR, INTERRUPT, DESTROY})

KERNEL_MAJOR, KERNEL_MINOR = 7, 31
# INIT flags offered: what this side implements
ASYNC_READ, ATOMIC_O_TRUNC, BIG_WRITES, DO_READDIRPLUS, READDIRPLUS_AUTO = 1 << 0, 1 << 3, 1 << 5, 1 << 13, 1 << 14
PARALLEL_DIROPS, MAX_PAGES, NO_OPEN_SUPPORT, NO_OPENDIR_SUPPORT = 1 << 18, 1 << 22, 1 << 17, 1 << 24
OFFERED = ASYNC_READ | ATOMIC_O_TRUNC | BIG_WRITES | DO_READDIRPLUS | READDIRPLUS_AUTO | PARALLEL_DIROPS | MAX_PAGES \
    | NO_OPEN_SUPPORT | NO_OPENDIR_SUPPORT
CHUNK = 128 * 1024  # READ for old daemons, and the kernel's default largest request (32 pages)
MAX_IO = 1 << 20  # largest READ or WRITE when the daemon negotiated MAX_PAGES (the kernel's 256 pages)
READ_WINDOW = 8  # READ requests sent together for one large read (the kernel's readahead, ASYNC_READ)
WRITE_IN = 40  # struct fuse_write_in, between the header and a WRITE's data
FATTR = {"mode": 1, "uid": 2, "gid": 4, "size": 8, "atime": 16, "mtime": 32, "fh": 64,
         "atime_now": 128, "mtime_now": 256}

IN_HEADER = struct.Struct("<IIQQIIIHH")
OUT_HEADER = struct.Struct("<IiQ")
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
ENTRY_OUT = struct.Struct("<QQQQII")
ATTR_OUT = struct.Struct("<QII")
OPEN_OUT = struct.Struct("<QII")
DIRENT = struct.Struct("<QQII")
KSTATFS = struct.Struct("<QQQQQIII")
FUSE_SUPER_MAGIC = 0x65735546
DEV_FUSE = os.makedev(10, 229)


def _ttl(sec: int, nsec: int) -> float:
    return sec + nsec / 1e9


def _s64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _attr(buf: bytes, at: int) -> os.stat_result:
    """fuse_attr as the kernel reads it: times in u64 seconds go to a signed time64_t, the size to a
    signed loff_t."""
    (ino, size, blocks, atime, mtime, ctime, atimens, mtimens, ctimens, mode, nlink, uid, gid, rdev,
     blksize, _flags) = ATTR.unpack_from(buf, at)
    return make_stat(ino, mode, nlink, uid, gid, rdev, _s64(size), blocks, blksize,
                     _s64(atime) * 10**9 + atimens, _s64(mtime) * 10**9 + mtimens, _s64(ctime) * 10**9 + ctimens)


def _entry(buf: bytes, at: int = 0) -> Entry:
    node, _gen, ev, av, evn, avn = ENTRY_OUT.unpack_from(buf, at)
    return Entry(node, _attr(buf, at + ENTRY_OUT.size) if node else None, _ttl(ev, evn), _ttl(av, avn))


Body = bytes | tuple[bytes | memoryview, ...]  # a request's body, whole or in parts
Held = tuple[int, int | None]  # (node, fh): the node a request works on, and the open file (if any)


def _name(s: str) -> bytes:
    return os.fsencode(s) + b"\0"


class _Polled:
    """What Connection.poll knows of one open file."""

    __slots__ = ("wake", "shown", "in_flight", "again", "woken")

    def __init__(self, wake: Any) -> None:
        self.wake = wake
        self.shown: int | None = None  # what was said last
        self.in_flight = False  # a POLL is waiting for its answer
        self.again = False  # ask once more when it comes: a call on the file came since
        self.woken = False  # an answer changed what to say: the next question takes it


class Connection(NodeOps):
    """One /dev/fuse connection: the requests in flight and their replies."""

    def __init__(self, sock: socket.socket, inode: int, tracer: Any, log: Any) -> None:
        self.sock = sock
        self.inode = inode
        self.tracer = tracer
        self.log = log
        self.unique = 0
        self.pending: dict[int, tuple[int, Promise, Held]] = {}  # unique -> (opcode, reply, what it works on)
        self.dead = False
        self.ready = False  # INIT was answered and the daemon is there: requests go out at once
        self.mounted = False
        self.init: Promise | None = None
        self.minor = 0
        self.flags = 0
        self.max_write = 4096
        self.max_read = CHUNK
        self.nosys: set[str] = set()
        self.abandoned: set[int] = set()  # requests whose caller a signal took away
        self.interrupted: set[int] = set()  # requests an INTERRUPT was sent for
        self.mount: FuseMount | None = None  # what notifications act on
        self.no_poll: bool | None = None  # POLL answered ENOSYS (the kernel's fc->no_poll); None: not known yet
        self.kh = 0  # the last poll handle given out (the kernel's ff->kh)
        self.polled: dict[int, _Polled] = {}  # kh -> what poll knows of that open file
        try:  # the largest request (a WRITE) must fit: ask for the most an ordinary user gets
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        except OSError:
            pass
        self._watch = threading.Thread(target=self._watcher, name=f"umvu-fuse-{inode}", daemon=True)
        self._watch.start()

    # -- requests ----------------------------------------------------------------------------
    def send(self, opcode: int, node: int, body: Body = b"", reply: bool = True,
             unique: int | None = None, fh: int | None = None) -> Promise | None:
        """Queue one request; a WRITE's body is (its header, a view of the caller's data): not copied here.

        ``fh`` names the open file the request works on: its RELEASE waits
        for the answer (see release).
        """
        if self.dead:
            raise OSError(errno.ENOTCONN, "the FUSE daemon is gone")
        if unique is None:
            self.unique += 2  # odd uniques are INTERRUPTs, as the kernel numbers them
            unique = self.unique
        parts = body if isinstance(body, tuple) else (body,)
        caller = self.tracer.current  # the thread whose call this is, as the kernel's (0: none)
        if opcode in NOCREDS:
            uid = gid = pid = 0
        else:
            who = current()  # the caller's fsuid and fsgid, as the kernel's requests carry
            uid, gid, pid = who.uid, who.gid, caller.tid if caller is not None else 0
        msg = [IN_HEADER.pack(IN_HEADER.size + sum(len(p) for p in parts), opcode, unique, node, uid, gid, pid, 0, 0),
               *parts]
        fut: Promise | None = None
        if reply:
            fut = Promise()
            self.pending[unique] = (opcode, fut, (node, fh))
        try:
            self.sock.sendmsg(msg, (), socket.MSG_DONTWAIT)
        except BlockingIOError:  # the daemon is behind: a thread waits for room
            threading.Thread(target=self._send_blocking, args=(msg, unique), daemon=True).start()
        except OSError as e:
            self.pending.pop(unique, None)
            self._gone()
            raise OSError(errno.ENOTCONN, "the FUSE daemon is gone") from e
        return fut

    def _send_blocking(self, msg: list[Any], unique: int) -> None:
        try:
            self.sock.sendmsg(msg)
        except OSError:
            self.tracer.call_soon(self._gone)

    async def request(self, opcode: int, node: int, body: Body = b"", fh: int | None = None) -> bytes:
        """One request and its answer: requests() for one, without its lists (every LOOKUP is one)."""
        fut = self.send(opcode, node, body, fh=fh)
        unique = self.unique

        def on_signal(fatal: bool) -> bool:
            self._interrupt((unique,))
            return False

        try:
            return await Wait(fut, on_signal=on_signal)  # type: ignore[arg-type]
        except GeneratorExit:  # the caller is gone (killed) or was woken: the answer is not awaited
            if unique in self.pending:
                self.abandoned.add(unique)
            self._interrupt((unique,))
            raise

    async def requests(self, batch: list[tuple[int, int, Body]], stop_short: int = 0,
                       killable: bool = False, fh: int | None = None) -> list[bytes]:
        """Send every request of ``batch`` at once, then take the replies in order.

        The daemon works on them together (libfuse's threads, or just its
        next read), which hides the round trip to the hypervisor: a large
        read or write is several READ or WRITE requests.  With
        ``stop_short``, replies after one shorter than that are not waited
        for (the end of the file).

        Signals, as the kernel's request_wait_answer: a caught or fatal one
        sends INTERRUPT and the caller goes on waiting for the answer (the
        daemon may answer EINTR).  ``killable`` requests (reads the kernel
        makes through its page cache) ignore caught signals and end at once
        on a fatal one.
        """
        sent = []
        for opcode, node, body in batch:
            sent.append((self.send(opcode, node, body, fh=fh), self.unique))

        def on_signal(fatal: bool) -> bool:
            if killable:
                return fatal
            self._interrupt(unique for _fut, unique in sent)
            return False

        out: list[bytes] = []
        try:
            for fut, _unique in sent:
                data = await Wait(fut, on_signal=on_signal)
                out.append(data)
                if stop_short and len(data) < stop_short:
                    break
        except GeneratorExit:  # the caller is gone (killed) or was woken: the answers are not awaited
            self.abandoned.update(u for _fut, u in sent if u in self.pending)
            self._interrupt(unique for _fut, unique in sent)
            raise
        return out

    def _interrupt(self, uniques: Iterable[int]) -> None:
        """INTERRUPT each request still unanswered, once."""
        for unique in uniques:
            if self.dead or unique not in self.pending or unique in self.interrupted:
                continue
            self.interrupted.add(unique)
            try:
                self.send(INTERRUPT, 0, struct.pack("<Q", unique), reply=False, unique=unique | 1)
            except OSError:
                pass

    # -- replies -----------------------------------------------------------------------------
    def reply(self, data: bytes) -> int:
        """The daemon wrote ``data`` to its /dev/fuse: write(2)'s result, as the kernel's."""
        if self.dead:
            return -errno.ENOTCONN
        if len(data) < OUT_HEADER.size:
            self.log(f"a {len(data)}-byte reply is shorter than its header")
            self._garbled()
            return -errno.EINVAL
        length, error, unique = OUT_HEADER.unpack_from(data)
        if unique == 0:
            if length != len(data):
                return -errno.EINVAL
            try:
                self._notified(error, data[OUT_HEADER.size :])
            except OSError as e:
                return -e.errno
            except struct.error:
                return -errno.EINVAL
            return len(data)
        if unique & 1:  # the answer to an INTERRUPT
            return len(data)
        item = self.pending.pop(unique, None)
        self.interrupted.discard(unique)
        if item is None:  # the kernel's answer too: maybe a request already interrupted
            self.log(f"a reply for unknown request {unique}")
            self._garbled()
            return -errno.ENOENT
        opcode, fut, _held = item
        if unique in self.abandoned:
            self.abandoned.discard(unique)
            if not error and length == len(data):
                self._undo(opcode, data[OUT_HEADER.size :])
        if length != len(data) or error > 0 or error < -511 or (error and length != OUT_HEADER.size):
            self.log(f"malformed reply to request {unique} (opcode {opcode}): length {length} of {len(data)}, "
                     f"error {error}")
            fut.set_result(OSError(errno.EIO, "malformed reply from the FUSE daemon"))
            return -errno.EINVAL
        if error:
            fut.set_result(OSError(-error, os.strerror(-error)))
        else:
            fut.set_result(data[OUT_HEADER.size :])
        return len(data)

    def _notified(self, code: int, body: bytes) -> None:
        """A notification: it acts on umvu's caches as on the kernel's (fuse_notify).  umvu keeps no
        file data, so STORE only makes the size asked again, and RETRIEVE is answered with none."""
        fs = self.mount
        if code == NOTIFY_POLL:  # the file may be ready: its pollers ask again (fuse_notify_poll_wakeup)
            self._poll_notified(struct.unpack_from("<Q", body)[0])
            return
        if fs is None:
            raise OSError(errno.ENOENT, "nothing is mounted on this connection yet")
        if code == NOTIFY_INVAL_INODE:
            node, _off, _len = struct.unpack_from("<Qqq", body)
            fs.notify_inval_inode(node)
        elif code in (NOTIFY_INVAL_ENTRY, NOTIFY_DELETE):
            if code == NOTIFY_INVAL_ENTRY:
                parent, namelen, _flags = struct.unpack_from("<QII", body)
                child, at = 0, 16
            else:
                parent, child, namelen = struct.unpack_from("<QQI", body)
                at = 24
            name = body[at : at + namelen]
            if len(name) != namelen or namelen > FUSE_NAME_MAX:
                raise OSError(errno.ENAMETOOLONG if namelen > FUSE_NAME_MAX else errno.EINVAL, "bad name")
            fs.notify_inval_entry(parent, os.fsdecode(name), child)
        elif code == NOTIFY_STORE:
            node, _off, _size = struct.unpack_from("<QQI", body)
            fs.notify_inval_inode(node)  # its size may have grown
        elif code == NOTIFY_RETRIEVE:
            notify_unique, node, offset, _size = struct.unpack_from("<QQQI", body)
            fs.notify_inval_inode(node, check_only=True)
            self.send(NOTIFY_REPLY, node, struct.pack("<QQIIQQ", 0, offset, 0, 0, 0, 0), reply=False,
                      unique=notify_unique)
        else:
            raise OSError(errno.EINVAL, f"unknown notification {code}")

    def _undo(self, opcode: int, out: bytes) -> None:
        """A request whose caller a signal took away succeeded after all: what it made must not leak."""
        try:
            if opcode in (LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE):
                node = ENTRY_OUT.unpack_from(out)[0]
                if node:
                    if opcode == CREATE:  # RELEASE first: the FORGET waits for its answer
                        fh = OPEN_OUT.unpack_from(out, ENTRY_OUT.size + ATTR.size)[0]
                        self._post(RELEASE, node, struct.pack("<QIIQ", fh, 0, 0, 0))
                    self.forget([(node, 1)])
        except struct.error:
            pass

    def _garbled(self) -> None:
        """A reply that names no request: when only one is waiting, it was that one's, and it fails.

        (The kernel would leave it waiting until interrupted; a caller of a
        broken daemon gets EIO instead.)
        """
        if len(self.pending) == 1:
            _unique, (_op, fut, _held) = self.pending.popitem()
            fut.set_result(OSError(errno.EIO, "garbled reply from the FUSE daemon"))

    def _watcher(self) -> None:
        """Sees the daemon's end close (its last fd), and replies written on a dup'd fd."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN | select.POLLHUP | select.POLLRDHUP)
        while not self.dead:
            try:
                poller.poll()
                data = self.sock.recv(MAX_IO + 4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self.tracer.call_soon(self._gone)
                return
            self.tracer.call_soon(lambda d=data: self.reply(d))

    def hangup(self) -> None:
        """After an unmount: the daemon's end sees the hangup (a daemon waiting in poll wakes and
        reads ENODEV); the watcher wakes too and ends the connection."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            self._gone()

    def _gone(self) -> None:
        """The daemon closed its end or died: every request, now and later, gets ENOTCONN."""
        if self.dead:
            return
        self.dead = True
        self.ready = False
        for _op, fut, _held in self.pending.values():
            if not fut.done():
                fut.set_result(OSError(errno.ENOTCONN, "the FUSE daemon is gone"))
        self.pending.clear()
        if self.init is not None and not self.init.done():
            self.init.set_result(OSError(errno.ENOTCONN, "the FUSE daemon is gone"))
        try:  # shutdown first: the watcher's poll holds the socket, and the daemon must see the end
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    # -- INIT and DESTROY -------------------------------------------------------------------------
    def start(self) -> None:
        """Send INIT, as the kernel does once mount(2) succeeded; requests wait for its answer."""
        fut = self.send(INIT, 0, struct.pack("<IIII", KERNEL_MAJOR, KERNEL_MINOR, MAX_IO, OFFERED))
        self.init = Promise()
        assert fut is not None
        fut.add_done_callback(self._initialized)

    def _initialized(self, fut: Promise) -> None:
        res = fut.result()
        assert self.init is not None
        if isinstance(res, OSError) or len(res) < 8:
            self.log(f"INIT failed: {res!r}")
            self.init.set_result(res if isinstance(res, OSError) else OSError(errno.EPROTO, "short INIT reply"))
            self._gone()
            return
        major, minor = struct.unpack_from("<II", res)
        fields = struct.unpack_from("<IIHHIIHH", res + bytes(32), 8)
        _readahead, flags, _bg, _cong, max_write, _gran, max_pages, _align = fields
        if major != KERNEL_MAJOR:
            self.log(f"the daemon speaks FUSE {major}.{minor}, not {KERNEL_MAJOR}")
            self.init.set_result(OSError(errno.EPROTO, "protocol version"))
            self._gone()
            return
        self.minor = minor
        self.flags = flags & OFFERED
        self.atomic_o_trunc = bool(flags & ATOMIC_O_TRUNC)
        pages = max_pages if flags & MAX_PAGES and max_pages else CHUNK // 4096
        # A WRITE is one message: it must fit the socket's send buffer (net.core.wmem_max for an
        # ordinary user: 208 KB by default, which SO_SNDBUF doubles, so 412 KB there; up to 1 MB where it allows).
        room = (self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) - 32 - IN_HEADER.size - WRITE_IN) & ~4095
        limit = min(max_write or 4096, pages * 4096, MAX_IO, room) if flags & BIG_WRITES else 4096
        self.max_write = max(4096, limit)
        self.max_read = max(4096, min(self.max_read, pages * 4096, MAX_IO))
        self.ready = True
        self.init.set_result(None)
        self._probe_poll()

    def _probe_poll(self) -> None:
        """Ask once whether the daemon implements POLL: a POLL on the root, with no notification
        asked for, which a daemon without poll answers ENOSYS (libfuse answers before it looks at
        the node).  Until the answer, files are opened as a daemon without poll's: always ready
        and locked by the kernel (the kernel asks only when a process polls, which umvu cannot
        see: the open must choose its placeholder)."""
        try:
            fut = self.send(POLL, 1, POLL_IN.pack(0, 0, 0, POLL_ASKED))
        except OSError:
            return
        assert fut is not None

        def answered(f: Promise) -> None:
            res = f.result()
            self.no_poll = isinstance(res, OSError) and res.errno == errno.ENOSYS

        fut.add_done_callback(answered)

    def destroy(self, then: Any) -> None:
        """Send DESTROY; ``then()`` runs in the loop when it is answered (or cannot be)."""
        try:
            fut = self.send(DESTROY, 0)
        except OSError:
            then()
            return
        assert fut is not None
        fut.add_done_callback(lambda _f: self.tracer.call_soon(then))

    # -- the operations (NodeOps) -------------------------------------------------------------------
    async def lookup(self, parent: int, name: str) -> Entry:
        return _entry(await self.request(LOOKUP, parent, _name(name)))

    def forget(self, nodes: list[tuple[int, int]]) -> None:
        """FORGET (or BATCH_FORGET) the nodes, each once no request on it is unanswered.

        The kernel evicts an inode only when nothing uses it, and a RELEASE
        holds its inode until answered; here a file's last close sends
        RELEASE and drops the node at once.  A threaded libfuse daemon that
        served the FORGET first would look for a node it deleted, and abort
        ("fuse internal error: node N not found").
        """
        if self.dead:
            return
        busy = {held[0] for _op, fut, held in self.pending.values() if not fut.done()}
        if busy.intersection(n for n, _c in nodes):
            later = [(n, c) for n, c in nodes if n in busy]
            nodes = [(n, c) for n, c in nodes if n not in busy]
            waited = {n for n, _c in later}
            self._when_answered([fut for _op, fut, held in self.pending.values()
                                 if held[0] in waited and not fut.done()], lambda: self.forget(later))
            if not nodes:
                return
        try:
            if len(nodes) == 1 or self.minor < 16:
                for node, count in nodes:
                    self.send(FORGET, node, struct.pack("<Q", count), reply=False)
            else:
                for i in range(0, len(nodes), 256):  # 4 KB: fits any daemon's read buffer
                    part = nodes[i : i + 256]
                    body = struct.pack("<II", len(part), 0) + b"".join(struct.pack("<QQ", n, c) for n, c in part)
                    self.send(BATCH_FORGET, 0, body, reply=False)
        except OSError:
            pass

    async def getattr(self, node: int, fh: int | None) -> tuple[os.stat_result, float]:
        body = struct.pack("<IIQ", 1 if fh is not None else 0, 0, fh or 0)  # FUSE_GETATTR_FH
        out = await self.request(GETATTR, node, body, fh=fh)
        valid, nsec, _ = ATTR_OUT.unpack_from(out)
        return _attr(out, ATTR_OUT.size), _ttl(valid, nsec)

    async def setattr(self, node: int, fh: int | None, change: SetAttr) -> tuple[os.stat_result, float]:
        valid = 0
        times = {}
        for which in ("atime", "mtime"):
            v = getattr(change, which)
            if v == "now":
                valid |= FATTR[which] | FATTR[which + "_now"]
                times[which] = (0, 0)
            elif v is not None:
                valid |= FATTR[which]
                times[which] = divmod(v, 10**9)
            else:
                times[which] = (0, 0)
        for which in ("mode", "uid", "gid", "size"):
            if getattr(change, which) is not None:
                valid |= FATTR[which]
        if fh is not None:
            valid |= FATTR["fh"]
        body = struct.pack("<IIQQQQQQIIIIIIII", valid, 0, fh or 0, change.size or 0, 0,
                           times["atime"][0], times["mtime"][0], 0, times["atime"][1], times["mtime"][1], 0,
                           change.mode or 0, 0, change.uid or 0, change.gid or 0, 0)
        out = await self.request(SETATTR, node, body, fh=fh)
        v, nsec, _ = ATTR_OUT.unpack_from(out)
        return _attr(out, ATTR_OUT.size), _ttl(v, nsec)

    async def readlink(self, node: int) -> str:
        return os.fsdecode(await self.request(READLINK, node))

    async def symlink(self, parent: int, name: str, target: str) -> Entry:
        return _entry(await self.request(SYMLINK, parent, _name(name) + _name(target)))

    async def mknod(self, parent: int, name: str, mode: int, rdev: int) -> Entry:
        head = struct.pack("<IIII", mode, rdev, 0, 0) if self.minor >= 12 else struct.pack("<II", mode, rdev)
        return _entry(await self.request(MKNOD, parent, head + _name(name)))

    async def mkdir(self, parent: int, name: str, mode: int) -> Entry:
        return _entry(await self.request(MKDIR, parent, struct.pack("<II", mode, 0) + _name(name)))

    async def unlink(self, parent: int, name: str) -> None:
        await self.request(UNLINK, parent, _name(name))

    async def rmdir(self, parent: int, name: str) -> None:
        await self.request(RMDIR, parent, _name(name))

    async def rename(self, parent: int, name: str, newparent: int, newname: str, flags: int) -> None:
        if flags:
            await self.request(RENAME2, parent, struct.pack("<QII", newparent, flags, 0) + _name(name) + _name(newname))
        else:
            await self.request(RENAME, parent, struct.pack("<Q", newparent) + _name(name) + _name(newname))

    async def link(self, node: int, newparent: int, newname: str) -> Entry:
        return _entry(await self.request(LINK, newparent, struct.pack("<Q", node) + _name(newname)))

    async def _open(self, opcode: int, node: int, flags: int) -> Opened:
        out = await self.request(opcode, node, struct.pack("<II", flags, 0))
        return Opened(*OPEN_OUT.unpack_from(out)[:2])

    async def open(self, node: int, flags: int) -> Opened:
        return await self._open(OPEN, node, flags)

    async def opendir(self, node: int, flags: int) -> Opened:
        return await self._open(OPENDIR, node, flags)

    async def create(self, parent: int, name: str, flags: int, mode: int) -> tuple[Entry, Opened]:
        head = struct.pack("<IIII", flags, mode, 0, 0) if self.minor >= 12 else struct.pack("<II", flags, mode)
        out = await self.request(CREATE, parent, head + _name(name))
        e = _entry(out)
        fh, oflags, _ = OPEN_OUT.unpack_from(out, ENTRY_OUT.size + ATTR.size)
        return e, Opened(fh, oflags)

    def _io(self, fh: int, offset: int, size: int, flags: int = 0) -> bytes:
        if self.minor >= 9:
            return struct.pack("<QQIIQII", fh, offset, size, flags, 0, os.O_RDWR, 0)
        return struct.pack("<QQII", fh, offset, size, flags)

    async def read(self, node: int, fh: int, offset: int, size: int, direct: bool) -> bytes:
        chunks: list[bytes] = []
        while size > 0:
            batch = []
            for _ in range(READ_WINDOW):
                n = min(self.max_read, size)
                if n <= 0:
                    break
                batch.append((READ, node, self._io(fh, offset, n)))
                offset += n
                size -= n
            # Without direct_io the kernel reads through its page cache: a caught signal waits
            got = await self.requests(batch, stop_short=self.max_read, killable=not direct, fh=fh)
            if any(len(g) > self.max_read for g in got):  # the kernel: EIO to the reader
                raise OSError(errno.EIO, "the FUSE daemon answered a READ with more than was asked")
            chunks += got
            if len(got) < len(batch) or (got and len(got[-1]) < self.max_read):
                break  # the end of the file: the rest was not waited for
        return b"".join(chunks)

    async def write(self, node: int, fh: int, offset: int, data: bytes) -> int:
        """One WRITE at a time, in order, as the kernel sends them (no writeback cache).

        Sent together, they are served by different threads of the daemon
        in any order: fuse2fs then fragments the file and spends five times
        the CPU (measured), where the daemon's next read would otherwise
        find the next chunk already waiting.
        """
        view = memoryview(data)
        done = 0
        while done < len(data):
            chunk = view[done : done + self.max_write]
            out = await self.request(WRITE, node, (self._io(fh, offset + done, len(chunk)), chunk), fh=fh)
            wrote = struct.unpack_from("<I", out)[0]
            if wrote > len(chunk):
                raise OSError(errno.EIO, "the daemon wrote more than it was given")
            done += wrote
            if wrote < len(chunk):
                break
        return done

    async def statfs(self, node: int) -> StatFs:
        blocks, bfree, bavail, files, ffree, bsize, namelen, frsize = KSTATFS.unpack_from(
            await self.request(STATFS, node) + bytes(80))
        return StatFs(FUSE_SUPER_MAGIC, bsize, blocks, bfree, bavail, files, ffree, (0, 0), namelen,
                      frsize or bsize, 0)

    def _post(self, opcode: int, node: int, body: bytes) -> None:
        """A request whose answer nobody waits for (its reply is still checked and taken)."""
        if self.dead:
            return
        try:
            self.send(opcode, node, body)  # (pending, with its node: a FORGET waits for it)
        except OSError:
            pass

    def _flushed(self, fut: Promise) -> None:
        res = fut.result()
        if isinstance(res, OSError) and res.errno == errno.ENOSYS:
            self.nosys.add("flush")

    async def flush(self, node: int, fh: int) -> None:
        if "flush" in self.nosys:
            return
        fut = self.send(FLUSH, node, struct.pack("<QIIQ", fh, 0, 0, 0), fh=fh)
        assert fut is not None  # a RELEASE meanwhile (the process exited) waits for it: it holds fh
        try:  # close(2) closes the fd whatever comes: only a fatal signal ends this wait
            await Wait(fut, interruptible=False)
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise
            self.nosys.add("flush")

    def _after_requests(self, node: int, fh: int, then: Any) -> bool:
        """Call ``then`` once every request still unanswered on the open file (node, fh) is answered.

        The kernel's requests hold the open file (a killed caller stays in
        the kernel until the daemon answers what it already read): its
        RELEASE comes after them.  Here a killed caller is gone at once, and
        a RELEASE sent meanwhile would let the daemon free a handle that a
        WRITE it is still serving uses (fuse2fs then corrupts its image).
        """
        waiting = [fut for _op, fut, held in self.pending.values() if held == (node, fh) and not fut.done()]
        if not waiting:
            return False
        self._when_answered(waiting, then)
        return True

    @staticmethod
    def _when_answered(futures: list[Promise], then: Any) -> None:
        """Call ``then`` once every one of ``futures`` is done."""
        left = [len(futures)]

        def one(_f: Promise) -> None:
            left[0] -= 1
            if not left[0]:
                then()

        for fut in futures:
            fut.add_done_callback(one)

    def release(self, node: int, fh: int, flags: int | None, flush: bool) -> None:
        if self._after_requests(node, fh, lambda: self.release(node, fh, flags, flush)):
            return

        def then() -> None:
            if flags is not None:
                self._post(RELEASE, node, struct.pack("<QIIQ", fh, flags, 0, 0))

        if not flush or "flush" in self.nosys or self.dead:
            then()
            return
        try:
            fut = self.send(FLUSH, node, struct.pack("<QIIQ", fh, 0, 0, 0))
        except OSError:
            return
        assert fut is not None
        fut.add_done_callback(lambda f: (self._flushed(f), then()))

    # -- poll --------------------------------------------------------------------------------
    def poll(self, h: Any, wake: Any) -> int | None:
        """Readiness of open file ``h`` (inodefs.Handle), for the core's placeholder (umvu.readiness).

        The kernel's FUSE sends POLL when a process polls; umvu does not see polls, so it asks
        the daemon when a call was made on the file (which may have changed its readiness) and
        when the daemon's NOTIFY_POLL says it may have changed, and shows the answer when it
        comes.  Meanwhile the file shows as not ready: a poller waits for the daemon's answer
        rather than trust an old one.  A daemon that answers ENOSYS has no poll: its files are
        always ready, as the kernel's FUSE says then (DEFAULT_POLLMASK); so are the files opened
        before the daemon said whether it has one (_probe_poll).
        """
        if self.no_poll is not False or self.dead or h.is_dir:
            return None
        if not h.kh:
            self.kh += 1
            h.kh = self.kh
            self.polled[h.kh] = _Polled(wake)
        state = self.polled[h.kh]
        state.wake = wake
        if state.woken:  # the daemon's answer, which asked for this question: show it
            state.woken = False
        elif state.in_flight:
            state.again = True  # an answer to a question asked before this call: ask once more
            state.shown = 0
        else:
            self._ask_poll(h.node, h.fh, h.kh, state)
            state.shown = 0
        return state.shown if state.shown is not None else 0

    def _ask_poll(self, node: int, fh: int, kh: int, state: _Polled) -> None:
        try:
            fut = self.send(POLL, node, POLL_IN.pack(fh, kh, POLL_SCHEDULE_NOTIFY, POLL_ASKED), fh=fh)
        except OSError:
            return
        assert fut is not None
        state.in_flight = True
        fut.add_done_callback(lambda f: self._poll_answered(node, fh, kh, f))

    def _poll_answered(self, node: int, fh: int, kh: int, fut: Promise) -> None:
        state = self.polled.get(kh)
        if state is None:  # released meanwhile
            return
        state.in_flight = False
        if state.again:
            state.again = False
            self._ask_poll(node, fh, kh, state)
            return
        data = fut.result()
        if isinstance(data, OSError):
            if data.errno == errno.ENOSYS:
                self.no_poll = True
            mask = select.POLLIN | select.POLLOUT  # ready: the read or write says what is wrong
        else:
            mask = struct.unpack_from("<I", data)[0] & POLL_ASKED if len(data) >= 4 else 0
        if mask != state.shown:
            state.shown, state.woken = mask, True
            state.wake()

    def _poll_notified(self, kh: int) -> None:
        """NOTIFY_POLL: the file may be ready; ask the daemon again (as the woken pollers would)."""
        state = self.polled.get(kh)
        if state is not None:
            state.wake()

    def unpoll(self, kh: int) -> None:
        """The open file with poll handle ``kh`` was released."""
        self.polled.pop(kh, None)

    def releasedir(self, node: int, fh: int, flags: int) -> None:
        if self._after_requests(node, fh, lambda: self.releasedir(node, fh, flags)):
            return
        self._post(RELEASEDIR, node, struct.pack("<QIIQ", fh, flags, 0, 0))

    async def fsync(self, node: int, fh: int, datasync: bool) -> None:
        await self.request(FSYNC, node, struct.pack("<QII", fh, int(datasync), 0), fh=fh)

    async def fsyncdir(self, node: int, fh: int, datasync: bool) -> None:
        await self.request(FSYNCDIR, node, struct.pack("<QII", fh, int(datasync), 0), fh=fh)

    async def readdir(self, node: int, fh: int, offset: int) -> list[DirItem]:
        plus = bool(self.flags & DO_READDIRPLUS)
        out = await self.request(READDIRPLUS if plus else READDIR, node, self._io(fh, offset, 32768), fh=fh)
        items, at = [], 0
        while at < len(out):
            entry = None
            if plus:
                if at + ENTRY_OUT.size + ATTR.size > len(out):
                    break
                entry = _entry(out, at)
                at += ENTRY_OUT.size + ATTR.size
            if at + DIRENT.size > len(out):
                break
            ino, off, namelen, dtype = DIRENT.unpack_from(out, at)
            name = os.fsdecode(out[at + DIRENT.size : at + DIRENT.size + namelen])
            at += (DIRENT.size + namelen + 7) & ~7
            items.append(DirItem(name, ino, dtype, off, entry if entry is not None and entry.node else None))
        return items

    async def access(self, node: int, mask: int) -> None:
        await self.request(ACCESS, node, struct.pack("<II", mask, 0))

    async def getxattr(self, node: int, name: str) -> bytes:
        size = struct.unpack_from("<I", await self.request(GETXATTR, node, struct.pack("<II", 0, 0) + _name(name)))[0]
        if size == 0:
            return b""
        return await self.request(GETXATTR, node, struct.pack("<II", size, 0) + _name(name))

    async def listxattr(self, node: int) -> list[str]:
        size = struct.unpack_from("<I", await self.request(LISTXATTR, node, struct.pack("<II", 0, 0)))[0]
        if size == 0:
            return []
        out = await self.request(LISTXATTR, node, struct.pack("<II", size, 0))
        return [os.fsdecode(n) for n in out.split(b"\0") if n]

    async def setxattr(self, node: int, name: str, value: bytes, flags: int) -> None:
        await self.request(SETXATTR, node, struct.pack("<II", len(value), flags) + _name(name) + value)

    async def removexattr(self, node: int, name: str) -> None:
        await self.request(REMOVEXATTR, node, _name(name))

    async def lseek(self, node: int, fh: int, offset: int, whence: int) -> int:
        out = await self.request(LSEEK, node, struct.pack("<QqII", fh, offset, whence, 0), fh=fh)
        return struct.unpack_from("<q", out)[0]

    async def fallocate(self, node: int, fh: int, mode: int, offset: int, length: int) -> None:
        await self.request(FALLOCATE, node, struct.pack("<QQQII", fh, offset, length, mode, 0), fh=fh)


class FuseMount(InodeFS):
    """A mount served by a daemon over a /dev/fuse connection."""

    def __init__(self, conn: Connection, fstype: str, shown_options: str, revoke: Any) -> None:
        super().__init__(conn)
        self.conn = conn
        conn.mount = self
        self.fstype = fstype
        self.shown_options = shown_options
        self._revoke = revoke
        self.open_files = 0  # handles not closed yet: a lazily unmounted mount lives until they go
        self.detached = False
        self.ended = False
        self.allow_other = False
        self.owner = (os.geteuid(), os.getegid())  # user_id=, group_id=: the mounter's

    def caller_allowed(self) -> bool:
        if self.allow_other:
            return True
        who = current()  # fuse_allow_current_process: the ids (fs for effective, real) are the mounter's
        return (who.uid, who.gid) == self.owner and (who.ruid, who.rgid) == self.owner

    @property
    def ready(self) -> bool:  # type: ignore[override]
        return self.conn.ready

    async def _started(self) -> None:
        """Wait for INIT's answer: ENOTCONN if the daemon is gone, its errno if INIT failed."""
        conn = self.conn
        if conn.dead:
            raise OSError(errno.ENOTCONN, "the FUSE daemon is gone")
        if conn.init is not None and not conn.init.done():
            await Wait(conn.init)
        res = conn.init.result() if conn.init is not None else None
        if isinstance(res, OSError):
            raise OSError(errno.ENOTCONN if conn.dead else res.errno, "the FUSE daemon did not start")

    async def open(self, path: str, flags: int, mode: int) -> Any:
        self.open_files += 1  # counted while on its way: an unmount meanwhile must not end the connection
        try:
            return await super().open(path, flags, mode)
        except BaseException:
            self._closed()
            raise

    def close(self, h: Any) -> None:
        try:
            super().close(h)
        finally:
            self._closed()

    def _closed(self) -> None:
        self.open_files -= 1
        if self.detached and not self.open_files:
            self._end()

    def unmount(self) -> None:
        """Out of the tree now; the connection ends when the last open file is closed, as the
        kernel keeps a lazily unmounted file system until then (the daemon goes on serving it)."""
        self.conn.mounted = False
        self.detached = True
        if not self.open_files:
            self._end()

    def _end(self) -> None:
        """FORGET every node, then DESTROY: once no request is left unanswered.

        A close's FLUSH and RELEASE may still be on their way; a daemon's
        other thread would serve a FORGET sent now before them, and libfuse
        aborts on a request for a node it has forgotten ("node not found").
        The kernel forgets an inode only once its last RELEASE is answered.
        """
        conn = self.conn
        if self.ended or conn.dead:
            return
        waiting = next((fut for _op, fut, _held in conn.pending.values() if not fut.done()), None)
        if waiting is not None:  # its callbacks (a RELEASE after a FLUSH) run first: look again after them
            waiting.add_done_callback(lambda _f: conn.tracer.call_soon(self._end))
            return
        self.ended = True
        self.forget_all()
        conn.destroy(lambda: self._revoke(conn))


class FuseDevice(Device):
    """The driver of char device 10:229: each open hands out a connection."""

    def __init__(self, module: Module) -> None:
        self.module = module

    def open(self, rdev: int, flags: int) -> Connect:
        if flags & os.O_ACCMODE != os.O_RDWR:
            raise OSError(errno.EPERM if flags & os.O_ACCMODE == os.O_RDONLY else errno.EINVAL, "open /dev/fuse O_RDWR")
        return Connect(socket.SOCK_SEQPACKET, self.module.connected)


class Module:
    """The module's state: connections by the inode of the daemon's socket."""

    def __init__(self) -> None:
        self.vu: Any = None
        self.conns: dict[int, Connection] = {}

    def connected(self, sock: socket.socket, inode: int) -> Any:
        self.conns[inode] = Connection(sock, inode, self.vu.tracer, self.vu.log)
        return self.conns[inode].reply

    def revoke(self, conn: Connection) -> None:
        self.vu.tracer.revoke(conn.inode, then=conn.hangup)

    def mount(self, fstype: str, source: str, options: str) -> FuseMount:
        opts: dict[str, str] = {}
        shown: list[str] = []
        for o in filter(None, options.split(",")):
            key, _, value = o.partition("=")
            opts[key] = value
        for key in ("fd", "rootmode", "user_id", "group_id"):
            if key not in opts:
                raise OSError(errno.EINVAL, f"the {key}= option is missing (libfuse passes it)")
        try:
            fd, rootmode = int(opts["fd"]), int(opts["rootmode"], 8)
            uid, gid = int(opts["user_id"]), int(opts["group_id"])
            max_read = int(opts.get("max_read", MAX_IO))
        except ValueError:
            raise OSError(errno.EINVAL, "bad fuse mount option value") from None
        known = {"fd", "rootmode", "user_id", "group_id", "max_read", "default_permissions", "allow_other",
                 "blksize", "subtype", "fsname"}
        unknown = set(opts) - known
        if unknown:
            raise OSError(errno.EINVAL, f"unknown fuse option: {sorted(unknown)[0]}")
        if not (stat.S_ISDIR(rootmode) or stat.S_ISREG(rootmode)):
            raise OSError(errno.EINVAL, "rootmode must be a directory or a file")
        try:
            link = os.readlink(f"/proc/{self.vu.caller}/fd/{fd}")
        except OSError:
            raise OSError(errno.EINVAL, f"fd={fd} is not an open file") from None
        conn = self.conns.get(int(link[8:-1])) if link.startswith("socket:[") else None
        if conn is None:
            raise OSError(errno.EINVAL, f"fd={fd} is not a /dev/fuse file")
        if conn.mounted or conn.init is not None:
            raise OSError(errno.EINVAL, "this /dev/fuse file is already mounted")
        conn.mounted = True
        conn.max_read = min(max_read, MAX_IO) or CHUNK
        shown = [f"user_id={uid}", f"group_id={gid}"]
        shown += [k for k in ("default_permissions", "allow_other") if k in opts]
        if "max_read" in opts:
            shown.append(f"max_read={max_read}")
        conn.start()
        fs = FuseMount(conn, fstype, ",".join(shown), self.revoke)
        fs.default_permissions = "default_permissions" in opts
        fs.allow_other, fs.owner = "allow_other" in opts, (uid, gid)
        return fs


_module = Module()



@hookimpl
def vu_module_describe() -> str:
    return "a virtual /dev/fuse: unmodified FUSE daemons (libfuse 2 and 3) mount inside the view"


@hookimpl
def vu_module_load(vu: Any) -> None:
    _module.vu = vu
    vu.claim_device("c", os.major(DEV_FUSE), range(os.minor(DEV_FUSE), os.minor(DEV_FUSE) + 1), FuseDevice(_module))
    vu.device_node("/dev/fuse", "c", DEV_FUSE, 0o666)  # crw-rw-rw-, as udev makes it


@hookimpl
def vu_module_unload(vu: Any) -> None:
    for conn in list(_module.conns.values()):
        conn._gone()
    _module.conns.clear()


@hookimpl
def vu_filesystems() -> list[str]:
    return ["fuse", "fuse.*"]


@hookimpl
def vu_mount(vu: Any, fstype: str, source: str, target: str, options: str) -> FileSystem | None:
    if fstype != "fuse" and not fstype.startswith("fuse."):
        return None
    return _module.mount(fstype, source, options)
