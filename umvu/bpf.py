"""seccomp-bpf programs generated from the syscall table.

Two kinds of filter:

* the base filter, installed before the first exec: calls that no module
  could ever serve run with no stop at all (SECCOMP_RET_ALLOW); the rest stop
  (SECCOMP_RET_TRACE).  It is a binary search over call numbers, so an
  untraced call costs a handful of BPF instructions.

* an fd layer, stacked on a process (by a seccomp(2) call umvu makes the
  tracee run) when one of its fd numbers becomes virtual: calls whose fd
  arguments name that number stop.  Real fds keep native speed; only the
  processes that hold virtual fds pay for the layer, and only one layer per
  fd number ever used for a virtual file.

The kernel runs every stacked filter and takes the most restrictive verdict;
TRACE is more restrictive than ALLOW, so a layer can only add stops.
"""

from __future__ import annotations

import errno
import fcntl
import struct
from collections.abc import Iterable

from umvu import arch, syscalls

# Instruction classes and fields (linux/bpf_common.h)
LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
JSET_K = 0x45
RET_K = 0x06
JA = 0x05  # an unconditional jump, by k: any distance

RET_ALLOW = 0x7FFF0000
RET_TRACE = 0x7FF00000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000

OFF_NR = 0
OFF_ARCH = 4

X32_BIT = 0x40000000
AT_FDCWD_U32 = 0xFFFFFF9C
AT_EMPTY_PATH = 0x1000

Insn = tuple[int, int, int, int]  # code, jt, jf, k

OFF_IP_LOW, OFF_IP_HIGH = 8, 12  # struct seccomp_data's instruction_pointer, a u64
# The in-process fast path's trampoline (umvu.fast): calls made from [start, end) pass every
# program umvu assembles, base filter and layers alike (a layer's TRACE would beat the base
# filter's ALLOW), where the program would stop them (_with_door).  None: no fast path, no door.
DOOR: tuple[int, int] | None = None


def _door(start: int, end: int, verdict: int) -> list[Insn]:
    """RET_ALLOW when the call was made from [start, end); else ``verdict``."""
    return [
        (LD_W_ABS, 0, 0, OFF_IP_HIGH),
        (JEQ_K, 0, 4, start >> 32),
        (LD_W_ABS, 0, 0, OFF_IP_LOW),
        (JGE_K, 0, 2, start & 0xFFFFFFFF),
        (JGE_K, 1, 0, end & 0xFFFFFFFF),
        (RET_K, 0, 0, RET_ALLOW),
        (RET_K, 0, 0, verdict),
    ]


def _with_door(prog: list[Insn], start: int, end: int) -> list[Insn]:
    """``prog`` with each stop it returns (TRACE, USER_NOTIF) made a jump to a door of its own at
    the end, which lets the trampoline's calls pass.  The door is asked only on the way to a stop,
    never before the call number is known: a call the program lets pass whatever its arguments is
    then one the kernel finds by reading no more than the number and the ABI, which it caches
    (seccomp's action cache) and from then on lets pass with no program run at all (measured
    here: getppid 116 ns under two filters with the door first, against 66 natively)."""
    stops = sorted({k for code, _jt, _jf, k in prog if code == RET_K and k in (RET_TRACE, RET_USER_NOTIF)})
    tails: dict[int, int] = {}
    at = len(prog)
    for verdict in stops:
        tails[verdict] = at
        at += len(_door(start, end, verdict))
    out = [(JA, 0, 0, tails[k] - i - 1) if code == RET_K and k in tails else (code, jt, jf, k)
           for i, (code, jt, jf, k) in enumerate(prog)]
    for verdict in stops:
        out += _door(start, end, verdict)
    return out


def arg_low(i: int) -> int:
    """Offset of the low 32 bits of argument i in struct seccomp_data.

    fds are ints: the kernel looks at the low 32 bits only, and so do we.
    """
    return 16 + 8 * i


