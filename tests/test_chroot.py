"""chroot(2) and vuchroot for ordinary users, and the classic ways out of a chroot."""

from __future__ import annotations

import json
import os
import sys

import pytest
from conftest import sh

V = ("-o", "vufs")


@pytest.fixture
def newroot(tmp_path):
    """A root tree: the host's /usr and /proc bound in with vufs (mounted by the test), its own /etc."""
    root = tmp_path / "root"
    for d in ("usr", "proc", "etc", "tmp"):
        (root / d).mkdir(parents=True)
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            (root / link).symlink_to(os.readlink(f"/{link}"))
    (root / "etc" / "marker").write_text("inside\n")
    (tmp_path / "secret").write_text("outside\n")
    return root


def binds(root) -> str:
    return f"vumount -t vufs /usr {root}/usr && vumount -t vufs /proc {root}/proc && "


def test_vuchroot_runs_a_shell_in_the_tree(newroot):
    r = sh(binds(newroot) + f"vuchroot {newroot} /bin/sh -c 'cat /etc/marker; pwd; ls /; cd /etc && pwd'", *V)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == "inside" and lines[1] == "/" and lines[-1] == "/etc"
    assert set(lines[2:-1]) == set(os.listdir(newroot)), r.stdout


def test_vuchroot_bad_command_lines():
    r = sh("vuchroot /nonexistent true; echo rc=$?; vuchroot / /no/such/cmd; echo rc=$?")
    assert "rc=125\nrc=127\n" in r.stdout
    assert "cannot change root directory to '/nonexistent'" in r.stderr
    assert "failed to run command '/no/such/cmd'" in r.stderr


ESCAPES = """
import json, os, subprocess, sys
root, outside_dir = sys.argv[1], sys.argv[2]
fd_out = os.open(outside_dir, os.O_RDONLY)   # opened before the chroot
os.chroot(root)
os.chdir("/")
listing = sorted(os.listdir("/"))
out = {"cwd": os.getcwd()}
out["dotdot"] = sorted(os.listdir("/../../..")) == listing
os.symlink("/", "/tmp/abs")
out["absolute_symlink"] = sorted(os.listdir("/tmp/abs/..")) == listing
os.symlink("../../../../../../../..", "/tmp/rel")
out["relative_symlink"] = sorted(os.listdir("/tmp/rel")) == listing
out["proc_self_root"] = sorted(os.listdir("/proc/self/root/")) == listing
out["proc_self_root_link"] = os.readlink("/proc/self/root")
dfd = os.open("../../..", os.O_RDONLY, dir_fd=fd_out)
out["openat_outside_dirfd"] = sorted(os.listdir(dfd)) == listing
os.fchdir(fd_out)
out["fchdir_outside"] = sorted(os.listdir("../../../..")) == listing
out["secret_seen"] = os.path.exists(outside_dir + "/secret")
os.chdir("/")
out["exec"] = subprocess.run(["/bin/cat", "/etc/marker"], capture_output=True, text=True).stdout.strip()
out["exe"] = subprocess.run(["/bin/readlink", "/proc/self/exe"], capture_output=True, text=True).stdout.strip()
out["fd_link"] = subprocess.run(["/bin/sh", "-c", "echo via-fd > /proc/self/fd/1"], capture_output=True,
                                text=True).stdout.strip()
print(json.dumps(out))
"""


def test_classic_chroot_escapes_fail(newroot, tmp_path):
    script = tmp_path / "escapes.py"
    script.write_text(ESCAPES)
    r = sh(binds(newroot) + f"{sys.executable} {script} {newroot} {tmp_path}", *V)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out == {
        "cwd": "/", "dotdot": True, "absolute_symlink": True, "relative_symlink": True,
        "proc_self_root": True, "proc_self_root_link": "/", "openat_outside_dirfd": True,
        "fchdir_outside": True, "secret_seen": False, "exec": "inside", "exe": "/usr/bin/readlink",
        "fd_link": "via-fd",
    }
