"""Hostile arguments: a seeded sequence of file calls with bad pointers, odd fds, bad flags and
long, looping, dangling or climbing paths; every call's result is printed.

    hostile.py SEED COUNT DIR

DIR is an empty directory: a real one, or the same kind of directory through a
view (unreal, vufs, a FUSE mount).  The sequence depends only on SEED, so the
outputs of two runs can be compared line by line: umvu must answer what the
kernel answers (tests/test_hostile.py, make fuzz).

The calls, and the kinds of their arguments, come from umvu's syscall table;
the values from pools of good and bad ones.  The program runs as root in CI on
a shared machine, so it never names an absolute path, never climbs more than
two levels above DIR, keeps its cwd in DIR, makes only null, zero, fifo and
socket nodes, issues only harmless ioctls and keeps sizes small.  The last
lines list the tree it leaves (names, types, sizes, modes).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import random
import signal
import stat
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from umvu import syscalls  # noqa: E402  (the table says each call's shape)

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

# Calls left out, and why: they would change the fuzzer itself (exec, chroot, mounts, unmapping
# its memory, closing its fds en masse) or need privileges to do anything but fail (hostonly);
# the socket calls need sockets (tests/test_sockets.py); the calls a module may claim (service)
# are the kernel's in these views, and their answers (the clocks) change between two runs;
# unshare would move the fuzzer into namespaces of its own (a user namespace changes what it may do).
SKIP_FAMILIES = {"exec", "chroot", "mount", "umount", "control", "unmap", "bypass", "hostonly", "close_range",
                 "umask", "sockaddr", "sockname", "setid", "service", "unshare"}  # setid: it would give its ids away
SKIP_CALLS = {"chdir", "fchdir", "mmap", "ioctl"}  # done by hand below, within bounds
# Calls that change the machine itself, which the native run (as root) would do to the host: never
# made, whatever family the table gives them (an earlier run renamed the host with sethostname).
HOST_CHANGING = {"sethostname", "setdomainname", "settimeofday", "clock_settime", "adjtimex", "clock_adjtime"}
PAGE = mmap.PAGESIZE
BLOCKED = 0.1  # seconds a call may block before a signal ends it
SLOT0, SLOTS = 100, 12  # the fds calls are given: 100 to 111, each the latest fd opened into it


def raw(nr: int, *args: int) -> int:
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return r if r != -1 else -ctypes.get_errno()


def _mmap(size: int, prot: int) -> int:
    """An anonymous mapping's address (Python's mmap cannot give a read-only one's)."""
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    return libc.mmap(None, size, prot, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)


class Memory:
    """Pointers to hand the kernel: a good buffer, NULL, unmapped, read-only, and a buffer that ends
    where its mapping ends (a string or a structure running off it faults)."""

    def __init__(self) -> None:
        # Each buffer is followed by a page that is gone: what a copy running off it reaches is
        # the same in every run (ASLR puts different mappings next to it each time).
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self.rw_addr = _mmap(17 * PAGE, mmap.PROT_READ | mmap.PROT_WRITE)
        libc.munmap(self.rw_addr + 16 * PAGE, PAGE)
        self.ro_addr = _mmap(2 * PAGE, mmap.PROT_READ)
        libc.munmap(self.ro_addr + PAGE, PAGE)
        self.edge_addr = _mmap(2 * PAGE, mmap.PROT_READ | mmap.PROT_WRITE)
        libc.munmap(self.edge_addr + PAGE, PAGE)
        self.strings: dict[bytes, int] = {}
        self.next = 8 * PAGE

    def reset(self) -> None:
        """What a call given "buf" reads from it is the same in every run: two iovecs into the buffer
        itself (100 and 50 bytes; as times, valid nanoseconds), then zeros.  What earlier calls
        wrote there (a stat's device and inode numbers differ in a view) must not leak in."""
        head = struct.pack("<QQQQ", self.rw_addr + 4 * PAGE, 100, self.rw_addr + 5 * PAGE, 50)
        ctypes.memmove(self.rw_addr, head + bytes(2 * PAGE - len(head)), 2 * PAGE)

    def string(self, s: bytes) -> int:
        """A NUL-terminated copy of ``s`` in the upper half of the good buffer."""
        if s not in self.strings:
            if self.next + len(s) + 1 > 16 * PAGE:
                self.strings.clear()
                self.next = 8 * PAGE
            ctypes.memmove(self.rw_addr + self.next, s + b"\0", len(s) + 1)
            self.strings[s] = self.rw_addr + self.next
            self.next += (len(s) + 16) & ~7
        return self.strings[s]

    def at_edge(self, s: bytes, terminated: bool) -> int:
        """``s`` ending at the last byte of its mapped page (NUL included or not)."""
        data = (s + b"\0" if terminated else s)[-PAGE:]
        ctypes.memmove(self.edge_addr + PAGE - len(data), data, len(data))
        return self.edge_addr + PAGE - len(data)


