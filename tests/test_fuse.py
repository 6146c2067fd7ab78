"""FUSE without kernel FUSE: real daemons (fuse2fs, squashfuse, libfuse3 C, pyfuse3, fusepy) through
the fuse module's virtual /dev/fuse, and pyfuse3 file systems in-process through vufuse."""

from __future__ import annotations

import errno
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HERE, UMVU, env, need, sh

PY = sys.executable
# Waits (in the session) until a mount point shows in /proc/self/mounts: daemons mount in the background.
WAIT = """
waitmnt() { for i in $(seq 200); do grep -q " $(realpath $1) " /proc/self/mounts && return 0; sleep 0.05; done;
            echo "$1 never mounted" >&2; return 1; }
vu_insmod fuse
"""


@pytest.fixture
def memfuse3(cc) -> str:
    """tests/data/memfuse3.c built against libfuse3."""
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], capture_output=True, text=True,
                           check=True).stdout.split()
    return cc("memfuse3", *flags)


@pytest.fixture
def pollfs(cc) -> str:
    """tests/data/pollfs.c built against libfuse3: a file that is polled."""
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], capture_output=True, text=True,
                           check=True).stdout.split()
    return cc("pollfs", *flags)


def debugfs(img: Path, request: str) -> str:
    return subprocess.run(["/usr/sbin/debugfs", "-R", request, str(img)], capture_output=True, text=True).stdout


