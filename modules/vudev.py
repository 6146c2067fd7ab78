"""vudev: virtual disks and simple devices, made and used with no privilege.

    vumount -t vudevramdisk -o size=64M[,sector=512] none /dev/ram0
    vumount -t vudevpartx [-o ro] IMAGE /dev/hda      # /dev/hda, and /dev/hda1... per partition
    vumount -t vudevnull none /dev/null0              # reads end at once, writes vanish
    vumount -t vudevzero none /dev/zero0              # reads zeros, writes vanish

Each mount makes a device node at its target (which need not exist), with a
number no host device has: opening it, or any node with that number in the
view, reaches this module's driver (the core's devices by number).  Disks
answer the block ioctls mkfs, fdisk and blockdev ask (sizes, sector sizes,
geometry, discard, re-reading the partition table); reads past the end are
0, writes past it ENOSPC, writes to a read-only disk EPERM, as Linux's block
layer.  A partitioned image (MBR with logical partitions, or GPT) shows one
node per partition, named as Linux names them (hda1, or loop0p1 after a
digit); reads and writes stay inside the partition.  vuumount drops the disk
and its partitions (EBUSY while one is open); what a write returned is in the
image then.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import stat
import struct
import time
from typing import Any

from umvu.api import IOCTL as NR
from umvu.api import Device, DirEntry, FileSystem, NodeFS, SyntheticTree, fallocate, hookimpl

NODE_MOUNTS = ("vudevramdisk", "vudevpartx", "vudevnull", "vudevzero")  # their mount makes the node
PATH_SOURCES = ("vudevpartx",)  # the image is named in the caller's view
MINORS = 64  # per disk: the whole disk, then up to 63 partitions

# ioctl requests by their Linux names (umvu.ioctls says each one's number and argument, once)
(BLKROSET, BLKROGET, BLKRRPART, BLKGETSIZE, BLKFLSBUF, BLKSSZGET, BLKDISCARD, BLKIOMIN, BLKIOOPT, BLKPBSZGET,
 BLKDISCARDZEROES, BLKZEROOUT, HDIO_GETGEO, BLKGETSIZE64, BLKGETZONESZ, BLKGETNRZONES, BLKRASET, BLKRAGET,
 BLKSECTGET, BLKALIGNOFF, BLKBSZGET, BLKBSZSET) = (NR[n] for n in (
    "BLKROSET", "BLKROGET", "BLKRRPART", "BLKGETSIZE", "BLKFLSBUF", "BLKSSZGET", "BLKDISCARD", "BLKIOMIN",
    "BLKIOOPT", "BLKPBSZGET", "BLKDISCARDZEROES", "BLKZEROOUT", "HDIO_GETGEO", "BLKGETSIZE64", "BLKGETZONESZ",
    "BLKGETNRZONES", "BLKRASET", "BLKRAGET", "BLKSECTGET", "BLKALIGNOFF", "BLKBSZGET", "BLKBSZSET"))
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 0x01, 0x02, 0x10
HEADS, SECTORS = 255, 63  # the geometry Linux makes up for a disk without one


def _free_major(kind: str, taken: set[int]) -> int:
    """A major number the host has no driver for (the local and experimental range first)."""
    try:
        with open("/proc/devices") as f:
            text = f.read()
    except OSError:
        text = ""
    section = text.split("Block devices:")[0 if kind == "c" else 1] if "Block devices:" in text else ""
    used = {int(line.split()[0]) for line in section.splitlines() if line.strip()[:1].isdigit()}
    for major in (*range(240, 255), *range(60, 64), *range(120, 128)):
        if major not in used and major not in taken:
            return major
    raise OSError(errno.EBUSY, "no free device major number")


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        return int(text[:-1]) * units[text[-1]] if text and text[-1] in units else int(text)
    except ValueError:
        raise OSError(errno.EINVAL, f"bad size: {text!r}") from None


def _options(options: str) -> dict[str, str]:
    return dict(o.partition("=")[::2] for o in options.split(",") if o)


# -- what holds a disk's bytes ---------------------------------------------------------------------
class RamStore:
    """Memory: a memfd, whose pages are taken as they are written (a discard gives them back).

    A file rather than anonymous memory so that the core can make it the callers' fd
    (Disk.backing): their reads and writes are then the kernel's, with no copy through here.
    """

    at = 0  # where byte 0 of the disk is in ``fd``

    def __init__(self, size: int) -> None:
        self.size = size
        self.fd = os.memfd_create("vudevramdisk", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, size)
            self.mem = mmap.mmap(self.fd, size)
        except OSError:
            os.close(self.fd)
            raise

    def pread(self, n: int, offset: int) -> bytes:
        return self.mem[offset : offset + n]

    def pwrite(self, data: bytes, offset: int) -> None:
        self.mem[offset : offset + len(data)] = data

    def zero(self, offset: int, length: int) -> None:
        fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)  # pages given back

    def sync(self) -> None:
        pass

    def close(self) -> None:
        self.mem.close()
        os.close(self.fd)


class Unbound:
    """What a loop device holds before LOOP_SET_FD: nothing (size 0)."""

    size, readonly, name = 0, False, ""

    def pread(self, n: int, offset: int) -> bytes:
        return b""

    def pwrite(self, data: bytes, offset: int) -> None:
        raise OSError(errno.ENOSPC, "no backing file")

    def zero(self, offset: int, length: int) -> None:
        pass

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


class FileStore:
    """An image file, opened once at mount (or a file a loop device is given, by its fd)."""

    at = 0

    def __init__(self, path: str | None, fd: int | None = None) -> None:
        if fd is not None:
            self.fd = os.dup(fd)
            self.readonly = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        else:
            try:
                self.fd, self.readonly = os.open(path, os.O_RDWR | os.O_CLOEXEC), False
            except PermissionError:  # a write-protected image is a read-only disk (as losetup says)
                self.fd, self.readonly = os.open(path, os.O_RDONLY | os.O_CLOEXEC), True
        self.name = os.readlink(f"/proc/self/fd/{self.fd}")
        st = os.fstat(self.fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            os.close(self.fd)
            raise OSError(errno.EINVAL, f"{path or self.name}: not a file or a block device")
        self.size = os.lseek(self.fd, 0, os.SEEK_END)
        self.dev, self.ino = st.st_dev, st.st_ino

    def pread(self, n: int, offset: int) -> bytes:
        return os.pread(self.fd, n, offset)

    def pwrite(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            view = view[os.pwrite(self.fd, view, offset) :]
            offset += len(data) - len(view)
            data = view

    def zero(self, offset: int, length: int) -> None:
        try:  # the image keeps its size and gives the blocks back
            fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)
        except OSError:  # a file system that cannot punch: write the zeros
            for at in range(offset, offset + length, 1 << 20):
                self.pwrite(bytes(min(1 << 20, offset + length - at)), at)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


# -- partition tables -------------------------------------------------------------------------------
def partitions(read: Any, size: int, sector: int = 512) -> dict[int, tuple[int, int]]:
    """Partition number -> (start, length) in bytes, as Linux's msdos and efi parsers number them;
    {} for a disk with no table."""
    mbr = read(512, 0)
    if len(mbr) < 512 or mbr[510:512] != b"\x55\xaa":
        return {}
    entries = [struct.unpack_from("<B3sB3sII", mbr, 446 + 16 * i) for i in range(4)]
    if any(e[2] == 0xEE for e in entries):
        gpt = _gpt(read, size, sector)
        if gpt is not None:
            return gpt
    parts: dict[int, tuple[int, int]] = {}
    for i, (_status, _chs, kind, _chs2, start, count) in enumerate(entries, 1):
        if not kind or not count:
            continue
        if kind in (0x05, 0x0F, 0x85):  # extended: Linux shows 1 KiB of it, and its logical ones from 5
            parts[i] = (start * sector, min(count * sector, 1024))
            _logical(read, start, count, sector, parts)
        else:
            parts[i] = (start * sector, count * sector)
    # a partition past the end of the disk is cut there (Linux's check_partition warns and truncates)
    return {n: (start, min(length, size - start)) for n, (start, length) in parts.items() if start < size}


def _logical(read: Any, ext_start: int, ext_count: int, sector: int, parts: dict[int, tuple[int, int]]) -> None:
    ebr, n, seen = ext_start, 5, set()
    while ebr not in seen and len(seen) < 128:
        seen.add(ebr)
        data = read(512, ebr * sector)
        if len(data) < 512 or data[510:512] != b"\x55\xaa":
            return
        _s, _c, kind, _c2, start, count = struct.unpack_from("<B3sB3sII", data, 446)
        if kind and count:
            parts[n] = ((ebr + start) * sector, count * sector)
            n += 1
        _s, _c, kind, _c2, start, count = struct.unpack_from("<B3sB3sII", data, 462)
        if not kind or not start or start >= ext_count:
            return
        ebr = ext_start + start


def _gpt(read: Any, size: int, sector: int) -> dict[int, tuple[int, int]] | None:
    head = read(92, sector)
    if len(head) < 92 or head[:8] != b"EFI PART":
        return None
    entries_lba, count, entry_size = struct.unpack_from("<QII", head, 72)
    if not 128 <= entry_size <= 4096 or count > 1024 or not 0 < entries_lba * sector < size:
        return None
    table = read(count * entry_size, entries_lba * sector)
    parts = {}
    for i in range(count):
        e = table[i * entry_size : (i + 1) * entry_size]
        if len(e) < 56 or e[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        if first <= last and (last + 1) * sector <= size:  # efi_partition drops entries past the disk
            parts[i + 1] = (first * sector, (last - first + 1) * sector)
    return parts


# -- the drivers --------------------------------------------------------------------------------------
class Part:
    """An open partition (0: the whole disk).  Where it lies is asked at each call: a loop device
    bound after the open, or a table re-read, moves it."""

    __slots__ = ("number", "disk", "writable")

    def __init__(self, number: int, disk: Disk, writable: bool = True) -> None:
        self.number, self.disk, self.writable = number, disk, writable

    @property
    def start(self) -> int:
        return self.disk.parts.get(self.number, (0, 0))[0]

    @property
    def length(self) -> int:
        return self.disk.parts.get(self.number, (0, 0))[1]


class Disk(Device):
    """One disk: its store, its sector size, and its partitions by minor (0: the whole disk)."""

    def __init__(self, store: Any, sector: int, readonly: bool, partitioned: bool) -> None:
        self.store, self.sector, self.readonly, self.partitioned = store, sector, readonly, partitioned
        self.parts: dict[int, tuple[int, int]] = {0: (0, store.size)}
        self.open_parts: dict[int, int] = {}  # partition number -> handles open on it
        self.base = 0  # the minor of partition 0: partition n is base + n
        self.whole = -1  # the whole disk's number (a loop device's is 7:N, its partitions elsewhere)
        self.readahead = 256  # sectors (BLKRAGET), the kernel's default 128 KiB
        self.gone = False  # unmounted: the store closes with the last open partition
        self.on_reread: Any = None  # the partition nodes follow the table

    def reread(self) -> None:
        found = partitions(self.store.pread, self.store.size, self.sector) if self.partitioned else {}
        self.parts = {0: (0, self.store.size), **{n: p for n, p in found.items() if n < MINORS}}

    def open(self, rdev: int, flags: int) -> Part:
        n = 0 if rdev == self.whole else os.minor(rdev) - self.base
        if n not in self.parts:
            raise OSError(errno.ENXIO, "no such partition")
        self.open_parts[n] = self.open_parts.get(n, 0) + 1
        return Part(n, self, flags & os.O_ACCMODE != os.O_RDONLY)

    def close(self, handle: Part) -> None:
        self.open_parts[handle.number] -= 1
        if not self.open_parts[handle.number]:
            del self.open_parts[handle.number]
        if self.gone and not self.open_parts:  # unmounted lazily while open: the store goes now
            self.store.sync()
            self.store.close()

    def size(self, handle: Part) -> int:
        return handle.length

    def read(self, handle: Part, size: int, offset: int) -> bytes:
        start, length = self.parts.get(handle.number, (0, 0))
        if offset >= length:
            return b""
        return self.store.pread(min(size, length - offset), start + offset)

    def write(self, handle: Part, data: bytes, offset: int) -> int:
        if self.readonly:
            raise OSError(errno.EPERM, "read-only disk")  # blkdev_write_iter
        start, length = self.parts.get(handle.number, (0, 0))
        if offset >= length:
            raise OSError(errno.ENOSPC, "past the end of the device")
        data = data[: length - offset]
        self.store.pwrite(data, start + offset)
        return len(data)

    def fsync(self, handle: Part, datasync: bool) -> None:
        self.store.sync()

    def backing(self, handle: Part) -> tuple[int, int, int, bool] | None:
        fd = getattr(self.store, "fd", None)  # an unbound loop device has none
        if fd is None:
            return None
        start, length = self.parts.get(handle.number, (0, 0))
        return fd, self.store.at + start, length, not self.readonly and handle.writable

    def _range(self, handle: Part, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or (offset | length) & (self.sector - 1) or offset + length > handle.length:
            raise OSError(errno.EINVAL, "a range outside the device, or not in whole sectors")

    def fallocate(self, handle: Part, mode: int, offset: int, length: int) -> None:
        if mode & ~FALLOC_FL_KEEP_SIZE not in (FALLOC_FL_ZERO_RANGE, FALLOC_FL_PUNCH_HOLE) or \
                mode & FALLOC_FL_PUNCH_HOLE and not mode & FALLOC_FL_KEEP_SIZE:
            raise OSError(errno.EOPNOTSUPP, "blkdev_fallocate: zero or punch, in place")
        if self.readonly:
            raise OSError(errno.EPERM, "read-only disk")
        self._range(handle, offset, length)
        self.store.zero(handle.start + offset, length)

    def ioctl(self, handle: Part, request: int, arg: Any) -> tuple[int, bytes | None]:
        length, sector = handle.length, self.sector
        u32 = {BLKSSZGET: sector, BLKPBSZGET: sector, BLKIOMIN: sector, BLKIOOPT: 0, BLKROGET: int(self.readonly),
               BLKDISCARDZEROES: 0, BLKGETZONESZ: 0, BLKGETNRZONES: 0, BLKALIGNOFF: 0}
        if request in u32:
            return 0, struct.pack("<I", u32[request])
        if request == BLKSECTGET:
            return 0, struct.pack("<H", 2560)  # 1280 KiB, a virtio disk's max_sectors
        if request == BLKRAGET:
            return 0, struct.pack("<q", self.readahead)
        if request == BLKRASET:
            self.readahead = arg
            return 0, None
        if request == BLKBSZGET:  # set_init_blocksize: the largest block up to a page that divides the size
            return 0, struct.pack("<i", next((b for b in (4096, 2048, 1024, 512) if b >= sector and not length % b),
                                             max(sector, 512)))  # put_int, though the number says size_t
        if request == BLKBSZSET:
            return 0, None
        if request == BLKGETSIZE64:
            return 0, struct.pack("<Q", length)
        if request == BLKGETSIZE:
            return 0, struct.pack("<Q", length // 512)
        if request == HDIO_GETGEO:
            cylinders = min(length // (HEADS * SECTORS * 512), 0xFFFF)
            return 0, struct.pack("<BBH4xQ", HEADS, SECTORS, cylinders, handle.start // 512)  # struct hd_geometry
        if request == BLKROSET:
            self.readonly = bool(struct.unpack("<i", arg)[0])
            return 0, None
        if request == BLKFLSBUF:
            self.store.sync()
            return 0, None
        if request in (BLKDISCARD, BLKZEROOUT):
            if not handle.writable:
                raise OSError(errno.EBADF, "not open for writing")  # blk_ioctl_discard
            if self.readonly:
                raise OSError(errno.EPERM, "read-only disk")
            start, count = struct.unpack("<QQ", arg)
            self._range(handle, start, count)
            self.store.zero(handle.start + start, count)
            return 0, None
        if request == BLKRRPART:
            if handle.number or not self.partitioned:
                raise OSError(errno.EINVAL, "not a partitionable whole disk")
            if any(n for n in self.open_parts if n):
                raise OSError(errno.EBUSY, "a partition is open")
            self.reread()
            if self.on_reread is not None:
                self.on_reread()
            return 0, None
        raise OSError(errno.ENOTTY, "inappropriate ioctl for device")  # CD-ROM, floppy: not a plain disk's


class Null(Device):
    def __init__(self, zero: bool) -> None:
        self.zero = zero

    def open(self, rdev: int, flags: int) -> None:
        return None

    def read(self, handle: Any, size: int, offset: int) -> bytes:
        return bytes(min(size, 1 << 20)) if self.zero else b""

    def write(self, handle: Any, data: bytes, offset: int) -> int:
        return len(data)


# -- loop devices ------------------------------------------------------------------------------------
(LOOP_SET_FD, LOOP_CLR_FD, LOOP_SET_STATUS64, LOOP_GET_STATUS64, LOOP_SET_CAPACITY, LOOP_SET_DIRECT_IO,
 LOOP_SET_BLOCK_SIZE, LOOP_CONFIGURE, LOOP_CTL_ADD, LOOP_CTL_REMOVE, LOOP_CTL_GET_FREE) = (NR[n] for n in (
    "LOOP_SET_FD", "LOOP_CLR_FD", "LOOP_SET_STATUS64", "LOOP_GET_STATUS64", "LOOP_SET_CAPACITY",
    "LOOP_SET_DIRECT_IO", "LOOP_SET_BLOCK_SIZE", "LOOP_CONFIGURE", "LOOP_CTL_ADD", "LOOP_CTL_REMOVE",
    "LOOP_CTL_GET_FREE"))
LO_FLAGS_READ_ONLY, LO_FLAGS_AUTOCLEAR, LO_FLAGS_PARTSCAN, LO_FLAGS_DIRECT_IO = 1, 4, 8, 16
LOOP_INFO64 = struct.Struct("<QQQQQIIII64s64s32sQQ")  # struct loop_info64
DEV_LOOP_CONTROL, LOOP_MAJOR = os.makedev(10, 237), 7


class Window:
    """A loop device's view of its file: from lo_offset, up to lo_sizelimit."""

    def __init__(self, file: FileStore, offset: int, limit: int) -> None:
        self.file, self.offset = file, offset
        self.size = max(0, file.size - offset)
        if limit:
            self.size = min(self.size, limit)
        self.size -= self.size % 512
        self.readonly, self.name = file.readonly, file.name
        self.fd, self.at = file.fd, offset

    def pread(self, n: int, offset: int) -> bytes:
        return self.file.pread(n, self.offset + offset)

    def pwrite(self, data: bytes, offset: int) -> None:
        self.file.pwrite(data, self.offset + offset)

    def zero(self, offset: int, length: int) -> None:
        self.file.zero(self.offset + offset, length)

    def sync(self) -> None:
        self.file.sync()

    def close(self) -> None:
        self.file.close()


