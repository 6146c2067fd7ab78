"""vufs: host directories seen elsewhere: bind, merge (read-only union) and copy-on-write.

    vumount -t vufs SOURCE TARGET                        # bind (the default)
    vumount -t vufs -o merge DIR1:DIR2:... TARGET        # union, first wins, read-only
    vumount -t vufs -o cow,upper=CHANGES SOURCE TARGET   # SOURCE is never written

Files are real files somewhere, so vufs gives the core their host path
(``host_path``) and the kernel does the work: a process that opens a file gets
a real fd, and reads, writes, mmap and exec run natively.  vufs serves itself
only what has no single host file behind it: directories (a union listing,
and the mount's own st_dev), and the changes that must leave a trace in the
upper directory (unlink, rmdir, rename, link under cow).

Copy-on-write keeps overlayfs's model with markers an ordinary user can
create: a file is copied up to the upper directory before its first change,
a deletion leaves ``.wh.NAME`` beside where NAME was, and a name that has both
an upper object and a ``.wh.NAME`` hides everything the lower tree has under
it (an opaque directory).  The upper directory alone records the changes: a
later mount with the same upper shows them again.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile

from umvu.api import (
    MAY_READ,
    DirEntry,
    FileSystem,
    HostFdFiles,
    HostFdLocks,
    StatFs,
    as_caller,
    as_session,
    check_delete,
    current,
    dtype_of,
    dtype_of_entry,
    hookimpl,
    host_statfs,
    link_fd,
    long_path,
    permitted,
    renameat2,
    short_path,
)

WH = ".wh."
PATH_SOURCES = ("vufs",)  # the core resolves these sources in the caller's view
MODES = ("bind", "merge", "cow")
O_TMPFILE_BIT = os.O_TMPFILE & ~os.O_DIRECTORY


def _join(base: str, path: str) -> str:
    """The host name of ``path`` under ``base``: one the kernel takes, however long (short_path)."""
    return base if path == "/" else short_path(base.rstrip("/") + path)


def _split(path: str) -> tuple[str, str]:
    parent, name = path.rsplit("/", 1)
    return parent or "/", name


class _writable:
    """Give the owner write permission on a directory for a moment (copy-up into a 0555 directory)."""

    def __init__(self, d: str) -> None:
        self.d = d
        self.mode: int | None = None

    def __enter__(self) -> None:
        mode = stat.S_IMODE(os.lstat(self.d).st_mode)
        if not mode & stat.S_IWUSR and os.geteuid() != 0:
            os.chmod(self.d, mode | stat.S_IWUSR | stat.S_IXUSR)
            self.mode = mode

    def __exit__(self, *exc: object) -> None:
        if self.mode is not None:
            os.chmod(self.d, self.mode)


def _lstat(p: str) -> os.stat_result | None:
    """lstat, or None if there is no such name; other errors (EACCES) are the caller's too."""
    try:
        return os.lstat(p)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            return None
        raise


def _lexists(p: str) -> bool:
    return _lstat(p) is not None


