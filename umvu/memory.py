"""Reading and writing a stopped tracee's memory.

Reads go through a kept ``/proc/TID/mem`` fd and ``os.pread``: one system
call with no ctypes on the way, 2 us for a path where process_vm_readv took
6 and a FUSE reply's writev 5 us where it took 22 (measured here).  The fd
holds the address space it was opened on, so the tracer drops it when the
thread execs or exits (``forget``).  Writes go through process_vm_writev,
which, unlike /proc/TID/mem, refuses read-only mappings, as the kernel does
when a call writes its result there: EFAULT either way.

A bad pointer from a tracee is not umvu's error: it raises OSError(EFAULT),
which the dispatcher turns into the tracee's -EFAULT exactly as the kernel
would.  One difference is left: /proc/TID/mem reads pages the process mapped
without read access (PROT_NONE), where the kernel's copy would fault.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from umvu import libc

PATH_MAX = 4096
PAGE = 4096
ADDR_MAX = (1 << 63) - 1  # pread's offset is signed: higher addresses are the kernel's, never the tracee's

_fds: dict[int, int] = {}  # tid -> its /proc/TID/mem, opened on first use


def _fd(tid: int) -> int:
    fd = _fds.get(tid)
    if fd is None:
        try:
            fd = os.open(f"/proc/{tid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise OSError(errno.ESRCH, f"cannot read the memory of {tid}: {e.strerror}") from None
        _fds[tid] = fd
    return fd


def forget(tid: int) -> None:
    """``tid`` exec'd (a new address space) or exited: its kept fd goes."""
    fd = _fds.pop(tid, None)
    if fd is not None:
        os.close(fd)


def _fault() -> OSError:
    return OSError(errno.EFAULT, "bad address in the tracee")


def _gone(tid: int) -> OSError:
    """The thread is gone: not a bad address of its, and the tracer must not answer it EFAULT."""
    return OSError(errno.ESRCH, f"thread {tid} is gone")


def _pread(tid: int, size: int, addr: int) -> bytes:
    """Up to ``size`` bytes at ``addr``: fewer where an unmapped page begins."""
    if addr <= 0 or addr > ADDR_MAX:
        raise _fault()
    try:
        data = os.pread(_fds.get(tid) or _fd(tid), size, addr)
    except OSError as e:
        if e.errno in (errno.EIO, errno.EFAULT, errno.EINVAL):
            raise _fault() from None
        raise
    except OverflowError:
        raise _fault() from None
    if not data and size:  # end of file: the address space is gone (an unmapped page is EIO)
        raise _gone(tid)
    return data


def read(tid: int, addr: int, size: int) -> bytes:
    """Exactly ``size`` bytes at ``addr``, or EFAULT."""
    if size == 0:
        return b""
    data = _pread(tid, size, addr)
    if len(data) != size:
        raise _fault()
    return data


def read_cstring(tid: int, addr: int, limit: int = PATH_MAX) -> bytes:
    """A NUL-terminated string of at most ``limit`` bytes including the NUL.

    Reads up to page boundaries so that a string ending just before an
    unmapped page is read whole; a longer string is ENAMETOOLONG, as the
    kernel's getname() says for paths.
    """
    out = b""
    while len(out) < limit:
        data = _pread(tid, min(PAGE - (addr % PAGE), limit - len(out)), addr)
        if not data:
            raise _fault()
        nul = data.find(b"\0")
        if nul >= 0:
            return out + data[:nul] if out else data[:nul]
        out += data
        addr += len(data)
    raise OSError(errno.ENAMETOOLONG, "string too long")


_wbuf = ctypes.create_string_buffer(1 << 16)  # only the loop's thread writes to tracees
_wbuf_addr = ctypes.addressof(_wbuf)
_wbuf_view = memoryview(_wbuf).cast("B")


def write(tid: int, addr: int, data: bytes) -> None:
    n = len(data)
    if not n:
        return
    if addr == 0:
        raise _fault()
    if n <= len(_wbuf):  # copied into a kept buffer whose address is known: no ctypes cast per call
        _wbuf_view[:n] = data
        done = libc.vm_write_from(tid, addr, _wbuf_addr, n)
    else:
        done = libc.vm_write(tid, addr, data)
    if done != n:
        raise _gone(tid) if done == -errno.ESRCH else _fault()


def read_some(tid: int, addr: int, size: int) -> bytes:
    """What can be read at ``addr``, up to ``size`` bytes: the kernel's copies stop at the first
    page that faults and count what they copied (an empty result: the first byte faults)."""
    if size == 0:
        return b""
    try:
        return _pread(tid, size, addr)
    except OSError as e:
        if e.errno == errno.EFAULT:
            return b""
        raise