class Loop(Disk):
    """/dev/loopN: a file seen as a disk once losetup gives it one (LOOP_CONFIGURE, LOOP_SET_FD)."""

    def __init__(self, number: int) -> None:
        super().__init__(Unbound(), 512, False, partitioned=False)
        self.number, self.flags, self.opens = number, 0, 0
        self.info = (0, 0)  # lo_offset, lo_sizelimit
        self.mount: Any = None  # its DeviceMount: the partition nodes follow a scan

    @property
    def bound(self) -> bool:
        return not isinstance(self.store, Unbound)

    def open(self, rdev: int, flags: int) -> Part:
        part = super().open(rdev, flags)
        self.opens += 1
        return part

    def close(self, handle: Part) -> None:
        super().close(handle)
        self.opens -= 1
        if not self.opens and self.bound and self.flags & LO_FLAGS_AUTOCLEAR:
            self.unbind()  # losetup -d while it was open, or --autoclear: the last close detaches

    def bind(self, fd: int, offset: int, limit: int, flags: int, block: int) -> None:
        if self.bound:
            raise OSError(errno.EBUSY, "the loop device is bound already")
        file = FileStore(None, fd)
        self.store = Window(file, offset, limit)
        self.readonly = file.readonly or bool(flags & LO_FLAGS_READ_ONLY)
        self.flags = flags & (LO_FLAGS_AUTOCLEAR | LO_FLAGS_PARTSCAN | LO_FLAGS_DIRECT_IO) \
            | (LO_FLAGS_READ_ONLY if self.readonly else 0)
        self.sector = block if block in (512, 1024, 2048, 4096) else 512
        self.info = (offset, limit)
        self.partitioned = bool(self.flags & LO_FLAGS_PARTSCAN)
        self.rescan()

    def unbind(self) -> None:
        store, self.store = self.store, Unbound()
        self.flags, self.readonly, self.partitioned, self.info = 0, False, False, (0, 0)
        store.sync()
        store.close()
        self.rescan()

    def rescan(self) -> None:
        self.reread()
        if self.mount is not None:
            self.mount.renode()
            self._sysfs()

    def sysfs_attrs(self) -> dict[str, Any]:
        """/sys/block/loopN/loop while bound: util-linux lists the loops it finds there."""
        def flag(bit: int) -> Any:
            return lambda: f"{int(bool(self.flags & bit))}\n"
        return {"backing_file": lambda: self.store.name + "\n", "offset": lambda: f"{self.info[0]}\n",
                "sizelimit": lambda: f"{self.info[1]}\n", "autoclear": flag(LO_FLAGS_AUTOCLEAR),
                "partscan": flag(LO_FLAGS_PARTSCAN), "dio": flag(LO_FLAGS_DIRECT_IO)}

    def _sysfs(self) -> None:
        """The host's /sys/block/loopN (N below the host's loop count) gains loop/ while bound;
        the others are the module's whole (DeviceMount.publish)."""
        vu, point = self.mount.module.vu, f"/sys/devices/virtual/block/loop{self.number}/loop"
        if vu.mounted(point):
            vu.unmount(point)
        if self.bound and os.path.isdir(os.path.dirname(point)) and not vu.mounted(os.path.dirname(point)):
            vu.mount(point, TextDir(self.sysfs_attrs()), source="sysfs", hidden=True)

    def _status(self) -> bytes:
        file = self.store.file  # type: ignore[attr-defined]
        return LOOP_INFO64.pack(file.dev, file.ino, 0, self.info[0], self.info[1], self.number, 0, 0, self.flags,
                                os.fsencode(file.name)[:63], b"", b"", 0, 0)

    def ioctl(self, handle: Part, request: int, arg: Any) -> tuple[int, bytes | None]:
        if request in (LOOP_SET_FD, LOOP_CONFIGURE):
            if request == LOOP_SET_FD:
                self.bind(arg, 0, 0, 0, 512)
                return 0, None
            fd, block = struct.unpack_from("<II", arg)
            if block and block not in (512, 1024, 2048, 4096):
                raise OSError(errno.EINVAL, "block size")  # loop_validate_block_size
            info = LOOP_INFO64.unpack_from(arg, 8)
            self.bind(fd, info[3], info[4], info[8], block)
            return 0, None
        if not self.bound and request in (LOOP_CLR_FD, LOOP_SET_STATUS64, LOOP_GET_STATUS64, LOOP_SET_CAPACITY,
                                          LOOP_SET_BLOCK_SIZE, LOOP_SET_DIRECT_IO):
            raise OSError(errno.ENXIO, "the loop device is not bound")
        if request == LOOP_CLR_FD:  # loop_clr_fd: the file goes with the last close (this fd's, often)
            self.flags |= LO_FLAGS_AUTOCLEAR
            return 0, None
        if request == LOOP_GET_STATUS64:
            return 0, self._status()
        if request == LOOP_SET_STATUS64:
            info = LOOP_INFO64.unpack(arg)
            scan = info[8] & LO_FLAGS_PARTSCAN and not self.flags & LO_FLAGS_PARTSCAN
            moved = (info[3], info[4]) != self.info
            # AUTOCLEAR may come and go; PARTSCAN only comes (loop_set_status)
            self.flags = self.flags & ~LO_FLAGS_AUTOCLEAR | info[8] & (LO_FLAGS_AUTOCLEAR | LO_FLAGS_PARTSCAN)
            if moved:
                self.store = Window(self.store.file, info[3], info[4])  # type: ignore[attr-defined]
                self.info = (info[3], info[4])
            self.partitioned = bool(self.flags & LO_FLAGS_PARTSCAN)
            if scan or moved:
                self.rescan()
            return 0, None
        if request == LOOP_SET_CAPACITY:
            file = self.store.file  # type: ignore[attr-defined]
            file.size = os.lseek(file.fd, 0, os.SEEK_END)
            self.store = Window(file, *self.info)
            self.parts[0] = (0, self.store.size)
            return 0, None
        if request == LOOP_SET_DIRECT_IO:
            return 0, None
        if request == LOOP_SET_BLOCK_SIZE:
            if arg not in (512, 1024, 2048, 4096):
                raise OSError(errno.EINVAL, "block size")
            self.sector = arg
            return 0, None
        return super().ioctl(handle, request, arg)


