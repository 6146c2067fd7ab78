"""Readiness of virtual files for poll, select and epoll, kept where the kernel looks.

A virtual fd is a placeholder in the tracee; poll(2), select(2) and epoll
read its readiness without a stop (their fds are in memory, which the filter
cannot see, and epoll waits long after epoll_ctl).  For a file whose service
says it is always ready (``poll`` returns None: regular files, disks) the
placeholder is /dev/null, ready for reading and writing as a regular file is.
For one whose readiness changes (a char device with no data yet), the
placeholder is an eventfd the hypervisor also holds: the kernel's own poll of
an eventfd says POLLIN while its count is above 0 and POLLOUT while it is
below the largest value, so setting the count shows the service's answer,
and every waiter (poll, select, epoll, in any process that shares the fd) is
woken by the kernel, with no stop and no thread in umvu waiting.

Three of the four states can be shown: readable and writable (count 1),
writable only (0), readable only (the largest count).  Neither readable nor
writable shows as writable: a write then goes to the service, which answers
as it would (EAGAIN, or the wait it makes).  POLLPRI, POLLHUP and POLLERR
cannot be shown.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable
from typing import Any

EVENTFD_MAX = (1 << 64) - 2  # the largest count a write may leave: readable, not writable


def count_for(mask: int) -> int:
    """The eventfd count that shows ``mask`` (POLLIN, POLLOUT) to the kernel's poll."""
    if mask & select.POLLIN:
        return 1 if mask & select.POLLOUT else EVENTFD_MAX
    return 0


class Readiness:
    """The hypervisor's side of one open file's eventfd placeholder.

    ``poll`` is the service's (``ops.poll`` bound to the handle); ``show``
    asks it and sets the count.  ``wake`` may be called from any thread:
    it asks again in the loop's thread.
    """

    def __init__(self, efd: int, poll: Callable[[Callable[[], None]], int | None],
                 call_soon: Callable[[Callable[[], Any]], None], log: Callable[[str], None]) -> None:
        self.efd = efd
        self._poll = poll
        self._call_soon = call_soon
        self._log = log
        self._lock = threading.Lock()
        self.count = 0  # what the eventfd holds (only umvu writes it: the tracee's reads stop)

    def ask(self) -> int | None:
        """The service's answer now; a service that raises is logged, and its file shown ready
        (a waiter then reaches the service, which says what is wrong)."""
        try:
            return self._poll(self.wake)
        except Exception as e:
            self._log(f"poll of a virtual file failed: {e!r}")
            return select.POLLIN | select.POLLOUT

    def show(self, mask: int | None = None) -> None:
        """Make the placeholder say ``mask`` (the service's answer now, when None)."""
        if self.efd < 0:
            return  # closed: the last fd went with the call that asks
        if mask is None:
            mask = self.ask()
            if mask is None:
                mask = select.POLLIN | select.POLLOUT
        want = count_for(mask)
        with self._lock:
            if want == self.count or self.efd < 0:
                return
            try:
                os.eventfd_read(self.efd)  # to 0 (the fd is non-blocking)
            except BlockingIOError:
                pass
            if want:
                os.eventfd_write(self.efd, want)
            self.count = want

    def wake(self) -> None:
        """The service's readiness may have changed: ask it again (in the loop's thread)."""
        self._call_soon(self.show)

    def close(self) -> None:
        with self._lock:
            if self.efd >= 0:
                os.close(self.efd)
                self.efd = -1
