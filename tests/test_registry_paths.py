"""The mount registry and path resolution, with a small in-memory file system module."""

from __future__ import annotations

import asyncio
import errno
import os
import stat

import pytest

from umvu.paths import resolve
from umvu.registry import Mount, MountRegistry
from umvu.vfs import FileSystem


class MemFS(FileSystem):
    """Directories and symlinks only: enough to walk."""

    def __init__(self, tree: dict[str, object]):
        self.tree = tree  # path -> "dir" | ("link", target)

    def lstat(self, path):
        kind = self.tree.get(path)
        if kind is None:
            raise FileNotFoundError(errno.ENOENT, path)
        if kind == "dir":
            mode = stat.S_IFDIR | 0o755
        elif isinstance(kind, tuple):
            mode = stat.S_IFLNK | 0o777
        else:
            mode = stat.S_IFREG | 0o644
        return os.stat_result((mode, 1, 1, 1, 0, 0, 0, 0, 0, 0))

    def readlink(self, path):
        return self.tree[path][1]


@pytest.fixture
def reg(tmp_path):
    r = MountRegistry()
    fs = MemFS({
        "/": "dir", "/d": "dir", "/d/f": "file", "/up": ("link", ".."), "/out": ("link", str(tmp_path)),
        "/loop": ("link", "loop"), "/rel": ("link", "d/f"), "/abs": ("link", "/m/d"),
    })
    r.add(Mount("/m", fs))
    (tmp_path / "tomount").symlink_to("/m/d")
    return r


def res(reg, start, path, follow=True):
    return asyncio.run(resolve(reg, start, path, follow))


def test_longest_prefix_wins():
    r = MountRegistry()
    a, b = Mount("/a", FileSystem()), Mount("/a/b", FileSystem())
    r.add(a)
    r.add(b)
    assert r.lookup("/a/b/c") is b
    assert r.lookup("/a/bc") is a
    assert r.lookup("/a") is a
    assert r.lookup("/x") is None
    with pytest.raises(OSError) as e:
        r.add(Mount("/a", FileSystem()))
    assert e.value.errno == errno.EBUSY


def test_walks_into_and_inside_a_mount(reg):
    r = res(reg, "/", "/m/d/f")
    assert r.path == "/m/d/f" and r.mount.point == "/m" and r.mount.inner(r.path) == "/d/f"
    assert res(reg, "/m/d", "f").path == "/m/d/f"
    assert res(reg, "/m", "rel").path == "/m/d/f"
    assert res(reg, "/m", "abs").path == "/m/d"


def test_dotdot_climbs_out_of_the_mount_point(reg, tmp_path):
    r = res(reg, "/m/d", "../..")
    assert r.path == "/" and r.mount is None
    assert res(reg, "/", "/m/up").path == "/"  # the link's ".." from the mount root


def test_symlinks_cross_both_ways(reg, tmp_path):
    assert res(reg, "/", "/m/out").path == str(tmp_path) and res(reg, "/", "/m/out").mount is None
    r = res(reg, "/", str(tmp_path / "tomount"))
    assert r.path == "/m/d" and r.mount is not None


def test_nofollow_keeps_the_last_link(reg):
    assert res(reg, "/", "/m/rel", follow=False).path == "/m/rel"
    assert res(reg, "/", "/m/dirlink/", follow=False).st is None  # missing, via trailing slash


def test_errors_are_the_kernels(reg):
    with pytest.raises(OSError) as e:
        res(reg, "/", "/m/loop")
    assert e.value.errno == errno.ELOOP
    with pytest.raises(OSError) as e:
        res(reg, "/", "/m/d/f/x")
    assert e.value.errno == errno.ENOTDIR
    with pytest.raises(OSError) as e:
        res(reg, "/", "/m/nothere/x")
    assert e.value.errno == errno.ENOENT
    with pytest.raises(OSError) as e:
        res(reg, "/", "/m/" + "x" * 256)
    assert e.value.errno == errno.ENAMETOOLONG
    assert res(reg, "/", "/m/newfile").st is None  # a missing last component is the caller's call
