"""Devices chosen by number: a driver claims char device numbers, and every node with one of
them, wherever it is, reaches the driver (tests/data/vuecho.py: a device in one file)."""

from __future__ import annotations

import errno
import os

import pytest
from conftest import HERE, sh

from umvu.registry import DeviceClaim, MountRegistry

ECHO = HERE / "data" / "vuecho.py"


def test_a_device_module_puts_a_node_in_the_view_whose_opens_reach_its_driver():
    r = sh(f"""
vu_insmod {ECHO} || exit 9
stat -c '%A %t:%T' /dev/vuecho
python3 - <<'PY'
import os
fd = os.open("/dev/vuecho", os.O_RDWR)
print(os.write(fd, b"hello"), os.read(fd, 3), os.read(fd, 10), os.read(fd, 10))
st = os.fstat(fd)
print(oct(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev))
import fcntl, struct, termios
os.write(fd, b"queued")
answers = [struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"1234"))[0]]
for req in (0x1260, 0x80045601):  # BLKGETSIZE (a block request: the table knows it), an _IOR of 4 bytes
    try:
        fcntl.ioctl(fd, req, b"12345678")
    except OSError as e:
        answers.append(e.strerror)
fcntl.ioctl(fd, termios.FIOCLEX)
answers.append(fcntl.fcntl(fd, fcntl.F_GETFD))
print(answers)
print(open(f"/proc/self/fdinfo/{{fd}}").read().split()[:4])
PY
grep -c vuecho /proc/self/mounts
vu_rmmod vuecho && ls /dev/vuecho
vu_insmod {ECHO} && cat /dev/vuecho && echo again
""")
    lines = r.stdout.splitlines()
    assert lines[:5] == ["crw-rw-rw- f0:0", "5 b'hel' b'lo' b''", "0o20666 240 0",
                         "[6, 'Inappropriate ioctl for device', 'Inappropriate ioctl for device', 1]",
                         "['pos:', '16', 'flags:', '02100002']"], r.stdout + r.stderr
    assert lines[5:] == ["0", "again"], r.stdout + r.stderr  # a node of /dev, not a mount; gone with its module
    assert "cannot access '/dev/vuecho': No such file or directory" in r.stderr


def test_the_host_drivers_still_serve_the_numbers_no_module_claims():
    r = sh(f"vu_insmod {ECHO} && head -c 3 /unreal/dev/zero | od -An -tx1 && echo x > /unreal/dev/null && echo ok",
           "-o", "unreal")
    assert r.stdout.split() == ["00", "00", "00", "ok"], r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="a node with a chosen number is made by mknod, which needs CAP_MKNOD "
                    "on the host (and in a view, by the kernel's rule)")
def test_a_node_made_anywhere_with_a_claimed_number_reaches_the_driver(tmp_path):
    """In unreal (the module opens it) and in a vufs bind (whose files the kernel opens by their
    host path: a claimed number is not handed over); an unclaimed one is the host's (ENXIO here)."""
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    mnt.mkdir()
    os.mknod(src / "e1", 0o666 | 0o020000, os.makedev(240, 1))
    os.mknod(src / "e7", 0o666 | 0o020000, os.makedev(240, 7))
    r = sh(f"""
vu_insmod {ECHO} || exit 9
cat /unreal{src}/e1
vumount -t vufs {src} {mnt} && cat {mnt}/e1
echo hi > {mnt}/e1
cat {mnt}/e7
""", "-o", "unreal,vufs")
    assert r.stdout.splitlines() == ["echo of minor 1", "echo of minor 1"], r.stdout + r.stderr
    assert f"{mnt}/e1: Read-only file system" in r.stderr  # the driver's own refusal
    assert f"{mnt}/e7: No such device or address" in r.stderr


def test_device_numbers_are_claimed_once():
    reg = MountRegistry()
    a = DeviceClaim("c", 240, range(0, 2), object(), "a")
    reg.claim_device(a)
    with pytest.raises(OSError) as e:
        reg.claim_device(DeviceClaim("c", 240, range(1, 5), object(), "b"))
    assert e.value.errno == errno.EBUSY
    reg.claim_device(DeviceClaim("b", 240, range(1, 5), object(), "b"))  # block numbers are another space
    assert reg.device("c", os.makedev(240, 1)) is a and reg.device("c", os.makedev(240, 2)) is None
    reg.release_device(a)
    assert reg.device("c", os.makedev(240, 1)) is None