def test_fuse2fs_read_write_lands_in_the_image(tmp_path, ext4):
    """Debian's fuse2fs, unmodified: files written are in the image after unmount (e2fsck, debugfs)."""
    (tmp_path / "mnt").mkdir()
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(30):
        (src / "sub" / f"f{i}").write_bytes(os.urandom(1000 * i))
    (src / "big").write_bytes(os.urandom(3 << 20))
    r = sh(WAIT + f"""
cd {tmp_path}
fuse2fs -o rw {ext4} mnt || exit 1
waitmnt mnt
cp -r src mnt/ && ln -s big mnt/src/link && mkdir mnt/empty && mv mnt/src/sub/f1 mnt/src/sub/g1
rm mnt/src/sub/f2
diff -r <(cd src; ls -R | grep -v '^$') <(cd mnt/src; ls -R | grep -v '^$')
cmp src/big mnt/src/big && echo same
readlink mnt/src/link
df mnt | tail -1 | awk '{{print $1}}'
stat -f -c %T mnt
cp /bin/true mnt/true && mnt/true && echo ran
touch mnt/same && ln mnt/same mnt/same2
{PY} -c "import os; os.rename('mnt/same', 'mnt/same'); os.rename('mnt/same', 'mnt/same2')"
ls mnt/same mnt/same2 | wc -l; cat mnt/same2 && echo same-ok
fusermount3 -u mnt
for i in $(seq 100); do pgrep -xf "fuse2fs -o rw {ext4} mnt" >/dev/null || break; sleep 0.05; done
pgrep -xf "fuse2fs -o rw {ext4} mnt" || echo daemon-gone  # this test's daemon: others may run on the machine
""", timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split("\n")
    assert "same" in out and "big" in out and "ran" in out and "daemon-gone" in out, r.stdout + r.stderr
    assert "2" in out and "same-ok" in out  # rename onto itself or a link of itself: nothing happens
    assert str(ext4) in out and "fuseblk" in out  # df names the image; stat -f names FUSE's magic, as on Linux
    assert "< f1" in out and "< f2" in out and "> g1" in out and "> link" in out, r.stdout  # renamed, removed, added
    fsck = subprocess.run(["/usr/sbin/e2fsck", "-fn", str(ext4)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    names = debugfs(ext4, "ls /src/sub").split()
    assert "g1" in names and "f2" not in names and "f1" not in names and "f29" in names
    dumped = tmp_path / "big.out"
    subprocess.run(["/usr/sbin/debugfs", "-R", f"dump /src/big {dumped}", str(ext4)], capture_output=True)
    assert dumped.read_bytes() == (src / "big").read_bytes()



MMAP_WRITES = """
import mmap, os
fd = os.open("mnt/m", os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 8192)
m = mmap.mmap(fd, 8192, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
m[0:5] = b"FIRST"
m.flush()                                  # msync
print(open("mnt/m", "rb").read(5))
m[5:11] = b"SECOND"
m.close()                                  # munmap
print(open("mnt/m", "rb").read(11))
m = mmap.mmap(fd, 8192, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
os.close(fd)
m[11:15] = b"EXIT"
os._exit(0)                                # no munmap: the exit unmaps
"""


def test_shared_writable_maps_of_a_fuse_file_reach_the_daemon(tmp_path, ext4):
    """msync, munmap and the exit of a process that still maps a FUSE file write it back through the
    daemon, which must be waited for (the write-back used to be made as for a module that answers
    at once, and was lost)."""
    (tmp_path / "mnt").mkdir()
    (tmp_path / "maps.py").write_text(MMAP_WRITES)
    r = sh(WAIT + f"""
cd {tmp_path}
fuse2fs -o rw {ext4} mnt || exit 1
waitmnt mnt
{PY} maps.py
head -c 15 mnt/m; echo
fusermount3 -u mnt
""", "--log", str(tmp_path / "umvu.log"), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["b'FIRST'", "b'FIRSTSECOND'", "FIRSTSECONDEXIT"], r.stdout + r.stderr
    assert "failed" not in (tmp_path / "umvu.log").read_text()
    assert debugfs(ext4, "cat /m")[:15] == "FIRSTSECONDEXIT"

def test_a_path_walk_asks_no_attributes_of_the_directories_it_passes(tmp_path, ext4):
    """As the kernel without default_permissions: walking through mnt/a/b sends no GETATTR for the
    mount's root, a or b, even with fuse2fs's attr_timeout=0; each stat of the file itself does."""
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
fuse2fs -d -f -o rw {ext4} mnt 2>> fuse.log >&2 & waitmnt mnt
mkdir -p mnt/a/b && echo hi > mnt/a/b/f
stat mnt/MARK 2>/dev/null
for i in 1 2 3; do sleep 0.05; stat -c %s mnt/a/b/f; done
stat mnt/END 2>/dev/null
fusermount3 -u mnt; wait
""", timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["3"] * 3, r.stdout + r.stderr
    log = (tmp_path / "fuse.log").read_text().splitlines()
    log = log[log.index("LOOKUP /MARK"):log.index("LOOKUP /END")]
    asked = [log[i + 1] for i, line in enumerate(log[:-1]) if "opcode: GETATTR" in line]
    assert asked.count("getattr /a/b/f") == 3, asked
    assert not {"getattr /", "getattr /a", "getattr /a/b"} & set(asked), asked


DIRFD_AFTER_RENAME = """import os
os.makedirs("mnt/a"); open("mnt/a/x", "w").write("hi")
fd = os.open("mnt/a", os.O_RDONLY | os.O_DIRECTORY)
os.rename("mnt/a", "mnt/b")
try:
    print("stat", os.stat("x", dir_fd=fd, follow_symlinks=False).st_size)
except OSError as e:
    print("stat", e.strerror)
try:
    print("open", open(os.open("x", os.O_RDONLY, dir_fd=fd)).read())
except OSError as e:
    print("open", e.strerror)
"""


def _dirfd_after_rename(tmp_path: Path, ext4: Path) -> list[str]:
    (tmp_path / "mnt").mkdir()
    (tmp_path / "t.py").write_text(DIRFD_AFTER_RENAME)
    r = sh(WAIT + f"cd {tmp_path} && fuse2fs -o rw {ext4} mnt && waitmnt mnt && {PY} t.py; fusermount3 -u mnt")
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_a_stat_from_a_dirfd_looks_in_the_directory_not_at_its_old_path(tmp_path, ext4):
    """fstatat(dirfd, name) asks the directory the fd holds (FileSystem.lstat_at, from its node):
    renamed since it was opened, it still has the name, as under the kernel's FUSE."""
    assert _dirfd_after_rename(tmp_path, ext4)[0] == "stat 2"


def test_an_open_from_a_dirfd_looks_in_the_directory_not_at_its_old_path(tmp_path, ext4):
    assert _dirfd_after_rename(tmp_path, ext4)[1] == "open hi"


def test_the_kernels_fuse_is_not_used(tmp_path, ext4):
    """The mount is in the view only; the daemon's /dev/fuse is a socket to the hypervisor."""
    (tmp_path / "mnt").mkdir()
    marker = tmp_path / "mounted"
    p = subprocess.Popen([UMVU, "bash", "-c", WAIT + f"""
cd {tmp_path}
fuse2fs -f {ext4} mnt & pid=$!  # $!: a daemon that forked off would leave pgrep a choice (and zombies)
waitmnt mnt
ls -l /proc/$pid/fd | grep -o 'socket:\\[[0-9]*\\]' | head -1 > {marker}.fd
grep -c " {tmp_path}/mnt " /proc/self/mountinfo > {marker}.tmp; mv {marker}.tmp {marker}
while [ -e {marker} ]; do sleep 0.05; done
umount mnt; wait
"""], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(400):
            if marker.exists():
                break
            time.sleep(0.05)
        assert marker.read_text().strip() == "1"
        assert (tmp_path / "mounted.fd").read_text().startswith("socket:[")
        with open("/proc/self/mountinfo") as f:
            assert str(tmp_path / "mnt") not in f.read()  # the host's table: untouched
        assert not os.listdir(tmp_path / "mnt")  # the host sees the empty directory
    finally:
        marker.unlink(missing_ok=True)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, out + err


def test_no_kernel_fuse_needed(tmp_path, ext4):
    """Where the host has no /dev/fuse at all (here an empty file is bound over it, in a user and
    mount namespace of the test's own: what any user may do), fuse2fs mounts, writes and
    unmounts through umvu's virtual one: the kernel's FUSE is never asked for."""
    need("unshare")
    probe = subprocess.run(["unshare", "-Urm", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no user namespaces here to hide /dev/fuse in: {probe.stderr.strip()}")
    (tmp_path / "mnt").mkdir()
    (tmp_path / "empty").touch()
    inner = WAIT + f"""
cd {tmp_path}
fuse2fs -o rw {ext4} mnt && waitmnt mnt || exit 1
echo hi > mnt/f && cat mnt/f && fusermount3 -u mnt
"""
    script = f"""
mount --bind {tmp_path}/empty /dev/fuse || exit 2
[ -c /dev/fuse ] && exit 3  # still the device: not hidden
{UMVU} bash -c {shlex.quote(inner)}
"""
    r = subprocess.run(["unshare", "-Urm", "bash", "-c", script], capture_output=True, text=True, env=env(),
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["hi"], r.stdout + r.stderr
    assert debugfs(ext4, "cat /f").strip() == "hi"  # in the image


def test_squashfuse_read_only(tmp_path):
    need("mksquashfs", "squashfuse")
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "file").write_text("squashed\n")
    (tree / "link").symlink_to("d/file")
    subprocess.run(["mksquashfs", str(tree), str(tmp_path / "img.sqfs"), "-quiet", "-noappend"],
                   check=True, capture_output=True)
    (tmp_path / "ro").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
squashfuse img.sqfs ro && waitmnt ro
cat ro/link; ls ro/d
touch ro/new 2>&1 | sed 's/.*: //'
findmnt -n -o FSTYPE,SOURCE ro
fusermount -u ro && echo unmounted
""")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["squashed", "file"], r.stdout
    assert lines[2] in ("Read-only file system", "Function not implemented", "Permission denied"), lines
    assert lines[3].split() == ["fuse.squashfuse", "squashfuse"] and lines[-1] == "unmounted"


SLOW_READ = """
import ctypes, os, signal, sys, time, threading
signal.signal(signal.SIGINT, (lambda *a: None) if sys.argv[1] == "caught" else signal.SIG_DFL)
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("mnt/" + sys.argv[2], os.O_RDONLY)
threading.Timer(0.3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
t = time.monotonic(); buf = ctypes.create_string_buffer(64)
n = libc.read(fd, buf, 64)
print("read", n, os.strerror(ctypes.get_errno()) if n < 0 else buf.value.decode().strip(),
      "waited" if time.monotonic() - t > 0.8 else "at once", "early" if time.monotonic() - t < 2 else "late")
"""


def test_libfuse3_multithreaded_daemon_interrupt_and_destroy(tmp_path, memfuse3):
    """libfuse3's default loop serves from several threads.  A signal sends INTERRUPT and the reader
    waits for the answer: EINTR from a daemon that heeds it, the data from one that does not; a fatal
    signal kills the reader then (as the kernel does: checked)."""
    exe = memfuse3
    (tmp_path / "mnt").mkdir()
    (tmp_path / "slow.py").write_text(SLOW_READ)
    r = sh(WAIT + f"""
cd {tmp_path}
{exe} -d mnt 2> daemon.log & waitmnt mnt
echo hello > mnt/x && cat mnt/x
for i in 1 2 3 4 5 6; do cat mnt/x > /dev/null & done; wait $(jobs -p | tail -6)
test "$(cat mnt/threads)" -gt 1 && echo several-threads
{PY} slow.py caught slow
{PY} slow.py fatal slow; echo "status $?"
{PY} slow.py caught stubborn
sleep 0.3; grep -c 'INTERRUPT' daemon.log
fusermount3 -u mnt; wait $!; echo daemon-exit $?
grep -c 'memfuse3: destroy' daemon.log
""")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["hello", "several-threads"], r.stdout
    assert lines[2:5] == ["read -1 Interrupted system call at once early", "status 130",
                          "read 9 stubborn waited early"], r.stdout
    assert int(lines[5]) >= 3 and lines[6:] == ["daemon-exit 0", "1"], r.stdout


def test_poll_select_and_epoll_on_a_fuse_file_ask_the_daemon(tmp_path, pollfs):
    """FUSE's POLL: a daemon that implements poll says when its file is readable, and wakes the
    pollers with NOTIFY_POLL (pollfs: a tick every 0.3 s from a thread of its own); an empty
    file is not readable, and a read of it says EAGAIN, as the daemon answers."""
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
{pollfs} -f mnt 2> daemon.log & waitmnt mnt
{PY} - <<'PY'
import os, select
fd = os.open("mnt/ticks", os.O_RDONLY | os.O_NONBLOCK)
print("select", select.select([fd], [], [], 10)[0] == [fd], os.read(fd, 100).startswith(b"tick"))
try:
    os.read(fd, 100)
except BlockingIOError:
    print("EAGAIN")
print("drained", select.select([fd], [], [], 0)[0] == [])
ep = select.epoll()
ep.register(fd, select.EPOLLIN)
print("epoll", ep.poll(10) == [(fd, select.EPOLLIN)], os.read(fd, 100).startswith(b"tick"))
p = select.poll()
p.register(fd, select.POLLIN)
print("poll", bool(p.poll(10000)[0][1] & select.POLLIN))
PY
test "$(grep -c 'pollfs: POLL' daemon.log)" -gt 2 && echo asked
fusermount3 -u mnt; wait $!; echo daemon-exit $?
""")
    assert r.stdout.split("\n")[:7] == ["select True True", "EAGAIN", "drained True", "epoll True True", "poll True",
                                        "asked", "daemon-exit 0"], r.stdout + r.stderr


LOCKS = """
import fcntl, os, struct, time
FL = "hhqqi4x"
a, b = os.open("mnt/f", os.O_RDWR), os.open("mnt/f", os.O_RDWR)
fcntl.flock(a, fcntl.LOCK_EX | fcntl.LOCK_NB)
try:
    fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("flock no conflict")
except BlockingIOError:
    print("flock conflict")
fcntl.flock(a, fcntl.LOCK_UN)
fcntl.flock(b, fcntl.LOCK_SH | fcntl.LOCK_NB)
fcntl.flock(b, fcntl.LOCK_UN)
print("flock after unlock")
os.lseek(a, 2, os.SEEK_SET)
fcntl.fcntl(a, fcntl.F_SETLK, struct.pack(FL, fcntl.F_WRLCK, os.SEEK_CUR, -2, 10, 0))  # bytes 0..9
pid = os.fork()
if pid == 0:
    c = os.open("mnt/f", os.O_RDWR)
    ask = struct.pack(FL, fcntl.F_WRLCK, os.SEEK_END, -12, 1, 0)  # byte 4, in the parent's lock
    t, w, s, n, p = struct.unpack(FL, fcntl.fcntl(c, fcntl.F_GETLK, ask))
    print("getlk", t == fcntl.F_WRLCK, w, s, n, p == os.getppid())
    try:
        fcntl.lockf(c, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 3)
        print("child got it")
    except OSError:
        print("child refused")
    start = time.monotonic()
    fcntl.lockf(c, fcntl.LOCK_EX, 1, 3)  # waits for the parent's close
    print("child waited", time.monotonic() - start > 0.2)
    os._exit(0)
time.sleep(0.4)
os.close(b)  # any close of the file drops the process's record locks
os.waitpid(pid, 0)
g = os.open("mnt/g", os.O_RDWR | os.O_CREAT)
fcntl.flock(g, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("other file free")
r = os.open("mnt/f", os.O_RDONLY)
try:
    fcntl.lockf(r, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError as e:
    print("ro", e.strerror)
"""


def test_flock_and_record_locks_on_fuse_files_are_the_kernels(tmp_path, memfuse3):
    """A daemon with no lock methods leaves locks to the kernel; so does umvu (each file's lock
    file is its fds' placeholder): flock between open files, record locks between processes (a
    start from the offset or the end, F_GETLK's owner, a blocked lock that the owner's close
    frees), other files independent, a write lock refused on a read-only fd."""
    (tmp_path / "mnt").mkdir()
    (tmp_path / "locks.py").write_text(LOCKS)
    r = sh(WAIT + f"""
cd {tmp_path}
{memfuse3} mnt 2> daemon.log & waitmnt mnt
printf '0123456789abcdef' > mnt/f
{PY} locks.py
fusermount3 -u mnt; wait $!; echo daemon-exit $?
""")
    assert r.stdout.splitlines() == ["flock conflict", "flock after unlock", "getlk True 0 0 10 True", "child refused",
                                     "child waited True", "other file free", "ro Bad file descriptor",
                                     "daemon-exit 0"], r.stdout + r.stderr


@pytest.mark.parametrize("name", ["hello", "tmpfs", "passthroughfs"])
def test_pyfuse3_examples_through_dev_fuse(tmp_path, examples, name):
    r = sh(WAIT + _exercise(tmp_path, name, f"{PY} {examples}/{name}.py {_source(tmp_path, name)} mnt &",
                            "fusermount3 -u mnt; wait $!; echo daemon-exit $?"))
    _check(r, name, "daemon-exit 0")


@pytest.mark.parametrize("name, cls", [("hello", "TestFs"), ("tmpfs", "Operations"), ("passthroughfs", "Operations")])
def test_pyfuse3_examples_in_process_with_vufuse(tmp_path, examples, name, cls):
    src = _source(tmp_path, name) or "none"
    r = sh(WAIT + _exercise(tmp_path, name, f"vumount -t vufuse -o fs={examples}/{name}.py:{cls} {src} mnt",
                            "vuumount mnt && echo unmounted"))
    _check(r, name, "unmounted")


def _source(tmp_path: Path, name: str) -> str:
    if name != "passthroughfs":
        return ""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_text("from the source\n")
    return str(tmp_path / "src")


def _exercise(tmp_path: Path, name: str, mount: str, unmount: str) -> str:
    work = {
        "hello": "cat mnt/message; ls mnt",
        "tmpfs": "echo x > mnt/f && mkdir mnt/d && mv mnt/f mnt/d/g && cat mnt/d/g && ls -l mnt | cut -c1-10 "
                 "&& chmod 600 mnt/d/g && stat -c %A mnt/d/g && rm mnt/d/g && rmdir mnt/d && ls -A mnt | wc -l",
        "passthroughfs": "cat mnt/a && echo more >> mnt/a && cat src/a && mkdir mnt/n && ls src",
    }[name]
    return f"cd {tmp_path}\nmkdir -p mnt\n{mount}\nwaitmnt mnt\n{work}\n{unmount}\n"


EXPECT = {
    "hello": ["hello world", "message"],
    "tmpfs": ["x", "total 1", "drwxr-xr-x", "-rw-------", "0"],
    "passthroughfs": ["from the source", "from the source", "more", "a", "n"],
}


def _check(r: subprocess.CompletedProcess, name: str, last: str) -> None:
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[: len(EXPECT[name])] == EXPECT[name], r.stdout + r.stderr
    assert last in lines, r.stdout + r.stderr


def test_fusepy_libfuse2_daemon(tmp_path):
    """fusepy on libfuse2 (Debian's python3-fusepy), run by the system's Python."""
    system_py = "/usr/bin/python3"
    if subprocess.run([system_py, "-c", "import fusepy"], capture_output=True).returncode:
        pytest.fail("python3-fusepy is missing: `make test` installs it when run as root")
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
{system_py} {HERE}/data/fusepy_memfs.py mnt & waitmnt mnt
echo hi > mnt/x && echo more >> mnt/x && cat mnt/x && truncate -s 2 mnt/x && cat mnt/x; echo
findmnt -n -o FSTYPE,SOURCE mnt
fusermount -u mnt; wait $!; echo daemon-exit $?
""")
    assert r.returncode == 0, r.stderr
    assert [line.split() for line in r.stdout.splitlines()] == [["hi"], ["more"], ["hi"], ["fuse", "MemFS"],
                                                               ["daemon-exit", "0"]], r.stdout + r.stderr


def test_a_dead_daemon_leaves_enotconn_and_umount_still_works(tmp_path, ext4):
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
fuse2fs -f {ext4} mnt & waitmnt mnt
ls mnt > /dev/null
kill -9 $!; wait $!
ls mnt 2>&1 | sed 's/.*: //'
stat mnt/lost+found 2>&1 | sed 's/.*: //'
fusermount3 -u mnt && ls mnt | wc -l
""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["Transport endpoint is not connected"] * 2 + ["0"], r.stdout + r.stderr


def test_malformed_replies_and_bad_mount_options(tmp_path):
    """Bad replies get the kernel's errno on the daemon's write, and their caller EIO; bad options EINVAL."""
    (tmp_path / "mnt").mkdir()
    raw = f"{PY} {HERE}/data/rawfuse.py mnt"
    r = sh(WAIT + f"""
cd {tmp_path}
{raw} > raw.log 2>&1 & waitmnt mnt
for n in ok fail short badlen badunique; do stat -c "$n %s" mnt/$n 2>&1 | sed 's/.*: //'; done
ls mnt/ok > /dev/null && echo still-serving
umount mnt; wait $!; cat raw.log
{raw} "rootmode=40000,user_id=0,group_id=0"
{raw} "fd=0,rootmode=40000,user_id=0,group_id=0"
{raw} "fd=FD,rootmode=40000,user_id=0"
{raw} "fd=FD,rootmode=40000,user_id=0,group_id=0,bogus"
{raw} "fd=FD,rootmode=zz,user_id=0,group_id=0"
true
""")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:6] == ["ok 0", "Permission denied", "Input/output error", "Input/output error",
                         "Input/output error", "still-serving"], r.stdout + r.stderr
    log = lines[6:-5]
    for expect in ("short EINVAL", "badlen EINVAL", "badunique ENOENT", "destroy ok", "read ENODEV"):
        assert expect in log, log
    assert lines[-5:] == ["mount EINVAL"] * 5


CLOSE_CHECK = """
import errno, os, signal, sys, time
signal.signal(signal.SIGALRM, lambda *a: print("alarm", flush=True))
fd = os.open("mnt/ok", os.O_RDONLY)
t = time.time()
signal.setitimer(signal.ITIMER_REAL, 0.1)
try:
    os.close(fd)
    print("closed")
except OSError as e:
    print("close", errno.errorcode[e.errno], "waited" if time.time() - t >= 0.25 else "at once")
try:
    os.fstat(fd)
    print("still open")
except OSError as e:
    print("fstat", errno.errorcode[e.errno])
"""


def test_close_waits_for_flush_and_returns_its_error(tmp_path):
    """As the kernel (checked against it): close(2) sends FLUSH and waits for it, a signal does not
    end the wait, FLUSH's error is close's, the fd is closed anyway, and RELEASE comes after."""
    (tmp_path / "mnt").mkdir()
    (tmp_path / "check.py").write_text(CLOSE_CHECK)
    r = sh(WAIT + f"""
cd {tmp_path}
{PY} {HERE}/data/rawfuse.py mnt > raw.log 2>&1 & waitmnt mnt
{PY} check.py
umount mnt; wait $!; cat raw.log
""")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == ["alarm", "close ENOSPC waited", "fstat EBADF"], r.stdout + r.stderr
    log = lines[3:]
    assert log.index("flush ok") < log.index("release ok"), log



def test_a_writer_killed_mid_write_releases_its_file_after_the_answer(tmp_path):
    """The kernel keeps a killed caller until the daemon answers what it already read, so the
    file's FLUSH and RELEASE come after the WRITE's answer.  umvu cannot keep the process, so it
    keeps the open file: a RELEASE sent meanwhile lets a threaded daemon free the handle its
    WRITE is still using (fuse2fs corrupted its image so under the fault suite)."""
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
{PY} {HERE}/data/rawfuse.py mnt > raw.log 2>&1 & waitmnt mnt
{PY} -c 'import os; fd = os.open("mnt/ok", os.O_WRONLY); os.write(fd, b"x" * 100); print("not killed")' & w=$!
until grep -q "write asked" raw.log; do sleep 0.05; done
kill -KILL $w; wait $w; echo "writer $?"
until grep -q release raw.log; do sleep 0.05; done
umount mnt; wait; cat raw.log
""")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "writer 137", r.stdout
    log = [line for line in lines if line.split()[0] in ("write", "flush", "release")]
    assert log == ["write asked", "write ok", "flush ok", "release ok"], r.stdout + r.stderr

O_PATH_CHECK = """
import errno, fcntl, os
print(os.getpid())
fd = os.open("mnt/x", os.O_PATH)
def t(name, f):
    try:
        r = f()
        print(name, "ok", r.st_size if isinstance(r, os.stat_result) else r)
    except OSError as e:
        print(name, errno.errorcode[e.errno])
t("fstat", lambda: os.fstat(fd))
t("read", lambda: os.read(fd, 10))
t("fsync", lambda: os.fsync(fd))
t("ftruncate", lambda: os.ftruncate(fd, 0))
t("fchmod", lambda: os.fchmod(fd, 0o600))
t("dupfd-query", lambda: (fcntl.fcntl(fd, 1027, os.dup(fd)), fcntl.fcntl(fd, 1027, os.open("mnt/x", os.O_PATH))))
t("close", lambda: os.close(fd))
dfd = os.open("mnt", os.O_PATH | os.O_DIRECTORY)
t("stat-at", lambda: os.stat("x", dir_fd=dfd))
t("listdir", lambda: os.listdir(dfd))
"""


def test_o_path_fds_hold_a_name_and_do_nothing_else(tmp_path, memfuse3):
    """O_PATH on a FUSE file: no OPEN is sent (nor RELEASE), fstat and use as a dirfd work, and the
    rest is EBADF, as the kernel answers (the expected lines are the kernel's).  Requests carry the
    caller's pid, as libfuse's debug log shows."""
    exe = memfuse3
    (tmp_path / "mnt").mkdir()
    (tmp_path / "check.py").write_text(O_PATH_CHECK)
    r = sh(WAIT + f"""
cd {tmp_path}
{exe} -d mnt 2> daemon.log & waitmnt mnt
echo hi > mnt/x
grep -c "opcode: OPEN " daemon.log
{PY} check.py > out; tail -n +2 out
grep -c "opcode: OPEN " daemon.log
grep -c "pid: $(head -1 out)$" daemon.log
fusermount3 -u mnt; wait $!
""")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1:-2] == ["fstat ok 3", "read EBADF", "fsync EBADF", "ftruncate EBADF", "fchmod EBADF",
                           "dupfd-query ok (1, 0)", "close ok None", "stat-at ok 3", "listdir EBADF"], r.stdout
    assert lines[0] == lines[-2], "OPEN was sent for O_PATH"
    assert int(lines[-1]) >= 1, "requests do not carry the caller's pid"


def test_fopen_noflush_and_the_requests_sent_with_no_credentials(tmp_path, memfuse3):
    """A file the daemon opened with FOPEN_NOFLUSH gets no FLUSH at close, another one does (the
    kernel's log for the same commands: three FLUSHes of /x, none of /nfx).  INIT, RELEASE,
    RELEASEDIR and FORGET are nobody's call: pid 0, as the kernel sends them."""
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
{memfuse3} -d mnt 2> daemon.log & waitmnt mnt
echo a > mnt/x; echo b > mnt/nfx; cat mnt/x mnt/nfx; ls mnt > /dev/null; rm mnt/x
fusermount3 -u mnt; wait $!
grep -c "flush /x$" daemon.log; grep -c "flush /nfx$" daemon.log
grep -E "opcode: (INIT|RELEASE|RELEASEDIR|FORGET|BATCH_FORGET) " daemon.log | grep -c "pid: 0$"
grep -E "opcode: (INIT|RELEASE|RELEASEDIR|FORGET|BATCH_FORGET) " daemon.log | grep -vc "pid: 0$"
""")
    lines = r.stdout.splitlines()
    assert lines[:2] == ["a", "b"], r.stdout + r.stderr
    assert int(lines[2]) >= 1 and lines[3] == "0", r.stdout
    assert int(lines[4]) >= 4 and lines[5] == "0", r.stdout


def test_umount_l_and_vuumount_send_destroy(tmp_path, memfuse3):
    exe = memfuse3
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
{exe} -f mnt 2> d1.log & waitmnt mnt
umount -l mnt; wait $!; echo exit $?
{exe} -f mnt 2> d2.log & waitmnt mnt
vuumount mnt; wait $!; echo exit $?
grep -h destroy d1.log d2.log
""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["exit 0", "exit 0", "memfuse3: destroy", "memfuse3: destroy"], r.stdout


PERMS = """
touch mnt/ro1 mnt/rw1 2>/dev/null; ls mnt/ro1 mnt/rw1 > /dev/null && echo created
echo x > mnt/ro1 && echo wrote-ro
echo x > mnt/rw1 && echo wrote-rw
cat mnt/ro1 mnt/rw1
test -w mnt/ro1 && echo w-ok || echo w-no
test -r mnt/ro1 && echo r-ok || echo r-no
truncate -s 0 mnt/ro1 && echo truncated
rm mnt/ro1 && echo removed
"""


def test_o_trunc_goes_in_open_to_a_daemon_that_takes_atomic_o_trunc(tmp_path, memfuse3):
    """libfuse3 takes FUSE_ATOMIC_O_TRUNC: the kernel then sends O_TRUNC in OPEN's flags and no
    SETATTR, so the daemon decides (memfuse3's open ignores it: the kernel's output is the old
    tail); a read-only open with O_TRUNC is one too."""
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
{memfuse3} -d mnt 2> d.log & waitmnt mnt
echo hello world > mnt/f; echo x > mnt/f; cat mnt/f
python3 -c 'import os; os.close(os.open("mnt/f", os.O_RDONLY | os.O_TRUNC))'
fusermount3 -u mnt; wait $!
grep -c 'opcode: SETATTR' d.log; grep -o 'open flags: 0x[0-9a-f]*' d.log
""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["x", "llo", "world", "0", "open", "flags:", "0x8201", "open", "flags:", "0x8000",
                                "open", "flags:", "0x8200"], r.stdout


def test_o_trunc_to_a_daemon_without_atomic_o_trunc_is_a_setattr_of_the_size_alone(tmp_path, memfuse3):
    """A daemon that declines FUSE_ATOMIC_O_TRUNC (libfuse2's, fuse2fs) gets an OPEN without O_TRUNC
    and a SETATTR of the size with no time in it (the kernel's fuse leaves mtime to the daemon's
    truncate at open and ftruncate), so one whose times cannot be set (memfuse3's utimens is
    ENOSYS) still truncates, a read-only open too (fuzz seed 127: fuse2fs, read-only by then,
    refused umvu's time change with EROFS).  The kernel's FUSE gives this output (run as root in
    a mount namespace: the same lines)."""
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
MEMFUSE3_NO_ATOMIC_O_TRUNC=1 {memfuse3} -d mnt 2> d.log & waitmnt mnt
echo hello world > mnt/f; echo x > mnt/f; cat mnt/f
echo hello > mnt/f; python3 -c 'import os; os.close(os.open("mnt/f", os.O_RDONLY | os.O_TRUNC))'; wc -c < mnt/f
fusermount3 -u mnt; wait $!
grep -c 'opcode: SETATTR' d.log; grep -c 'utimens' d.log; grep -o 'open flags: 0x[0-9a-f]*' d.log
""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["x", "0", "3", "0", "open", "flags:", "0x8001", "open", "flags:", "0x8000", "open",
                                "flags:", "0x8001", "open", "flags:", "0x8000", "open", "flags:", "0x8000"], r.stdout


@pytest.mark.parametrize("option", ["", "-o default_permissions"])
def test_default_permissions_checks_modes_as_the_kernel(tmp_path, memfuse3, option):
    """With default_permissions the mode bits decide, as the kernel's checks (its output for the
    same commands, as an ordinary user and as root); without, the daemon does (memfuse3 writes its
    0444 files).  touch's time change is ENOSYS, and the truncate after it is still asked for."""
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
{memfuse3} -f {option} mnt 2> d.log & waitmnt mnt
{PERMS}
fusermount3 -u mnt; wait $!
""")
    assert r.returncode == 0, r.stderr
    if option and os.geteuid() != 0:
        want = ["created", "wrote-rw", "x", "w-no", "r-ok", "removed"]
        assert "mnt/ro1: Permission denied" in r.stderr and "'mnt/ro1' for writing: Permission denied" in r.stderr
    else:
        want = ["created", "wrote-ro", "wrote-rw", "x", "x", "w-ok", "r-ok", "truncated", "removed"]
    assert r.stdout.splitlines() == want, r.stdout + r.stderr


@pytest.mark.parametrize("option", ["", ",default_permissions"])
def test_exec_and_mmap_ask_what_the_kernel_asks(tmp_path, ext4, option):
    """A --x program runs (umvu's copy of it is opened to execute, with the kernel's FMODE_EXEC, so
    fuse2fs or default_permissions check X_OK, not R_OK), and an mmap after a chmod 000 still maps
    the file already open (read through that open file, not a new one): the kernel's output."""
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
fuse2fs -o rw{option} {ext4} mnt && waitmnt mnt || exit 1
cp /bin/true mnt/t && chmod 111 mnt/t && mnt/t && echo ran
echo data > mnt/m
python3 -c 'import mmap, os
f = open("mnt/m", "rb"); os.chmod("mnt/m", 0)
print(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)[:4].decode())'
fusermount3 -u mnt
""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["ran", "data"], r.stdout + r.stderr


XATTRS = """import errno, os
def t(label, fn):
    try:
        fn(); print(label, "ok")
    except OSError as e:
        print(label, errno.errorcode[e.errno])
open("mnt/f", "w").close(); os.symlink("f", "mnt/l")
t("set-trusted", lambda: os.setxattr("mnt/f", "trusted.x", b"1"))
t("get-trusted", lambda: os.getxattr("mnt/f", "trusted.x"))
t("set-security", lambda: os.setxattr("mnt/f", "security.x", b"1"))
t("set-odd", lambda: os.setxattr("mnt/f", "odd.x", b"1"))
t("set-user", lambda: os.setxattr("mnt/f", "user.x", b"1"))
t("get-user", lambda: os.getxattr("mnt/f", "user.x"))
t("set-user-link", lambda: os.setxattr("mnt/l", "user.x", b"1", follow_symlinks=False))
t("get-user-link", lambda: os.getxattr("mnt/l", "user.x", follow_symlinks=False))
t("remove-user-link", lambda: os.removexattr("mnt/l", "user.x", follow_symlinks=False))
os.chmod("mnt/f", 0o444)
t("set-user-ro", lambda: os.setxattr("mnt/f", "user.y", b"1"))
os.chmod("mnt/f", 0)
t("get-user-000", lambda: os.getxattr("mnt/f", "user.x"))
t("list-000", lambda: os.listxattr("mnt/f"))
t("remove-user-000", lambda: os.removexattr("mnt/f", "user.x"))
"""


@pytest.mark.parametrize("option", ["", ",default_permissions"])
def test_xattr_namespaces_as_the_vfs_rules_them(tmp_path, ext4, option):
    """The kernel's output for the same calls, as an ordinary user and as root: trusted.* is root's
    (ENODATA to read), security.* root's to change, user.* only on files and directories; and with
    default_permissions the mode decides user.* (EACCES before fuse2fs's own EPERM)."""
    (tmp_path / "mnt").mkdir()
    (tmp_path / "xa.py").write_text(XATTRS)
    r = sh(WAIT + f"""
cd {tmp_path}
fuse2fs -o rw{option} {ext4} mnt && waitmnt mnt || exit 1
python3 xa.py
fusermount3 -u mnt
""")
    assert r.returncode == 0, r.stderr
    user = os.geteuid() != 0
    denied = "EPERM" if user else "ok"
    want = [f"set-trusted {denied}", f"get-trusted {'ENODATA' if user else 'ok'}", f"set-security {denied}",
            "set-odd ok", "set-user ok", "get-user ok", "set-user-link EPERM", "get-user-link ENODATA",
            "remove-user-link EPERM", "set-user-ro " + ("EACCES" if user and option else denied)]
    want += [f"{call} {'EACCES' if user else 'ok'}" for call in ("get-user-000", "list-000", "remove-user-000")]
    assert r.stdout.splitlines() == want, r.stdout + r.stderr


@pytest.mark.parametrize("option", ["", ",default_permissions"])
def test_protected_hardlinks(tmp_path, ext4, option):
    """fs.protected_hardlinks, as the kernel's output for the same links as an ordinary user: another
    user's file may be linked only if it is a plain regular file (not set-user-ID) that the user
    may read and write, which with default_permissions the mode decides (without, the daemon
    does).  debugfs makes o (0666), p (0600) and s (04666) another user's."""
    (tmp_path / "x").write_text("x\n")
    for name, mode in (("o", "0100666"), ("p", "0100600"), ("s", "0104666")):
        for request in (f"write {tmp_path}/x {name}", f"sif {name} uid 12345", f"sif {name} gid 12345",
                        f"sif {name} mode {mode}"):
            subprocess.run(["/usr/sbin/debugfs", "-w", "-R", request, str(ext4)], capture_output=True, check=True)
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
fuse2fs -o rw{option} {ext4} mnt && waitmnt mnt || exit 1
: > mnt/mine
for f in o p s mine; do ln mnt/$f mnt/l$f 2>&1 | sed 's/.*: //'; test -e mnt/l$f && echo l$f; done
fusermount3 -u mnt
""")
    assert r.returncode == 0, r.stderr
    with open("/proc/sys/fs/protected_hardlinks") as f:
        protected = f.read().strip() == "1" and os.geteuid() != 0
    denied = "Operation not permitted"
    want = ["lo", denied if protected and option else "lp", denied if protected else "ls", "lmine"]
    assert r.stdout.splitlines() == want, r.stdout + r.stderr


UTIMENSAT = """import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
t = (ctypes.c_long * 4)(*((0, (1 << 30) - 1) * 2 if sys.argv[2] == "now" else (1, 0, 1, 0)))
r = libc.utimensat(-100, sys.argv[1].encode(), t, 0)
print(sys.argv[2], "ok" if r == 0 else os.strerror(ctypes.get_errno()))"""
STICKY = """
for f in o1 o2 o3 a b c; do : > mnt/$f; done && echo created
touch mnt/o1 && echo touched
python3 -c "$UT" mnt/o1 now
python3 -c "$UT" mnt/o1 set
mv mnt/a mnt/o2 2>&1 | sed 's/.*: //'
mv -T mnt/b mnt/d && echo moved
mv -T mnt/c mnt/o3 2>&1 | sed 's/.*: //'
rm -f mnt/o3 2>&1 | sed 's/.*: //'
ln mnt/d mnt/e 2>&1 | sed 's/.*: //'
ls mnt | tr '\\n' ' '; echo
"""


@pytest.mark.parametrize("option", ["", "-o default_permissions"])
def test_default_permissions_sticky_directory_and_times(tmp_path, memfuse3, option):
    """memfuse3's root is 01777 and its o* files another user's 0666 ones.  With
    default_permissions, as the kernel (its output for the same commands as an ordinary user):
    a rename or unlink over another's file in a sticky directory is EPERM, and setting times
    to now (touch, or both UTIME_NOW) is allowed to whoever may write, other times only to the
    owner.  Without it, or as root, all of it is done.  memfuse3 has no link: the kernel says
    EPERM for that ENOSYS."""
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
UT='{UTIMENSAT}'
{memfuse3} -f {option} mnt 2> d.log & waitmnt mnt
{STICKY}
fusermount3 -u mnt; wait $!
""")
    assert r.returncode == 0, r.stderr
    if option and os.geteuid() != 0:
        want = ["created", "touched", "now ok", "set Operation not permitted", "Operation not permitted", "moved",
                "Operation not permitted", "Operation not permitted", "Operation not permitted",
                "a c d o1 o2 o3 slow threads "]
    else:
        want = ["created", "touched", "now ok", "set ok", "moved", "Operation not permitted", "d o1 o2 slow threads "]
    assert r.stdout.splitlines() == want, r.stdout + r.stderr


def test_a_refusal_asks_for_fresh_attributes_first(tmp_path, memfuse3):
    """With default_permissions, as the kernel's fuse_permission: before refusing on attributes
    it has cached (here for 60 s), umvu asks the daemon again.  memfuse3 takes the root's mode
    from what is written to "rootmode", behind the cache's back.  (The kernel's output, as an
    ordinary user and as root.)  The file made while the root still looked
    open is not looked up again after its CREATE, which would be refused."""
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
{memfuse3} -f -o attr_timeout=60,entry_timeout=60,default_permissions mnt 2> d.log & waitmnt mnt
echo hi > mnt/x
exec 3> mnt/rootmode
stat -c %a mnt
echo 1770 >&3
: > mnt/new && echo created
stat -c %a mnt
echo 1777 >&3
cat mnt/x
stat -c %a mnt
exec 3>&-
fusermount3 -u mnt; wait $!
""")
    assert r.returncode == 0, r.stderr
    asked = os.geteuid() != 0  # root was not refused, and the kernel then keeps what it has
    assert r.stdout.splitlines() == ["1777", "created", "1770", "hi", "1777" if asked else "1770"], \
        r.stdout + r.stderr


@pytest.mark.parametrize("option", ["", ",default_permissions"])
def test_vufuse_default_permissions(tmp_path, examples, option):
    """pyfuse3's tmpfs example writes a 0444 file itself; with default_permissions umvu refuses it,
    as the kernel would (to anyone but root)."""
    (tmp_path / "mnt").mkdir()
    r = sh(f"""
cd {tmp_path}
vumount -t vufuse -o fs={examples}/tmpfs.py:Operations{option} none mnt || exit 1
echo x > mnt/f && chmod 444 mnt/f && (echo y > mnt/f && echo wrote); cat mnt/f
test -w mnt/f && echo w-ok || echo w-no
vuumount mnt
""")
    assert r.returncode == 0, r.stderr
    refused = option and os.geteuid() != 0
    assert r.stdout.splitlines() == (["x", "w-no"] if refused else ["wrote", "y", "w-ok"]), r.stdout + r.stderr


def test_the_permission_rules():
    """creds.permitted: owner, group and other bits, and root's capabilities (generic_permission)."""
    from umvu.creds import MAY_EXEC, MAY_READ, MAY_WRITE, Creds, check_delete

    def may_delete(d, victim, who):
        try:
            check_delete(d, victim, who)
        except OSError as e:
            return e.errno
        return True

    def st(mode, uid=1000, gid=1000):
        return os.stat_result((mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))

    def permitted(st, mask, uid, groups):
        from umvu.creds import permitted

        gid, *rest = sorted(groups)
        return permitted(st, mask, Creds(uid, gid, tuple(rest), uid, gid))

    me, mine = 1000, frozenset({1000})
    user, root = Creds(1000, 1000, (), 1000, 1000), Creds(0, 0, (), 0, 0)
    sticky = st(0o41777, uid=0, gid=0)
    assert may_delete(sticky, st(0o100600), user) is True  # the file's owner
    assert may_delete(sticky, st(0o100666, uid=5), user) == errno.EPERM  # another's file, whatever its mode
    assert may_delete(sticky, st(0o100600, uid=5), root) is True
    assert may_delete(st(0o40777, uid=5), st(0o100600, uid=5), user) is True  # not sticky: the directory decides
    assert may_delete(st(0o40755, uid=5), st(0o100666), user) == errno.EACCES
    assert permitted(st(0o100600), MAY_READ | MAY_WRITE, me, mine)
    assert not permitted(st(0o100060), MAY_READ, me, mine)  # the owner's bits count, not the group's
    assert permitted(st(0o100060, uid=5), MAY_READ, me, mine)
    assert not permitted(st(0o100006, uid=5), MAY_READ, me, mine)
    assert permitted(st(0o100004, uid=5, gid=5), MAY_READ, me, mine)
    assert not permitted(st(0o040644), MAY_EXEC, me, mine)  # a directory without search permission
    assert permitted(st(0o100000, uid=5, gid=5), MAY_READ | MAY_WRITE, 0, frozenset({0}))  # root
    assert not permitted(st(0o100644, uid=5, gid=5), MAY_EXEC, 0, frozenset({0}))  # no x bit: not even root
    assert permitted(st(0o100744, uid=5, gid=5), MAY_EXEC, 0, frozenset({0}))
    assert permitted(st(0o040000, uid=5, gid=5), MAY_EXEC, 0, frozenset({0}))  # root searches any directory


LAZY_BY_CLOSE = """
exec 3< mnt/x
umount -l mnt; echo umount $?
grep -q " $(realpath mnt) " /proc/self/mounts && echo still-mounted || echo detached
cat <&3
sleep 0.3; kill -0 $pid 2>/dev/null && echo daemon-alive || echo daemon-gone
exec 3<&-
"""
LAZY_BY_EXIT = """
sh -c 'exec 3< mnt/x; sleep 0.8; cat <&3' & holder=$!
sleep 0.3
umount -l mnt; echo umount $?
grep -q " $(realpath mnt) " /proc/self/mounts && echo still-mounted || echo detached
kill -0 $pid 2>/dev/null && echo daemon-alive || echo daemon-gone
wait $holder
"""


@pytest.mark.parametrize("last", [LAZY_BY_CLOSE, LAZY_BY_EXIT], ids=["close", "exit"])
def test_a_lazy_unmount_lives_until_its_last_open_file_is_closed(tmp_path, memfuse3, last):
    """umount -l of a busy mount, as the kernel (same output with kernel FUSE): the mount leaves the
    tree at once, a file open on it still reads, and the daemon serves it until it is closed.

    Closed by a process's exit, the file is flushed and released with nobody waiting for them;
    the FORGETs sent at the end must still wait for the answers, or another thread of the daemon
    may serve them first and libfuse aborts ("node not found": seen about once in 30 runs, under
    load, before the wait).
    """
    (tmp_path / "mnt").mkdir()
    r = sh(WAIT + f"""
cd {tmp_path}
{memfuse3} -f mnt 2> d.log & pid=$!; waitmnt mnt
echo hello > mnt/x
{last}
for i in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.05; done
kill -0 $pid 2>/dev/null && echo daemon-alive || echo daemon-gone
wait $pid; echo exit $?
""")
    assert r.returncode == 0, r.stderr
    want = ["umount 0", "detached", "hello", "daemon-alive"] if last is LAZY_BY_CLOSE else \
        ["umount 0", "detached", "daemon-alive", "hello"]
    assert r.stdout.splitlines() == want + ["daemon-gone", "exit 0"], r.stdout + r.stderr + \
        (tmp_path / "d.log").read_text()


def test_vufuse_lists_a_directory_larger_than_one_readdir_batch(tmp_path, examples):
    """Over 1024 entries (more than one readdir batch): every entry is listed once and readable."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(1500):
        (src / f"f{i:04d}").write_text(str(i))
    r = sh(WAIT + f"""
cd {tmp_path}
mkdir mnt
vumount -t vufuse -o fs={examples}/passthroughfs.py:Operations {src} mnt
ls -l mnt | tail -n +2 | wc -l
cat mnt/f1024 mnt/f1499; echo
vuumount mnt
""")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.split() == ["1500", "10241499"], r.stdout


def test_a_daemons_notifications_reach_the_caches(tmp_path):
    """INVAL_ENTRY and DELETE from a pyfuse3 daemon: what it changed is seen at once, though entries
    and attributes were given for 300 s.  (INVAL_INODE is not tried: pyfuse3's invalidate_inode,
    called from a handler's thread, ends this daemon.)"""
    gone = "for i in $(seq 100); do stat mnt/$1 >/dev/null 2>&1 || return 0; sleep 0.05; done; return 1"
    script = WAIT + f"""
cd {tmp_path} && mkdir mnt
{PY} {HERE}/data/notifyfs.py mnt & waitmnt mnt || exit 1
gone() {{ {gone}; }}
cat mnt/a; stat -c %s mnt/a
echo rename > mnt/ctl; gone a && echo a-gone; cat mnt/b
echo delete > mnt/ctl; gone b && echo b-gone; ls mnt
"""
    r = sh(script + "fusermount3 -u mnt; wait\n")
    assert r.stdout.split() == ["one", "4", "a-gone", "one", "b-gone", "ctl"], r.stdout + r.stderr
