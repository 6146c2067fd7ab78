"""Devices chosen by number: a driver claims char device numbers, and every node with one of
them, wherever it is, reaches the driver (tests/data/vuecho.py: a device in one file)."""

from __future__ import annotations

import errno
import os

import pytest
from conftest import HERE, sh

from umvu.registry import DeviceClaim, MountRegistry

ECHO = HERE / "data" / "vuecho.py"
TICK = HERE / "data" / "vutick.py"


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


def test_poll_select_and_epoll_ask_the_driver():
    """vuecho is readable while something is queued: select, poll and epoll say so, and a
    process waiting in poll wakes when another writes (the kernel wakes it: umvu.readiness)."""
    r = sh(f"""
vu_insmod {ECHO} || exit 9
python3 - <<'PY'
import os, select, time
fd = os.open("/dev/vuecho", os.O_RDWR)
ep = select.epoll()
ep.register(fd, select.EPOLLIN)
print("empty", select.select([fd], [fd], [], 0)[:2] == ([], [fd]), ep.poll(0))
pid = os.fork()
if pid == 0:
    time.sleep(0.3)
    os.write(fd, b"x")
    os._exit(0)
p = select.poll()
p.register(fd, select.POLLIN)
start = time.monotonic()
print("woken", p.poll(10000) == [(fd, select.POLLIN)] and time.monotonic() - start < 9)
print("queued", select.select([fd], [], [], 0)[0] == [fd], ep.poll(0) == [(fd, select.EPOLLIN)])
print("read", os.read(fd, 10), select.select([fd], [], [], 0)[0], ep.poll(0))
fd2 = os.dup(fd)
os.write(fd2, b"yz")
print("dup", select.select([fd], [], [], 0)[0] == [fd], os.read(fd, 1), select.select([fd2], [], [], 0)[0] == [fd2])
os.waitpid(pid, 0)
PY
""")
    assert r.stdout.splitlines() == ["empty True []", "woken True", "queued True True", "read b'x' [] []",
                                     "dup True b'y' True"], r.stdout + r.stderr


def test_a_driver_thread_wakes_processes_waiting_for_its_device():
    """vutick's data comes from its own thread, which calls the wake the core gave its poll:
    select, epoll and poll return when a tick comes; a blocking read waits for one; an empty
    non-blocking read is EAGAIN."""
    r = sh(f"""
vu_insmod {TICK} || exit 9
python3 - <<'PY'
import os, select
fd = os.open("/dev/vutick", os.O_RDONLY | os.O_NONBLOCK)
try:
    os.read(fd, 100)
except BlockingIOError:
    print("EAGAIN")
print("select", select.select([fd], [], [], 10)[0] == [fd], os.read(fd, 100).startswith(b"tick"))
ep = select.epoll()
ep.register(fd, select.EPOLLIN | select.EPOLLET)
print("epoll", ep.poll(10) == [(fd, select.EPOLLIN)], os.read(fd, 100).startswith(b"tick"))
p = select.poll()
p.register(fd, select.POLLIN)
print("poll", bool(p.poll(10000)[0][1] & select.POLLIN))
print("blocking read", os.read(os.open("/dev/vutick", os.O_RDONLY), 100).startswith(b"tick"))
PY
timeout 5 head -n 2 /dev/vutick | wc -l
""")
    assert r.stdout.split() == ["EAGAIN", "select", "True", "True", "epoll", "True", "True", "poll", "True",
                                "blocking", "read", "True", "2"], r.stdout + r.stderr


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
