"""The uts module: a machine name of the view's own, for an ordinary user; the host's never changes."""

from __future__ import annotations

import os

import pytest
from conftest import py, sh


def _host_names() -> tuple[str, str]:
    with open("/proc/sys/kernel/domainname") as f:
        return os.uname().nodename, f.read().strip()


@pytest.fixture
def host_unchanged():
    before = _host_names()
    yield
    assert _host_names() == before


def test_hostname_uname_python_and_proc_agree(host_unchanged):
    r = sh("vu_insmod uts && hostname buildbox && domainname vu.test && uname -n && hostname && "
           "python3 -c 'import socket; print(socket.gethostname())' && cat /proc/sys/kernel/hostname && "
           "domainname && cat /proc/sys/kernel/domainname")
    assert r.stdout.split() == ["buildbox"] * 4 + ["vu.test"] * 2, r.stderr


def test_the_fields_are_files_of_the_view(host_unchanged):
    r = sh("vu_insmod uts && echo 6.1.0-vu > /proc/sys/kernel/osrelease && echo vubox > /proc/sys/kernel/hostname"
           " && uname -r && uname -n && uname -m && cat /proc/sys/kernel/arch")
    assert r.stdout.split() == ["6.1.0-vu", "vubox", os.uname().machine, os.uname().machine], r.stderr


def test_unshare_gives_a_view_of_its_own_and_children_share_their_parents(host_unchanged):
    r = sh("vu_insmod uts && hostname outer && unshare -u sh -c 'hostname inner; (hostname); sh -c hostname' "
           "&& hostname")
    assert r.stdout.split() == ["inner", "inner", "outer"], r.stderr


def test_the_kernels_errors(host_unchanged):
    code = """
import os
assert os.system("vu_insmod uts") == 0, "never rename the host: a root session without the module would"
print(sc(170, b"x" * 65, 65), sc(170, 16, 4), sc(171, b"d", -1), sc(63, 16))   # EINVAL, EFAULT, EINVAL, EFAULT
print(sc(170, b"short", 5), os.uname().nodename)
"""
    r = py(code)
    assert r.stdout.split() == ["-22", "-14", "-22", "-14", "0", "short"], r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root's sethostname without the module would rename the host")
def test_without_the_module_an_ordinary_user_gets_the_kernels_eperm(host_unchanged):
    r = py("print(sc(170, b'buildbox', 8), os.uname().nodename)")
    assert r.stdout.split() == ["-1", os.uname().nodename], r.stderr
