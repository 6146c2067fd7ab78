"""AF_UNIX sockets named by paths in a view: made and reached in the view, never outside it."""

from __future__ import annotations

import os

import pytest
from conftest import py

SERVE = """
import os, socket, sys, stat
def serve_and_call(listen_name, call_name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(listen_name)
    s.listen(1)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(call_name)
    a, _ = s.accept()
    c.sendall(b"ping")
    got = a.recv(4)
    print(got.decode(), s.getsockname(), c.getpeername(), stat.S_ISSOCK(os.stat(listen_name).st_mode))
    for x in (a, c, s):
        x.close()
def attempt(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return __import__("errno").errorcode[e.errno]
"""


def _view(tmp_path, kind):
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    mnt.mkdir()
    opts = ["-o", "cow,upper=" + str(tmp_path / "up")] if kind == "cow" else []
    return src, mnt, f"assert os.system('vumount -t vufs {' '.join(opts)} {src} {mnt}') == 0\n"


@pytest.mark.parametrize("kind", ["bind", "cow"])
def test_a_socket_bound_in_a_vufs_mount_is_made_there_and_reached(tmp_path, kind):
    src, mnt, mount = _view(tmp_path, kind)
    code = SERVE + mount + f"""
serve_and_call("{mnt}/s1", "{mnt}/s1")
os.chdir("{mnt}")                              # a virtual cwd: relative names are the view's too
serve_and_call("s2", "./s2")
print(sorted(os.listdir(".")))
"""
    r = py(code, "-o", "vufs")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"ping {mnt}/s1 {mnt}/s1 True"
    assert lines[1] == "ping s2 s2 True"
    assert lines[2] == "['s1', 's2']"
    assert os.listdir(mnt) == []  # nothing under the mount point on the host
    where = tmp_path / "up" if kind == "cow" else src
    assert sorted(os.listdir(where)) == ["s1", "s2"]
    if kind == "cow":
        assert os.listdir(src) == []


def test_unreal_sockets_land_on_the_real_path(tmp_path):
    code = SERVE + f"""
serve_and_call("/unreal{tmp_path}/s", "/unreal{tmp_path}/s")
print(attempt(lambda: socket.socket(socket.AF_UNIX).bind("/unreal{tmp_path}/s")))  # in use
print(attempt(lambda: socket.socket(socket.AF_UNIX).connect("/unreal{tmp_path}/nothing")))
open("/unreal{tmp_path}/file", "w").close()
print(attempt(lambda: socket.socket(socket.AF_UNIX).connect("/unreal{tmp_path}/file")))
"""
    r = py(code, "-o", "unreal")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"ping /unreal{tmp_path}/s /unreal{tmp_path}/s True", "EADDRINUSE",
                                     "ENOENT", "ECONNREFUSED"]
    assert (tmp_path / "s").is_socket()


def test_a_tree_with_no_host_names_holds_sockets_the_session_stands_in_for(tmp_path, examples):
    """A module with no host names (pyfuse3's tmpfs, in-process): bind makes the module's socket
    node and binds the real socket at the session's own name for it, so the node is listed and
    stats as a socket, connect and sendto reach it, getsockname says the caller's name, and after
    unlink the name is free again; nothing appears on the host under the mount point."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code = SERVE + f"""
assert os.system("vumount -t vufuse -o fs={examples}/tmpfs.py:Operations none {mnt}") == 0
open("{mnt}/file", "w").close()
serve_and_call("{mnt}/s", "{mnt}/s")
print(sorted(os.listdir("{mnt}")), oct(stat.S_IMODE(os.stat("{mnt}/s").st_mode)))
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
d.bind("{mnt}/d")
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"hi", "{mnt}/d")
print(d.recv(2).decode())
print(attempt(lambda: socket.socket(socket.AF_UNIX).bind("{mnt}/file")))
print(attempt(lambda: socket.socket(socket.AF_UNIX).connect("{mnt}/file")))
print(attempt(lambda: socket.socket(socket.AF_UNIX).connect("{mnt}/nothing")))
print(attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"x", "{mnt}/file")))
os.unlink("{mnt}/s")
print(attempt(lambda: socket.socket(socket.AF_UNIX).connect("{mnt}/s")))
serve_and_call("{mnt}/s", "{mnt}/s")
"""
    r = py(code, "-o", "vufuse")
    assert r.returncode == 0, r.stderr
    ping = f"ping {mnt}/s {mnt}/s True"
    assert r.stdout.splitlines() == [ping, "['file', 's'] 0o755", "hi", "EADDRINUSE", "ECONNREFUSED", "ENOENT",
                                     "ECONNREFUSED", "ENOENT", ping], r.stdout + r.stderr
    assert os.listdir(mnt) == []


def test_a_tree_that_cannot_make_nodes_holds_no_socket(tmp_path, examples):
    """pyfuse3's hello has no mknod: bind is refused as by a file system without mknod (EPERM)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code = SERVE + f"""
assert os.system("vumount -t vufuse -o fs={examples}/hello.py:TestFs none {mnt}") == 0
print(attempt(lambda: socket.socket(socket.AF_UNIX).bind("{mnt}/s")))
print(attempt(lambda: socket.socket(socket.AF_UNIX).connect("{mnt}/message")))
"""
    r = py(code, "-o", "vufuse")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["EPERM", "ECONNREFUSED"], r.stdout + r.stderr
    assert os.listdir(mnt) == []


def test_abstract_and_inet_sockets_are_the_kernels(tmp_path):
    code = SERVE + f"""
assert os.system("vumount -t vufs {tmp_path} {tmp_path}") == 0  # something mounted: the calls stop
s = socket.socket(socket.AF_UNIX)
s.bind("\\0umvu-test-{os.getpid()}")
print(s.getsockname())
t = socket.socket()
t.bind(("127.0.0.1", 0))
print(t.getsockname()[0])
"""
    r = py(code, "-o", "vufs")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [f"b'\\x00umvu-test-{os.getpid()}'", "127.0.0.1"]
