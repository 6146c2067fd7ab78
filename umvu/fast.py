"""The session's side of the in-process fast path (umvu/fastpath.c, issue 18).

Traced processes preload libumvufast.so.  For a path call on an absolute name that cannot lead
into anything virtual, the library makes the real call itself from a trampoline page at a fixed
address, which every seccomp program umvu stacks lets pass by instruction pointer (``door``);
everything else stops as before.  What it needs to decide, umvu publishes here:

* the snapshot: a file every process maps read-only, with the session's mount points and the
  trees umvu always serves (/proc, /sys), or "off" when every path is umvu's whatever is mounted
  (a fake root shows records on host files, virtual ids change access());
* each process's page (the page after the trampoline, private to the process, written with
  process_vm_writev): the fast path is on for it, whether its root is virtual (a chroot), which
  fds are umvu's, and the view's cwd when umvu keeps it (the cwd is in a mount);
* for a mount whose file system shows a host directory name for name (``FileSystem.host_prefix``:
  a vufs bind), that directory: a name inside the mount is then walked by the kernel as the host
  name, in the process, when the mount is alone on its branch of the tree (no mount above or
  below it, whose names only umvu knows) and the caller may walk to its point (the kernel would
  check search permission on the point's parents, which the host name does not go through).

Both are written under a sequence count (odd while written) that the library reads before and
after deciding: a decision made across a change is not taken.  The constants are the C file's
own ``#define`` lines, read from it: one place for each.
"""

from __future__ import annotations

import mmap
import os
import re
import stat
import struct
from typing import TYPE_CHECKING, Any

from umvu import arch, memory

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from umvu.registry import Mount
    from umvu.tracer import Tracee

HERE = os.path.dirname(os.path.realpath(__file__))  # the source tree, also where an install links to it
SOURCE = os.path.join(HERE, "fastpath.c")
LIBRARY = os.path.join(HERE, "libumvufast.so")
ALWAYS = ("/proc", "/sys")  # served per process whatever is mounted (/proc/PID/status, a stack's /sys/class/net)
# magic, seq, flags, count, moves (of directories in mounts), changing and changes (calls that may
# change a layered mount's layers: being served, begun or ended so far), st_dev of /proc and of /sys,
# how many points' host objects follow (then those, st_dev and inode each, HELD of them: _held)
HEADER = struct.Struct("<QQIIQQQQQI4x")
HELD_ENTRY = struct.Struct("<QQ")
PAGE_HEADER = struct.Struct("<QIIQ")  # seq, flags, length of the cwd, the moves it was written after
ENTRY = struct.Struct("<BIQ4H")  # flags, the uid that may walk to its point, st_dev, its 4 names' lengths
# The handlers that may change a file system's trees: while one is served, the library does not
# look names up in a layered mount's layers (FastPath.changing)
CHANGING = frozenset({"open", "openat2", "truncate", "rename", "mkdir", "rmdir", "link", "unlink", "symlink",
                      "chmod", "chown", "utime", "xattr", "mknod", "sockaddr", "fallocate", "copy", "write"})
MOUNT_FLAGS = {"ro": "E_RO", "noexec": "E_NOEXEC", "nodev": "E_NODEV"}  # those a read-only path call meets


def _entry(flags: int, uid: int, dev: int, *names: str) -> bytes:
    """One entry of the snapshot: its header, then its point, host, upper layer and whiteout prefix,
    each NUL-terminated (the lengths in the header spare the library a strlen of each, every call)."""
    raw = [os.fsencode(n or "") for n in (*names, "", "", "", "")[:4]]
    return ENTRY.pack(flags, uid, dev, *map(len, raw)) + b"".join(n + b"\0" for n in raw)


def _defines() -> dict[str, int]:
    with open(SOURCE) as f:
        text = f.read()
    return {name: int(value, 0) for name, value in _DEFINE.findall(text)}


_DEFINE = re.compile(r"^#define (\w+) (0x[0-9a-fA-F]+|\d+)[uUlL]*\b", re.MULTILINE)