class TextDir(FileSystem):
    """A read-only sysfs-like directory of small text files, computed when opened."""

    fstype = "sysfs"

    def __init__(self, files: dict[str, Any]) -> None:
        self.files, self.born = files, time.time()

    def _st(self, mode: int, size: int, ino: int) -> os.stat_result:
        t = int(self.born)
        return os.stat_result((mode, ino, 0, 2 if stat.S_ISDIR(mode) else 1, 0, 0, size, t, t, t))

    def lstat(self, path: str) -> os.stat_result:
        if path == "/":
            return self._st(stat.S_IFDIR | 0o755, 0, 1)
        name = path[1:]
        if name not in self.files:
            raise OSError(errno.ENOENT, "no such file")
        return self._st(stat.S_IFREG | 0o444, 4096, 2 + list(self.files).index(name))

    def open(self, path: str, flags: int, mode: int) -> Any:
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise OSError(errno.EACCES, "read-only")
        return path if path == "/" else self.files[path[1:]]().encode()

    def read(self, handle: Any, size: int, offset: int) -> bytes:
        if isinstance(handle, str):
            raise OSError(errno.EISDIR, "a directory")
        return handle[offset : offset + size]

    def fstat(self, handle: Any) -> os.stat_result:
        return self.lstat("/") if isinstance(handle, str) else self._st(stat.S_IFREG | 0o444, 4096, 2)

    def getdents(self, handle: Any) -> list[DirEntry]:
        return [DirEntry(".", 1, 4), DirEntry("..", 1, 4)] + [DirEntry(n, 2 + i, 8) for i, n in enumerate(self.files)]


