"""A traced process's real fd, borrowed by the hypervisor: the same open file, not a copy.

The in-kernel copies (copy_file_range, sendfile, splice) between a virtual fd
and a real one are emulated by reading on one side and writing on the other.
The real side is the tracee's own open file, taken with pidfd_getfd(2): its
file offset, flags and pipe are the tracee's, so a read or write here moves
exactly what the kernel's copy would have moved.  (The tracer may take a
tracee's fds: pidfd_getfd asks the same permission as ptrace.)

A pipe, a socket or a terminal may have no room or no data: the hypervisor
must never block on one, so the I/O here never waits.  ``ready`` says
whether it can go now; a caller that must wait does so in the kernel
(calls.Call.wait_in_kernel), where signals find it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import stat

from umvu import libc

NR_PIDFD_GETFD = 438
PIPE_BUF = 4096  # at most this much written to a pipe at once: with POLLOUT it never blocks


def take_fd(tgid: int, fd: int) -> int:
    """A copy, in the hypervisor, of process ``tgid``'s fd ``fd`` (the same open file)."""
    try:
        pidfd = os.pidfd_open(tgid)
    except ProcessLookupError:
        raise OSError(errno.ESRCH, "the caller is gone") from None
    try:
        ret = libc.raw_syscall(NR_PIDFD_GETFD, pidfd, fd, 0)
    finally:
        os.close(pidfd)
    if ret < 0:
        raise OSError(-ret, os.strerror(-ret))
    return ret


class Borrowed:
    """The tracee's fd ``fd``, open in the hypervisor for the length of one call (a context manager)."""

    def __init__(self, tgid: int, fd: int) -> None:
        self.fd = ret = take_fd(tgid, fd)
        self.st = os.fstat(ret)
        self.flags = fcntl.fcntl(ret, fcntl.F_GETFL)
        mode = self.st.st_mode
        self.is_pipe = stat.S_ISFIFO(mode)
        self.is_socket = stat.S_ISSOCK(mode)
        self.seekable = stat.S_ISREG(mode) or stat.S_ISBLK(mode)
        self.waits = not (stat.S_ISREG(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode))

    def __enter__(self) -> Borrowed:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    @property
    def readable(self) -> bool:
        return self.flags & os.O_ACCMODE in (os.O_RDONLY, os.O_RDWR) and not self.flags & os.O_PATH

    @property
    def writable(self) -> bool:
        return self.flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR) and not self.flags & os.O_PATH

    @property
    def nonblocking(self) -> bool:
        return bool(self.flags & os.O_NONBLOCK)

    def ready(self, write: bool) -> bool:
        """Whether a read (a write) can go without waiting; a file always can."""
        if not self.waits:
            return True
        p = select.poll()
        p.register(self.fd, select.POLLOUT if write else select.POLLIN)
        return bool(p.poll(0))

    def read(self, size: int, offset: int | None) -> bytes:
        """At most ``size`` bytes, never waiting (call when ``ready``): at ``offset``, or at the
        file's offset, which moves."""
        if offset is not None:
            return os.pread(self.fd, size, offset)
        if self.is_socket:
            import socket  # here: start-up does not pay for it (~2 ms of umvu true)

            with socket.socket(fileno=os.dup(self.fd)) as s:
                try:
                    return s.recv(size, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    return b""
        return os.read(self.fd, size)

    def write(self, data: bytes | memoryview, offset: int | None) -> int:
        """What fits now, never waiting (call when ``ready``)."""
        if offset is not None:
            return os.pwrite(self.fd, data, offset)
        if self.is_socket:
            import socket  # here: start-up does not pay for it (~2 ms of umvu true)

            with socket.socket(fileno=os.dup(self.fd)) as s:
                try:
                    return s.send(data, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    return 0
        if self.waits:  # a pipe or a terminal: one page at a time, while it has room
            done = 0
            while done < len(data) and (done == 0 or self.ready(True)):
                done += os.write(self.fd, data[done : done + PIPE_BUF])
            return done
        return os.write(self.fd, data)