class Fuzzer:
    def __init__(self, seed: int, base: str) -> None:
        self.rnd = random.Random(seed)
        self.base = os.path.abspath(base)
        self.mem = Memory()
        self.next_slot = 0  # the fd slot the next fd opened goes to
        self.base_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)  # in the fd pool: it may get closed
        self.calls = [sc for sc in syscalls.BY_NR.values()
                      if sc.family not in SKIP_FAMILIES and sc.name not in SKIP_CALLS | HOST_CHANGING]
        self.calls.sort(key=lambda sc: sc.nr)
        self.out: list[str] = []

    # -- the tree the sequence starts from -----------------------------------------------
    def setup(self) -> None:
        # Calls on "." and ".." may take the search bit from the base or its parent: an
        # ordinary user could then never come back, so their modes are put back at home().
        self.modes = [(p, os.stat(p).st_mode & 0o7777)
                      for p in (os.path.dirname(self.base), self.base)]
        # A view's modules name host files by whole paths, which an ordinary user cannot walk once
        # a directory above the cwd or an open directory lost its search bit (the kernel starts
        # from there): a known limit (tests/test_unreal.py shows it), so for an ordinary user the
        # directories such fds may sit below keep their owner's search bit ("noperm" keeps none).
        self.above_kept = os.geteuid() != 0
        os.chdir(self.base)
        for d in ("d", "d/sub", "d/sub/deep", "empty", "noperm", "sticky"):
            os.mkdir(d)
        for name, data in (("f", b"hello\n"), ("d/g", b"x" * 5000), ("d/sub/h", b""), ("ro", b"read only\n")):
            with open(name, "wb") as f:
                f.write(data)
        os.chmod("ro", 0o444)
        os.chmod("noperm", 0o000)
        os.chmod("sticky", 0o1777)
        for target, name in (("f", "lf"), ("d", "ld"), ("nowhere", "dangling"), ("loop1", "loop2"),
                             ("loop2", "loop1"), ("d/sub/..", "ldot"), ("../d/g", "d/sub/lup"), ("lf", "lchain")):
            os.symlink(target, name)
        os.mkfifo("fifo")

    # -- argument pools ------------------------------------------------------------------
    NAMES = [b"f", b"d", b"d/g", b"d/sub", b"d/sub/h", b"d/sub/deep", b"empty", b"noperm", b"noperm/x", b"sticky",
             b"ro", b"lf", b"ld", b"ld/g", b"dangling", b"loop1", b"loop1/x", b"ldot", b"lchain", b"d/sub/lup",
             b"fifo", b"new", b"new2", b"d/new", b"d/sub/new", b"nodir/new", b"f/x", b"f/", b"d/", b"new/",
             b".", b"..", b"d/..", b"d/.", b"d/sub/../..", b"../base-sibling", b"./f", b"d//g", b"", b"lf/",
             b"ld/", b"dangling/", b"d/sub/deep/.."]

    def path(self) -> tuple[int, str]:
        r = self.rnd.random()
        m = self.mem
        if r < 0.80:
            name = self.rnd.choice(self.NAMES)
            return m.string(name), '"' + name.decode() + '"'
        if r < 0.84:
            return 0, "NULL"
        if r < 0.87:
            return 1, "unmapped"
        if r < 0.89:
            return m.at_edge(b"f", terminated=False), "unterminated"  # no NUL before the mapping ends
        if r < 0.91:
            return m.at_edge(b"f", terminated=True), '"f" at the edge'
        if r < 0.94:
            n = self.rnd.choice((255, 256, 300))  # NAME_MAX and past it
            return m.string(b"n" * n), f"name of {n}"
        if r < 0.97:
            n = self.rnd.choice((2046, 2047, 2048, 3000))  # PATH_MAX and past it
            return m.string(b"d/" * n + b"g"), f"path of {2 * n + 1}"
        n = self.rnd.choice((100, 1500))
        return m.string(b"/".join([b"d", b"sub", b".."] * n) + b"/g"), f"d/sub/.. x{n}"

    def fd(self, dir_ok: bool = False) -> tuple[int, str]:
        r = self.rnd.random()
        if r < 0.55:
            k = self.rnd.randrange(SLOTS)
            return SLOT0 + k, f"slot{k}" + self.kind_of(SLOT0 + k)
        if r < 0.70:
            return (-100, "AT_FDCWD") if dir_ok else (self.base_fd, "base" + self.kind_of(self.base_fd))
        v = self.rnd.choice((-1, 1000, 65536, 0x7FFFFFFF, -2, self.base_fd))
        return v, ("base" if v == self.base_fd else str(v)) + self.kind_of(v)

    @staticmethod
    def kind_of(fd: int) -> str:
        """A directory fd is labelled: the kernel's directory offsets are its file system's (ext4's
        are hash cookies), so some answers on one differ by design (tests/test_hostile.py)."""
        try:
            return "(dir)" if stat.S_ISDIR(os.fstat(fd).st_mode) else ""
        except OSError:
            return ""

    def ptr(self) -> tuple[int, str]:
        m = self.mem
        if self.rnd.random() < 0.6:
            return m.rw_addr, "buf"  # a good buffer of 8 pages
        return self.rnd.choice(((0, "NULL"), (1, "unmapped"), (m.ro_addr, "read-only"),
                                (m.edge_addr + PAGE - 8, "8 before the edge"),
                                (m.edge_addr + PAGE - 1, "1 before the edge"), (0xFFFFFFFFFFFFF000, "kernel address")))

    def size(self) -> int:
        return self.rnd.choice((0, 1, 7, 100, 4096, 8 * PAGE, 65536, 1 << 31, (1 << 64) - 1, 0x7FFFF000))

    def flags(self, kind: str) -> int:
        r = self.rnd.random()
        if kind == "oflags":
            base = self.rnd.choice((os.O_RDONLY, os.O_WRONLY, os.O_RDWR, 3))
            for bit in (os.O_CREAT, os.O_EXCL, os.O_TRUNC, os.O_APPEND, os.O_DIRECTORY, os.O_NOFOLLOW,
                        os.O_PATH, os.O_NONBLOCK, 0o20200000):  # the last: O_TMPFILE
                if self.rnd.random() < 0.15:
                    base |= bit
            # O_DIRECT left out: its alignment rules are the file system's (ext4 wants 512-byte blocks,
            # FUSE none), not the kernel's in general
            return (base | (self.rnd.getrandbits(32) if r < 0.05 else 0)) & ~os.O_DIRECT
        if kind == "atflags":
            v = 0
            for bit in (0x100, 0x200, 0x400, 0x800, 0x1000, 0x6000):
                if self.rnd.random() < 0.2:
                    v |= bit
            return v | (self.rnd.getrandbits(32) if r < 0.05 else 0)
        if r < 0.5:
            return self.rnd.choice((0, 1, 2, 3, 4, 5))
        return self.rnd.choice((self.rnd.getrandbits(8), self.rnd.getrandbits(32), 0x80000000))

    def value(self, kind: str) -> tuple[int, str]:
        if kind in ("path", "lpath", "apath", "fpath", "opath"):
            return self.path()
        if kind == "dirfd":
            return self.fd(dir_ok=True)
        if kind == "fd":
            return self.fd()
        if kind == "ptr":
            return self.ptr()
        if kind == "size":
            v = self.size()
            return v, str(v)
        if kind in ("oflags", "atflags", "hex"):
            v = self.flags(kind)
            return v, hex(v)
        if kind == "mode":
            v = self.rnd.choice((0o644, 0o755, 0o777, 0o7777, 0o100644, 0o20666, 0o10644, 0o140644, 0o60644,
                                 self.rnd.getrandbits(16)))
            return v, oct(v)
        if kind == "whence":
            v = self.rnd.choice((0, 1, 2, 3, 4, 5, 99))
            return v, str(v)
        if kind == "str":
            t = self.rnd.choice((b"user.k", b"user.", b"trusted.t", b"security.s", b"k", b"user." + b"x" * 300, b"",
                                 b"f", b"target", b"../d"))
            return self.mem.string(t), '"' + (t.decode() if len(t) < 40 else t[:12].decode() + "...") + '"'
        # int: offsets, uids, counts
        v = self.rnd.choice((0, 1, -1, 5, 100, 4096, -4096, 1 << 40, os.getuid(), 12345, 0x7FFFFFFF))
        return v, "uid" if v == os.getuid() and v not in (0, 1) else str(v)

    # -- one call ---------------------------------------------------------------------------
    def one(self, i: int) -> None:
        sc = self.rnd.choice(self.calls)
        picked = [self.value(k) for k in sc.args]
        args = [v for v, _label in picked]
        labels = [label for _v, label in picked]
        if sc.family == "mknod":  # only harmless nodes: the kernel's null and zero, or none
            mi, di = sc.args.index("mode"), sc.args.index("hex")
            kind = self.rnd.choice((stat.S_IFREG, stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, 0, stat.S_IFBLK))
            args[mi] = kind | (args[mi] & 0o7777)
            args[di] = self.rnd.choice((os.makedev(1, 3), os.makedev(1, 5))) if kind in (stat.S_IFCHR, 0) else 0
            if kind == stat.S_IFBLK:
                args[di] = os.makedev(1, 3)  # refused by the kernel for ordinary users; /dev/null's numbers
            labels[mi], labels[di] = oct(args[mi]), f"{os.major(args[di])}:{os.minor(args[di])}"
        for k, kind in enumerate(sc.args):  # no huge files on the machine's disk
            if kind == "int" and sc.family in ("truncate", "fallocate") and args[k] > 1 << 20 \
                    or kind == "size" and sc.family in ("copy", "write") and args[k] > 1 << 20:
                args[k] = 1 << 20
                labels[k] = str(args[k])
        self.mem.reset()
        ret = self.call(sc.nr, *args)
        if ret > 2 and (sc.family == "open" or sc.name in ("dup", "fcntl") and sc.family != "fcntl" or
                        sc.name == "fcntl" and args[1] in (0, 1030)):
            self.keep(ret)
        self.out.append(f"{i} {sc.name}({', '.join(labels)}) {self.show(ret, sc)}")
        if self.above_kept and ret >= 0 and sc.family in ("chmod", "rename"):
            self.keep_searchable()

    def keep(self, fd: int) -> None:
        """A new fd goes to the next slot (fixed numbers: a call that fails in one run and not in
        another changes that slot only, not the numbers every later call is given)."""
        slot = SLOT0 + self.next_slot
        self.next_slot = (self.next_slot + 1) % SLOTS
        if fd != slot:
            os.dup2(fd, slot)
            os.close(fd)

    @staticmethod
    def call(nr: int, *args: int) -> int:
        """One raw call; one that blocks (a FIFO with no reader, a lock held elsewhere) ends with
        EINTR after a tenth of a second, as it would natively."""
        signal.setitimer(signal.ITIMER_REAL, BLOCKED)
        try:
            return raw(nr, *args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    @staticmethod
    def show(ret: int, sc: syscalls.Syscall) -> str:
        if ret < 0:
            return errno.errorcode.get(-ret, str(ret))
        if sc.family == "getdents":
            return "entries" if ret else "0"
        if sc.name == "getcwd":
            return "ok"  # the length of the base's path, which differs between views
        return str(ret)

    def chdir_and_back(self, i: int) -> None:
        """chdir and fchdir are fuzzed too, but the cwd always comes back to the base."""
        if self.rnd.random() < 0.5:
            v, label = self.path()
            name = "chdir"
        else:
            v, label = self.fd()
            name = "fchdir"
        ret = self.call(syscalls.BY_NAME[name].nr, v)
        self.home()
        self.out.append(f"{i} {name}({label}) {self.show(ret, syscalls.BY_NAME[name])}")

    SEARCHED = ("d", "d/sub", "d/sub/deep", "empty", "sticky", "new", "new2", "d/new", "d/sub/new")

    def keep_searchable(self) -> None:
        os.chmod(*self.modes[0])
        for name in ("", *self.SEARCHED):  # parents first
            p = os.path.join(self.base, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IXUSR:
                os.chmod(p, stat.S_IMODE(st.st_mode) | stat.S_IXUSR)

    def home(self) -> None:
        for p, mode in self.modes:
            os.chmod(p, mode)
        os.chdir(self.base)

    def describe_slots(self, i: int) -> None:
        """HOSTILE_SHOW=N: what the slots hold before call N (debugging a difference)."""
        for k in range(SLOTS):
            try:
                info = open(f"/proc/self/fdinfo/{SLOT0 + k}").read().split()
                flags = oct(int(info[info.index("flags:") + 1], 8))
                pos, size = info[info.index("pos:") + 1], os.fstat(SLOT0 + k).st_size
                sys.stderr.write(f"before {i}: slot{k} {os.readlink(f'/proc/self/fd/{SLOT0 + k}')} {flags} "
                                 f"pos {pos} size {size}\n")
            except OSError:
                pass

    def run(self, count: int) -> None:
        self.setup()
        show = int(os.environ.get("HOSTILE_SHOW", "-1"))
        for i in range(count):
            if i == show:
                self.describe_slots(i)
                sys.stderr.write(f"buf: {ctypes.string_at(self.mem.rw_addr, 64).hex()}\n")
            if self.rnd.random() < 0.03:
                self.chdir_and_back(i)
            else:
                self.one(i)
        self.home()
        self.out.extend(self.tree())

    def tree(self) -> list[str]:
        """What the sequence left: name, type, size (of files and links) and permission bits."""
        lines = []
        for top, dirs, files in os.walk(".", topdown=True):
            dirs.sort()
            for name in sorted(dirs + files):
                p = os.path.join(top, name)
                try:
                    st = os.lstat(p)
                except OSError as e:
                    lines.append(f"tree {p} {errno.errorcode.get(e.errno)}")
                    continue
                size = st.st_size if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode) else "-"
                lines.append(f"tree {p} {stat.filemode(st.st_mode)} {size}")
            dirs[:] = [d for d in dirs if os.access(os.path.join(top, d), os.R_OK | os.X_OK)]
        return lines


def main() -> None:
    seed, count, base = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    signal.signal(signal.SIGALRM, lambda *_: None)
    signal.siginterrupt(signal.SIGALRM, True)
    f = Fuzzer(seed, base)
    try:
        f.run(count)
    finally:
        sys.stdout.write("\n".join(f.out) + "\n")


if __name__ == "__main__":
    main()
