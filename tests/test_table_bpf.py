"""The syscall table and the BPF programs generated from it.

The filters are executed by a small interpreter of classic BPF here, so the
tests check the programs' decisions, not their bytes.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

import pytest

from umvu import bpf, syscalls

X86 = 0xC000003E


def run_bpf(code: bytes, nr: int, args=(0, 0, 0, 0, 0, 0), arch=X86, ip: int | None = 0) -> int:
    """The program's verdict; ``ip=None``: as the kernel's action cache finds it (seccomp_is_const_allow),
    knowing the number and the ABI only (a load of anything else is an AssertionError)."""
    args = (tuple(args) + (0,) * 6)[:6]
    data = struct.pack("<iIQ6Q", nr, arch, ip or 0, *[a & 0xFFFFFFFFFFFFFFFF for a in args])
    insns = [struct.unpack("<HBBI", code[i : i + 8]) for i in range(0, len(code), 8)]
    a, pc = 0, 0
    for _ in range(10000):
        op, jt, jf, k = insns[pc]
        if op == bpf.LD_W_ABS:
            assert ip is not None or k in (0, 4), f"loads offset {k}: not cached"
            a = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif op == bpf.JA:
            pc += 1 + k
        elif op == bpf.JEQ_K:
            pc += 1 + (jt if a == k else jf)
        elif op == bpf.JGE_K:
            pc += 1 + (jt if a >= k else jf)
        elif op == bpf.JSET_K:
            pc += 1 + (jt if a & k else jf)
        elif op == bpf.RET_K:
            return k
        else:
            raise AssertionError(f"unknown opcode {op:#x}")
    raise AssertionError("no return")


N = syscalls.BY_NAME


def test_table_parses_for_both_architectures():
    x86 = syscalls.table_for("x86_64")
    arm = syscalls.table_for("aarch64")
    assert x86[257].name == "openat" and arm[56].name == "openat"
    assert "open" not in {c.name for c in arm.values()}  # aarch64 has only the *at calls
    assert x86[262].args == ("dirfd", "apath", "ptr", "atflags")


def test_shapes_say_where_paths_and_fds_are():
    assert N["openat"].path_args == (1,) and N["openat"].fd_args == (0,)
    assert N["renameat2"].path_args == (1, 3)
    assert N["dup2"].fd_args == (0, 1)
    assert N["mmap"].fd_args == (4,)
    assert N["read"].path_args == ()


def test_every_family_has_a_handler():
    from umvu.calls import FAMILIES

    missing = {c.family for c in syscalls.BY_NR.values()} - set(FAMILIES)
    assert not missing


def test_base_filter_traces_path_calls_and_lets_the_rest_run():
    code = bpf.base_filter()
    for name in ("openat", "stat", "execve", "getcwd", "chdir", "readlinkat", "vu_control"):
        assert run_bpf(code, N[name].nr) == bpf.RET_TRACE, name
    for nr in (39, 110, 202, 228, 0, 1, 3, 9, 999, 4000):  # getpid getppid futex clock_gettime read write close mmap
        assert run_bpf(code, nr) == bpf.RET_ALLOW, nr


def test_base_filter_refuses_other_abis():
    code = bpf.base_filter()
    assert run_bpf(code, 0x40000000 + 2) == bpf.RET_ERRNO | errno.ENOSYS  # x32 open
    assert run_bpf(code, 5, arch=0x40000003) == bpf.RET_ERRNO | errno.ENOSYS  # i386


def test_fstat_of_a_real_fd_does_not_stop_but_paths_do():
    code = bpf.base_filter()
    nfs = N["newfstatat"].nr
    assert run_bpf(code, nfs, (3, 0, 0, 0x1000)) == bpf.RET_ALLOW  # fstat(3)
    assert run_bpf(code, nfs, (-100, 0, 0, 0x1000)) == bpf.RET_TRACE  # AT_FDCWD: maybe a path
    assert run_bpf(code, nfs, (3, 0, 0, 0)) == bpf.RET_TRACE  # relative to a dirfd
    assert run_bpf(code, N["statx"].nr, (4, 0, 0x1000, 0x7FF, 0)) == bpf.RET_ALLOW


@pytest.mark.parametrize("fd", [3, 7, 200])
def test_fd_layer_stops_only_calls_on_its_fd(fd):
    code = bpf.fd_layer([fd])
    assert run_bpf(code, N["read"].nr, (fd, 0, 10)) == bpf.RET_TRACE
    assert run_bpf(code, N["read"].nr, (fd + 1, 0, 10)) == bpf.RET_ALLOW
    assert run_bpf(code, N["dup2"].nr, (1, fd)) == bpf.RET_TRACE  # replacing a virtual fd
    assert run_bpf(code, N["mmap"].nr, (0, 4096, 1, 2, fd, 0)) == bpf.RET_TRACE
    assert run_bpf(code, N["newfstatat"].nr, (fd, 0, 0, 0x1000)) == bpf.RET_TRACE
    assert run_bpf(code, 39, (fd,)) == bpf.RET_ALLOW  # getpid has no fd
    # only the low 32 bits of an fd count, as in the kernel
    assert run_bpf(code, N["close"].nr, ((1 << 32) | fd,)) == bpf.RET_TRACE


@pytest.mark.parametrize("fd", [3, 200])
def test_fd_layer_lets_close_on_exec_run_on_the_placeholder(fd):
    code = bpf.fd_layer([fd])
    fcntl_nr = N["fcntl"].nr
    assert run_bpf(code, fcntl_nr, (fd, 1)) == bpf.RET_ALLOW  # F_GETFD
    assert run_bpf(code, fcntl_nr, (fd, 2, 1)) == bpf.RET_ALLOW  # F_SETFD
    for cmd in (0, 3, 4, 5, 1030):  # F_DUPFD F_GETFL F_SETFL F_GETLK F_DUPFD_CLOEXEC
        assert run_bpf(code, fcntl_nr, (fd, cmd)) == bpf.RET_TRACE, cmd
    assert run_bpf(code, fcntl_nr, (fd + 1, 4)) == bpf.RET_ALLOW


DOOR = (0x100000000000, 0x100000001000)


@pytest.fixture
def door(monkeypatch):
    monkeypatch.setattr(bpf, "DOOR", DOOR)


def test_the_door_lets_the_trampolines_calls_pass_every_program(door):
    stat, read = N["newfstatat"].nr, N["read"].nr
    for code, nr, args in ((bpf.base_filter(), stat, (-100,)), (bpf.fd_layer([5]), read, (5,)),
                           (bpf.calls_layer(["munmap"]), N["munmap"].nr, ()),
                           (bpf.notify_layer(["newfstatat"]), stat, (-100,))):
        outside = run_bpf(code, nr, args, ip=0x7F0000001234)
        assert outside in (bpf.RET_TRACE, bpf.RET_USER_NOTIF)
        assert run_bpf(code, nr, args, ip=DOOR[0] + 0x18) == bpf.RET_ALLOW
        assert run_bpf(code, nr, args, ip=DOOR[1]) == outside  # the page after the trampoline's
        assert run_bpf(code, nr, args, ip=DOOR[0] - 1) == outside


def test_calls_no_program_stops_are_found_from_their_number_alone(door):
    """The kernel runs no program at all for a call every filter lets pass knowing only its number
    (seccomp's action cache): the door must not be asked before the number is."""
    for code in (bpf.base_filter(), bpf.base_filter(paths=False), bpf.fd_layer([3, 9]),
                 bpf.calls_layer(["munmap"]), bpf.notify_layer(["newfstatat", "access"])):
        for nr in (39, 110, 202, 228):  # getpid getppid futex clock_gettime
            assert run_bpf(code, nr, ip=None) == bpf.RET_ALLOW, nr
    for nr in (0, 1, 3, 9):  # read write close mmap: an fd layer looks at their fd
        assert run_bpf(bpf.base_filter(), nr, ip=None) == bpf.RET_ALLOW, nr


def test_filters_fit_the_kernel_limits():
    assert len(bpf.base_filter()) // 8 < 4096
    assert len(bpf.fd_layer([3])) // 8 < 4096


def test_a_consumer_socket_is_known_by_its_sockfs_inode_only(tmp_path):
    """Writes to a socket handed out with a consumer (/dev/fuse) are served by the hypervisor:
    a file whose inode number happens to be the same is not that socket (/proc names sockets
    "socket:[INODE]", and nothing else so)."""
    from types import SimpleNamespace

    from umvu.calls import consumer_of

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    f = open(tmp_path / "same-number", "w")
    try:
        def take(data: bytes) -> int:
            return len(data)

        file_ino = os.fstat(f.fileno()).st_ino
        hv = SimpleNamespace(sockets={f"socket:[{os.fstat(a.fileno()).st_ino}]": take, f"socket:[{file_ino}]": take})
        assert consumer_of(hv, os.getpid(), a.fileno()) is take
        assert consumer_of(hv, os.getpid(), f.fileno()) is None
        assert consumer_of(hv, os.getpid(), 9999) is None  # not open
    finally:
        f.close()
        a.close()
        b.close()


def test_send_with_no_address_does_not_stop_but_an_address_does():
    prog = bpf.base_filter()
    sendto, bind = syscalls.BY_NAME["sendto"].nr, syscalls.BY_NAME["bind"].nr
    assert run_bpf(prog, sendto, (3, 0x1000, 5, 0, 0, 0)) == bpf.RET_ALLOW  # send(2)
    assert run_bpf(prog, sendto, (3, 0x1000, 5, 0, 0x7FFF0000, 20)) == bpf.RET_TRACE
    assert run_bpf(prog, sendto, (3, 0x1000, 5, 0, 1 << 32, 20)) == bpf.RET_TRACE  # high bits count
    assert run_bpf(prog, bind, (3, 0, 0, 0, 0, 0)) == bpf.RET_ALLOW  # the kernel's EFAULT
    assert run_bpf(prog, bind, (3, 0x1000, 20, 0, 0, 0)) == bpf.RET_TRACE
    assert run_bpf(bpf.base_filter(paths=False), bind, (3, 0x1000, 20, 0, 0, 0)) == bpf.RET_ALLOW