def _mark(path: str) -> None:
    """An empty file of the module's own (a whiteout): its mode given, as the hypervisor's umask is 0."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))


class DirHandle:
    def __init__(self, path: str) -> None:
        self.path = path


@as_caller  # the host's kernel judges each call as the caller's; copy-ups and whiteouts are the session's
class Vufs(HostFdFiles, HostFdLocks, FileSystem):
    fstype = "vufs"
    real_files = True

    def __init__(self, mode: str, lowers: list[str], upper: str | None = None, own_upper: str | None = None) -> None:
        self.mode = mode
        self.lowers = lowers
        self.upper = upper
        self.own_upper = own_upper  # a private directory made for this mount, holding the upper: removed at unmount
        self.readonly = mode == "merge"
        if mode == "bind":  # everything is the source's own: real fds for directories too
            self.real_dirs = True
        self._visible: dict[str, bool] = {}  # cow: does the lower tree show under this directory?
        self._wh: dict[str, frozenset[str]] = {}  # cow: whiteouts per directory

    # -- where a name lives ------------------------------------------------------------------
    def _changed(self) -> None:
        """Whiteouts were made or removed: forget what was derived from them."""
        self._visible.clear()
        self._wh.clear()

    def _whiteouts(self, d: str) -> frozenset[str]:
        """cow: the names whited out in directory ``d`` (read once: only vufs writes whiteouts)."""
        names = self._wh.get(d)
        if names is None:
            try:
                with os.scandir(_join(self.upper, d)) as it:
                    names = frozenset(e.name[len(WH):] for e in it if e.name.startswith(WH))
            except (FileNotFoundError, NotADirectoryError):
                names = frozenset()
            self._wh[d] = names
        return names

    def _lower_visible(self, d: str) -> bool:
        """cow: whether lower entries show in directory ``d`` (no whiteout on the way)."""
        v = self._visible.get(d)
        if v is None:
            if d == "/":
                v = True
            else:
                parent, name = _split(d)
                v = self._lower_visible(parent) and name not in self._whiteouts(parent)
            self._visible[d] = v
        return v

    def _locate(self, path: str) -> tuple[str, os.stat_result] | None:
        """The host path and lstat of the topmost object named ``path``, or None."""
        if self.mode == "bind":
            h = _join(self.lowers[0], path)
            return h, os.lstat(h)
        if path != "/" and _split(path)[1].startswith(WH):
            return None
        if self.mode == "merge":
            for layer in self.lowers:
                h = _join(layer, path)
                st = _lstat(h)
                if st is not None:
                    return h, st
            return None
        up = _join(self.upper, path)
        st = _lstat(up)
        if st is not None:
            return up, st
        parent, name = _split(path)
        if not self._lower_visible(parent) or name in self._whiteouts(parent):
            return None
        lo = _join(self.lowers[0], path)
        st = _lstat(lo)
        return None if st is None else (lo, st)

    def _find(self, path: str) -> str | None:
        """The host path of the topmost object named ``path``, or None."""
        if self.mode == "bind":
            return _join(self.lowers[0], path)
        found = self._locate(path)
        return None if found is None else found[0]

    def _layers_of_dir(self, path: str) -> list[str]:
        """Host directories whose entries make up directory ``path``, topmost first."""
        if self.mode == "bind":
            return [_join(self.lowers[0], path)]
        if self.mode == "merge":
            out = []
            for layer in self.lowers:
                h = _join(layer, path)
                try:
                    if stat.S_ISDIR(os.lstat(h).st_mode):
                        out.append(h)
                    else:
                        break  # a non-directory hides the layers below it
                except OSError:
                    continue
            return out
        out = []
        up = _join(self.upper, path)
        if os.path.isdir(up) and not os.path.islink(up):
            out.append(up)
        elif _lexists(up):
            return []
        if self._lower_visible(path):
            lo = _join(self.lowers[0], path)
            if os.path.isdir(lo) and not os.path.islink(lo):
                out.append(lo)
        return out

    def _host(self, path: str) -> str:
        h = self._find(path)
        if h is None:
            raise OSError(errno.ENOENT, "no such file or directory")
        return h

    # -- copy-on-write ------------------------------------------------------------------------
    def _in_upper(self, host: str) -> bool:
        host = long_path(host)
        return self.mode == "bind" or host.startswith(self.upper.rstrip("/") + "/") or host == self.upper

    def _copy_up(self, path: str) -> str:
        """The upper path of ``path``, copying it (and its parents) up first.

        A copy is the module's doing, not the caller's: it is made as the
        session (as overlayfs copies up with the mounter's credentials), and
        keeps the owner, group and mode, so that the caller's own act on the
        copy is judged by the host's kernel as it would be on the original.
        """
        if self.mode == "bind":
            return _join(self.lowers[0], path)
        if self.mode == "merge":
            raise OSError(errno.EROFS, "read-only file system")
        up = _join(self.upper, path)
        if _lexists(up):
            return up
        src = self._host(path)
        with as_session():
            if path != "/":
                parent_up = self._copy_up(_split(path)[0])
                with _writable(parent_up):  # a copy is not a creation: a 0555 directory takes it
                    return self._copy_one(src, up, path)
            return self._copy_one(src, up, path)

    def _copy_one(self, src: str, up: str, path: str) -> str:
        st = os.lstat(src)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(up, stat.S_IMODE(st.st_mode) | 0o700)
            os.chmod(up, stat.S_IMODE(st.st_mode))
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), up)
        elif stat.S_ISREG(st.st_mode):
            tmp = _join(self.upper, _split(path)[0]) + "/" + WH + ".umvu-copy-up"
            shutil.copyfile(src, tmp, follow_symlinks=False)
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.rename(tmp, up)
        elif stat.S_ISFIFO(st.st_mode):
            os.mkfifo(up, stat.S_IMODE(st.st_mode))
        else:
            os.mknod(up, st.st_mode, st.st_rdev)
        try:
            os.utime(up, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            os.chown(up, st.st_uid, st.st_gid, follow_symlinks=False)
        except OSError:
            pass  # an ordinary user keeps their own ownership, as cp does
        return up

    def _prepare_new(self, path: str) -> str:
        """The host path where a new ``path`` goes (its parents copied up)."""
        if self.mode == "bind":
            return _join(self.lowers[0], path)
        parent, name = _split(path)
        if name.startswith(WH):
            raise OSError(errno.EINVAL, f"names starting with {WH} are vufs's own")
        self._copy_up(parent)
        return _join(self.upper, path)

    def _whiteout(self, path: str) -> None:
        """Hide the lower ``path`` (cow), if the lower tree shows one."""
        parent, name = _split(path)
        if not self._lower_visible(parent) or not _lexists(_join(self.lowers[0], path)):
            return
        wh = _join(self.upper, parent) + "/" + WH + name
        if not _lexists(wh):
            self._copy_up(parent)
            with as_session():
                _mark(wh)
            self._changed()

    def _may_hide(self, path: str) -> None:
        """A removal that only a whiteout makes (or one whose whiteouts go first): the host's kernel
        sees no removal to judge, so its may_delete is made here, for the caller."""
        check_delete(self.lstat(_split(path)[0]), self.lstat(path))

    def _drop_whiteouts(self, up_dir: str) -> None:
        """Empty an upper directory that holds whiteouts only (a merged directory that looks empty)."""
        with as_session():
            for name in os.listdir(up_dir):
                os.unlink(os.path.join(up_dir, name))

    # -- passthrough ---------------------------------------------------------------------------
    def host_path(self, path: str, intent: str, st: os.stat_result | None) -> str | None:
        is_dir = st is not None and stat.S_ISDIR(st.st_mode)
        intent = {"bind": "create", "connect": "read"}.get(intent, intent)  # a socket is made or found there
        if intent == "tmpfile":
            return None  # served here, so that a linkat can name it anywhere in the view (flink)
        if intent == "list" and self.mode == "cow":
            # a directory only the lower tree has lists as it does there (no whiteout, no upper
            # entry can be in it); one the upper tree has may be a union, listed here
            found = self._locate(path)
            return found[0] if found is not None and not self._in_upper(found[0]) else None
        if intent in ("read", "exec", "list"):
            if st is None or (is_dir and self.mode != "bind"):
                return None  # ENOENT said by the core; union directories are listed here
            return self._find(path)
        if self.mode == "bind":
            return _join(self.lowers[0], path)
        if intent == "write":
            return None if st is None else self._copy_up(path)
        if intent == "create":
            return self._prepare_new(path) if st is None else None
        return None  # remove, rename: whiteouts to write

    def host_prefix(self) -> str | None:
        """A bind shows its source name for name (real_files, real_dirs, as_caller): the fast
        path's library may walk names in it itself."""
        return self.lowers[0] if self.mode == "bind" else None

    def host_layers(self) -> tuple[str, str, str] | None:
        """cow is overlayfs's model with ``.wh.`` markers (_locate), changed only by the calls
        served here: the fast path's library may look names up in the layers itself."""
        return (self.upper, self.lowers[0], WH) if self.mode == "cow" else None

    def fakeroot_records(self) -> str | None:
        if self.mode != "cow" or self.own_upper:
            return None  # a private upper goes at unmount: nothing to keep
        return _join(self.upper, "/" + WH + ".umvu-fakeroot")  # hidden, as every .wh. name

    def guard_handed(self, host: str, readonly: bool) -> bool:
        return readonly or (self.mode != "bind" and not self._in_upper(host))  # a lower file

    # -- names ----------------------------------------------------------------------------------
    def lstat(self, path: str) -> os.stat_result:
        found = self._locate(path)
        if found is None:
            raise OSError(errno.ENOENT, "no such file or directory")
        return found[1]

    def readlink(self, path: str) -> str:
        return os.readlink(self._host(path))

    def access(self, path: str, mode: int) -> None:
        h = self._host(path)
        if mode & os.W_OK and not self._in_upper(h):
            mode &= ~os.W_OK  # the upper copy will be writable: judge the rest
        if not os.access(h, mode, effective_ids=True, follow_symlinks=False):
            raise OSError(errno.EACCES, "permission denied")

    def statfs(self, path: str) -> StatFs:
        return host_statfs(self.upper or self.lowers[0])

    # -- open files --------------------------------------------------------------------------
    def open(self, path: str, flags: int, mode: int) -> int | DirHandle:
        h = self._find(path)
        if flags & O_TMPFILE_BIT:  # an unnamed file in the directory (its upper copy)
            return os.open(self._copy_up(path), flags | os.O_CLOEXEC, mode)
        if h is not None and not flags & os.O_CREAT:
            st = os.lstat(h)
            if stat.S_ISDIR(st.st_mode):
                # a merged directory is never opened on the host: its permission is checked here
                if not flags & os.O_PATH and not permitted(st, MAY_READ, current()):
                    raise OSError(errno.EACCES, "permission denied")
                return DirHandle(path)
        writes = flags & (os.O_CREAT | os.O_TRUNC) or flags & os.O_ACCMODE != os.O_RDONLY
        if h is None:
            h = self._prepare_new(path)
        elif writes:
            h = self._copy_up(path)
        return os.open(h, flags | os.O_CLOEXEC, mode)

    def close(self, handle: int | DirHandle) -> None:
        if isinstance(handle, int):
            os.close(handle)

    def read(self, handle: int, size: int, offset: int) -> bytes:
        return os.pread(handle, size, offset)

    def write(self, handle: int, data: bytes, offset: int) -> int:
        return os.pwrite(handle, data, offset)

    def fstat(self, handle: int | DirHandle) -> os.stat_result:
        if isinstance(handle, DirHandle):
            return self.lstat(handle.path)
        return os.fstat(handle)

    def fsync(self, handle: int | DirHandle, datasync: bool) -> None:
        if isinstance(handle, int):
            (os.fdatasync if datasync else os.fsync)(handle)

    def ftruncate(self, handle: int, length: int) -> None:
        os.ftruncate(handle, length)

    def getdents(self, handle: DirHandle) -> list[DirEntry]:
        if not isinstance(handle, DirHandle):
            raise OSError(errno.ENOTDIR, "not a directory")
        path = handle.path
        me = self.lstat(path)
        parent = self.lstat(_split(path)[0]) if path != "/" else me
        out = [DirEntry(".", me.st_ino, dtype_of(me.st_mode)), DirEntry("..", parent.st_ino, dtype_of(parent.st_mode))]
        seen: set[str] = set()
        layers = self._layers_of_dir(path)
        for k, layer in enumerate(layers):
            is_upper = self.mode == "cow" and k == 0 and long_path(layer).startswith(self.upper)
            try:
                entries = list(os.scandir(layer))
            except OSError:
                continue
            for e in entries:
                name = e.name
                if self.mode != "bind" and name.startswith(WH):
                    if is_upper:
                        seen.add(name[len(WH):])  # a whiteout hides the lower name
                    continue
                if name in seen:
                    continue
                seen.add(name)
                out.append(DirEntry(name, e.inode(), dtype_of_entry(e)))
        return out

    # -- changes ---------------------------------------------------------------------------------
    def mkdir(self, path: str, mode: int) -> None:
        os.mkdir(self._prepare_new(path), mode)

    def symlink(self, target: str, path: str) -> None:
        os.symlink(target, self._prepare_new(path))

    def mknod(self, path: str, mode: int, dev: int) -> None:
        os.mknod(self._prepare_new(path), mode, dev)

    def unlink(self, path: str) -> None:
        h = self._host(path)
        if self.mode == "bind" or self._in_upper(h):
            os.unlink(h)
        elif self.mode == "cow":
            self._may_hide(path)
        if self.mode == "cow":
            self._whiteout(path)

    def rmdir(self, path: str) -> None:
        h = self._host(path)
        if self.mode == "bind":
            os.rmdir(h)
            return
        if len(self.getdents(DirHandle(path))) > 2:
            raise OSError(errno.ENOTEMPTY, "directory not empty")
        self._may_hide(path)
        if self._in_upper(h):
            self._drop_whiteouts(h)  # only whiteouts are left in it
            os.rmdir(h)
            self._changed()
        self._whiteout(path)

    def rename(self, old: str, new: str, flags: int) -> None:
        if self.mode == "bind":
            renameat2(_join(self.lowers[0], old), _join(self.lowers[0], new), flags)
            return
        src = self._host(old)
        src_dir = stat.S_ISDIR(os.lstat(src).st_mode)
        if src_dir and (not self._in_upper(src) or self._merged(old)):
            raise OSError(errno.EXDEV, "a directory with lower entries is not renamed (programs copy it)")
        dst = self._find(new)
        dst_st = _lstat(dst) if dst is not None else None
        if flags & 1 and dst_st is not None:  # RENAME_NOREPLACE
            raise OSError(errno.EEXIST, "exists")
        if flags & 2:  # RENAME_EXCHANGE: NEW moves too
            if dst_st is None:
                raise OSError(errno.ENOENT, "no such file or directory")
            if stat.S_ISDIR(dst_st.st_mode) and (not self._in_upper(dst) or self._merged(new)):
                raise OSError(errno.EXDEV, "a directory with lower entries is not renamed (programs copy it)")
        elif dst_st is not None:
            if stat.S_ISDIR(dst_st.st_mode) and not src_dir:
                raise OSError(errno.EISDIR, "is a directory")
            if src_dir and not stat.S_ISDIR(dst_st.st_mode):
                raise OSError(errno.ENOTDIR, "not a directory")
            if stat.S_ISDIR(dst_st.st_mode) and len(self.getdents(DirHandle(new))) > 2:
                raise OSError(errno.ENOTEMPTY, "directory not empty")
        up_old = self._copy_up(old)
        up_new = self._copy_up(new) if flags & 2 else self._prepare_new(new)
        if not self._in_upper(src):
            self._may_hide(old)
        if not flags & 2 and _lexists(up_new) and stat.S_ISDIR(os.lstat(up_new).st_mode):
            self._may_hide(new)
            self._drop_whiteouts(up_new)  # an empty merged directory: whiteouts only
        renameat2(up_old, up_new, flags)
        self._changed()  # directories (and their whiteouts) may have moved
        self._whiteout(old) if not flags & 2 else None
        if _lexists(_join(self.lowers[0], new)):  # the lower object at NEW stays hidden
            parent, name = _split(new)
            wh = _join(self.upper, parent) + "/" + WH + name
            if not _lexists(wh) and self._lower_visible(parent):
                with as_session():
                    _mark(wh)
                self._changed()

    def _merged(self, path: str) -> bool:
        """cow: whether the lower tree shows entries under directory ``path``."""
        return self._lower_visible(path) and os.path.isdir(_join(self.lowers[0], path))

    def link(self, old: str, new: str) -> None:
        dst = self._find(new)
        if dst is not None and _lexists(dst):
            raise OSError(errno.EEXIST, "exists")
        os.link(self._copy_up(old), self._prepare_new(new), follow_symlinks=False)

    def flink(self, handle: int, new: str, path: str | None) -> None:
        dst = self._find(new)
        if dst is not None and _lexists(dst):
            raise OSError(errno.EEXIST, "exists")
        link_fd(handle, self._prepare_new(new))

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(self._copy_up(path), mode, follow_symlinks=True)

    def chown(self, path: str, uid: int, gid: int) -> None:
        os.chown(self._copy_up(path), uid, gid, follow_symlinks=False)

    def truncate(self, path: str, length: int) -> None:
        os.truncate(self._copy_up(path), length)

    def utime(self, path: str, times_ns: tuple[int, int] | None) -> None:
        h = self._copy_up(path)
        if times_ns is None:
            os.utime(h, follow_symlinks=False)
        else:
            os.utime(h, ns=times_ns, follow_symlinks=False)

    def getxattr(self, path: str, name: str) -> bytes:
        return os.getxattr(self._host(path), name, follow_symlinks=False)

    def listxattr(self, path: str) -> list[str]:
        return os.listxattr(self._host(path), follow_symlinks=False)

    def setxattr(self, path: str, name: str, value: bytes, flags: int) -> None:
        os.setxattr(self._copy_up(path), name, value, flags, follow_symlinks=False)

    def removexattr(self, path: str, name: str) -> None:
        os.removexattr(self._copy_up(path), name, follow_symlinks=False)

    def unmount(self) -> None:
        if self.own_upper and self.upper:
            # copies of read-only directories (0555) would keep their entries from rmtree
            for top, dirs, _files in os.walk(self.own_upper):
                for d in dirs:
                    p = os.path.join(top, d)
                    try:
                        if not os.path.islink(p):  # a link's target is not ours to change
                            os.chmod(p, 0o700)
                    except OSError:
                        pass
            shutil.rmtree(self.own_upper, ignore_errors=True)


def parse_options(options: str) -> tuple[str, str | None]:
    mode, upper = "bind", None
    for opt in filter(None, options.split(",")):
        key, _, value = opt.partition("=")
        if key in MODES and not value:
            mode = key
        elif key == "upper" and value:
            upper = value
        else:
            raise OSError(errno.EINVAL, f"vufs: unknown option '{opt}' (known: bind, merge, cow, upper=DIR)")
    if upper and mode != "cow":
        raise OSError(errno.EINVAL, "vufs: upper= goes with cow")
    return mode, upper


def _directory(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise OSError(errno.EINVAL, f"vufs: {what} {path!r} must be an absolute path")
    try:
        st = os.stat(path)
    except OSError as e:
        raise OSError(e.errno, f"vufs: {what} {path}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, f"vufs: {what} {path} is not a directory")
    return os.path.realpath(path)


def make(source: str, options: str) -> Vufs:
    mode, upper = parse_options(options)
    lowers = [_directory(p, "source") for p in source.split(":")] if source else []
    if not lowers:
        raise OSError(errno.EINVAL, "vufs: a source directory is needed")
    if mode != "merge" and len(lowers) > 1:
        raise OSError(errno.EINVAL, "vufs: several sources (a:b) go with merge")
    own = None
    if mode == "cow":
        if upper is None:
            # the mount's root shows its upper directory, which shows the source's mode and times
            # (a tar of the mount archives them); the changes stay the session's: the upper is
            # inside a directory only the session may enter
            own = tempfile.mkdtemp(prefix="umvu-cow-")
            upper = os.path.join(own, "upper")
            st = os.stat(lowers[0])
            os.mkdir(upper, 0o700)
            os.chmod(upper, stat.S_IMODE(st.st_mode))
            os.utime(upper, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            os.makedirs(upper, 0o755, exist_ok=True) if not os.path.exists(upper) else None
            upper = _directory(upper, "upper")
        low = lowers[0]
        if upper == low or upper.startswith(low.rstrip("/") + "/") or low.startswith(upper.rstrip("/") + "/"):
            raise OSError(errno.EINVAL, "vufs: upper and source must not contain each other")
    return Vufs(mode, lowers, upper, own)


@hookimpl
def vu_module_describe() -> str:
    return "directories seen elsewhere: bind, merge, copy-on-write (vumount -t vufs)"


@hookimpl
def vu_filesystems() -> list[str]:
    return ["vufs"]


@hookimpl
def vu_mount(vu, fstype: str, source: str, target: str, options: str) -> Vufs | None:
    if fstype != "vufs":
        return None
    return make(source, options)
