"""vudev: virtual disks an ordinary user makes and uses with the real tools (mkfs, sfdisk,
blockdev, fuse2fs), and null devices; the image holds what the writes returned."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from conftest import need, sh

WAIT = ('waitmnt() { for i in $(seq 200); do grep -q " $(realpath $1) " /proc/self/mounts && break; sleep 0.05; '
        'done; }\n')


def _image(tmp: Path, size: str, table: str) -> Path:
    """An image of ``size`` with sfdisk's ``table`` written on it, in ``tmp``."""
    img = tmp / "disk.img"
    subprocess.run(["truncate", "-s", size, str(img)], check=True)
    subprocess.run(["/usr/sbin/sfdisk", "-q", str(img)], input=table, text=True, check=True)
    return img


def _outside(img, ranges: list[tuple[int, int]]) -> str:
    """A digest of the image's bytes outside the given (start, length) ranges."""
    data = img.read_bytes()
    h, at = hashlib.sha256(), 0
    for start, length in sorted(ranges):
        h.update(data[at:start])
        at = start + length
    h.update(data[at:])
    return h.hexdigest()


def test_a_ramdisk_takes_mkfs_and_fuse2fs_and_stays_consistent(tmp_path):
    need("mkfs.ext4", "fuse2fs", "e2fsck")
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
vu_insmod vudev fuse || exit 9
vumount -t vudevramdisk -o size=64M none /dev/ram0 || exit 8
stat -c '%F %a' /dev/ram0; ls /dev | grep -x ram0
blockdev --getsize64 --getss --getbsz /dev/ram0
mkfs.ext4 -q -E root_owner=$(id -u):$(id -g) /dev/ram0 2>&1 && fuse2fs -o rw /dev/ram0 mnt && waitmnt mnt || exit 7
cp -r /usr/include/linux mnt/ && du -s --apparent-size mnt/linux | cut -f1 && fusermount3 -u mnt
for i in $(seq 100); do pgrep -x fuse2fs >/dev/null || break; sleep 0.05; done
e2fsck -fn /dev/ram0 >/dev/null 2>&1 && echo clean
exec 3</dev/ram0; vuumount /dev/ram0; echo busy=$?; exec 3<&-
vuumount /dev/ram0 && ls /dev/ram0
""", timeout=120)
    lines = r.stdout.split()
    assert lines[:7] == ["block", "special", "file", "660", "ram0", "67108864", "512"], r.stdout + r.stderr
    assert lines[7] == "4096" and int(lines[8]) > 1000, r.stdout
    assert lines[9:] == ["clean", "busy=32"], r.stdout + r.stderr  # vuumount's status for a refusal, as umount's
    assert "warning" not in r.stdout.lower() and "cannot access '/dev/ram0'" in r.stderr


def test_a_partitioned_image_gives_a_node_per_partition_and_writes_stay_inside(tmp_path):
    need("sfdisk", "mkfs.ext4", "mkfs.vfat", "fuse2fs", "e2fsck")
    img = _image(tmp_path, "256M", "label: gpt\n,100M\n,\n")
    table = subprocess.run(["/usr/sbin/sfdisk", "-d", str(img)], capture_output=True, text=True).stdout
    parts = [(int(line.split("start=")[1].split(",")[0]) * 512, int(line.split("size=")[1].split(",")[0]) * 512)
             for line in table.splitlines() if "start=" in line]
    before = _outside(img, parts)
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
vu_insmod vudev fuse || exit 9
vumount -t vudevpartx disk.img /dev/hda || exit 8
ls /dev | grep '^hda'
blockdev --getsize64 /dev/hda /dev/hda1 /dev/hda2
mkfs.ext4 -q -L DATA -E root_owner=$(id -u):$(id -g) /dev/hda1 && fuse2fs -o rw /dev/hda1 mnt && waitmnt mnt || exit 7
echo hi > mnt/x && fusermount3 -u mnt
for i in $(seq 100); do pgrep -x fuse2fs >/dev/null || break; sleep 0.05; done
mkfs.vfat /dev/hda2 >/dev/null && echo vfat
sfdisk -d /dev/hda | grep -c '^/dev/hda[12] '
vuumount /dev/hda && echo gone
""", timeout=120)
    assert r.stdout.split() == ["hda", "hda1", "hda2", "268435456", "104857600", str(parts[1][1]), "vfat", "2",
                                "gone"], r.stdout + r.stderr
    assert subprocess.run(["/usr/sbin/sfdisk", "-d", str(img)], capture_output=True, text=True).stdout == table
    assert _outside(img, parts) == before  # nothing written outside the partitions
    p1 = tmp_path / "p1.img"
    subprocess.run(["dd", f"if={img}", f"of={p1}", "bs=1M", "skip=1", "count=100", "status=none"], check=True)
    fsck = subprocess.run(["/usr/sbin/e2fsck", "-fn", str(p1)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout
    assert subprocess.run(["/usr/sbin/debugfs", "-R", "cat /x", str(p1)], capture_output=True,
                          text=True).stdout == "hi\n"
    with open(img, "rb") as f:
        f.seek(parts[1][0])
        boot = f.read(512)
    assert boot[510:] == b"\x55\xaa" and b"FAT" in (boot[54:57], boot[82:85])  # mkfs.vfat's boot sector


def test_logical_partitions_and_rereading_the_table(tmp_path):
    need("sfdisk")
    r = sh("""
vu_insmod vudev || exit 9
vumount -t vudevramdisk -o size=64M none /dev/ram0 || exit 8
printf 'label: dos\\n,20M\\n,10M,L\\n,,E\\n,5M\\n,5M\\n' | sfdisk -q /dev/ram0 || exit 7
ls /dev | grep '^ram0'
blockdev --getsize64 /dev/ram0p5 /dev/ram0p6
exec 3</dev/ram0p1; blockdev --rereadpt /dev/ram0; echo busy=$?; exec 3<&-
blockdev --rereadpt /dev/ram0 && echo reread
""")
    assert r.stdout.split() == ["ram0", "ram0p1", "ram0p2", "ram0p3", "ram0p5", "ram0p6", "5242880", "5242880",
                                "busy=1", "reread"], r.stdout + r.stderr


BAD = """
import ctypes, errno, fcntl, mmap, os
fd = os.open("/dev/ram1", os.O_RDWR)
rw = os.open("/dev/ram2", os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
buf[:5] = b"hello"
libc = ctypes.CDLL(None, use_errno=True)
def call(f):
    try:
        return f()
    except OSError as e:
        return errno.errorcode[e.errno]
print([call(lambda: os.pwrite(fd, b"x", 0)), call(lambda: os.pread(fd, 10, 1 << 20)),
       call(lambda: fcntl.ioctl(fd, 0x5331)), call(lambda: fcntl.ioctl(fd, 0x1260, 1)), os.lseek(fd, 0, 2),
       call(lambda: os.pwrite(rw, buf, 4096)), os.pread(rw, 5, 4096), call(lambda: os.pwrite(rw, b"x", 1 << 20)),
       call(lambda: os.pwrite(rw, b"xy", (1 << 20) - 1)),
       libc.fallocate(rw, 0x10, ctypes.c_long(4096), ctypes.c_long(4096)), os.pread(rw, 5, 4096),
       libc.fallocate(rw, 0x01, ctypes.c_long(0), ctypes.c_long(4096)), errno.errorcode[ctypes.get_errno()],
       call(lambda: os.lseek(fd, (1 << 20) + 1, 0))])
"""


def test_bad_calls_on_a_disk_get_the_block_layers_answers(tmp_path):
    (tmp_path / "bad.py").write_text(BAD)
    (tmp_path / "plain.img").write_bytes(bytes(1 << 20))
    r = sh(f"""
cd {tmp_path}
vu_insmod vudev || exit 9
vumount -t vudevpartx nothere.img /dev/hdx; echo rc=$?
vumount -t vudevpartx plain.img /dev/hdx; echo rc=$?
vumount -t vudevramdisk -o size=1M,ro none /dev/ram1 && vumount -t vudevramdisk -o size=1M none /dev/ram2 || exit 8
blockdev --getro /dev/ram1 /dev/ram2
python3 bad.py
""")
    out = r.stdout.splitlines()
    assert out[:4] == ["rc=32", "rc=32", "1", "0"], r.stdout + r.stderr
    assert out[4] == ("['EPERM', b'', 'ENOTTY', 'EFAULT', 1048576, 4096, b'hello', 'ENOSPC', 1, 0, "
                      "b'\\x00\\x00\\x00\\x00\\x00', -1, 'ENOTSUP', 'EINVAL']"), r.stdout + r.stderr
    err = r.stderr.splitlines()
    assert "vumount: mounting nothere.img on /dev/hdx: nothere.img: no such file or directory" in err
    assert any(line.endswith("plain.img: no partition table (MBR or GPT) found") for line in err), r.stderr


def test_null_and_zero_devices():
    r = sh("""
vu_insmod vudev || exit 9
vumount -t vudevnull none /dev/null0 && vumount -t vudevzero none /dev/zero0 || exit 8
stat -c '%F %a' /dev/null0
echo gone > /dev/null0 && wc -c < /dev/null0
head -c 5 /dev/zero0 | od -An -tx1
""")
    assert r.stdout.split() == ["character", "special", "file", "666", "0", "00", "00", "00", "00", "00"], \
        r.stdout + r.stderr


def test_losetup_finds_configures_scans_and_detaches_loop_devices(tmp_path):
    """The loop family behind a virtual /dev/loop-control: losetup -f, -P, --show, -o, --sizelimit,
    -r, -a, -l and -d, unprivileged; a device detached while open goes at its last close."""
    need("sfdisk", "losetup", "mkfs.vfat")
    img = _image(tmp_path, "256M", "label: gpt\n,100M\n,\n")
    r = sh(f"""
cd {tmp_path}
vu_insmod vudev || exit 9
stat -c '%F %t:%T' /dev/loop-control
losetup -fP --show disk.img
losetup -r -f --show -o 1048576 --sizelimit 104857600 disk.img
ls /dev | grep '^loop[01]' | tr '\n' ' '; echo
stat -c '%t:%T' /dev/loop0 /dev/loop1
blockdev --getsize64 /dev/loop1 /dev/loop0p1
mkfs.vfat /dev/loop0p2 >/dev/null && echo vfat
echo x | dd of=/dev/loop1 status=none; echo ro=$?
losetup -l -n -O NAME,OFFSET,SIZELIMIT,BACK-FILE
exec 3</dev/loop1; losetup -d /dev/loop1; losetup -a | grep -c loop1; exec 3<&-
losetup -d /dev/loop0; losetup -a | wc -l
ls /dev | grep -c '^loop0p'
""")
    out = r.stdout.split("\n")
    assert out[:3] == ["character special file a:ed", "/dev/loop0", "/dev/loop1"], r.stdout + r.stderr
    assert out[3].split() == ["loop0", "loop0p1", "loop0p2", "loop1"]  # the host's /dev has its own loop2...
    assert out[4:6] == ["7:0", "7:1"] and out[6:8] == ["104857600", "104857600"] and out[8] == "vfat", r.stdout
    assert out[9] == "ro=1" and "Operation not permitted" in r.stderr, r.stdout + r.stderr
    assert [line.split() for line in out[10:12]] == [["/dev/loop1", "1048576", "104857600", str(img)],
                                                     ["/dev/loop0", "0", "0", str(img)]], r.stdout
    assert out[12:15] == ["1", "0", "0"], r.stdout + r.stderr  # detached at the last close; partitions gone


def test_losetup_lists_every_loop_device_past_the_hosts_own(tmp_path):
    """The host's sysfs has loop0..loop7 here; loop8 and up are the module's whole directories, so
    losetup -a lists all twelve, and /proc/partitions shows the bound ones."""
    need("losetup")
    (tmp_path / "f").write_bytes(bytes(1 << 20))
    r = sh(f"""
cd {tmp_path}
vu_insmod vudev || exit 9
for i in $(seq 12); do losetup -f f || exit 8; done
losetup -a | wc -l
losetup -a | grep -c '^/dev/loop11: .*{tmp_path}/f'
grep -c ' loop11$' /proc/partitions
cat /sys/block/loop10/size /sys/block/loop10/loop/backing_file
losetup -d /dev/loop11; losetup -a | wc -l; grep -c ' loop11$' /proc/partitions
""")
    assert r.stdout.split() == ["12", "1", "1", "2048", f"{tmp_path}/f", "11", "0"], r.stdout + r.stderr


def test_lsblk_blkid_fdisk_and_proc_partitions_see_the_disks(tmp_path):
    """sysfs (/sys/block/NAME, /sys/dev/block/MAJ:MIN) and /proc/partitions show the virtual disks
    and their partitions, and only while they are there."""
    need("sfdisk", "lsblk", "blkid", "fdisk", "partx", "mkfs.ext4")
    img = _image(tmp_path, "256M", "label: dos\n,100M\n,,L\n")
    r = sh(f"""
cd {tmp_path}
vu_insmod vudev || exit 9
vumount -t vudevpartx disk.img /dev/hda || exit 8
lsblk -n -o NAME,SIZE,TYPE /dev/hda | sed 's/^[^a-z]*//'
grep -w 'hda[0-9]*' /proc/partitions | awk '{{print $3, $4}}'
mkfs.ext4 -q -L DATA /dev/hda1 && blkid -o value -s LABEL -s TYPE /dev/hda1
fdisk -l /dev/hda | grep -c '^/dev/hda[12] '
partx -g -o NR,SECTORS /dev/hda
ls /sys/block | grep -c hda
vuumount /dev/hda
ls /sys/block | grep -c hda; grep -c hda /proc/partitions
""")
    table = subprocess.run(["/usr/sbin/sfdisk", "-d", str(img)], capture_output=True, text=True).stdout
    sizes = [int(line.split("size=")[1].split(",")[0]) for line in table.splitlines() if "size=" in line]
    lines = [" ".join(line.split()) for line in r.stdout.splitlines()]
    assert lines == ["hda 256M disk", "hda1 100M part", "hda2 155M part",
                     "262144 hda", f"{sizes[0] // 2} hda1", f"{sizes[1] // 2} hda2",
                     "DATA", "ext4", "2", f"1 {sizes[0]}", f"2 {sizes[1]}", "1", "0", "0"], r.stdout + r.stderr


GEO = """
import fcntl, os, struct
fd = os.open("/dev/hda2", os.O_RDONLY)
heads, sectors, cylinders, start = struct.unpack("<BBH4xQ", fcntl.ioctl(fd, 0x0301, bytes(16)))
buf = bytearray(b"\\xff" * 8)
fcntl.ioctl(fd, 0x80081270, buf)  # BLKBSZGET: an int, whatever its number says
try:
    fcntl.ioctl(fd, 0x1277, struct.pack("<QQ", 0, 4096))  # BLKDISCARD on a read-only fd
except OSError as e:
    discard = e.errno
d = os.open("/dev", os.O_RDONLY | os.O_DIRECTORY)  # a listing with the nodes in it; names from it as ever
w = os.open("null", os.O_WRONLY, dir_fd=d)
print(heads, sectors, start, buf[4:] == b"\\xff" * 4, discard == 9, os.write(w, b"x"), "hda" in os.listdir(d))
"""


def test_disk_ioctls_layouts_and_the_dev_directory(tmp_path):
    need("sfdisk")
    _image(tmp_path, "64M", "label: dos\n,10M\n,\n")
    (tmp_path / "geo.py").write_text(GEO)
    r = sh(f"""
cd {tmp_path}
vu_insmod vudev fuse || exit 9
vumount -t vudevpartx disk.img /dev/hda || exit 8
python3 geo.py
vuumount /dev/fuse; echo node=$?
exec 3</dev/hda1; vuumount -l /dev/hda; echo lazy=$?; ls /dev/hda1 2>/dev/null; head -c 0 <&3 && echo open; exec 3<&-
""")
    start = 22528  # sfdisk's second partition: after 10 MiB and the first's 1 MiB alignment
    assert r.stdout.split("\n")[:5] == [f"255 63 {start} True True 1 True", "node=32", "lazy=0", "open", ""], \
        r.stdout + r.stderr
    assert "vuumount: /dev/fuse: not mounted" in r.stderr or "not a mount point" in r.stderr, r.stderr