class LoopControl(Device):
    """/dev/loop-control: finds, adds and removes loop devices (their nodes come and go)."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.loops: dict[int, Loop] = {}

    def open(self, rdev: int, flags: int) -> None:
        return None

    def add(self, n: int) -> Loop:
        loop = Loop(n)
        major = self.module.loop_major()
        first = n  # 7:N, as Linux numbers loop devices (max_part 0); partitions get vudev's numbers
        self.module.used.add(("loop", first))
        dm = DeviceMount(self.module, "b", first, loop, 0o660, major)
        dm.point = f"/dev/loop{n}"
        self.module.vu.mount(dm.point, dm, source="udev", hidden=True)
        loop.mount = dm
        self.loops[n] = loop
        return loop

    def remove(self, n: int) -> None:
        loop = self.loops.pop(n)
        dm = loop.mount
        for p in dm.companions:
            self.module.vu.unmount(p)
        self.module.vu.unmount(dm.point)
        dm.unmount()

    def ioctl(self, handle: Any, request: int, arg: Any) -> tuple[int, bytes | None]:
        if request == LOOP_CTL_GET_FREE:
            n = next((k for k, lo in sorted(self.loops.items()) if not lo.bound and not lo.opens), None)
            if n is None:
                n = next(k for k in range(1 << 20) if k not in self.loops)
                self.add(n)
            return n, None
        if request in (LOOP_CTL_ADD, LOOP_CTL_REMOVE):
            arg = struct.unpack("<i", struct.pack("<I", arg & 0xFFFFFFFF))[0]  # an int in the kernel
        if request == LOOP_CTL_ADD:
            if arg in self.loops:
                raise OSError(errno.EEXIST, "exists")
            n = arg if arg >= 0 else next(k for k in range(1 << 20) if k not in self.loops)
            self.add(n)
            return n, None
        if request == LOOP_CTL_REMOVE:
            loop = self.loops.get(arg)
            if loop is None:
                raise OSError(errno.ENODEV, "no such loop device")
            if loop.bound or loop.opens:
                raise OSError(errno.EBUSY, "in use")
            self.remove(arg)
            return 0, None
        raise OSError(errno.ENOTTY, "inappropriate ioctl for device")


# -- mounts -------------------------------------------------------------------------------------------
class Module:
    def __init__(self) -> None:
        self.vu: Any = None
        self.majors: dict[str, int] = {}
        self.used: set[tuple[str, int]] = set()  # (kind, first minor) of the mounted devices
        self.control: Any = None  # the LoopControl

    def major(self, kind: str) -> int:
        """vudev's major for disks ("b") or char devices ("c"): one the host does not use."""
        if kind not in self.majors:
            self.majors[kind] = _free_major(kind, set(self.majors.values()))
            self.vu.claim_device(kind, self.majors[kind], range(0, 1 << 20), Dispatcher(self, kind))
        return self.majors[kind]

    def loop_major(self) -> int:
        """Loop devices keep Linux's major 7 (util-linux tells a loop device by it); in the view the
        numbers are this module's, the host's loop devices being root's anyway."""
        if "loop" not in self.majors:
            self.majors["loop"] = LOOP_MAJOR
            self.vu.claim_device("b", LOOP_MAJOR, range(0, 1 << 20), Dispatcher(self, "b", 1))
        return LOOP_MAJOR

    def first_free(self, kind: str, step: int) -> int:
        first = 0
        while (kind, first) in self.used:
            first += step
        self.used.add((kind, first))
        return first


