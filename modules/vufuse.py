"""vufuse: a pyfuse3 file system served inside the hypervisor, no daemon, no /dev/fuse.

    vumount -t vufuse -o fs=MODULE:CLASS[,ro] SOURCE TARGET

MODULE is an importable module name or the path of a .py file; CLASS is a
``pyfuse3.Operations`` subclass, used unchanged.  It is built with SOURCE as
its one argument if its constructor takes one (passthroughfs.py's source
directory), with none otherwise (SOURCE is then only shown by findmnt).

The methods are awaited in one trio thread, as pyfuse3.main would; each
request crosses to it and back (two thread switches), where a daemon costs
a write(2) stop and two socket copies.  The node-id bookkeeping is
umvu.inodefs's, shared with the fuse module.
"""

from __future__ import annotations

import concurrent.futures
import errno
import importlib
import importlib.util
import inspect
import os
import sys
import threading
import time
from typing import Any

from umvu.api import (
    DirItem,
    Entry,
    FileSystem,
    InodeFS,
    NodeOps,
    Opened,
    SetAttr,
    StatFs,
    Wait,
    current,
    hookimpl,
    make_stat,
)

FUSE_SUPER_MAGIC = 0x65735546
READDIR_BATCH = 1024  # entries per readdir call, as a page of replies


class _Ctx:
    """What pyfuse3's RequestContext holds (its own cannot be built outside a session)."""

    __slots__ = ("uid", "gid", "pid", "umask")

    def __init__(self) -> None:
        who = current()  # the caller's (creds.py)
        self.uid, self.gid, self.pid, self.umask = who.uid, who.gid, 0, 0o022


class _Fields:
    """What pyfuse3's SetattrFields holds."""

    def __init__(self, change: SetAttr) -> None:
        self.update_atime = change.atime is not None
        self.update_mtime = change.mtime is not None
        self.update_ctime = False
        self.update_mode = change.mode is not None
        self.update_uid = change.uid is not None
        self.update_gid = change.gid is not None
        self.update_size = change.size is not None


class _Token:
    """Collects readdir_reply's entries (pyfuse3's token writes into a kernel buffer)."""

    def __init__(self) -> None:
        self.items: list[tuple[bytes, Any, int]] = []


def _readdir_reply(token: _Token, name: bytes, attr: Any, next_id: int) -> bool:
    """As pyfuse3's: False means "not taken" (the file system counts a lookup only on True)."""
    if len(token.items) >= READDIR_BATCH:
        return False
    token.items.append((name, attr, next_id))
    return True


class Trio:
    """One thread running trio, where the Operations' coroutines are awaited."""

    def __init__(self) -> None:
        import trio

        self.trio = trio
        ready = threading.Event()
        self.token: Any = None
        self.nursery: Any = None

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                self.token = trio.lowlevel.current_trio_token()
                ready.set()
                await trio.sleep_forever()

        threading.Thread(target=trio.run, args=(main,), name="umvu-vufuse", daemon=True).start()
        ready.wait()

    def submit(self, fn: Any, *args: Any) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()

        async def job() -> None:
            try:
                fut.set_result(await fn(*args))
            except BaseException as e:  # noqa: BLE001 - handed to the waiting caller, as an errno
                fut.set_result(_as_oserror(e))

        self.token.run_sync_soon(self.nursery.start_soon, job)
        return fut


def _as_oserror(e: BaseException) -> OSError:
    err = getattr(e, "errno", None)
    if isinstance(err, int) and err > 0:
        return OSError(err, os.strerror(err))
    return OSError(errno.EIO, f"the file system raised {e!r}")


def _stat(a: Any) -> os.stat_result:
    return make_stat(a.st_ino, a.st_mode, a.st_nlink, a.st_uid, a.st_gid, a.st_rdev, a.st_size, a.st_blocks,
                     a.st_blksize, a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns)


