"""Shared helpers: run real programs under the real umvu (no mocks of the kernel or ptrace)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
UMVU = str(BIN / "umvu")
HERE = Path(__file__).parent


def env() -> dict[str, str]:
    e = dict(os.environ)
    # `make -s test` would hand its flags (and a jobserver's fds) to the makes the tests run
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        e.pop(name, None)
    # the disk tools (mkfs.ext4, sfdisk, blockdev, losetup) are in sbin, which an ordinary user's PATH lacks
    e["PATH"] = f"{BIN}:{e.get('PATH', '/usr/bin:/bin')}:/usr/sbin:/sbin"
    e["LC_ALL"] = "C"
    return e


def umvu(*args: str, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``umvu ARGS...``; returns the completed process (text mode)."""
    return subprocess.run([UMVU, *args], capture_output=True, text=True, timeout=timeout, env=env(), input=input)


def sh(script: str, *opts: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a bash script under umvu."""
    return umvu(*opts, "bash", "-c", script, timeout=timeout)


def native(script: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=timeout, env=env())


PY_SYSCALL = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return r if r != -1 else -ctypes.get_errno()
"""


# Python for the code strings run under umvu: the errno name a call fails with ("ok" if none)
ERR = """
import errno, os
def err(f, *a):
    try:
        f(*a)
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
"""


def py(code: str, *opts: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run Python code (with ``sc(nr, *args)`` for raw syscalls) under umvu."""
    return umvu(*opts, sys.executable, "-c", PY_SYSCALL + code, timeout=timeout)


@pytest.fixture(scope="session")
def cc(tmp_path_factory):
    """Compile a C source from tests/data; returns the binary path."""
    if not shutil.which("gcc"):
        pytest.fail("gcc is missing: `make test` installs it when run as root")
    out = tmp_path_factory.mktemp("bin")

    def build(name: str, *flags: str) -> str:
        exe = out / name
        if not exe.exists():
            subprocess.run(["gcc", "-O1", "-o", str(exe), str(HERE / "data" / f"{name}.c"), *flags], check=True)
        return str(exe)

    return build


@pytest.fixture
def tree(tmp_path):
    """A small real tree with files, dirs, symlinks (relative, absolute, dangling) and odd names."""
    root = tmp_path / "tree"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)
    (root / "sub" / "deeper" / "c").write_text("c" * 5000)
    (root / "with space").write_text("space\n")
    (root / "rel").symlink_to("sub/b.bin")
    (root / "abs").symlink_to(root / "a.txt")
    (root / "dangling").symlink_to("nowhere")
    (root / "dirlink").symlink_to("sub")
    (root / "exec.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "exec.sh").chmod(0o755)
    (root / "private").write_text("secret\n")
    (root / "private").chmod(0o600)
    return root


def need(*tools: str) -> None:
    missing = [t for t in tools if not shutil.which(t) and not os.path.exists(f"/usr/sbin/{t}")]
    if missing:
        pytest.fail(f"missing {missing}: `make test` installs them when run as root")


@pytest.fixture
def ext4(tmp_path) -> Path:
    """A 64 MB ext4 image owned by the tester (mkfs makes root's by default): fuse2fs checks
    permissions as the kernel would."""
    need("mkfs.ext4", "fuse2fs")
    img = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "64M", str(img)], check=True)
    subprocess.run(["/usr/sbin/mkfs.ext4", "-q", "-F", "-E", f"root_owner={os.getuid()}:{os.getgid()}", str(img)],
                   check=True)
    return img


@pytest.fixture(scope="session")
def examples() -> Path:
    """pyfuse3's own example file systems, from its source distribution (`make test` unpacks them)."""
    found = Path(sys.executable).parent.parent / "share" / "pyfuse3-examples"
    if not (found / "hello.py").exists():
        pytest.fail(f"{found} is missing: `make test` unpacks pyfuse3's examples there")
    return found