class Dispatcher(Device):
    """The one claim per major: each minor range belongs to one mounted device."""

    def __init__(self, module: Module, kind: str, step: int | None = None) -> None:
        self.module, self.kind = module, kind
        self.step = step or (MINORS if kind == "b" else 1)  # minors per device
        self.devices: dict[int, Device] = {}  # first minor -> driver

    def _driver(self, minor: int) -> Device:
        drv = self.devices.get(minor - minor % self.step)
        if drv is None:
            raise OSError(errno.ENXIO, "no such device")
        return drv

    def open(self, rdev: int, flags: int) -> Any:
        drv = self._driver(os.minor(rdev))
        return drv, drv.open(rdev, flags)

    def close(self, handle: Any) -> Any:
        return handle[0].close(handle[1])

    def read(self, handle: Any, size: int, offset: int) -> Any:
        return handle[0].read(handle[1], size, offset)

    def write(self, handle: Any, data: bytes, offset: int) -> Any:
        return handle[0].write(handle[1], data, offset)

    def fsync(self, handle: Any, datasync: bool) -> Any:
        return handle[0].fsync(handle[1], datasync)

    def size(self, handle: Any) -> Any:
        return handle[0].size(handle[1])

    def backing(self, handle: Any) -> Any:
        return handle[0].backing(handle[1])

    def fallocate(self, handle: Any, mode: int, offset: int, length: int) -> Any:
        return handle[0].fallocate(handle[1], mode, offset, length)

    def ioctl(self, handle: Any, request: int, arg: Any) -> Any:
        return handle[0].ioctl(handle[1], request, arg)