def _entry(a: Any) -> Entry:
    return Entry(a.st_ino, _stat(a), a.entry_timeout, a.attr_timeout)


def _opened(fi: Any) -> Opened:
    if isinstance(fi, int):
        return Opened(fi, 0)
    return Opened(fi.fh, 1 if fi.direct_io else 0)


class PyFuse3Ops(NodeOps):
    """NodeOps over a pyfuse3.Operations object (its names and arguments, bytes for names)."""

    atomic_o_trunc = True  # as libfuse3 negotiates with the kernel: open sees O_TRUNC, no setattr follows

    def __init__(self, ops: Any, runner: Trio, log: Any) -> None:
        self.ops = ops
        self.runner = runner
        self.log = log
        self.no_flush = False  # flush answered ENOSYS: not asked again, as the kernel
        self.flushing: dict[tuple[int, int], concurrent.futures.Future] = {}  # (node, fh) -> close's flush

    @property
    def ctx(self) -> _Ctx:
        """The request context of the call being served: whose it is."""
        return _Ctx()

    async def _run(self, name: str, *args: Any, interruptible: bool = True,
                   job: concurrent.futures.Future | None = None) -> Any:
        """Run ``ops.name(*args)`` in the trio thread and wait for it (``job``: already submitted)."""
        try:
            return await Wait(job or self.runner.submit(getattr(self.ops, name), *args), interruptible)
        except OSError as e:
            if e.errno == errno.EIO and "raised" in str(e):  # a bug in the file system: say so
                self.log(f"{type(self.ops).__name__}.{name}: {e.strerror}")
            raise

    async def lookup(self, parent: int, name: str) -> Entry:
        return _entry(await self._run("lookup", parent, os.fsencode(name), self.ctx))

    def forget(self, nodes: list[tuple[int, int]]) -> None:
        self.runner.submit(self.ops.forget, nodes)

    async def getattr(self, node: int, fh: int | None) -> tuple[os.stat_result, float]:
        a = await self._run("getattr", node, self.ctx)
        return _stat(a), a.attr_timeout

    async def setattr(self, node: int, fh: int | None, change: SetAttr) -> tuple[os.stat_result, float]:
        import pyfuse3

        attr = pyfuse3.EntryAttributes()
        now = time.time_ns()
        for field, value in (("st_mode", change.mode), ("st_uid", change.uid), ("st_gid", change.gid),
                             ("st_size", change.size)):
            if value is not None:
                setattr(attr, field, value)
        if change.atime is not None:
            attr.st_atime_ns = now if change.atime == "now" else change.atime
        if change.mtime is not None:
            attr.st_mtime_ns = now if change.mtime == "now" else change.mtime
        a = await self._run("setattr", node, attr, _Fields(change), fh, self.ctx)
        return _stat(a), a.attr_timeout

    async def readlink(self, node: int) -> str:
        return os.fsdecode(await self._run("readlink", node, self.ctx))

    async def symlink(self, parent: int, name: str, target: str) -> Entry:
        return _entry(await self._run("symlink", parent, os.fsencode(name), os.fsencode(target), self.ctx))

    async def mknod(self, parent: int, name: str, mode: int, rdev: int) -> Entry:
        return _entry(await self._run("mknod", parent, os.fsencode(name), mode, rdev, self.ctx))

    async def mkdir(self, parent: int, name: str, mode: int) -> Entry:
        # pyfuse3 adds the type bits the kernel leaves out
        return _entry(await self._run("mkdir", parent, os.fsencode(name), (mode & 0o7777) | 0o040000, self.ctx))

    async def unlink(self, parent: int, name: str) -> None:
        await self._run("unlink", parent, os.fsencode(name), self.ctx)

    async def rmdir(self, parent: int, name: str) -> None:
        await self._run("rmdir", parent, os.fsencode(name), self.ctx)

    async def rename(self, parent: int, name: str, newparent: int, newname: str, flags: int) -> None:
        await self._run("rename", parent, os.fsencode(name), newparent, os.fsencode(newname), flags, self.ctx)

    async def link(self, node: int, newparent: int, newname: str) -> Entry:
        return _entry(await self._run("link", node, newparent, os.fsencode(newname), self.ctx))

    async def open(self, node: int, flags: int) -> Opened:
        return _opened(await self._run("open", node, flags, self.ctx))

    async def opendir(self, node: int, flags: int) -> Opened:
        return _opened(await self._run("opendir", node, self.ctx))

    async def create(self, parent: int, name: str, flags: int, mode: int) -> tuple[Entry, Opened]:
        fi, attr = await self._run("create", parent, os.fsencode(name), mode, flags, self.ctx)
        return _entry(attr), _opened(fi)

    async def read(self, node: int, fh: int, offset: int, size: int, direct: bool) -> bytes:
        return await self._run("read", fh, offset, size)

    async def write(self, node: int, fh: int, offset: int, data: bytes) -> int:
        return await self._run("write", fh, offset, data)

    async def statfs(self, node: int) -> StatFs:
        s = await self._run("statfs", self.ctx)
        return StatFs(FUSE_SUPER_MAGIC, s.f_bsize, s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree,
                      (0, 0), s.f_namemax or 255, s.f_frsize or s.f_bsize, 0)

    async def flush(self, node: int, fh: int) -> None:
        if not self.no_flush:
            try:
                job = self.runner.submit(self.ops.flush, fh)
                key = (node, fh)
                self.flushing[key] = job  # a release meanwhile (the process exited) waits for it
                job.add_done_callback(lambda f: self.flushing.get(key) is f and self.flushing.pop(key))
                await self._run("flush", interruptible=False, job=job)  # close(2) closes whatever comes
            except OSError as e:
                if e.errno != errno.ENOSYS:
                    raise
                self.no_flush = True

    def release(self, node: int, fh: int, flags: int | None, flush: bool) -> None:
        async def close() -> None:  # in order, as pyfuse3 gets them from the kernel
            try:
                if flush and not self.no_flush:
                    await self.ops.flush(fh)
            finally:
                if flags is not None:
                    await self.ops.release(fh)

        inflight = self.flushing.get((node, fh))
        if inflight is not None and not inflight.done():  # a close(2)'s flush: release after it
            inflight.add_done_callback(lambda _f: self.runner.submit(close))
        else:
            self.runner.submit(close)

    def releasedir(self, node: int, fh: int, flags: int) -> None:
        self.runner.submit(self.ops.releasedir, fh)

    async def fsync(self, node: int, fh: int, datasync: bool) -> None:
        await self._run("fsync", fh, datasync)

    async def fsyncdir(self, node: int, fh: int, datasync: bool) -> None:
        await self._run("fsyncdir", fh, datasync)

    async def readdir(self, node: int, fh: int, offset: int) -> list[DirItem]:
        token = _Token()
        await self._run("readdir", fh, offset, token)
        items = []
        for name, a, next_id in token.items:
            items.append(DirItem(os.fsdecode(name), a.st_ino, (a.st_mode >> 12) & 0xF, next_id, _entry(a)))
        return items

    async def access(self, node: int, mask: int) -> None:
        if not await self._run("access", node, mask, self.ctx):
            raise OSError(errno.EACCES, "permission denied")

    async def getxattr(self, node: int, name: str) -> bytes:
        return await self._run("getxattr", node, os.fsencode(name), self.ctx)

    async def listxattr(self, node: int) -> list[str]:
        return [os.fsdecode(n) for n in await self._run("listxattr", node, self.ctx)]

    async def setxattr(self, node: int, name: str, value: bytes, flags: int) -> None:
        await self._run("setxattr", node, os.fsencode(name), value, self.ctx)

    async def removexattr(self, node: int, name: str) -> None:
        await self._run("removexattr", node, os.fsencode(name), self.ctx)

    async def lseek(self, node: int, fh: int, offset: int, whence: int) -> int:
        raise OSError(errno.ENOSYS, "pyfuse3 has no lseek")

    async def fallocate(self, node: int, fh: int, mode: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSYS, "pyfuse3 has no fallocate")


