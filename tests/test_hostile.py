"""Hostile arguments get the kernel's answer in every view (tests/hostile.py makes the calls).

The same seeded sequence of calls runs natively on a real directory and under
umvu on the same kind of directory through a view: unreal, a vufs bind, a vufs
cow mount; and fuse2fs through umvu's /dev/fuse against fuse2fs under the
kernel's FUSE (root only: /dev/fuse is root's here).  Every answer is compared, and
so is the tree the sequence leaves.  A difference is a bug unless a rule in
KNOWN explains it, with its reason; each rule must still be needed (a rule
that matched nothing over a whole run of make fuzz is reported).

`make test` runs a few seeds; `make fuzz` runs FUZZ_SEEDS (many).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import HERE, UMVU, env, need

HOSTILE = HERE / "hostile.py"
SEEDS = [int(s) for s in os.environ.get("FUZZ_SEEDS", "1,2,3").split(",")]
CALLS = int(os.environ.get("FUZZ_CALLS", "1500"))
VIEWS = ("unreal", "bind", "cow", "fuse2fs")

# calls whose answer on a directory fd depends on its offset (read, seek, list; sendfile and the
# copies check the range from it)
DIRECTORY_CALLS = {"read", "readv", "pread64", "preadv", "preadv2", "lseek", "getdents", "getdents64", "sendfile",
                   "copy_file_range", "splice"}


class Diff:
    def __init__(self, native: str, view: str) -> None:
        self.native_line, self.view_line = native, view
        self.tree = native.startswith("tree ")
        if self.tree:
            self.call, self.native, self.view = "tree", native, view
            return
        _i, rest = native.split(" ", 1)
        self.call, self.native = rest.rsplit(" ", 1)
        self.view = view.rsplit(" ", 1)[1]

    @property
    def name(self) -> str:
        return self.call.split("(", 1)[0]

    def __str__(self) -> str:
        return f"{self.native_line.split(' ', 1)[0]} {self.call}: native {self.native}, view {self.view}"


# Differences that are not umvu's to remove, each with its reason: (views, rule, reason)
KNOWN: list[tuple[tuple[str, ...], Callable[[Diff], bool], str]] = [
    (VIEWS, lambda d: d.name in DIRECTORY_CALLS and "(dir)" in d.call,
     "directory offsets: a view's are entry numbers, ext4's are hash cookies (LLONG_MAX once the end is "
     "read), so reads, seeks and listings of a directory at such offsets answer otherwise"),
    (VIEWS, lambda d: d.name in ("sendfile", "copy_file_range") and d.native == "EOVERFLOW",
     "the largest file: ext4's is 16 TiB, a view's the kernel's largest offset (LLONG_MAX)"),
    (("bind", "cow"), lambda d: _stat_by_path_with_empty_path_flag(d),
     "the filter lets fstatat and statx with AT_EMPTY_PATH from a real dirfd run without a stop (glibc's "
     "fstat): with a non-empty path that leaves a vufs mount by '..' from a directory fd it handed out, "
     "the kernel walks from the host directory (docs/architecture.md, the filter)"),
    (("unreal", "bind", "cow"), lambda d: d.name == "lseek" and d.call.rstrip(")").rsplit(", ", 1)[-1] in ("3", "4"),
     "SEEK_DATA and SEEK_HOLE see each file's block layout: ext4 keeps blocks for the whole range of a write "
     "whose buffer faulted part way (64 KiB written, 1 MiB allocated), a module writes what could be read "
     "(unreal's files; vufs's O_TMPFILE files, which vufs serves so that a linkat can name them)"),
    (("fuse2fs",), lambda d: d.name in ("sendfile", "copy_file_range", "splice") and d.native.isdigit()
     and d.view.isdigit() and int(d.view) > int(d.native) > 0,
     "a copy of a file into its own end (the source grows as it is copied): ext4 natively and a view copy "
     "the whole count; the kernel's FUSE stops where its cached size says, which moves from run to run "
     "(65145, 60480, 65205 bytes for seed 109).  A view cannot copy more than there is to read"),
    (("unreal",), lambda d: d.tree and _size_only(d) > 0,
     "a write whose buffer faults at its first byte, at an offset past the end, has already grown the "
     "file on ext4 and tmpfs (their page-cache write path); unreal's module is not asked to write at all"),
    (("unreal",), lambda d: d.name in ("read", "readv", "pread64", "preadv", "preadv2") and d.native == "EFAULT"
     and d.view == "0",
     "what follows from the rule above: a later read with a bad buffer between the two ends is EFAULT on "
     "the grown native file and the end of the file (0, the buffer untouched) in the view"),
]


def _stat_by_path_with_empty_path_flag(d: Diff) -> bool:
    if d.name not in ("newfstatat", "statx"):
        return False
    args = d.call[len(d.name) + 1:-1].split(", ")
    flags = args[3 if d.name == "newfstatat" else 2]
    return (args[0] != "AT_FDCWD" and args[1].startswith('"') and args[1] != '""' and flags.startswith("0x")
            and bool(int(flags, 16) & 0x1000))


def _size_only(d: Diff) -> int:
    """How much larger the native tree line's size is, when nothing else differs (else 0)."""
    a, b = d.native.split(), d.view.split()
    if len(a) != 4 or len(b) != 4 or a[:3] != b[:3] or not (a[3].isdigit() and b[3].isdigit()):
        return 0
    return int(a[3]) - int(b[3])


