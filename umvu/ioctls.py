"""The ioctl requests umvu knows: each one's argument, its size and which way it goes.

An ioctl's argument is a value or a pointer, read before the driver runs
("in"), written after ("out"), or both; only the request says which.  Newer
requests carry it in their number (_IOC: direction in bits 30-31, size in
16-29); the old block and terminal requests carry nothing, so this table
says it for them (VUOS reads the direction the wrong way round and drops
those, hence the geometry warnings in its transcripts).  Requests served by
the core for every open file (do_vfs_ioctl) are marked ``core``.  An fd of
the caller in an argument (LOOP_SET_FD, LOOP_CONFIGURE) reaches the driver
as an fd of the hypervisor on the same file, open for what the caller's is
open for, and closed by the core after the call (a driver that keeps the
file dups it).
"""

from __future__ import annotations

from typing import NamedTuple


class Request(NamedTuple):
    name: str
    nr: int
    way: str  # "none" (no argument), "value" (an int), "fd" (an fd of the caller), "in", "out", "inout"
    size: int  # bytes behind the pointer ("in", "out", "inout")
    core: bool = False  # served by the core for any open file (do_vfs_ioctl, file_ioctl)
    fd_at: int = -1  # "in": the offset of a 32-bit fd of the caller in the argument


_IOC_WRITE, _IOC_READ = 1, 2  # the caller writes (in), the caller reads (out)

_TABLE = [
    # do_vfs_ioctl: every file
    Request("FIOCLEX", 0x5451, "none", 0, True),
    Request("FIONCLEX", 0x5450, "none", 0, True),
    Request("FIONBIO", 0x5421, "in", 4, True),
    Request("FIOASYNC", 0x5452, "in", 4, True),
    Request("FIOQSIZE", 0x5460, "out", 8, True),
    Request("FIGETBSZ", 0x2, "out", 4, True),
    Request("FIONREAD", 0x541B, "out", 4, True),  # a regular file's: the core; a device's: the driver
    # block devices (blkdev_ioctl): none of these carry their size in their number
    Request("BLKROSET", 0x125D, "in", 4),
    Request("BLKROGET", 0x125E, "out", 4),
    Request("BLKRRPART", 0x125F, "none", 0),
    Request("BLKGETSIZE", 0x1260, "out", 8),  # unsigned long: 512-byte sectors
    Request("BLKFLSBUF", 0x1261, "none", 0),
    Request("BLKRASET", 0x1262, "value", 0),
    Request("BLKRAGET", 0x1263, "out", 8),  # long: read-ahead in sectors
    Request("BLKSECTGET", 0x1267, "out", 2),  # unsigned short: the largest request, in sectors
    Request("BLKSSZGET", 0x1268, "out", 4),
    Request("BLKDISCARD", 0x1277, "in", 16),  # u64 start, length
    Request("BLKIOMIN", 0x1278, "out", 4),
    Request("BLKIOOPT", 0x1279, "out", 4),
    Request("BLKALIGNOFF", 0x127A, "out", 4),
    Request("BLKBSZGET", 0x80081270, "out", 4),  # its number says size_t; blkdev_ioctl puts an int
    Request("BLKBSZSET", 0x40081271, "in", 4),
    Request("BLKPBSZGET", 0x127B, "out", 4),
    Request("BLKDISCARDZEROES", 0x127C, "out", 4),
    Request("BLKZEROOUT", 0x127F, "in", 16),
    Request("BLKGETSIZE64", 0x80081272, "out", 8),  # these carry their size: listed for their names
    Request("BLKGETZONESZ", 0x80041284, "out", 4),
    Request("BLKGETNRZONES", 0x80041285, "out", 4),
    Request("HDIO_GETGEO", 0x0301, "out", 16),  # heads, sectors, cylinders, start (unsigned long)
    # loop devices (linux/loop.h): none carries its size in its number
    Request("LOOP_SET_FD", 0x4C00, "fd", 0),
    Request("LOOP_CLR_FD", 0x4C01, "none", 0),
    Request("LOOP_SET_STATUS64", 0x4C04, "in", 232),  # struct loop_info64
    Request("LOOP_GET_STATUS64", 0x4C05, "out", 232),
    Request("LOOP_SET_CAPACITY", 0x4C07, "none", 0),
    Request("LOOP_SET_DIRECT_IO", 0x4C08, "value", 0),
    Request("LOOP_SET_BLOCK_SIZE", 0x4C09, "value", 0),
    Request("LOOP_CONFIGURE", 0x4C0A, "in", 304, fd_at=0),  # struct loop_config: fd, block size, info
    Request("LOOP_CTL_ADD", 0x4C80, "value", 0),
    Request("LOOP_CTL_REMOVE", 0x4C81, "value", 0),
    Request("LOOP_CTL_GET_FREE", 0x4C82, "none", 0),
]
BY_NR: dict[int, Request] = {r.nr: r for r in _TABLE}
NR: dict[str, int] = {r.name: r.nr for r in _TABLE}  # for drivers: the numbers by their Linux names


def request(nr: int) -> Request | None:
    """What request ``nr`` takes: the table's entry, else what its _IOC encoding says (None: an
    old request the table does not know, whose argument cannot be told)."""
    nr &= 0xFFFFFFFF
    known = BY_NR.get(nr)
    if known is not None:
        return known
    way, size = nr >> 30, (nr >> 16) & 0x3FFF
    if not way or not size:
        return None
    return Request(f"_IOC({nr:#x})", nr, {_IOC_WRITE: "in", _IOC_READ: "out"}.get(way, "inout"), size)
