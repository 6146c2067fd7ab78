"""time: a wall clock of the view's own, which an ordinary user may set, move or stop.

    vu_insmod time
    date -s 2030-01-01          # clock_settime(2) succeeds and moves the view's clock only
    echo 0 > /proc/vutime/freq  # the view's clock stands still (1: runs as the host's, 2: twice as fast)
    cat /proc/vutime/offset     # seconds the view's clock is ahead of the host's
    unshare -T sh               # a time view of its own for this shell and its children

The view is an anchor and a frequency: the view's time is what it was set to, plus the host's
time since then times the frequency.  It answers for CLOCK_REALTIME, CLOCK_REALTIME_COARSE,
CLOCK_REALTIME_ALARM and CLOCK_TAI (kept 37 s ahead, as the host keeps it), gettimeofday(2) and
time(2); clock_settime(2) of CLOCK_REALTIME and settimeofday(2) set it for an ordinary user,
with the kernel's EINVAL and EFAULT.  Monotonic and boot-time clocks, timers and sleeps stay the
host's.

The vDSO would answer clock_gettime, gettimeofday and time with no system call: every program a
process starts while the module is loaded gets none (AT_SYSINFO_EHDR 0 at exec, which the C
library takes for "make the system calls"), so its clock calls stop, only then.  Programs that
were running before keep their vDSO and the host's time.

A view is shared as a namespace is: a new process has its parent's; unshare(2) with
CLONE_NEWTIME gives the caller a copy of its own.  Files keep the host's timestamps (a write
stamps the host's time, and `touch` with no time too), so make, which compares them with each
other, keeps working; `touch -d` sets what it is told.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import time
from dataclasses import dataclass, replace
from typing import Any

from umvu.api import CallService, FileSystem, SyntheticTree, hookimpl

CLOCK_REALTIME, CLOCK_REALTIME_COARSE, CLOCK_REALTIME_ALARM, CLOCK_TAI = 0, 5, 8, 11
WALL_CLOCKS = (CLOCK_REALTIME, CLOCK_REALTIME_COARSE, CLOCK_REALTIME_ALARM, CLOCK_TAI)
CLONE_NEWTIME = 0x80
NS = 1_000_000_000


@dataclass
class Clock:
    """view(host) = view_at + (host - host_at) * freq, in ns of CLOCK_REALTIME."""

    view_at: int
    host_at: int
    freq: float = 1.0

    def now(self, host: int | None = None) -> int:
        host = time.clock_gettime_ns(CLOCK_REALTIME) if host is None else host
        return self.view_at + int((host - self.host_at) * self.freq)

    def set(self, view: int) -> None:
        self.host_at = time.clock_gettime_ns(CLOCK_REALTIME)
        self.view_at = view

    def set_freq(self, freq: float) -> None:
        self.set(self.now())  # from now on at the new rate, from where it is
        self.freq = freq


class Views:
    def __init__(self, vu: Any) -> None:
        self.vu = vu
        host = time.clock_gettime_ns(CLOCK_REALTIME)
        self.session = Clock(host, host)

    def of(self, pid: int) -> Clock:
        return self.vu.state(pid) or self.session


class GetTime(CallService):
    """clock_gettime of a wall clock, gettimeofday and time, from the caller's view."""

    def __init__(self, views: Views) -> None:
        self.views = views

    async def call(self, call: Any) -> int | None:
        clock = self.views.of(call.pid)
        if call.name == "clock_gettime":
            clk = call.args[0] & 0xFFFFFFFF
            if clk not in WALL_CLOCKS:
                return None
            host = time.clock_gettime_ns(clk)
            shift = host - time.clock_gettime_ns(CLOCK_REALTIME) if clk == CLOCK_TAI else 0
            now = clock.now(host - shift) + shift
            call.write(call.args[1], struct.pack("<qq", now // NS, now % NS))
            return 0
        if call.name == "gettimeofday":
            ret = await call.real()  # the time zone and the kernel's EFAULT
            if ret == 0 and call.args[0]:
                now = clock.now()
                call.write(call.args[0], struct.pack("<qq", now // NS, now % NS // 1000))
            return ret
        now = clock.now() // NS  # time(2)
        if call.args[0]:
            call.write(call.args[0], struct.pack("<q", now))
        return now


class SetTime(CallService):
    """clock_settime(CLOCK_REALTIME) and settimeofday: the caller's view, no privilege asked."""

    def __init__(self, views: Views) -> None:
        self.views = views

    def call(self, call: Any) -> int | None:
        if call.name == "clock_settime":
            if call.args[0] & 0xFFFFFFFF != CLOCK_REALTIME:
                return None  # the kernel's: EINVAL for a clock that cannot be set, EPERM for the rest
            sec, nsec = struct.unpack("<qq", call.read(call.args[1], 16))
            if sec < 0 or not 0 <= nsec < NS:
                raise OSError(errno.EINVAL, "not a valid time")
            self.views.of(call.pid).set(sec * NS + nsec)
            return 0
        if call.args[0]:  # settimeofday(tv, tz)
            sec, usec = struct.unpack("<qq", call.read(call.args[0], 16))
            if sec < 0 or not 0 <= usec < 1_000_000:
                raise OSError(errno.EINVAL, "not a valid time")
            if call.args[1]:
                call.read(call.args[1], 8)  # EFAULT before anything changes
            self.views.of(call.pid).set(sec * NS + usec * 1000)
        elif call.args[1]:
            call.read(call.args[1], 8)  # a time zone alone: the view keeps none of its own
        return 0


class ClockFile(FileSystem):
    """/proc/vutime/offset and freq: the caller's view, read and set as text."""

    fstype = "proc"

    def __init__(self, views: Views, name: str) -> None:
        self.views, self.name = views, name

    def lstat(self, path: str) -> os.stat_result:
        t = int(time.time())
        return os.stat_result((stat.S_IFREG | 0o666, 1, 0, 1, 0, 0, 0, t, t, t))

    def access(self, path: str, mode: int) -> None:
        if mode & os.X_OK:
            raise OSError(errno.EACCES, "permission denied")

    def open(self, path: str, flags: int, mode: int) -> list:
        clock = self.views.of(self.views.vu.calling_pid)
        if self.name == "offset":
            text = f"{(clock.now() - time.clock_gettime_ns(CLOCK_REALTIME)) / NS:.3f}"
        else:
            text = f"{clock.freq:g}"
        return [clock, (text + "\n").encode()]

    def read(self, handle: list, size: int, offset: int) -> bytes:
        return handle[1][offset : offset + size]

    def write(self, handle: list, data: bytes, offset: int) -> int:
        try:
            value = float(data.strip() or b"x")
        except ValueError:
            raise OSError(errno.EINVAL, "not a number") from None
        clock: Clock = handle[0]
        if self.name == "offset":
            clock.set(time.clock_gettime_ns(CLOCK_REALTIME) + int(value * NS))
        elif value < 0:
            raise OSError(errno.EINVAL, "a frequency is 0 or more")
        else:
            clock.set_freq(value)
        return len(data)

    def ftruncate(self, handle: list, length: int) -> None:
        pass

    def fstat(self, handle: list) -> os.stat_result:
        return self.lstat("/")


_vu: Any = None


@hookimpl
def vu_module_describe() -> str:
    return "time: the view's wall clock, set, moved or stopped by an ordinary user (date -s, /proc/vutime)"


@hookimpl
def vu_module_load(vu: Any) -> None:
    global _vu
    _vu = vu
    views = Views(vu)
    get, put = GetTime(views), SetTime(views)
    for name in ("clock_gettime", "gettimeofday", "time"):
        vu.claim_call(name, get)
    for name in ("clock_settime", "settimeofday"):
        vu.claim_call(name, put)
    vu.claim_namespace(CLONE_NEWTIME, lambda pid: vu.set_state(pid, replace(views.of(pid))))
    vu.mount("/proc/vutime", SyntheticTree({"offset": "", "freq": ""}), source="time", fstype="proc", hidden=True)
    for name in ("offset", "freq"):
        vu.mount(f"/proc/vutime/{name}", ClockFile(views, name), source="time", fstype="proc", hidden=True)


@hookimpl
def vu_module_unload(vu: Any) -> None:
    global _vu
    _vu = None


@hookimpl
def vu_process_exec(pid: int) -> None:
    if _vu is not None:
        _vu.without_vdso(pid)
