"""The mount registry: which module is responsible for which path.

It is the one owner of that fact.  Paths handed to it are canonical (absolute,
no ".", "..", "//" or symlinks), so responsibility is a longest-prefix match on
components, done one dict lookup per component while the path resolver walks
(``at``), or for a whole path (``lookup``).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

from umvu.vfs import FileSystem


@dataclass(eq=False)
class Mount:
    point: str  # canonical mount point
    fs: FileSystem
    source: str = "none"
    fstype: str = "vfs"
    options: str = ""
    module: str = ""  # name of the module serving it
    auto: bool = False  # made by the module itself at load; rmmod removes it
    extra: dict[str, Any] = field(default_factory=dict)

    def inner(self, path: str) -> str:
        """``path`` (canonical, at or below the mount point) inside the mount."""
        if self.point == "/":
            return path
        rest = path[len(self.point) :]
        return rest or "/"


class MountRegistry:
    def __init__(self) -> None:
        self._mounts: dict[str, Mount] = {}

    def __bool__(self) -> bool:
        return bool(self._mounts)

    def __iter__(self):
        return iter(list(self._mounts.values()))

    def add(self, mount: Mount) -> None:
        if mount.point in self._mounts:
            raise OSError(errno.EBUSY, f"{mount.point} is already a mount point")
        self._mounts[mount.point] = mount

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