class DeviceMount(FileSystem):
    """The node at the mount point; a disk's partition nodes come and go with it (companions)."""

    fstype = "devtmpfs"

    def __init__(self, module: Module, kind: str, first: int, driver: Device, mode: int,
                 major: int | None = None) -> None:
        self.module, self.kind, self.first, self.driver = module, kind, first, driver
        self.major = major if major is not None else module.major(kind)
        self.dispatcher: Dispatcher = module.vu.driver(kind, os.makedev(self.major, 0))  # type: ignore[assignment]
        self.dispatcher.devices[first] = driver
        self.node = NodeFS(kind, os.makedev(self.major, first), mode, (os.getuid(), os.getgid()))
        # partition n is (parts_major, parts_first + n): the disk's own numbers, or for a loop
        # device (7:N, one minor each) a range of vudev's block major, as Linux's extended numbers
        self.parts_major, self.parts_first = self.major, first
        if isinstance(driver, Disk):
            driver.whole = os.makedev(self.major, first)
            if self.dispatcher.step == 1:
                self.parts_major, self.parts_first = module.major("b"), module.first_free("b", MINORS)
                module.vu.driver("b", os.makedev(self.parts_major, 0)).devices[
                    self.parts_first] = driver
            driver.base = self.parts_first
        self.companions: list[str] = []
        self.point = ""
        self.sysfs: list[str] = []  # the sysfs mounts that show it
        self.published: list[str] = []  # its names in /proc/partitions

    def lstat(self, path: str) -> os.stat_result:
        return self.node.lstat(path)

    def holds(self, of: Any) -> bool:
        """Whether open file ``of`` is this device's, through whatever node (the core's busy check)."""
        handle = of.handle
        return isinstance(handle, tuple) and len(handle) == 2 and handle[0] is self.driver

    def device_ro(self, readonly: bool) -> None:
        """vumount -o ro: the core says so here (the node itself stays writable, as in /dev)."""
        if readonly and isinstance(self.driver, Disk):
            self.driver.readonly = True

    def statfs(self, path: str) -> Any:
        return self.node.statfs(path)

    def renode(self) -> None:
        """Partition nodes for what the table says now."""
        vu = self.module.vu
        for p in self.companions:
            if vu.mounted(p):  # gone already when the module is being removed
                vu.unmount(p)
        self.companions = []
        if not vu.mounted(self.point) and self.point.startswith("/dev/loop"):
            return  # a loop device whose node went with the module
        assert isinstance(self.driver, Disk)
        sep = "p" if self.point[-1:].isdigit() else ""
        for n in sorted(self.driver.parts):
            if n:
                name = f"{self.point}{sep}{n}"
                vu.device_node(name, "b", os.makedev(self.parts_major, self.parts_first + n), 0o660,
                               (os.getuid(), os.getgid()))
                self.companions.append(name)
        self.publish()

    def publish(self) -> None:
        """/proc/partitions and sysfs (/sys/block/NAME, /sys/dev/block/MAJ:MIN, the device's directory)
        show the disk and its partitions, as lsblk, blkid and fdisk -l read them."""
        self.unpublish()
        disk = self.driver
        if not isinstance(disk, Disk):
            return
        vu, name = self.module.vu, os.path.basename(self.point)
        if isinstance(disk, Loop) and os.path.isdir(f"/sys/devices/virtual/block/{name}"):
            # the host's loopN directory stays (Loop._sysfs adds its loop/ while bound)
            if disk.bound:
                vu.publish_block(name, self.node.rdev, disk.parts[0][1])
                self.published = [name]
            return
        sep = "p" if name[-1:].isdigit() else ""
        base = f"/sys/devices/virtual/block/{name}"

        def attrs(n: int, rdev: int) -> dict[str, Any]:
            start, length = disk.parts.get(n, (0, 0))
            pname = name if not n else f"{name}{sep}{n}"
            kind = "disk" if not n else "partition"
            d: dict[str, Any] = {
                "dev": f"{os.major(rdev)}:{os.minor(rdev)}\n",
                "size": lambda: f"{disk.parts.get(n, (0, 0))[1] // 512}\n",
                "ro": lambda: f"{int(disk.readonly)}\n", "alignment_offset": "0\n", "discard_alignment": "0\n",
                "stat": " ".join(["0"] * 17) + "\n", "inflight": "       0        0\n", "holders": {},
                "uevent": f"MAJOR={os.major(rdev)}\nMINOR={os.minor(rdev)}\nDEVNAME={pname}\nDEVTYPE={kind}\n"
                          + (f"PARTN={n}\n" if n else ""),
            }
            if n:
                d.update(start=f"{start // 512}\n", partition=f"{n}\n")
            else:
                sector = f"{disk.sector}\n"
                d.update(removable="0\n", range=f"{MINORS}\n", ext_range=f"{MINORS}\n", capability="0\n",
                         slaves={}, queue={"logical_block_size": sector, "physical_block_size": sector,
                                           "hw_sector_size": sector, "minimum_io_size": sector,
                                           "optimal_io_size": "0\n", "rotational": "0\n", "max_sectors_kb": "1280\n",
                                           "read_ahead_kb": "128\n", "discard_granularity": sector,
                                           "discard_max_bytes": "4294966784\n", "nr_requests": "256\n",
                                           "scheduler": "none\n", "zoned": "none\n", "dax": "0\n"})
            return d

        tree = attrs(0, self.node.rdev)
        if isinstance(disk, Loop) and disk.bound:  # what util-linux reads to list the loop devices
            tree["loop"] = disk.sysfs_attrs()
        if disk.parts[0][1]:  # an empty disk (an unbound loop device) is not listed, as on Linux
            vu.publish_block(name, self.node.rdev, disk.parts[0][1])  # the disk, then its partitions
        links = {f"/sys/block/{name}": f"../devices/virtual/block/{name}",
                 f"/sys/dev/block/{self.major}:{self.first}": f"../../devices/virtual/block/{name}"}
        for n in sorted(disk.parts):
            if n:
                rdev = os.makedev(self.parts_major, self.parts_first + n)
                tree[f"{name}{sep}{n}"] = attrs(n, rdev)
                links[f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}"] = \
                    f"../../devices/virtual/block/{name}/{name}{sep}{n}"
                vu.publish_block(f"{name}{sep}{n}", rdev, disk.parts[n][1])
        self.published = [name] + [f"{name}{sep}{n}" for n in disk.parts if n]
        for point, fs in [(base, SyntheticTree(tree)), *((p, SyntheticTree(("link", t))) for p, t in links.items())]:
            if not os.path.lexists(point) and os.path.isdir(os.path.dirname(point)):  # never over the host's
                vu.mount(point, fs, source="sysfs", hidden=True)
                self.sysfs.append(point)

    def unpublish(self) -> None:
        vu = self.module.vu
        for point in self.sysfs:
            if vu.mounted(point):
                vu.unmount(point)
        for name in self.published:
            vu.publish_block(name, None)
        self.sysfs, self.published = [], []

    def unmount(self) -> None:
        self.unpublish()
        self.dispatcher.devices.pop(self.first, None)
        if (self.parts_major, self.parts_first) != (self.major, self.first):
            self.module.vu.driver("b", os.makedev(self.parts_major, 0)).devices.pop(
                self.parts_first, None)
            self.module.used.discard(("b", self.parts_first))
        self.module.used.discard((self.kind if self.major != LOOP_MAJOR else "loop", self.first))
        disk = self.driver
        if isinstance(disk, Disk):
            disk.gone = True
            if not disk.open_parts:
                disk.store.sync()
                disk.store.close()


