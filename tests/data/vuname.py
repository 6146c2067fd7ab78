"""A call service in one file: uname(2) says this view's machine is called "vubox".

The kernel answers first (``real()``); the service changes the name in the caller's buffer, as
a uts view would.  Every process of the session sees it from the claim on, started before or
after; the host's name is untouched.
"""

from umvu.api import CallService, hookimpl

NODENAME_AT, FIELD = 65, 65  # struct utsname: six fields of 65 bytes, the node name second


class Uname(CallService):
    async def call(self, call):
        ret = await call.real()
        if ret == 0:
            call.write(call.args[0] + NODENAME_AT, b"vubox".ljust(FIELD, b"\0"))
        return ret


@hookimpl
def vu_module_load(vu):
    vu.claim_call("uname", Uname())