def _walker(point: str) -> int | None:
    """Who may walk to ``point`` on the host: ANY_UID (every directory above it is searchable by
    others), the session's euid (it may search them), or None (a rule would skip a refusal)."""
    d, anyone = os.path.dirname(point), True
    while True:
        try:
            st = os.stat(d)
        except OSError:
            return None
        if not st.st_mode & stat.S_IXOTH:
            anyone = False
            if not os.access(d, os.X_OK, effective_ids=os.access in os.supports_effective_ids):
                return None
        if d == "/":
            return -1 if anyone else os.geteuid()
        d = os.path.dirname(d)


def _held(point: str) -> tuple[int, int] | bool:
    """What the host has at ``point``, for a walk the kernel makes there unknowing (native_ok in
    fastpath.c): nothing (True: the walk fails there), an empty directory or a file that is no
    directory ((st_dev, inode): the walk ends on it, or fails in it), or something that could lead
    elsewhere (False: a directory with names in it, a symlink, or what umvu may not look at)."""
    try:
        st = os.lstat(point)
    except FileNotFoundError:
        return True
    except NotADirectoryError:
        return True
    except OSError:
        return False
    if stat.S_ISLNK(st.st_mode):
        return False
    if stat.S_ISDIR(st.st_mode):
        try:
            with os.scandir(point) as names:
                if next(names, None) is not None:
                    return False
        except OSError:
            return False
    return (st.st_dev, st.st_ino)


def _devs() -> tuple[int, int]:
    """st_dev of /proc and of /sys (0: not there): a file of theirs the kernel finds is umvu's to show."""
    out = []
    for tree in ALWAYS:
        try:
            out.append(os.stat(tree).st_dev)
        except OSError:
            out.append(0)
    return out[0], out[1]


def _cwd_is_plain(tid: int) -> bool:
    """Whether thread ``tid``'s cwd (the kernel's: a real one) is neither "/" nor in /proc or /sys,
    so that a relative name with no ".." cannot reach them (native_ok in fastpath.c)."""
    try:
        cwd = os.readlink(f"/proc/{tid}/cwd")
    except OSError:
        return False
    return cwd.startswith("/") and cwd != "/" and not any(cwd == a or cwd.startswith(a + "/") for a in ALWAYS)