def write_some(tid: int, addr: int, data: bytes) -> int:
    """Write ``data`` at ``addr`` up to the first page that faults; how much was written.

    process_vm_writev never splits one remote iovec at a fault, so after a failed whole write
    the data goes a page at a time.
    """
    if not data:
        return 0
    try:
        write(tid, addr, data)
        return len(data)
    except OSError as e:
        if e.errno != errno.EFAULT:
            raise
    done = 0
    while done < len(data):
        n = min(len(data) - done, PAGE - (addr + done) % PAGE)
        try:
            write(tid, addr + done, data[done : done + n])
        except OSError as e:
            if e.errno != errno.EFAULT:
                raise
            break
        done += n
    return done


_IOVEC = struct.Struct("<QQ")
UIO_MAXIOV = 1024
SSIZE_MAX = (1 << 63) - 1
MAX_RW_COUNT = 0x7FFFF000  # INT_MAX rounded down to a page: the most one read or write moves
TASK_SIZE_MAX = (1 << 47) - PAGE  # the top of a process's address space (4-level paging)


def access_ok(addr: int, size: int) -> bool:
    """The kernel's access_ok: the range lies below the top of the user address space."""
    return size <= TASK_SIZE_MAX and addr <= TASK_SIZE_MAX - size


def read_iovec(tid: int, addr: int, count: int) -> list[tuple[int, int]]:
    """The (base, len) pairs of a struct iovec array (readv/writev), checked as the kernel's
    import_iovec checks them: EINVAL for a count past UIO_MAXIOV or (of several) a length past
    SSIZE_MAX, EFAULT for the array or a buffer outside the user address space; lengths cut so
    that the total stays within MAX_RW_COUNT."""
    if count > UIO_MAXIOV:
        raise OSError(errno.EINVAL, "bad iovec count")
    pairs = list(_IOVEC.iter_unpack(read(tid, addr, 16 * count)))
    if count > 1 and any(n > SSIZE_MAX for _b, n in pairs):
        raise OSError(errno.EINVAL, "an iovec length past SSIZE_MAX")
    out, total = [], 0
    for base, n in pairs:
        n = min(n, MAX_RW_COUNT - total)
        if not access_ok(base, n):
            raise OSError(errno.EFAULT, "an iovec buffer outside the address space")
        out.append((base, n))
        total += n
    return out


GATHER_AROUND = 1024  # bytes read on each side of a writev's iovec array, within its page below


def read_gathered(tid: int, iov_addr: int, count: int) -> bytes:
    """The bytes a writev(fd, iov_addr, count) writes, joined, or EFAULT (EINVAL for a bad count).

    The iovec array is read with what surrounds it: a program's buffers are
    often next to its array on the stack (libfuse's reply header and answer
    are a few frames from it), and a piece found in that window costs no
    read of its own: a FUSE reply of three reads becomes one.  The window
    starts no lower than the array's own page, which is mapped.
    """
    if count < 0 or count > UIO_MAXIOV:
        raise OSError(errno.EINVAL, "bad iovec count")
    need = 16 * count
    start = max(iov_addr - GATHER_AROUND, iov_addr & ~(PAGE - 1), 1)
    skip = iov_addr - start
    window = _pread(tid, skip + need + GATHER_AROUND, start)
    if len(window) < skip + need:
        raise _fault()
    end = start + len(window)
    out = []
    total = 0
    for base, n in _IOVEC.iter_unpack(window[skip : skip + need]):
        if n > SSIZE_MAX and count > 1:
            raise OSError(errno.EINVAL, "an iovec length past SSIZE_MAX")
        n = min(n, MAX_RW_COUNT - total)
        total += n
        if not n:
            continue
        if start <= base and base + n <= end:
            out.append(window[base - start : base - start + n])
        else:
            out.append(read(tid, base, n))
    return out[0] if len(out) == 1 else b"".join(out)


def read_pointers(tid: int, addr: int, limit: int = 1 << 17) -> list[int]:
    """A NULL-terminated array of pointers (argv, envp), without the NULL."""
    out: list[int] = []
    while len(out) < limit:
        chunk = read(tid, addr, min(512, 4096 - addr % 4096))  # never past a page the array may end on
        for (p,) in struct.iter_unpack("<Q", chunk):
            if p == 0:
                return out
            out.append(p)
        addr += len(chunk)
    raise OSError(errno.E2BIG, "argument list too long")


def patch_auxv(tid: int, sp: int, values: dict[int, int]) -> None:
    """Change entries of a program's auxiliary vector, at its exec stop (``sp``: its stack pointer,
    at argc): what the kernel told it about itself (AT_UID, AT_SECURE, AT_SYSINFO_EHDR...).
    An entry given 0 for AT_SYSINFO_EHDR leaves the program without a vDSO."""
    (argc,) = struct.unpack("<Q", read(tid, sp, 8))
    envp = sp + 8 * (argc + 2)
    auxv = envp + 8 * (len(read_pointers(tid, envp)) + 1)
    for _ in range(64):
        key, _value = struct.unpack("<QQ", read(tid, auxv, 16))
        if key == 0:  # AT_NULL
            return
        if key in values:
            write(tid, auxv + 8, struct.pack("<Q", values[key] & 0xFFFFFFFFFFFFFFFF))
        auxv += 16