def assemble(prog: list[Insn]) -> bytes:
    if DOOR is not None:
        if DOOR[0] >> 32 != (DOOR[1] - 1) >> 32:
            raise ValueError("the fast path's door crosses a 4 GiB line")
        prog = _with_door(prog, *DOOR)
    out = bytearray()
    for code, jt, jf, k in prog:
        if not (0 <= jt <= 255 and 0 <= jf <= 255):
            raise ValueError("BPF jump out of range; the table grew past what the generator handles")
        out += struct.pack("<HBBI", code, jt, jf, k & 0xFFFFFFFF)
    return bytes(out)


def _search(intervals: list[tuple[int, bool]]) -> list[Insn]:
    """Code deciding TRACE/ALLOW for nr (already in A) by binary search.

    ``intervals`` is a sorted list of (first number, traced) runs covering all
    numbers from the first entry on.
    """
    if len(intervals) == 1:
        return [(RET_K, 0, 0, RET_TRACE if intervals[0][1] else RET_ALLOW)]
    mid = len(intervals) // 2
    left = _search(intervals[:mid])
    right = _search(intervals[mid:])
    # if nr >= start of right half: jump over the left half
    return [(JGE_K, len(left), 0, intervals[mid][0])] + left + right


def _runs(traced: set[int]) -> list[tuple[int, bool]]:
    """(first number, traced) runs from 0 on: a run changes only at a traced number and after it
    (umvu's own numbers lie far above the kernel's, so walking every number would cost start-up)."""
    runs: list[tuple[int, bool]] = [(0, 0 in traced)]
    for nr in sorted(traced):
        if not runs[-1][1]:
            if nr == runs[-1][0]:
                runs[-1] = (nr, True)
            else:
                runs.append((nr, True))
        if nr + 1 not in traced:
            runs.append((nr + 1, False))
    return runs


def _has_empty_path_shortcut(c: syscalls.Syscall) -> bool:
    return c.family in ("stat", "statx") and c.arg_index("atflags") is not None and c.arg_index("dirfd") is not None


def _empty_path_fast(calls: dict[int, syscalls.Syscall], verdict: int = RET_TRACE) -> list[Insn]:
    """Let fstat-style calls on real fds run without a stop.

    glibc implements fstat(fd) as newfstatat(fd, "", AT_EMPTY_PATH) (and
    statx likewise): with a real dirfd and AT_EMPTY_PATH the call is fd-based,
    so the fd layers decide whether it stops.  Cost of the shortcut: a
    non-empty relative path with AT_EMPTY_PATH from a real dirfd into a
    virtual tree is not seen (documented in docs/architecture.md).
    """
    prog: list[Insn] = []
    for c in calls.values():
        if not _has_empty_path_shortcut(c):
            continue
        flags, dirfd = c.arg_index("atflags"), c.arg_index("dirfd")
        prog += [
            (JEQ_K, 0, 7, c.nr),  # another call: skip this block, nr still in A
            (LD_W_ABS, 0, 0, arg_low(flags)),
            (JSET_K, 1, 0, AT_EMPTY_PATH),
            (RET_K, 0, 0, verdict),
            (LD_W_ABS, 0, 0, arg_low(dirfd)),
            (JEQ_K, 0, 1, AT_FDCWD_U32),
            (RET_K, 0, 0, verdict),  # AT_FDCWD: the path may still be virtual
            (RET_K, 0, 0, RET_ALLOW),  # a dirfd: its fd layer decides
        ]
    return prog


def _null_address_fast(calls: dict[int, syscalls.Syscall]) -> list[Insn]:
    """Let sendto with no address (send(2) on a connected socket: the commonest) run without a stop."""
    prog: list[Insn] = []
    for c in calls.values():
        if not c.addr_args:
            continue
        i = c.addr_args[0]
        prog += [
            (JEQ_K, 0, 6, c.nr),  # another call: skip this block, nr still in A
            (LD_W_ABS, 0, 0, arg_low(i)),
            (JEQ_K, 0, 2, 0),
            (LD_W_ABS, 0, 0, arg_low(i) + 4),
            (JEQ_K, 1, 0, 0),
            (RET_K, 0, 0, RET_TRACE),  # an address: it may name a socket in a view
            (RET_K, 0, 0, RET_ALLOW),
        ]
    return prog


