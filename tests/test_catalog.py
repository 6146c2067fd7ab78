"""docs/syscalls.md is what the code does; calls that name paths are never unseen; -vv names every call."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from conftest import py, sh, umvu

from umvu import catalog, syscalls

DOC = Path(__file__).parent.parent / "docs" / "syscalls.md"


def test_the_page_is_what_the_code_says():
    assert DOC.read_text() == catalog.page(), "docs/syscalls.md is stale: run `make docs`"


def test_every_call_of_the_table_is_on_the_page_with_its_handler():
    page = DOC.read_text()
    for sc in syscalls.BY_NR.values():
        if sc.name == "vu_control":
            continue
        row = re.search(rf"^\| {sc.nr} \| `[^`]*\b{sc.name}\(.*$", page, re.M)
        assert row, sc.name
        assert "served by the" not in row.group(0), f"{sc.family}'s handler says nothing of what it does"


def test_no_call_that_names_a_path_goes_unseen():
    """A path call umvu does not stop would look a view's name up on the host."""
    unseen = [c.name for c in catalog.calls().values() if catalog.treatment(c).kind == "unseen"]
    assert not unseen
    assert len(catalog.calls()) > 350  # python-ptrace's table was read


def test_vv_logs_every_call_by_its_prototype():
    r = umvu("-vv", "cat", "/etc/hostname")
    assert r.returncode == 0 and r.stdout == open("/etc/hostname").read()
    log = r.stderr
    assert re.search(r'openat\(-100, "/etc/hostname", 0x0, 0o0\) = \(real', log), log[-2000:]
    assert re.search(r"set_robust_list\(0x[0-9a-f]+, 24\) = \(real\)", log)  # no row in umvu's table
    assert re.search(r'execve\("/(usr/)?bin/cat", 0x', log)


INOTIFY = """
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_NONBLOCK)
def watch(path):
    wd = libc.inotify_add_watch(fd, path.encode(), 0x100)  # IN_CREATE
    return wd if wd >= 0 else -ctypes.get_errno()
for path in sys.argv[1:]:
    wd = watch(path)
    if wd >= 0:
        open(os.path.join(path, "new"), "w").close()
        data = os.read(fd, 4096)
        print(path.rsplit("/", 1)[1], "event", data[16:19].decode())
    else:
        print(path.rsplit("/", 1)[1], "errno", -wd)
"""


def test_inotify_in_a_view_watches_the_host_file_behind_it_or_is_refused(tmp_path):
    for d in ("real", "src", "bound", "un"):
        (tmp_path / d).mkdir()
    (tmp_path / "w.py").write_text(INOTIFY)
    r = sh(f"vumount -t vufs {tmp_path}/src {tmp_path}/bound && "
           f"{sys.executable} {tmp_path}/w.py {tmp_path}/real {tmp_path}/bound /unreal{tmp_path}/un",
           "-o", "vufs,unreal")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["real event new", "bound event new", "un errno 38"], r.stdout
    assert (tmp_path / "src" / "new").exists()  # the bind's source got the file, as a bind mount's would


def test_name_to_handle_at_on_a_virtual_file_is_eopnotsupp(tmp_path):
    (tmp_path / "f").write_text("x")
    code = f"""
import ctypes, errno
buf = ctypes.create_string_buffer(128 + 8)
ctypes.memmove(buf, (128).to_bytes(4, "little"), 4)
mnt = ctypes.c_int()
for p in ('{tmp_path}/f', '/unreal{tmp_path}/f'):
    ret = sc(303, -100, p.encode(), buf, ctypes.addressof(mnt), 0)
    print('ok' if ret == 0 else 'EOPNOTSUPP' if ret == -errno.EOPNOTSUPP else ret)
"""
    r = py(code, "-o", "unreal")
    assert r.stdout.split() == ["ok", "EOPNOTSUPP"], r.stdout + r.stderr