class VufuseFS(InodeFS):
    fstype = "vufuse"

    def __init__(self, ops: PyFuse3Ops) -> None:
        super().__init__(ops)


_runner: Trio | None = None
_loaded: dict[str, Any] = {}


def _load_class(spec: str) -> Any:
    modname, sep, clsname = spec.rpartition(":")
    if not sep or not modname or not clsname:
        raise OSError(errno.EINVAL, f"fs={spec}: want fs=MODULE:CLASS")
    import pyfuse3

    pyfuse3.readdir_reply = _readdir_reply  # the one pyfuse3 call that needs a kernel buffer
    try:
        if modname.endswith(".py") or "/" in modname:
            path = os.path.abspath(modname)
            if not os.path.isfile(path):
                raise OSError(errno.ENOENT, f"fs={spec}: {modname}: no such file")
            mod = _loaded.get(path)
            if mod is None:
                name = "vufuse_" + os.path.splitext(os.path.basename(path))[0]
                loader = importlib.util.spec_from_file_location(name, path)
                if loader is None or loader.loader is None:
                    raise OSError(errno.ENOENT, f"{modname}: not a Python file")
                mod = importlib.util.module_from_spec(loader)
                sys.modules[name] = mod
                loader.loader.exec_module(mod)
                _loaded[path] = mod
        else:
            mod = importlib.import_module(modname)
    except OSError:
        raise
    except Exception as e:
        raise OSError(errno.EINVAL, f"fs={spec}: cannot load {modname}: {type(e).__name__}: {e}") from None
    cls = getattr(mod, clsname, None)
    if not isinstance(cls, type) or not issubclass(cls, pyfuse3.Operations):
        raise OSError(errno.EINVAL, f"fs={spec}: {clsname} is not a pyfuse3.Operations class in {modname}")
    return cls