def base_filter(calls: dict[int, syscalls.Syscall] = syscalls.BY_NR, audit_arch: int = arch.AUDIT_ARCH,
                paths: bool = True, everything: bool = False) -> bytes:
    """The filter every tracee starts with; ``paths=False`` leaves path calls unstopped.

    While nothing is mounted no path can be virtual, so a session starts with
    the light filter (only the calls that change the view stop) and stacks the
    full one on every process when the first mount appears: until then
    programs run at native speed.  ``everything``: every call stops (umvu
    -vv, which logs them all).
    """
    traced = syscalls.base_traced(calls, paths)
    if everything:
        traced = set(range(max(traced) + 1))
    enosys = RET_ERRNO | errno.ENOSYS
    head: list[Insn] = [
        (LD_W_ABS, 0, 0, OFF_ARCH),
        (JEQ_K, 1, 0, audit_arch),
        (RET_K, 0, 0, enosys),  # another ABI (i386 int 0x80) would bypass the view
        (LD_W_ABS, 0, 0, OFF_NR),
        (JGE_K, 0, 1, X32_BIT),
        (RET_K, 0, 0, enosys),  # x32 numbers, likewise
    ]
    # Every path through the empty-path blocks that loads an argument ends
    # in a RET, so the search below still finds nr in A.
    if everything:
        return assemble(head + [(RET_K, 0, 0, RET_TRACE)])
    fast = _empty_path_fast(calls) + _null_address_fast(calls) if paths else []
    return assemble(head + fast + _search(_runs(traced)))


def calls_layer(names: Iterable[str], calls: dict[int, syscalls.Syscall] = syscalls.BY_NR,
                audit_arch: int = arch.AUDIT_ARCH) -> bytes:
    """A filter that makes the calls named stop, whatever their arguments (munmap, msync)."""
    wanted = {c.nr for c in calls.values() if c.name in set(names)}
    prog: list[Insn] = [
        (LD_W_ABS, 0, 0, OFF_ARCH),
        (JEQ_K, 1, 0, audit_arch),
        (RET_K, 0, 0, RET_ALLOW),
        (LD_W_ABS, 0, 0, OFF_NR),
    ]
    for nr in sorted(wanted):
        prog += [(JEQ_K, 0, 1, nr), (RET_K, 0, 0, RET_TRACE)]
    prog.append((RET_K, 0, 0, RET_ALLOW))
    return assemble(prog)


def notify_layer(names: Iterable[str], calls: dict[int, syscalls.Syscall] = syscalls.BY_NR,
                 audit_arch: int = arch.AUDIT_ARCH) -> bytes:
    """A layer that sends the path calls ``names`` to the hypervisor as user notifications
    (umvu.notify), with the path filter's own exceptions (a real fd's fstat passes here, and its fd
    layer decides); stacked with a listener once path calls stop.  The kernel takes USER_NOTIF over
    TRACE, so for those calls this layer's verdict beats the path filter's and the fd layers'."""
    wanted = {nr: c for nr, c in calls.items() if c.name in set(names)}
    prog: list[Insn] = [
        (LD_W_ABS, 0, 0, OFF_ARCH),
        (JEQ_K, 1, 0, audit_arch),
        (RET_K, 0, 0, RET_ALLOW),  # the base filter already refused other ABIs
        (LD_W_ABS, 0, 0, OFF_NR),
    ]
    prog += _empty_path_fast(wanted, RET_USER_NOTIF)
    for nr in sorted(nr for nr, c in wanted.items() if not _has_empty_path_shortcut(c)):
        prog += [(JEQ_K, 0, 1, nr), (RET_K, 0, 0, RET_USER_NOTIF)]
    prog.append((RET_K, 0, 0, RET_ALLOW))
    return assemble(prog)


# Calls that change a file through an fd alone (no path: they would not stop).
CHANGES_BY_FD = frozenset({"fchmod", "fchown", "fsetxattr", "fremovexattr"})
# ... and the dup family: a copy of such an fd is guarded too
DUP_CALLS = frozenset({"dup", "dup2", "dup3", "fcntl"})
METADATA_CALLS = CHANGES_BY_FD | DUP_CALLS
# What an fd says of itself, when the view shows other attributes than the host file's (a
# directory handed out whose st_dev the view shows as its mount's)
FSTAT_CALLS = frozenset({"fstat", "newfstatat", "statx"})
# Calls that reach the module when the real fd is a stand-in: a FIFO of a module's tree is a real FIFO
# the core keeps (shadows.py), whose attributes and xattrs are still the module's file's.
STAND_IN_CALLS = METADATA_CALLS | frozenset({"fstat", "newfstatat", "statx", "fstatfs", "fgetxattr", "flistxattr",
                                              "futimesat", "utimensat", "fchmodat2", "fchownat"})

