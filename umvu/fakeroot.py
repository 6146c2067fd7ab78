"""A fake root that remembers: what a session's chown, chmod and mknod asked for, by file.

``umvu --fakeroot`` gives every process the identity of root (umvu.identity) and keeps here
what the real file system cannot hold for an ordinary user: owners, modes (set-user-ID bits
included) and device numbers, by the device and inode the processes see, so that renames and
hard links keep them.  Every stat the processes make shows the records; a file with no record
shows owner and group 0, as under fakeroot(1).  The real files stay the user's.

The state file (``--fakeroot-state FILE``: loaded at start when it exists, written at the end)
holds one record per line, in this text format::

    dev=<st_dev, hex>,ino=<st_ino>,mode=<st_mode, octal>,uid=<uid>,gid=<gid>,rdev=<st_rdev, hex>
    dev=<st_dev, hex>,ino=<st_ino>,xattr=<name's bytes, hex>,value=<hex>

A line starting with ``#`` is a comment.  It names files by device and inode, as fakeroot's
``-s`` files do: it is valid on the file systems it was made on while their inodes last.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

# struct stat (x86_64): st_dev @0, st_ino @8, st_mode @24 (u32), st_uid @28, st_gid @32, st_rdev @40
# struct statx: stx_uid @20, stx_gid @24, stx_mode @28 (u16), stx_ino @32, stx_rdev @128, stx_dev @136
STATX_MODE, STATX_TYPE, STATX_UID, STATX_GID = 0x2, 0x1, 0x8, 0x10


class Record(NamedTuple):
    mode: int | None = None  # the whole st_mode (type and permissions) the file shows
    uid: int = 0
    gid: int = 0
    rdev: int = 0


class Records:
    """The records of a session, by (st_dev, st_ino) as the processes see them."""

    def __init__(self) -> None:
        self.by_file: dict[tuple[int, int], Record] = {}
        # extended attributes the user could not set, by file: name -> value
        self.xattrs: dict[tuple[int, int], dict[str, bytes]] = {}
        # mounts that keep their files' records themselves (FileSystem.fakeroot_records): mount id ->
        # (the host file, the mount's st_dev, the keys recorded through the mount)
        self.kept: dict[int, tuple[str, int, set[tuple[int, int]]]] = {}

    def keep(self, mount_id: int, path: str, mount_dev: int) -> None:
        """Records of a mount's files live in ``path`` too: loaded now (once), written by
        ``save_kept``.  A key whose device was the mount's own is written ``dev=mount``: a later
        mount has another number."""
        if mount_id in self.kept:
            return
        keys: set[tuple[int, int]] = set()
        self.kept[mount_id] = (path, mount_dev, keys)
        if os.path.exists(path):
            keys.update(self._read(path, mount_dev))

    def note(self, mount_id: int, key: tuple[int, int]) -> None:
        if mount_id in self.kept:
            self.kept[mount_id][2].add(key)

    def save_kept(self, mount_id: int) -> None:
        kept = self.kept.pop(mount_id, None)
        if kept is not None:
            path, mount_dev, keys = kept
            self._write(path, keys, mount_dev)

    def get(self, dev: int, ino: int) -> Record:
        return self.by_file.get((dev, ino)) or Record()

    def put(self, dev: int, ino: int, record: Record) -> None:
        self.by_file[(dev, ino)] = record

    def drop(self, dev: int, ino: int) -> None:
        self.by_file.pop((dev, ino), None)
        self.xattrs.pop((dev, ino), None)

    def shown(self, st: os.stat_result, dev: int | None = None) -> tuple[int, int, int, int]:
        """(mode, uid, gid, rdev) a file with these real attributes shows."""
        rec = self.get(st.st_dev if dev is None else dev, st.st_ino)
        return (rec.mode if rec.mode is not None else st.st_mode, rec.uid, rec.gid,
                rec.rdev if rec.mode is not None else st.st_rdev)

    # -- the buffers a stat call filled ------------------------------------------------------
    def patch_stat(self, buf: bytes) -> bytes | None:
        """struct stat as the records show it; None: nothing to change."""
        dev, ino = struct.unpack_from("<QQ", buf, 0)
        (mode,) = struct.unpack_from("<I", buf, 24)
        rec = self.get(dev, ino)
        new_mode = rec.mode if rec.mode is not None else mode
        out = bytearray(buf)
        struct.pack_into("<III", out, 24, new_mode, rec.uid, rec.gid)
        if rec.mode is not None:
            struct.pack_into("<Q", out, 40, rec.rdev)
        return bytes(out) if out != buf else None

    def patch_statx(self, buf: bytes) -> bytes | None:
        (mask,) = struct.unpack_from("<I", buf, 0)
        (ino,) = struct.unpack_from("<Q", buf, 32)
        dmaj, dmin = struct.unpack_from("<II", buf, 136)
        rec = self.get(os.makedev(dmaj, dmin), ino)
        out = bytearray(buf)
        if mask & STATX_UID:
            struct.pack_into("<I", out, 20, rec.uid)
        if mask & STATX_GID:
            struct.pack_into("<I", out, 24, rec.gid)
        if rec.mode is not None:
            if mask & (STATX_MODE | STATX_TYPE):
                struct.pack_into("<H", out, 28, rec.mode)
            struct.pack_into("<II", out, 128, os.major(rec.rdev), os.minor(rec.rdev))
        return bytes(out) if out != buf else None

    # -- the state file ---------------------------------------------------------------------
    def load(self, path: str) -> None:
        self._read(path, None)

    def save(self, path: str) -> None:
        self._write(path, set(self.by_file) | set(self.xattrs), None)

    def _read(self, path: str, mount_dev: int | None) -> set[tuple[int, int]]:
        """Add the records of file ``path``; the files they name."""
        keys = set()
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                try:
                    v = dict(item.split("=", 1) for item in line.split(","))
                    dev = mount_dev if v["dev"] == "mount" and mount_dev is not None else int(v["dev"], 16)
                    key = (dev, int(v["ino"]))
                    if "xattr" in v:
                        name = bytes.fromhex(v["xattr"]).decode("utf-8", "surrogateescape")
                        self.xattrs.setdefault(key, {})[name] = bytes.fromhex(v["value"])
                    else:
                        self.by_file[key] = Record(int(v["mode"], 8) or None, int(v["uid"]), int(v["gid"]),
                                                   int(v.get("rdev", "0"), 16))
                    keys.add(key)
                except (KeyError, ValueError):
                    raise ValueError(f"{path}:{n}: not a record (dev=HEX,ino=N,mode=OCTAL,uid=N,gid=N,rdev=HEX, "
                                     "or dev=HEX,ino=N,xattr=HEX,value=HEX)") from None
        return keys

    def _write(self, path: str, keys: set[tuple[int, int]], mount_dev: int | None) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("# umvu --fakeroot records: dev,ino,mode,uid,gid,rdev or dev,ino,xattr,value\n")
            for dev, ino in sorted(keys):
                shown = "mount" if dev == mount_dev else f"{dev:x}"
                r = self.by_file.get((dev, ino))
                if r is not None:
                    mode = r.mode if r.mode is not None else 0
                    f.write(f"dev={shown},ino={ino},mode={mode:o},uid={r.uid},gid={r.gid},rdev={r.rdev:x}\n")
                for name, value in self.xattrs.get((dev, ino), {}).items():
                    encoded = name.encode("utf-8", "surrogateescape").hex()
                    f.write(f"dev={shown},ino={ino},xattr={encoded},value={value.hex()}\n")
        os.replace(tmp, path)
