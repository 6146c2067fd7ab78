"""uts: a machine name of the view's own (uname, hostname, domainname), for ordinary users.

    vu_insmod uts               # the session's processes share one uts view, the host's to start
    hostname buildbox           # sethostname(2) succeeds and renames the view only
    echo 6.1.0-vu > /proc/sys/kernel/osrelease      # uname -r in the view
    unshare -u bash             # a uts view of its own for this shell and its children

uname(2) answers with the view's six fields (sysname, nodename, release, version, machine,
domainname); sethostname(2) and setdomainname(2) change the view, with the kernel's EINVAL for a
name over 64 bytes and EFAULT for a bad pointer.  The view's fields are also files, as the
kernel shows them: /proc/sys/kernel/hostname, domainname, osrelease, ostype, version and arch
(the machine), readable and writable in the view; writing one changes the caller's view.

A view is shared as a UTS namespace is: a new process has its parent's; unshare(2) with
CLONE_NEWUTS gives the caller a copy of its own (no privilege needed in the view).  The host's
names never change.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, replace
from typing import Any

from umvu.api import CallService, FileSystem, hookimpl

FIELD = 65  # struct new_utsname: six fields of 65 bytes
NAME_MAX = 64  # __NEW_UTS_LEN
CLONE_NEWUTS = 0x04000000
FIELDS = ("sysname", "nodename", "release", "version", "machine", "domainname")
# /proc/sys/kernel file -> field
FILES = {"hostname": "nodename", "domainname": "domainname", "osrelease": "release", "ostype": "sysname",
         "version": "version", "arch": "machine"}


@dataclass
class Uts:
    sysname: str
    nodename: str
    release: str
    version: str
    machine: str
    domainname: str

    @classmethod
    def host(cls) -> Uts:
        u = os.uname()
        try:
            with open("/proc/sys/kernel/domainname") as f:
                domain = f.read().strip()
        except OSError:
            domain = "(none)"
        return cls(u.sysname, u.nodename, u.release, u.version, u.machine, domain)

    def packed(self) -> bytes:
        return b"".join(os.fsencode(getattr(self, f))[:NAME_MAX].ljust(FIELD, b"\0") for f in FIELDS)


class Views:
    """Which uts view each process has (vu.state), the session's for a process with none."""

    def __init__(self, vu: Any) -> None:
        self.vu = vu
        self.session = Uts.host()

    def of(self, pid: int) -> Uts:
        return self.vu.state(pid) or self.session


class Uname(CallService):
    def __init__(self, views: Views) -> None:
        self.views = views

    def call(self, call: Any) -> int:
        call.write(call.args[0], self.views.of(call.pid).packed())  # EFAULT for a bad pointer
        return 0


class SetName(CallService):
    """sethostname(2), setdomainname(2): the view's field, no privilege asked."""

    def __init__(self, views: Views, field: str) -> None:
        self.views, self.field = views, field

    def call(self, call: Any) -> int:
        length = call.args[1]
        if length > NAME_MAX:
            raise OSError(errno.EINVAL, "name too long")
        name = call.read(call.args[0], length) if length else b""
        setattr(self.views.of(call.pid), self.field, os.fsdecode(name))
        return 0


class UtsFile(FileSystem):
    """One /proc/sys/kernel file, showing (and setting) a field of the caller's view."""

    fstype = "proc"

    def __init__(self, views: Views, name: str) -> None:
        self.views, self.name, self.field = views, name, FILES[name]
        self.real = f"/proc/sys/kernel/{name}"

    def lstat(self, path: str) -> os.stat_result:
        try:
            return os.lstat(self.real)
        except OSError:  # /proc/sys/kernel/arch is recent
            return os.stat_result((stat.S_IFREG | 0o444, 1, 0, 1, 0, 0, 0, 0, 0, 0))

    def access(self, path: str, mode: int) -> None:
        if mode & os.X_OK:
            raise OSError(errno.EACCES, "permission denied")

    def open(self, path: str, flags: int, mode: int) -> list:
        view = self.views.of(self.views.vu.calling_pid)
        return [view, (getattr(view, self.field) + "\n").encode(), flags]

    def read(self, handle: list, size: int, offset: int) -> bytes:
        return handle[1][offset : offset + size]

    def write(self, handle: list, data: bytes, offset: int) -> int:
        value = data.split(b"\n", 1)[0]
        if len(value) > NAME_MAX:
            raise OSError(errno.EINVAL, "name too long")
        setattr(handle[0], self.field, os.fsdecode(value))
        return len(data)

    def ftruncate(self, handle: list, length: int) -> None:
        pass  # "echo NAME >" truncates first, as on /proc

    def fstat(self, handle: list) -> os.stat_result:
        return self.lstat("/")


@hookimpl
def vu_module_describe() -> str:
    return "uts: the view's machine name: uname, sethostname and setdomainname, /proc/sys/kernel's names"


@hookimpl
def vu_module_load(vu: Any) -> None:
    views = Views(vu)
    vu.claim_call("uname", Uname(views))
    vu.claim_call("sethostname", SetName(views, "nodename"))
    vu.claim_call("setdomainname", SetName(views, "domainname"))
    vu.claim_namespace(CLONE_NEWUTS, lambda pid: vu.set_state(pid, replace(views.of(pid))))
    for name in FILES:
        vu.mount(f"/proc/sys/kernel/{name}", UtsFile(views, name), source="uts", fstype="proc", hidden=True)