def _build(cls: Any, source: str) -> Any:
    params = [p for p in inspect.signature(cls).parameters.values()
              if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) > 1:
        raise OSError(errno.EINVAL, f"{cls.__name__}() needs {len(params)} arguments; vufuse passes SOURCE only")
    return cls(source) if params else cls()


@hookimpl
def vu_module_describe() -> str:
    return "pyfuse3 file systems served in-process: vumount -t vufuse -o fs=MODULE:CLASS SOURCE TARGET"


@hookimpl
def vu_filesystems() -> list[str]:
    return ["vufuse"]


@hookimpl
def vu_mount(vu: Any, fstype: str, source: str, target: str, options: str) -> FileSystem | None:
    global _runner
    if fstype != "vufuse":
        return None
    opts = dict(o.partition("=")[::2] for o in options.split(",") if o)
    spec = opts.pop("fs", "")  # ro, noexec... are the core's: they never reach here
    checks = opts.pop("default_permissions", None) is not None  # as pyfuse3.default_options has it
    if not spec:
        raise OSError(errno.EINVAL, "vufuse needs -o fs=MODULE:CLASS")
    if opts:
        raise OSError(errno.EINVAL, f"unknown vufuse option: {sorted(opts)[0]}")
    cls = _load_class(spec)
    if _runner is None:
        _runner = Trio()

    async def build() -> Any:  # in the trio thread, where its methods will run (sqlite cares)
        ops = _build(cls, source)
        ops.init()
        return ops

    ops = _runner.submit(build).result(timeout=30)
    if isinstance(ops, OSError):
        if ops.errno == errno.EIO:
            raise OSError(errno.EINVAL, f"{cls.__name__}: {ops.strerror}")
        raise ops
    fs = VufuseFS(PyFuse3Ops(ops, _runner, vu.log))
    fs.default_permissions = checks
    return fs