_module = Module()


@hookimpl
def vu_module_describe() -> str:
    return "virtual disks (ramdisk, partitioned images) and null devices, as block and char device nodes"


@hookimpl
def vu_module_load(vu: Any) -> None:
    _module.__init__()  # type: ignore[misc]  # a new insertion: new numbers
    _module.vu = vu
    control = LoopControl(_module)
    vu.claim_device("c", os.major(DEV_LOOP_CONTROL), range(os.minor(DEV_LOOP_CONTROL), os.minor(DEV_LOOP_CONTROL) + 1),
                    control)
    vu.device_node("/dev/loop-control", "c", DEV_LOOP_CONTROL, 0o660, (os.getuid(), os.getgid()))
    _module.control = control


@hookimpl
def vu_module_unload(vu: Any) -> None:
    for loop in _module.control.loops.values():  # their nodes are gone with the module's mounts
        if loop.bound:
            loop.unbind()


@hookimpl
def vu_filesystems() -> list[str]:
    return list(NODE_MOUNTS)


@hookimpl
def vu_mount(vu: Any, fstype: str, source: str, target: str, options: str) -> FileSystem | None:
    if fstype not in NODE_MOUNTS:
        return None
    opts = _options(options)
    unknown = set(opts) - {"size", "sector"}
    if unknown:
        raise OSError(errno.EINVAL, f"unknown option: {sorted(unknown)[0]}")
    if fstype in ("vudevnull", "vudevzero"):
        first = _module.first_free("c", 1)
        return _placed(DeviceMount(_module, "c", first, Null(fstype == "vudevzero"), 0o666), target)
    sector = int(opts["sector"]) if opts.get("sector", "").isdigit() else 512 if "sector" not in opts else 0
    if sector not in (512, 1024, 2048, 4096):
        raise OSError(errno.EINVAL, "sector must be 512, 1024, 2048 or 4096")
    if fstype == "vudevramdisk":
        size = _size(opts.get("size", "64M"))
        if size <= 0 or size % sector:
            raise OSError(errno.EINVAL, "size must be a positive number of whole sectors")
        disk = Disk(RamStore(size), sector, False, partitioned=True)
    else:
        if not source or source == "none":
            raise OSError(errno.EINVAL, "vudevpartx needs an image (or a device) as its source")
        store = FileStore(source)
        disk = Disk(store, sector, store.readonly, partitioned=True)
        disk.reread()
        if len(disk.parts) == 1:
            disk.store.close()
            raise OSError(errno.EINVAL, f"{source}: no partition table (MBR or GPT) found")
    first = _module.first_free("b", MINORS)
    disk.base = first
    m = _placed(DeviceMount(_module, "b", first, disk, 0o660), target)
    disk.on_reread = m.renode
    m.renode()
    return m


def _placed(m: DeviceMount, target: str) -> DeviceMount:
    m.point = target
    return m
