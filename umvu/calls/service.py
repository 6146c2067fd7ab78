"""Calls served by a module chosen by call number or address family (vfs.CallService).

The choice step (serve.py) finds the claim: by the call's name for the calls whose choice column
says ``nr``, by the first argument (the address family) for socket(2) and socketpair(2).  The
service sees the call through a ServiceCall: what it needs of the caller and no more.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

from umvu import memory
from umvu.calls.call import REAL, Call, family, maybe
from umvu.calls.ids import serve_ids

NR_FCNTL, F_SETFD = 72, 2


class ServiceCall:
    """One call, as a call service sees it.

    ``name``, ``args`` (the six argument registers, unsigned), ``pid`` and ``tid`` of the caller;
    its memory through ``read``, ``read_str`` and ``write`` (a bad pointer raises EFAULT, which
    the caller gets); ``real()`` runs the call in the kernel now and gives its result, so that a
    service may change what the kernel answered (uname's nodename) rather than make it all.
    """

    def __init__(self, c: Call) -> None:
        self._c = c
        self.name = c.sc.name
        self.args = tuple(c.args)
        self.pid, self.tid = c.t.proc.tgid, c.t.tid
        self.ran: int | None = None  # real()'s result, once it ran

    def read(self, addr: int, size: int) -> bytes:
        return memory.read(self._c.t.tid, addr, size)

    def read_str(self, addr: int, limit: int = 4096) -> str:
        return memory.read_cstring(self._c.t.tid, addr, limit).decode("utf-8", "surrogateescape")

    def write(self, addr: int, data: bytes) -> None:
        memory.write(self._c.t.tid, addr, data)

    async def hand_fd(self, pid: int, fd: int, cloexec: bool,
                      uplink: Callable[[bytes], bytes | None] | None = None) -> int:
        """The call's result is a copy of fd ``fd`` of process ``pid`` (a helper the module runs,
        of the session's user: a socket made in another network namespace), as a new fd of the
        caller (pidfd_getfd, made by the caller in place of its call); its number, or -errno.
        The copy shares the open file, as dup does; close-on-exec as ``cloexec`` says.

        ``uplink``: when the socket's connect(2) finds no route (ENETUNREACH), the address (a
        struct sockaddr) to connect to on the host's network instead, or None; the caller's fd
        then becomes a host socket (calls.sockets).  A socket-level uplink: no tun needed."""
        c = self._c
        got = await c.fd_from(pid, fd, at_entry=self.ran is None)
        if got >= 0 and not cloexec:
            await c.t.inject(NR_FCNTL, got, F_SETFD, 0)  # pidfd_getfd sets close-on-exec
        if got >= 0 and uplink is not None:
            try:
                c.hv.uplinks[os.stat(f"/proc/{c.t.tid}/fd/{got}").st_ino] = uplink
            except OSError:
                pass
        self.ran = got
        return got

    async def real(self) -> int:
        """Run the call in the kernel as the caller made it: its result (-errno on failure)."""
        if self.ran is None:
            self.ran = await self._c.t.finish_syscall(self._c.orig.copy())
        return self.ran


@family("service")
async def fam_service(c: Call) -> Any:
    """The module that claimed the call (vu.claim_call) or its address family (vu.claim_family)
    serves it; nobody: a virtual identity's ids (calls.ids), or the kernel's call."""
    claim = c.service
    if claim is None:
        ret = serve_ids(c)  # a virtual identity's ids and capabilities
        return REAL if ret is None else ret
    call = ServiceCall(c)
    try:
        ret = await maybe(claim.service.call(call))
    except Exception as e:
        if call.ran is None:
            raise  # at the call's entry: serve() makes it the caller's errno (a bug: EIO, logged)
        if not isinstance(e, OSError):
            import traceback

            c.hv.log(f"[{c.t.tid}] {c.sc.name}: a module raised:\n{traceback.format_exc().rstrip()}")
        ret = -((e.errno if isinstance(e, OSError) else None) or errno.EIO)
    if call.ran is None:
        return REAL if ret is None else ret
    ret = call.ran if ret is None else ret  # at the call's exit: its result, the service's if it said one
    return c.ended(ret)


@family("unshare")
async def fam_unshare(c: Call) -> Any:
    """The namespaces modules keep (vu.claim_namespace) are copied for the caller, with no
    privilege; the flags left are the kernel's, asked first (its refusal leaves nothing copied)."""
    flags = c.args[0] & 0xFFFFFFFF
    claims = [cl for bit in range(32) if flags & (1 << bit)
              and (cl := c.hv.registry.call("namespace", 1 << bit)) is not None]
    if not claims:
        return REAL
    rest = flags & ~sum(cl.key for cl in claims)
    if rest:
        c.set_arg(0, rest)
        ret = await c.t.finish_syscall(c.regs)
        if ret < 0:
            return c.ended(ret)
    for cl in claims:
        cl.service(c.t.proc.tgid)
    return c.ended(0) if rest else 0