def _remove_stale(base: str) -> None:
    """Snapshots of sessions that ended with no clean-up (a SIGKILL to umvu): the file names the
    session's pid, and a file of ours whose session is gone is removed by the next one."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        m = re.fullmatch(r"umvu-fast-(\d+)-[0-9a-f]+", name)
        if m is None:
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # its session still runs (or another user's does)
        except ProcessLookupError:
            pass
        except OSError:
            continue
        path = os.path.join(base, name)
        try:
            if os.stat(path).st_uid == os.geteuid():
                os.unlink(path)
        except OSError:
            pass


def available() -> str | None:
    """Why the fast path cannot run here, or None."""
    if arch.NAME != "x86_64":
        return f"the fast path is for x86-64 (this is {arch.NAME})"
    if not os.path.exists(LIBRARY):
        return f"{LIBRARY} is not built (make)"
    return None


class FastPath:
    CHANGING = CHANGING  # (here too: the hypervisor imports this module only when the fast path is on)

    def __init__(self) -> None:
        d = _defines()
        self.trampoline, self.page_size = d["TRAMPOLINE"], d["PAGE"]
        self.magic, self.size, self.counter = d["SNAP_MAGIC"], d["SNAP_SIZE"], d["COUNTER_OFF"]
        self.on, self.rooted, self.cwd_virtual = d["PROC_ON"], d["PROC_ROOTED"], d["PROC_CWD_VIRTUAL"]
        self.no_dirfd, self.nfds, self.register_fstat = d["PROC_NO_DIRFD"], d["NFDS"], d["REGISTER_FSTAT"]
        self.guarded_flag = d["PROC_GUARDED"]
        # whether fchmod & co. stop in a process (its filter has the layer: the hypervisor says)
        self.guarded: Callable[[Tracee], bool] = lambda t: False
        self.off, self.devices, self.idle = d["SNAP_OFF"], d["SNAP_DEVICES"], d["SNAP_IDLE"]
        self.hollow, self.layered_flag, self.held = d["SNAP_HOLLOW"], d["SNAP_LAYERED"], d["HELD"]
        self.plain, self.cwd_plain = d["PROC_PLAIN"], d["PROC_CWD_PLAIN"]
        self.fixed = HEADER.size + self.held * HELD_ENTRY.size  # where the entries start
        self.any_uid, self.rule, self.own_dev, self.layers = d["ANY_UID"], d["E_RULE"], d["E_OWN_DEV"], d["E_LAYERS"]
        self.mount_flags = {name: d[define] for name, define in MOUNT_FLAGS.items()}
        self.cwd_room = self.page_size - PAGE_HEADER.size - self.nfds // 8
        # (point, host directory, whether it is a rule, whether it is a layer) of the mounts
        # showing one, as published; a layered mount's two layers each show its point
        self.hosts: list[tuple[str, str, bool, bool]] = []
        self.points: list[str] = []
        self.page = self.trampoline + self.page_size
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else "/tmp"
        _remove_stale(base)
        self.path = os.path.join(base, f"umvu-fast-{os.getpid()}-{os.urandom(4).hex()}")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.ftruncate(fd, self.size)
            self.map = mmap.mmap(fd, self.size)
        finally:
            os.close(fd)
        self.seq = 0
        self.was_off = False
        HEADER.pack_into(self.map, 0, self.magic, 0, self.off, 0, 0, 0, 0, 0, 0, 0)
        self.moves = 0
        self.layered = False  # a layered mount's entry is published (changing counts then)
        self.busy = self.changes = 0
        self.page_seq = 0

    def door(self) -> tuple[int, int]:
        """The instruction pointers every filter lets pass (bpf.DOOR): the trampoline page."""
        return self.trampoline, self.trampoline + self.page_size

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """The first process's environment: it and what it runs preload the library."""
        env = dict(env)
        env["LD_PRELOAD"] = LIBRARY + (" " + env["LD_PRELOAD"] if env.get("LD_PRELOAD") else "")
        env["UMVU_FAST_SNAPSHOT"] = self.path
        # AddressSanitizer refuses to start when a preloaded library comes before its runtime; the
        # library only wraps calls (it allocates nothing), so its check is turned off (a setting of
        # the user's own, later in the list, still wins)
        asan = env.get("ASAN_OPTIONS")
        env["ASAN_OPTIONS"] = "verify_asan_link_order=0" + (":" + asan if asan else "")
        return env

    def entry(self, m: Mount, points: list[str]) -> bytes:
        """``m``'s entry (and its exceptions'): its point, and the host directory it shows with
        whether the library may walk names there itself (a rule), with which of the mount's
        flags, and for a module serving its own files, its st_dev; for a layered mount
        (``host_layers``), its two layers and the whiteout prefix."""
        fs = m.fs
        host = fs.host_prefix()
        layers = fs.host_layers() if host is None else None
        lower = layers[1] if layers is not None else host
        flags, uid, dev = 0, self.any_uid, 0
        if lower is not None and (layers is not None or not fs.real_files or fs.real_dirs):
            # a mount above it: its names are a module's, whose walk the host name would skip (mounts
            # below it the library meets on its walk, and stops there)
            above = any(p != m.point and m.point.startswith(p.rstrip("/") + "/") for p in points)
            walker = _walker(m.point) if not above and m.point != "/" else None
            if walker is not None:
                flags = self.rule
                uid = self.any_uid if walker < 0 else walker
                for name, bit in self.mount_flags.items():
                    if name in m.flags:
                        flags |= bit
                if layers is not None:
                    flags, dev = flags | self.layers, m.dev
                    self.layered = True
                elif not fs.real_files:
                    flags, dev = flags | self.own_dev, m.dev
        if host is not None and not flags & self.own_dev:
            self.hosts.append((m.point, host, bool(flags), False))  # its real fds are found by the rule
        elif layers is not None and flags:
            # the library opens files and lower-only directories in the layers itself
            self.hosts += [(m.point, layers[1], True, True), (m.point, layers[0], True, True)]
        upper, wh = (layers[0], layers[2]) if layers is not None and flags else ("", "")
        names = (m.point, lower if flags or layers is None else "", upper, wh)
        out = _entry(flags, uid, dev, *names)
        for inner in fs.host_exceptions if flags else ():
            point = m.point.rstrip("/") + inner
            self.points.append(point)
            out += _entry(0, self.any_uid, 0, point)
        return out

    async def changing(self, served: Coroutine[Any, Any, Any]) -> Any:
        """Serve a call that may change a layered mount's layers (CHANGING), counted: the library
        takes no look at the layers made while one was served (layered_fd in fastpath.c), as
        umvu serves one call at a time, and a change made in several steps (a copy-up, then the
        call; a rename, then a whiteout) is never seen half made."""
        # the count of calls being served is written before the count of those begun: a library
        # that reads the latter first and sees it moved sees the former too (x86's stores are seen
        # in order)
        self.busy += 1
        self.changes += 1
        struct.pack_into("<Q", self.map, 32, self.busy)
        struct.pack_into("<Q", self.map, 40, self.changes)
        try:
            return await served
        finally:
            self.busy -= 1
            self.changes += 1
            struct.pack_into("<Q", self.map, 40, self.changes)
            struct.pack_into("<Q", self.map, 32, self.busy)

    def publish(self, mounts: list[Mount], off: bool, devices: bool, idle: bool = False) -> None:
        """The snapshot anew: ``mounts`` and ALWAYS, or off; ``devices``: some device numbers are
        a module's, so the library opens only what it sees is a regular file or a directory;
        ``idle``: no path call stops yet (the path filter is not stacked), so the library leaves
        them to libc, which is the kernel at once.

        Off is for good (a fake root and virtual ids are the session's to the end): from then on
        no library reads a page, so none needs writing (``was_off``: the hypervisor stops
        syncing pages, and no stop pays for it)."""
        if off or self.was_off:
            off = self.was_off = True
        points = [*ALWAYS, *(m.point for m in mounts)]
        self.hosts, self.points, self.layered = [], list(points), False
        data = b"".join(_entry(0, self.any_uid, 0, p) for p in ALWAYS)
        data += b"".join(self.entry(m, points) for m in mounts)
        if self.fixed + len(data) > self.counter:
            off, data, self.hosts, self.layered = True, b"", [], False  # more than fit: every path stops
        held = [_held(p) for p in self.points[len(ALWAYS):]]
        hollow = all(held) and sum(isinstance(h, tuple) for h in held) <= self.held
        held_ids = [h for h in held if isinstance(h, tuple)] if hollow else []
        self.seq += 1  # odd: being written
        struct.pack_into("<Q", self.map, 8, self.seq)
        self.map[self.fixed : self.fixed + len(data)] = data
        flags = (self.off if off else 0) | (self.devices if devices else 0) | (self.idle if idle else 0) \
            | (self.hollow if hollow else 0) | (self.layered_flag if self.layered else 0)
        struct.pack_into("<II", self.map, 16, flags, 0 if off else len(self.points))
        struct.pack_into("<QQI", self.map, 48, *_devs(), len(held_ids))
        for i, ids in enumerate(held_ids):
            HELD_ENTRY.pack_into(self.map, HEADER.size + i * HELD_ENTRY.size, *ids)
        self.seq += 1
        struct.pack_into("<Q", self.map, 8, self.seq)

    def dirs_moved(self) -> None:
        """A directory in a mount was renamed or removed: a process's cwd in the view may have
        moved or gone, out of sight of its page until its next stop; the library takes no name
        relative to a cwd of umvu's until then (the page is written anew at that stop)."""
        self.moves += 1
        struct.pack_into("<Q", self.map, 24, self.moves)

    def place_of(self, host: str, marked: Callable[[], bool] | None = None) -> str | None:
        """Where the view shows host directory ``host``, as the library sees it (view_of_host in
        fastpath.c): through the mount whose host directory holds it (the longest), if any.  For
        an fd the library opened there, which umvu never saw.  In a layered mount's layers, only
        for an fd opened in the view (``marked``: the library's table says so): one opened by its
        host name is the host's file, whose fchmod, or a create from it, is the host's, not a
        copy-up."""
        if not host.startswith("/") or host.endswith(" (deleted)"):
            return None  # a pipe, a socket; a file removed since: no place anywhere
        best = None
        for point, prefix, _rule, layer in self.hosts:
            inside = host == prefix or host.startswith(prefix.rstrip("/") + "/")
            if inside and (not layer or marked is not None and marked()) \
                    and (best is None or len(prefix) > len(best[1])):
                best = (point, prefix)
        if best is None:
            return None
        rest = host[len(best[1]):] if best[1] != "/" else host
        view = best[0] + rest if rest != "/" else best[0]
        inner = best[0].rstrip("/") + "/"
        for point in self.points:
            if point.startswith(inner) and (view == point or view.startswith(point + "/")):
                return None  # under a mount made in that mount: not the place the host path names
        return best[0] + rest if rest != "/" else best[0]

    def rule_for(self, m: Mount) -> bool:
        """Whether the library walks names in ``m`` itself (its real fds are placed by the rule)."""
        return any(point == m.point and rule for point, _host, rule, _layer in self.hosts)

    def register(self, t: Tracee, addr: int, flags: int = 0, marks: int = 0) -> None:
        """The library of ``t``'s process says its page is at ``addr``, with ``flags`` what it can
        do (REGISTER_FSTAT: libc's fstat reaches it), and ``marks`` where its table of the fds
        opened in layers is (``marked``): fill the page."""
        if addr != self.page:
            raise OSError(22, "not the fast path's page")
        t.proc.fast_page = addr
        t.proc.fast_fstat = bool(flags & self.register_fstat)
        t.proc.fast_marks = marks or None
        t.proc.fast_impure = False  # a new image: what it holds now says (facts)
        kept, t.proc.fast_kept = t.proc.fast_kept, {}
        for fd, entry in kept.items():  # what the image before the exec had opened in the view
            if self._holds(t, fd, entry):
                self._write_mark(t, fd, entry)
        self.write_page(t)

    MARK = struct.Struct("<QQ")  # an entry of the library's table of fds opened in layers (dev, ino)

    def marked(self, t: Tracee, fd: int) -> bool:
        """Whether real fd ``fd`` of ``t`` was opened in the view, in one of a layered mount's
        layers (by the library, or handed out by umvu: ``mark``), not by its host name: the
        library's table says the file it holds (the table is in the process: a number used again
        holds another file)."""
        marks = t.proc.fast_marks
        if marks is None:
            return False
        if fd >= self.nfds:
            return True  # (beyond the table: a copy of one of the view's, by the library's dup, is taken so)
        try:
            entry = self.MARK.unpack(memory.read(t.tid, marks + fd * self.MARK.size, self.MARK.size))
        except OSError:
            return False
        return self._holds(t, fd, entry)

    @staticmethod
    def _holds(t: Tracee, fd: int, entry: tuple[int, int]) -> bool:
        """Whether ``t``'s fd holds the file ``entry`` (st_dev, inode) names."""
        try:
            st = os.stat(f"/proc/{t.tid}/fd/{fd}")
        except OSError:
            return False
        return entry[1] != 0 and (st.st_dev, st.st_ino) == entry

    def _write_mark(self, t: Tracee, fd: int, entry: tuple[int, int]) -> None:
        marks = t.proc.fast_marks
        if marks is None or not 0 <= fd < self.nfds or t.proc.fast_shared:
            return  # (a vfork child's table is its parent's)
        try:
            memory.write(t.tid, marks + fd * self.MARK.size, self.MARK.pack(*entry))
        except OSError:
            pass

    def mark(self, t: Tracee, fd: int) -> None:
        """umvu handed out real fd ``fd`` in a layered mount: the library takes it as the view's too."""
        try:
            st = os.stat(f"/proc/{t.tid}/fd/{fd}")
        except OSError:
            return
        self._write_mark(t, fd, (st.st_dev, st.st_ino))

    def keep_marks(self, t: Tracee) -> None:
        """At an exec: the fds that survive it keep their marks, which the new image's library
        (whose table starts empty) gets when it registers."""
        marks, t.proc.fast_kept = t.proc.fast_marks, {}
        if marks is None or not self.layered:
            return  # (no layered mount: no mark means anything)
        try:
            table = memory.read(t.tid, marks, self.nfds * self.MARK.size)
            names = os.listdir(f"/proc/{t.tid}/fd")
        except OSError:
            return
        for name in names:
            fd = int(name)
            if fd < self.nfds:
                entry = self.MARK.unpack_from(table, fd * self.MARK.size)
                if entry[1] and self._holds(t, fd, entry):
                    t.proc.fast_kept[fd] = entry

    def facts(self, t: Tracee) -> tuple:
        """What the page of ``t``'s process is written from."""
        fs, files, proc = t.fs, t.files, t.proc
        return (id(files), files.version, fs.root, fs.cwd_virtual and fs.cwd, fs.gone is None, self.moves,
                self.layered and self.guarded(t), fs.moved, self._impure(t), proc.exe, proc.files_shared)

    @staticmethod
    def _impure(t: Tracee) -> bool:
        """Whether ``t``'s process held a virtual or handed-out fd since its exec: for good, until
        then (a page written anew at each open and close of a virtual file cost a process that
        reads them, cat, ~10 us each)."""
        proc, files = t.proc, t.files
        if not proc.fast_impure and (files.fds or files.hosted):
            proc.fast_impure = True
        return proc.fast_impure

    def sync(self, t: Tracee) -> None:
        """Before ``t`` runs again (Tracee.cont): the page anew if what it says changed meanwhile
        (the fds, by their table's version; the root or cwd, by chroot, chdir or fchdir)."""
        if t.proc.fast_synced != self.facts(t):
            self.write_page(t)

    def write_page(self, t: Tracee) -> None:
        """The page says what umvu knows of ``t``'s process now: its root and cwd (after chroot,
        chdir, fchdir), the fds that are umvu's.  A process sharing its memory (a vfork child
        before its exec) shares the page with its parent: it turns the fast path off there (for
        both), and the parent's is written anew at the child's exec (or the parent's next stop).
        One sharing its fd table with another process takes no dirfd."""
        proc, fs, files = t.proc, t.fs, t.files
        if proc.fast_page is None:
            return
        rooted, virtual = fs.root != "/", fs.cwd_virtual
        if proc.fast_shared:
            flags = 0
            if proc.fast_parent is not None:
                proc.fast_parent.fast_synced = None
        else:
            flags = self.on | (self.rooted if rooted else 0) | (self.cwd_virtual if virtual else 0)
            if self.layered and self.guarded(t):
                flags |= self.guarded_flag
            if files.handed_dirs or proc.files_shared:
                flags |= self.no_dirfd
            if not (rooted or virtual or self._impure(t) or proc.files_shared or proc.exe is not None):
                flags |= self.plain | (self.cwd_plain if self._plain_cwd(t) else 0)
        cwd = os.fsencode(fs.cwd) if virtual and fs.cwd and fs.gone is None else b""
        if len(cwd) >= self.cwd_room:
            cwd = b""  # the library stops: it has no cwd to start from (or it was removed)
        self.page_seq += 2
        body = files.umvus(self.nfds) + cwd
        try:
            # two writes, not three: the odd count lands before the body (one copy, front to back),
            # so a thread reading the page meanwhile sees a count that moved, and does not decide
            memory.write(t.tid, proc.fast_page, PAGE_HEADER.pack(self.page_seq - 1, flags, 0, self.moves) + body)
            memory.write(t.tid, proc.fast_page, PAGE_HEADER.pack(self.page_seq, flags, len(cwd), self.moves))
        except OSError:
            proc.fast_page = None  # no page there (any more): nothing to tell
            return
        proc.fast_synced = self.facts(t)

    @staticmethod
    def _plain_cwd(t: Tracee) -> bool:
        """_cwd_is_plain of ``t``'s cwd, read again only after a chdir (FsView.moved)."""
        fs, proc = t.fs, t.proc
        known = proc.fast_cwd
        if known is None or known[0] != id(fs) or known[1] != fs.moved:
            known = proc.fast_cwd = (id(fs), fs.moved, _cwd_is_plain(t.tid))
        return known[2]

    def served(self) -> int:
        """Calls the libraries made themselves, in every process so far (they count in the
        snapshot's last page, the one part they write)."""
        if self.map.closed:
            return self.final
        return struct.unpack_from("<Q", self.map, self.counter)[0]

    def close(self) -> None:
        self.final = self.served()
        self.map.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
