"""An address family claimed: no IPv6 in this view.

socket(2) and socketpair(2) with AF_INET6 fail with EAFNOSUPPORT, as on a kernel built without
IPv6; every other family is the kernel's.
"""

import errno
import socket

from umvu.api import CallService, hookimpl


class NoFamily(CallService):
    def call(self, call):
        raise OSError(errno.EAFNOSUPPORT, "address family not supported in this view")


@hookimpl
def vu_module_load(vu):
    vu.claim_family(socket.AF_INET6, NoFamily())
