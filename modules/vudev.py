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
import mmap
import os
import stat
import struct
from typing import Any

from umvu.abi import fallocate
from umvu.hookspecs import hookimpl
from umvu.vfs import Device, FileSystem

NODE_MOUNTS = ("vudevramdisk", "vudevpartx", "vudevnull", "vudevzero")  # their mount makes the node
PATH_SOURCES = ("vudevpartx",)  # the image is named in the caller's view
MINORS = 64  # per disk: the whole disk, then up to 63 partitions

# ioctl requests (linux/fs.h, linux/hdreg.h); their argument sizes are umvu.ioctls' to say
BLKROSET, BLKROGET, BLKRRPART, BLKGETSIZE, BLKFLSBUF = 0x125D, 0x125E, 0x125F, 0x1260, 0x1261
BLKSSZGET, BLKDISCARD, BLKIOMIN, BLKIOOPT, BLKPBSZGET = 0x1268, 0x1277, 0x1278, 0x1279, 0x127B
BLKDISCARDZEROES, BLKZEROOUT, HDIO_GETGEO = 0x127C, 0x127F, 0x0301
BLKGETSIZE64, BLKGETZONESZ, BLKGETNRZONES = 0x80081272, 0x80041284, 0x80041285
BLKRASET, BLKRAGET, BLKSECTGET, BLKALIGNOFF = 0x1262, 0x1263, 0x1267, 0x127A
BLKBSZGET, BLKBSZSET = 0x80081270, 0x40081271
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
    """Anonymous memory: pages are taken as they are written (a discard gives them back)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.mem = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)

    def pread(self, n: int, offset: int) -> bytes:
        return self.mem[offset : offset + n]

    def pwrite(self, data: bytes, offset: int) -> None:
        self.mem[offset : offset + len(data)] = data

    def zero(self, offset: int, length: int) -> None:
        page = mmap.PAGESIZE
        first, last = -(-offset // page) * page, (offset + length) // page * page
        if first < last:
            self.mem.madvise(mmap.MADV_DONTNEED, first, last - first)  # whole pages: given back
        for a, b in ((offset, min(first, offset + length)), (max(last, offset), offset + length)):
            if a < b:
                self.mem[a:b] = bytes(b - a)

    def sync(self) -> None:
        pass

    def close(self) -> None:
        self.mem.close()


class FileStore:
    """An image file, opened once at mount."""

    def __init__(self, path: str) -> None:
        try:
            self.fd, self.readonly = os.open(path, os.O_RDWR | os.O_CLOEXEC), False
        except PermissionError:  # a write-protected image is a read-only disk (as losetup says)
            self.fd, self.readonly = os.open(path, os.O_RDONLY | os.O_CLOEXEC), True
        st = os.fstat(self.fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            os.close(self.fd)
            raise OSError(errno.EINVAL, f"{path}: not a file or a block device")
        self.size = os.lseek(self.fd, 0, os.SEEK_END)

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
    return {n: p for n, p in parts.items() if p[0] < size}


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
    if head[:8] != b"EFI PART":
        return None
    entries_lba, count, entry_size = struct.unpack_from("<QII", head, 72)
    if not 128 <= entry_size <= 4096 or count > 1024:
        return None
    table = read(count * entry_size, entries_lba * sector)
    parts = {}
    for i in range(count):
        e = table[i * entry_size : (i + 1) * entry_size]
        if len(e) < 56 or e[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        if first <= last and first * sector < size:
            parts[i + 1] = (first * sector, (last - first + 1) * sector)
    return parts


# -- the drivers --------------------------------------------------------------------------------------
class Part:
    __slots__ = ("number", "start", "length")

    def __init__(self, number: int, start: int, length: int) -> None:
        self.number, self.start, self.length = number, start, length


class Disk(Device):
    """One disk: its store, its sector size, and its partitions by minor (0: the whole disk)."""

    def __init__(self, store: Any, sector: int, readonly: bool, partitioned: bool) -> None:
        self.store, self.sector, self.readonly, self.partitioned = store, sector, readonly, partitioned
        self.parts: dict[int, tuple[int, int]] = {0: (0, store.size)}
        self.open_parts: dict[int, int] = {}  # partition number -> handles open on it
        self.base = 0  # the first minor
        self.readahead = 256  # sectors (BLKRAGET), the kernel's default 128 KiB
        self.on_reread: Any = None  # the partition nodes follow the table

    def reread(self) -> None:
        found = partitions(self.store.pread, self.store.size, self.sector) if self.partitioned else {}
        self.parts = {0: (0, self.store.size), **{n: p for n, p in found.items() if n < MINORS}}

    def open(self, rdev: int, flags: int) -> Part:
        n = os.minor(rdev) - self.base
        if n not in self.parts:
            raise OSError(errno.ENXIO, "no such partition")
        self.open_parts[n] = self.open_parts.get(n, 0) + 1
        return Part(n, *self.parts[n])

    def close(self, handle: Part) -> None:
        self.open_parts[handle.number] -= 1
        if not self.open_parts[handle.number]:
            del self.open_parts[handle.number]

    def size(self, handle: Part) -> int:
        return handle.length

    def read(self, handle: Part, size: int, offset: int) -> bytes:
        if offset >= handle.length:
            return b""
        return self.store.pread(min(size, handle.length - offset), handle.start + offset)

    def write(self, handle: Part, data: bytes, offset: int) -> int:
        if self.readonly:
            raise OSError(errno.EPERM, "read-only disk")  # blkdev_write_iter
        if offset >= handle.length:
            raise OSError(errno.ENOSPC, "past the end of the device")
        data = data[: handle.length - offset]
        self.store.pwrite(data, handle.start + offset)
        return len(data)

    def fsync(self, handle: Part, datasync: bool) -> None:
        self.store.sync()

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
            return 0, struct.pack("<Q", next(b for b in (4096, 2048, 1024, 512, sector)
                                             if b >= sector and not length % b))
        if request == BLKBSZSET:
            return 0, None
        if request == BLKGETSIZE64:
            return 0, struct.pack("<Q", length)
        if request == BLKGETSIZE:
            return 0, struct.pack("<Q", length // 512)
        if request == HDIO_GETGEO:
            cylinders = min(length // (HEADS * SECTORS * 512), 0xFFFF)
            return 0, struct.pack("<BBHQ", HEADS, SECTORS, cylinders, handle.start // 512)
        if request == BLKROSET:
            self.readonly = bool(struct.unpack("<i", arg)[0])
            return 0, None
        if request == BLKFLSBUF:
            self.store.sync()
            return 0, None
        if request in (BLKDISCARD, BLKZEROOUT):
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


# -- mounts -------------------------------------------------------------------------------------------
class Module:
    def __init__(self) -> None:
        self.vu: Any = None
        self.majors: dict[str, int] = {}
        self.used: set[tuple[str, int]] = set()  # (kind, first minor) of the mounted devices

    def major(self, kind: str) -> int:
        if kind not in self.majors:
            self.majors[kind] = _free_major(kind, set(self.majors.values()))
            self.vu.claim_device(kind, self.majors[kind], range(0, 1 << 20), Dispatcher(self, kind))
        return self.majors[kind]

    def first_free(self, kind: str, step: int) -> int:
        first = 0
        while (kind, first) in self.used:
            first += step
        self.used.add((kind, first))
        return first


class Dispatcher(Device):
    """The one claim per major: each minor range belongs to one mounted device."""

    def __init__(self, module: Module, kind: str) -> None:
        self.module, self.kind = module, kind
        self.devices: dict[int, Device] = {}  # first minor -> driver

    def _driver(self, minor: int) -> Device:
        step = MINORS if self.kind == "b" else 1
        drv = self.devices.get(minor - minor % step)
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

    def fallocate(self, handle: Any, mode: int, offset: int, length: int) -> Any:
        return handle[0].fallocate(handle[1], mode, offset, length)

    def ioctl(self, handle: Any, request: int, arg: Any) -> Any:
        return handle[0].ioctl(handle[1], request, arg)


class DeviceMount(FileSystem):
    """The node at the mount point; a disk's partition nodes come and go with it (companions)."""

    fstype = "devtmpfs"

    def __init__(self, module: Module, kind: str, first: int, driver: Device, mode: int) -> None:
        from umvu.devices import NodeFS

        self.module, self.kind, self.first, self.driver = module, kind, first, driver
        self.dispatcher: Dispatcher = module.vu.hv.registry.device(kind, os.makedev(module.major(kind), 0)).driver
        self.dispatcher.devices[first] = driver
        self.node = NodeFS(kind, os.makedev(module.major(kind), first), mode, (os.getuid(), os.getgid()))
        self.companions: list[str] = []
        self.point = ""

    def lstat(self, path: str) -> os.stat_result:
        return self.node.lstat(path)

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
            vu.unmount(p)
        self.companions = []
        assert isinstance(self.driver, Disk)
        sep = "p" if self.point[-1:].isdigit() else ""
        for n in sorted(self.driver.parts):
            if n:
                name = f"{self.point}{sep}{n}"
                vu.device_node(name, "b", os.makedev(self.module.major("b"), self.first + n), 0o660,
                               (os.getuid(), os.getgid()))
                self.companions.append(name)

    def unmount(self) -> None:
        self.dispatcher.devices.pop(self.first, None)
        self.module.used.discard((self.kind, self.first))
        store = getattr(self.driver, "store", None)
        if store is not None:
            store.sync()
            store.close()


_module = Module()


@hookimpl
def vu_module_describe() -> str:
    return "virtual disks (ramdisk, partitioned images) and null devices, as block and char device nodes"


@hookimpl
def vu_module_load(vu: Any) -> None:
    _module.__init__()  # type: ignore[misc]  # a new insertion: new numbers
    _module.vu = vu


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
    sector = int(opts.get("sector", "512"))
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
