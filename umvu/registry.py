"""The mount registry: which module is responsible for which path.

It is the one owner of that fact.  Paths handed to it are canonical (absolute,
no ".", "..", "//" or symlinks), so responsibility is a longest-prefix match on
components, done one dict lookup per component while the path resolver walks
(``at``), or for a whole path (``lookup``).
"""

from __future__ import annotations

import errno
import itertools
import os
from dataclasses import dataclass, field
from typing import Any

from umvu.vfs import FileSystem

# Virtual mounts get anonymous device numbers (major 0, as tmpfs or proc
# have) from a range the host's own anonymous devices do not reach.
_FIRST_MINOR = 0xF0000
_FIRST_ID = 10000  # mount IDs shown in mountinfo, above the host's


@dataclass(eq=False)
class Mount:
    point: str  # canonical mount point
    fs: FileSystem
    source: str = "none"
    fstype: str = "vfs"
    options: str = ""
    module: str = ""  # name of the module serving it
    auto: bool = False  # made by the module itself at load; rmmod removes it
    flags: frozenset[str] = frozenset()  # generic options: ro, noexec, nosuid, nodev, noatime...
    extra: dict[str, Any] = field(default_factory=dict)
    dev: int = 0  # st_dev of what the module serves itself (given by the registry)
    id: int = 0  # mount ID in /proc/self/mountinfo

    @property
    def readonly(self) -> bool:
        return "ro" in self.flags

    def inner(self, path: str) -> str:
        """``path`` (canonical, at or below the mount point) inside the mount."""
        if self.point == "/":
            return path
        rest = path[len(self.point) :]
        return rest or "/"


class MountRegistry:
    def __init__(self) -> None:
        self._mounts: dict[str, Mount] = {}
        self._numbers = itertools.count()

    def __bool__(self) -> bool:
        return bool(self._mounts)

    def __iter__(self):
        return iter(list(self._mounts.values()))

    def add(self, mount: Mount) -> None:
        if mount.point in self._mounts:
            raise OSError(errno.EBUSY, f"{mount.point} is already a mount point")
        n = next(self._numbers)
        mount.dev = os.makedev(0, _FIRST_MINOR + n)
        mount.id = _FIRST_ID + n
        self._mounts[mount.point] = mount

    def below(self, point: str) -> list[Mount]:
        """Mounts stacked inside the tree mounted at ``point`` (they keep it busy)."""
        prefix = point.rstrip("/") + "/"
        return [m for p, m in self._mounts.items() if p != point and p.startswith(prefix)]

    def remove(self, point: str) -> Mount:
        try:
            return self._mounts.pop(point)
        except KeyError:
            raise OSError(errno.EINVAL, f"{point} is not a mount point") from None

    def at(self, point: str) -> Mount | None:
        """The mount whose mount point is exactly ``point``."""
        return self._mounts.get(point)

    def lookup(self, path: str) -> Mount | None:
        """The mount responsible for canonical ``path``: longest prefix."""
        mounts = self._mounts
        p = path
        while True:
            m = mounts.get(p)
            if m is not None:
                return m
            if p == "/":
                return None
            p = p.rsplit("/", 1)[0] or "/"
