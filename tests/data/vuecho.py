"""A device in one file: char device 240:0 (a number Linux leaves to local use) at /dev/vuecho.

What is written to it is read back from it, as from a pipe that never blocks (an empty one
reads 0); FIONREAD says how much is queued, and poll, select and epoll say it is readable
while something is.  Each open is its own echo; minor 1 is claimed too,
with no node: a node made with mknod in a virtual tree reaches it.
"""

import errno
import os
import select
import struct
import termios

from umvu.api import Device, hookimpl

MAJOR = 240


class Echo(Device):
    def open(self, rdev, flags):
        if os.minor(rdev) == 1 and flags & os.O_ACCMODE != os.O_RDONLY:
            raise OSError(errno.EROFS, "minor 1 is read-only")
        return bytearray(b"echo of minor %d\n" % os.minor(rdev) if os.minor(rdev) else b"")

    def read(self, handle, size, offset):
        data = bytes(handle[:size])
        del handle[:size]
        return data

    def write(self, handle, data, offset):
        handle += data
        return len(data)

    def poll(self, handle, wake):  # asked again after every read and write of this file
        return select.POLLOUT | (select.POLLIN if handle else 0)

    def ioctl(self, handle, request, arg):
        if request == termios.FIONREAD:  # the core read nothing in, and writes back 4 bytes
            return 0, struct.pack("i", len(handle))
        raise OSError(errno.ENOTTY, "not an echo request")


@hookimpl
def vu_module_describe():
    return "/dev/vuecho: a char device that reads back what was written"


@hookimpl
def vu_module_load(vu):
    vu.claim_device("c", MAJOR, range(2), Echo())
    vu.device_node("/dev/vuecho", "c", os.makedev(MAJOR, 0), 0o666)
