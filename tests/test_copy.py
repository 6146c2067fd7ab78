"""In-kernel copies with a virtual end: copy_file_range, sendfile, splice and tee are emulated.

tests/data/copycases.py makes the calls case by case (results, errnos,
offsets, contents); natively on a real directory and under umvu on the same
kind of directory through a view, the output must be the same.
"""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import HERE, need, py, sh
from test_fuse import WAIT

CASES = HERE / "data" / "copycases.py"


def _native(tmp_path) -> str:
    (tmp_path / "real").mkdir()
    (tmp_path / "o1").mkdir()
    r = subprocess.run([sys.executable, str(CASES), str(tmp_path / "real"), str(tmp_path / "o1")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_copies_through_unreal_match_a_real_directory(tmp_path):
    expected = _native(tmp_path)
    (tmp_path / "view").mkdir()
    (tmp_path / "o2").mkdir()
    r = sh(f"{sys.executable} {CASES} /unreal{tmp_path}/view {tmp_path}/o2", "-o", "unreal")
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected
    assert expected.count("\n") > 40 and "EINVAL" in expected and "cfr into the host: 4000" in expected


def test_copies_on_fuse2fs_match_a_real_directory(tmp_path, ext4):
    need("fuse2fs")
    # the kernel's FUSE has no largest file of its own (s_maxbytes is MAX_LFS_FILESIZE): nothing to
    # copy past ext4's is 0 there, as through umvu's
    expected = _native(tmp_path).replace("past the largest file: EFBIG", "past the largest file: 0")
    (tmp_path / "mnt").mkdir()
    (tmp_path / "o2").mkdir()
    r = sh(WAIT + f"""
fuse2fs -o rw {ext4} {tmp_path}/mnt && waitmnt {tmp_path}/mnt || exit 9
{sys.executable} {CASES} {tmp_path}/mnt {tmp_path}/o2; s=$?
fusermount3 -u {tmp_path}/mnt; exit $s""")
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected
    fsck = subprocess.run(["/usr/sbin/e2fsck", "-fn", str(ext4)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout


def test_python_copies_through_a_view(tmp_path):
    """shutil.copyfile (sendfile), os.copy_file_range and os.splice on files of a view."""
    src = tmp_path / "f"
    src.write_bytes(os.urandom(300_000))
    u = f"/unreal{tmp_path}"
    r = py(f"""
import os, shutil
shutil.copyfile('{u}/f', '{u}/g')
shutil.copyfile('{u}/f', '{tmp_path}/h')
a = os.open('{u}/f', os.O_RDONLY)
b = os.open('{u}/i', os.O_WRONLY | os.O_CREAT, 0o644)
n = 0
while (k := os.copy_file_range(a, b, 1 << 16)):
    n += k
r, w = os.pipe()
print(n, os.splice(a, w, 1000, offset_src=5), os.read(r, 2000) == open('{src}', 'rb').read()[5:1005])
""", "-o", "unreal")
    assert r.returncode == 0 and r.stdout.split() == ["300000", "1000", "True"], r.stderr
    for name in "ghi":
        assert (tmp_path / name).read_bytes() == src.read_bytes()


def test_a_copy_into_a_full_pipe_waits_for_its_reader_and_a_signal_ends_the_wait(tmp_path):
    """The hypervisor never blocks on the real end: the caller waits, the others run, signals work."""
    (tmp_path / "f").write_bytes(b"z" * 200_000)
    code = f"""
import os, signal, threading, time
fd = os.open('/unreal{tmp_path}/f', os.O_RDONLY)
r, w = os.pipe()
os.set_blocking(w, False)
while True:
    try: os.write(w, b'x' * 4096)
    except BlockingIOError: break
os.set_blocking(w, True)
def drain():
    time.sleep(0.3)
    while os.read(r, 65536): pass
threading.Thread(target=drain, daemon=True).start()
t0 = time.monotonic()
n = sc(40, w, fd, 0, 100000)  # sendfile into the full pipe: waits for room
print('waited', n > 0 and time.monotonic() - t0 > 0.25)
r2, w2 = os.pipe()
signal.signal(signal.SIGALRM, lambda *a: None)
signal.siginterrupt(signal.SIGALRM, True)
signal.setitimer(signal.ITIMER_REAL, 0.2)
print('interrupted', sc(275, r2, 0, os.open('/unreal{tmp_path}/g', os.O_WRONLY | os.O_CREAT, 0o644), 0, 10, 0))
"""
    r = py(code, "-o", "unreal")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["waited", "True", "interrupted", "-4"], r.stdout + r.stderr