def _run(cmd: list[str], timeout: float = 600) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout)
    assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-3000:])
    return r.stdout


def native(tmp: Path, seed: int) -> str:
    base = tmp / "n" / "a" / "base"  # ".." twice stays inside this run's own directories
    base.mkdir(parents=True)
    return _run([sys.executable, str(HOSTILE), str(seed), str(CALLS), str(base)])


def in_view(tmp: Path, seed: int, view: str) -> str:
    top = tmp / "v" / "a"
    top.mkdir(parents=True)
    run = f"{sys.executable} {HOSTILE} {seed} {CALLS}"
    if view == "unreal":
        (top / "base").mkdir()
        return _run([UMVU, "-o", "unreal", "bash", "-c", f"{run} /unreal{top}/base"])
    if view in ("bind", "cow"):
        (tmp / "src").mkdir()
        (tmp / "up").mkdir()
        (top / "base").mkdir()
        opts = "-o cow,upper=" + str(tmp / "up") if view == "cow" else ""
        return _run([UMVU, "-o", "vufs", "bash", "-c",
                     f"vumount -t vufs {opts} {tmp}/src {top}/base && {run} {top}/base"])
    out, fsck = _fuse2fs(tmp / "v", seed, [UMVU, "bash", "-c"], "vu_insmod fuse && ")
    return out + (f"e2fsck: {fsck}" if fsck else "")


def _fuse2fs(where: Path, seed: int, runner: list[str], setup: str = "") -> tuple[str, str]:
    """The sequence on a fresh ext4 image served by fuse2fs, two levels down (its ".." and "../.."
    stay in the mount); its output, and what e2fsck says of the image after it ("" if clean)."""
    need("mkfs.ext4", "fuse2fs", "fusermount3")
    where.mkdir(exist_ok=True)
    img, mnt = where / "disk.img", where / "mnt"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "64M", str(img)], check=True)
    subprocess.run(["/usr/sbin/mkfs.ext4", "-q", "-F", "-E", f"root_owner={os.getuid()}:{os.getgid()}", str(img)],
                   check=True)
    script = (f"{setup}fuse2fs -o rw {img} {mnt} || exit 9\n"
              f"for i in $(seq 200); do grep -q ' {mnt} ' /proc/self/mounts && break; sleep 0.05; done\n"
              f"mkdir -p {mnt}/a/base && {sys.executable} {HOSTILE} {seed} {CALLS} {mnt}/a/base; s=$?\n"
              f"cd /; fusermount3 -u {mnt}; for i in $(seq 100); do pgrep -f 'fuse2fs -o rw {img}' >/dev/null || "
              f"break; sleep 0.05; done; exit $s")
    out = _run([*runner, script])
    fsck = subprocess.run(["/usr/sbin/e2fsck", "-fn", str(img)], capture_output=True, text=True)
    return out, "" if fsck.returncode == 0 else fsck.stdout


def kernel_fuse(tmp: Path, seed: int) -> str:
    """The reference for a FUSE daemon is the same daemon under the kernel's FUSE: mounted by root
    in a mount namespace of the test's own, never on the host."""
    if os.geteuid() != 0 or not os.access("/dev/fuse", os.R_OK | os.W_OK):
        pytest.skip("the kernel's FUSE, the reference for fuse2fs, needs /dev/fuse: root's here")
    need("unshare")
    out, fsck = _fuse2fs(tmp / "k", seed, ["unshare", "-m", "--propagation", "private", "bash", "-c"])
    # fuse2fs itself sometimes leaves wrong link counts under the kernel's FUSE: then umvu may too
    return out + (f"e2fsck: {fsck}" if fsck else "")


def differences(a: str, b: str) -> list[Diff]:
    """The answers (and tree lines) that differ; an image that e2fsck finds broken after umvu's run
    but clean after the kernel's fails at once."""
    if "e2fsck: " in b:
        assert "e2fsck: " in a, "the image is broken after umvu's run, not after the kernel's:\n" + \
            b.split("e2fsck: ", 1)[1]
        a, b = a.split("e2fsck: ", 1)[0], b.split("e2fsck: ", 1)[0]
    a = a.split("e2fsck: ", 1)[0]
    la, lb = a.splitlines(), b.splitlines()
    assert len(la) == len(lb), ("the runs made different numbers of calls", len(la), len(lb))
    return [Diff(x, y) for x, y in zip(la, lb, strict=True) if x != y]


def unexplained(diffs: list[Diff], view: str) -> list[Diff]:
    return [d for d in diffs if not any(view in views and rule(d) for views, rule, _why in KNOWN)]


def _host_names() -> tuple[str, str]:
    with open("/proc/sys/kernel/domainname") as f:
        return os.uname().nodename, f.read()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("view", VIEWS)
def test_hostile_calls_get_the_kernels_answers(tmp_path, view, seed):
    host = _host_names()
    expected = kernel_fuse(tmp_path, seed) if view == "fuse2fs" else native(tmp_path, seed)
    got = in_view(tmp_path, seed, view)
    assert _host_names() == host  # the host is left alone: the native run is the host's own
    assert expected.count("\n") > CALLS  # the whole sequence ran, and listed its tree
    bad = unexplained(differences(expected, got), view)
    assert not bad, f"{len(bad)} answers differ from the kernel's:\n" + "\n".join(map(str, bad[:40]))
