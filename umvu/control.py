"""The control channel between commands inside umvu and the hypervisor.

A command makes the system call VU_CONTROL_NR, a number no kernel has:
(op, request, request length, reply buffer, reply size).  Under umvu the
seccomp filter stops it and the hypervisor answers; anywhere else the kernel
says ENOSYS, which is how a command knows it is not running under umvu.
Requests and replies are JSON objects; a reply carries ``errno`` and
``error`` when the request was refused.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
from typing import Any

from umvu import libc
from umvu.syscalls import VU_CONTROL_NR

OP_JSON = 1
REPLY_MAX = 1 << 20


class NotUnderUmvu(Exception):
    pass


class Refused(Exception):
    def __init__(self, err: int, message: str) -> None:
        super().__init__(message)
        self.errno = err


def request(op: str, **fields: Any) -> dict[str, Any]:
    """Ask the hypervisor; returns the reply, raises Refused or NotUnderUmvu."""
    data = json.dumps({"op": op, **fields}).encode()
    inbuf = ctypes.create_string_buffer(data, len(data))
    size = 1 << 14
    while True:
        out = ctypes.create_string_buffer(size)
        ret = libc.raw_syscall(VU_CONTROL_NR, OP_JSON, inbuf, len(data), out, size)
        if ret == -errno.ENOSYS:
            raise NotUnderUmvu("not running under umvu")
        if ret == -errno.E2BIG and size < REPLY_MAX:
            size *= 4
            continue
        if ret < 0:
            raise Refused(-ret, os.strerror(-ret))
        reply = json.loads(out.raw[:ret])
        if reply.get("errno"):
            raise Refused(reply["errno"], reply.get("error") or os.strerror(reply["errno"]))
        return reply