# Calls an fd layer lets run on the placeholder, by (argument, values): the
# close-on-exec flag belongs to the fd table, which holds the placeholder, so
# F_GETFD/F_SETFD are right there and need no stop (find(1) makes two per
# directory).
NATIVE_ON_PLACEHOLDER: dict[str, tuple[int, tuple[int, ...]]] = {
    "fcntl": (1, (fcntl.F_GETFD, fcntl.F_SETFD)),
}


# What the kernel runs with no stop on a virtual file whose placeholder is its backing file
# (OpenFile.passthrough: a disk that is a whole host file): the reads.  Everything else on the
# fd stops as for any virtual fd (writes are checked against the disk's end).
NATIVE_ON_BACKING = frozenset({"read", "readv", "pread64", "preadv", "preadv2"})


def backing_stops(calls: dict[int, syscalls.Syscall] = syscalls.BY_NR) -> frozenset[str]:
    """The calls an fd layer stops for a passthrough fd."""
    return frozenset(calls[nr].name for nr in syscalls.fd_traced(calls)) - NATIVE_ON_BACKING


BACKING_STOPS = backing_stops()


def fd_layer(fds: Iterable[int], calls: dict[int, syscalls.Syscall] = syscalls.BY_NR,
             audit_arch: int = arch.AUDIT_ARCH, only: frozenset[str] | None = None,
             also: Iterable[int] = ()) -> bytes:
    """A filter that makes every call naming one of ``fds`` stop (``only``: just the calls named).

    ``also``: call numbers that stop whatever their arguments (poll, whose fds are in memory).
    """
    fds = sorted(set(fds))
    prog: list[Insn] = [
        (LD_W_ABS, 0, 0, OFF_ARCH),
        (JEQ_K, 1, 0, audit_arch),
        (RET_K, 0, 0, RET_ALLOW),  # the base filter already refused other ABIs
        (LD_W_ABS, 0, 0, OFF_NR),
    ]
    for nr in sorted(set(also)):
        prog += [(JEQ_K, 0, 1, nr), (RET_K, 0, 0, RET_TRACE)]
    always = syscalls.base_traced(calls)
    for nr, positions in sorted(syscalls.fd_traced(calls).items()):
        if only is not None and calls[nr].name not in only:
            continue
        if nr in always and not _has_empty_path_shortcut(calls[nr]):
            continue  # stops anyway
        block: list[Insn] = []
        native = NATIVE_ON_PLACEHOLDER.get(calls[nr].name)
        if native is not None:
            arg, values = native
            block.append((LD_W_ABS, 0, 0, arg_low(arg)))
            for v in values:
                block.append((JEQ_K, 0, 0, v))  # jt patched below: to RET_ALLOW
        for pos in positions:
            block.append((LD_W_ABS, 0, 0, arg_low(pos)))
            for fd in fds:
                block.append((JEQ_K, 0, 0, fd))  # jt patched below: to RET_TRACE
        block.append((RET_K, 0, 0, RET_ALLOW))
        block.append((RET_K, 0, 0, RET_TRACE))
        allow_at, trace_at = len(block) - 2, len(block) - 1
        n_native = 1 + len(native[1]) if native is not None else 0
        block = [(c, (allow_at if i < n_native else trace_at) - i - 1 if c == JEQ_K else jt, jf, k)
                 for i, (c, jt, jf, k) in enumerate(block)]
        prog.append((JEQ_K, 0, len(block), nr))
        prog += block
    prog.append((RET_K, 0, 0, RET_ALLOW))
    return assemble(prog)


def sock_fprog(filter_code: bytes, code_addr: int) -> bytes:
    """struct sock_fprog pointing at code placed at ``code_addr``."""
    return struct.pack("<HxxxxxxQ", len(filter_code) // 8, code_addr)
