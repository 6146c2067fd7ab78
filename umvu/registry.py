"""The registry of services: which module serves which path, and which device numbers.

It is the one owner of those facts, one kind of key each (VUOS's choice by
path, device and number; gVisor registers socket families the same way):

- mounts, by path prefix.  Paths handed to it are canonical (absolute, no
  ".", "..", "//" or symlinks), so responsibility is a longest-prefix match on
  components, done one dict lookup per component while the path resolver
  walks (``at``), or for a whole path (``lookup``);
- device drivers, by char or block device number ranges (``claim_device``):
  opening a node with a claimed number, wherever the node is, reaches the
  driver, as the kernel's chrdev_open and blkdev_open do.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Callable
from typing import Any

from umvu.vfs import FileSystem

# Virtual mounts get anonymous device numbers (major 0, as tmpfs or proc
# have) from a range the host's own anonymous devices do not reach.
_FIRST_MINOR = 0xF0000
_FIRST_ID = 10000  # mount IDs shown in mountinfo, above the host's


class Mount:
    """One mount: a file system at a point of the view."""

    def __init__(self, point: str, fs: FileSystem, source: str = "none", fstype: str = "vfs", options: str = "",
                 module: str = "", auto: bool = False, flags: frozenset[str] = frozenset(),
                 extra: dict[str, Any] | None = None, dev: int = 0, id: int = 0) -> None:  # noqa: A002
        self.point = point  # canonical mount point
        self.fs = fs
        self.source, self.fstype, self.options = source, fstype, options
        self.module = module  # name of the module serving it
        self.auto = auto  # made by the module itself at load; rmmod removes it
        self.flags = flags  # generic options: ro, noexec, nosuid, nodev, noatime...
        self.extra: dict[str, Any] = {} if extra is None else extra
        self.dev = dev  # st_dev of what the module serves itself (given by the registry)
        self.id = id  # mount ID in /proc/self/mountinfo

    def __repr__(self) -> str:
        return f"Mount({self.point!r}, {self.fstype!r}, module={self.module!r})"

    @property
    def readonly(self) -> bool:
        return "ro" in self.flags

    def inner(self, path: str) -> str:
        """``path`` (canonical, at or below the mount point) inside the mount."""
        if self.point == "/":
            return path
        rest = path[len(self.point) :]
        return rest or "/"


class DeviceClaim:
    """Device numbers ``major``:``minors`` of ``kind`` ("c" char, "b" block), served by ``driver``."""

    def __init__(self, kind: str, major: int, minors: range, driver: Any, module: str = "") -> None:
        self.kind, self.major, self.minors = kind, major, minors
        self.driver = driver  # vfs.Device
        self.module = module

    def __repr__(self) -> str:
        return f"DeviceClaim({self.kind!r}, {self.major}, {self.minors!r}, module={self.module!r})"


class CallClaim:
    """A service chosen by call number (``kind`` "nr", ``key`` the call's name), by address
    family (``kind`` "family", ``key`` the AF_ number of socket(2) and socketpair(2)), or a
    namespace a module keeps per process (``kind`` "namespace", ``key`` its CLONE_NEW* flag:
    unshare(2) with that flag gives the caller a copy, ``service`` being the function making it)."""

    def __init__(self, kind: str, key: str | int, service: Any, module: str = "") -> None:
        self.kind, self.key = kind, key
        self.service = service  # vfs.CallService
        self.module = module

    def __repr__(self) -> str:
        return f"CallClaim({self.kind!r}, {self.key!r}, module={self.module!r})"


class MountRegistry:
    def __init__(self) -> None:
        self._mounts: dict[str, Mount] = {}
        self._numbers = itertools.count()
        self._devices: list[DeviceClaim] = []
        self._calls: dict[tuple[str, str | int], CallClaim] = {}
        # mount points with no host file under them (a device node made by its mount), by the host
        # directory whose listing must show them: parent -> {name: mount}
        self._phantoms: dict[str, dict[str, Mount]] = {}
        # path calls are watched although nothing is mounted: /proc shows something of the view
        # (a virtual identity's /proc/PID/status)
        self._watching = False
        # called after every change of what may be virtual (the fast path republishes its snapshot)
        self.on_change: list[Callable[[], None]] = []

    @property
    def watching(self) -> bool:
        return self._watching

    @watching.setter
    def watching(self, value: bool) -> None:
        self._watching = value
        self._changed()

    def _changed(self) -> None:
        for fn in self.on_change:
            fn()

    def __bool__(self) -> bool:
        """Whether a path call may touch anything virtual (else it is the kernel's, at once)."""
        return bool(self._mounts) or self._watching  # every stop asks: no property call

    def __iter__(self):
        return iter(list(self._mounts.values()))

    def add(self, mount: Mount) -> None:
        if mount.point in self._mounts:
            raise OSError(errno.EBUSY, f"{mount.point} is already a mount point")
        n = next(self._numbers)
        mount.dev = os.makedev(0, _FIRST_MINOR + n)
        mount.id = _FIRST_ID + n
        self._mounts[mount.point] = mount
        if mount.extra.get("phantom"):
            parent, name = mount.point.rsplit("/", 1)
            self._phantoms.setdefault(parent or "/", {})[name] = mount
        self._changed()

    def phantoms(self, directory: str) -> dict[str, Mount]:
        """The mount points in host directory ``directory`` that the host does not have (name ->
        mount): its listing shows them, as Linux's shows a node that is there."""
        return self._phantoms.get(directory, {}) if self._phantoms else {}

    def below(self, point: str) -> list[Mount]:
        """Mounts stacked inside the tree mounted at ``point`` (they keep it busy)."""
        prefix = point.rstrip("/") + "/"
        return [m for p, m in self._mounts.items() if p != point and p.startswith(prefix)]

    def remove(self, point: str) -> Mount:
        try:
            m = self._mounts.pop(point)
        except KeyError:
            raise OSError(errno.EINVAL, f"{point} is not a mount point") from None
        if m.extra.get("phantom"):
            parent, name = point.rsplit("/", 1)
            names = self._phantoms.get(parent or "/", {})
            names.pop(name, None)
            if not names:
                self._phantoms.pop(parent or "/", None)
        self._changed()
        return m

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

    # -- devices ----------------------------------------------------------------------------
    def claim_device(self, claim: DeviceClaim) -> None:
        """Serve ``claim``'s numbers; EBUSY if another claim has one of them (register_chrdev_region)."""
        if claim.kind not in ("c", "b") or not claim.minors:
            raise OSError(errno.EINVAL, "a device claim is 'c' or 'b' and at least one minor")
        for other in self._devices:
            if other.kind == claim.kind and other.major == claim.major and \
                    max(other.minors.start, claim.minors.start) < min(other.minors.stop, claim.minors.stop):
                raise OSError(errno.EBUSY, f"device numbers {claim.major}:{claim.minors.start} are served already")
        self._devices.append(claim)
        self._changed()

    def release_device(self, claim: DeviceClaim) -> None:
        self._devices.remove(claim)
        self._changed()

    def devices_claimed(self) -> bool:
        """Whether some device numbers are a module's (an open of such a node anywhere is its)."""
        return bool(self._devices)

    def devices(self, module: str | None = None) -> list[DeviceClaim]:
        return [d for d in self._devices if module is None or d.module == module]

    # -- calls and address families -----------------------------------------------------
    def claim_call(self, claim: CallClaim) -> None:
        """Serve ``claim``'s call or family; EBUSY if another module serves it (as sock_register)."""
        if claim.kind not in ("nr", "family", "namespace"):
            raise OSError(errno.EINVAL, "a call claim is by 'nr', 'family' or 'namespace'")
        if self.call(claim.kind, claim.key) is not None:
            raise OSError(errno.EBUSY, f"{claim.kind} {claim.key} is served already")
        self._calls[(claim.kind, claim.key)] = claim

    def release_call(self, claim: CallClaim) -> None:
        self._calls.pop((claim.kind, claim.key), None)

    def calls(self, module: str | None = None) -> list[CallClaim]:
        return [c for c in self._calls.values() if module is None or c.module == module]

    def call(self, kind: str, key: str | int) -> CallClaim | None:
        return self._calls.get((kind, key))

    def device(self, kind: str, rdev: int) -> DeviceClaim | None:
        """The claim that serves device number ``rdev`` of ``kind`` ("c" or "b"), if any."""
        major, minor = os.major(rdev), os.minor(rdev)
        for d in self._devices:
            if d.kind == kind and d.major == major and minor in d.minors:
                return d
        return None
