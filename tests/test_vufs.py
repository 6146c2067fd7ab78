"""vufs and the mount table, end to end: real programs in bind, merge and cow mounts."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ERR, UMVU, env, py, sh

V = ("-o", "vufs")
ROOT = os.geteuid() == 0


def tree_hash(root) -> str:
    """Names, types, modes, link targets and contents of a whole tree."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{os.path.relpath(p, root)}\0{st.st_mode:o}\0{st.st_mtime_ns}\0".encode())
            if os.path.islink(p):
                h.update(os.readlink(p).encode())
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


@pytest.fixture
def proj(tmp_path):
    """A small C project under git, and an empty mount point."""
    src = tmp_path / "proj"
    src.mkdir()
    (src / "Makefile").write_text("all: hello\nhello: hello.c greet.h\n\tgcc -o hello hello.c\n")
    (src / "greet.h").write_text('#define GREETING "hello from cow"\n')
    (src / "hello.c").write_text('#include <stdio.h>\n#include "greet.h"\nint main(void){puts(GREETING);return 0;}\n')
    (src / "docs").mkdir()
    (src / "docs" / "old.txt").write_text("old\n")
    git = ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=src, check=True)
    subprocess.run([*git, "add", "."], cwd=src, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=src, check=True)
    (tmp_path / "mnt").mkdir()
    return src


GIT = "git -c user.email=t@example.org -c user.name=t"


def test_cow_changes_go_to_upper_and_lower_stays_byte_identical(proj, tmp_path):
    before = tree_hash(proj)
    up, mnt = tmp_path / "up", tmp_path / "mnt"
    r = sh(f"vumount -t vufs -o cow,upper={up} {proj} {mnt} && cd {mnt} && "
           "echo more >> hello.c && echo new > new.txt && rm docs/old.txt && mkdir d2 && "
           "mv new.txt d2/moved.txt && chmod 600 greet.h && ls -A . docs d2 && cat hello.c | tail -1", *V)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [".:", ".git", "Makefile", "d2", "docs", "greet.h", "hello.c", "d2:", "moved.txt",
                                "docs:", "more"]
    assert tree_hash(proj) == before
    assert (up / "docs" / ".wh.old.txt").exists()  # the deletion is recorded in the upper directory
    # A later mount of the same upper shows the same changes.
    r = sh(f"vumount -t vufs -o cow,upper={up} {proj} {mnt} && cd {mnt} && ls -A docs d2 && "
           "stat -c %a greet.h && tail -1 hello.c", *V)
    assert r.stdout.split() == ["d2:", "moved.txt", "docs:", "600", "more"], r.stderr
    assert tree_hash(proj) == before


def test_real_workloads_in_a_cow_overlay(proj, tmp_path):
    """git, make, tar, sqlite3 and python in a copy-on-write view; the lower tree does not change."""
    for tool in ("git", "make", "gcc", "tar", "sqlite3"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: `make test` installs it when run as root")
    before = tree_hash(proj)
    up, mnt = tmp_path / "up", tmp_path / "mnt"
    tarball = tmp_path / "inc.tar"
    subprocess.run(["tar", "cf", str(tarball), "-C", "/usr/include", "linux"], check=True)
    script = f"""set -e
vumount -t vufs -o cow,upper={up} {proj} {mnt}
cd {mnt}
{GIT} checkout -q -b try
make -s
./hello
echo '#define GREETING "changed"' > greet.h
make -s
./hello
{GIT} commit -qam wip
{GIT} log --format=%s | tr '\\n' ' '; echo
{GIT} checkout -q main
cat greet.h
{GIT} status --short
mkdir x && tar xf {tarball} -C x && find x -type f | wc -l
sqlite3 db.sqlite 'create table t(a); insert into t values (1),(2),(3);' && sqlite3 db.sqlite 'select sum(a) from t'
"""
    r = sh(script, *V, timeout=240)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == ["hello from cow", "changed", "wip init "], r.stdout
    assert lines[3] == '#define GREETING "hello from cow"'
    assert "?? db.sqlite" not in lines[4:]  # git status ran before sqlite3
    assert int(lines[-2]) == sum(len(f) for _, _, f in os.walk("/usr/include/linux"))
    assert lines[-1] == "6"
    assert tree_hash(proj) == before


def _wheel(dest) -> str:
    """A minimal pure-Python wheel (no network, no build backend needed to install it)."""
    import zipfile

    path = dest / "tinypkg-1.0-py3-none-any.whl"
    files = {
        "tinypkg/__init__.py": "VALUE = 42\n",
        "tinypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "tinypkg-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("tinypkg-1.0.dist-info/RECORD", record)
    return path.name


def test_pip_install_into_a_venv_inside_cow(tmp_path):
    """python -m venv and pip install in a cow mount: venv/bin/pip's "#!" names a python only the view has."""
    base = tmp_path / "base"
    base.mkdir()
    wheel = _wheel(base)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    before = tree_hash(base)
    py3 = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    r = sh(f"set -e; vumount -t vufs -o cow {base} {mnt}; cd {mnt}; {py3} -m venv venv; "
           f"venv/bin/pip install -q --no-index --disable-pip-version-check {wheel}; "
           "venv/bin/python -c 'import tinypkg; print(tinypkg.VALUE)'", *V, timeout=300)
    assert r.stdout.strip() == "42", r.stdout + r.stderr
    assert tree_hash(base) == before
    assert not (base / "venv").exists()


def test_bind_hands_out_real_fds_and_runs_binaries(tmp_path, tree):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code = f"""import os
fd = os.open("{mnt}/sub/b.bin", os.O_RDONLY)
print(os.readlink(f"/proc/self/fd/{{fd}}"))  # named in the view...
print(os.fstat(fd).st_ino == os.stat("{tree}/sub/b.bin").st_ino)  # ...but the host file itself
print(os.read(fd, 4) == bytes(range(4)))
print(os.stat("{mnt}").st_dev == os.stat("{tree}").st_dev)  # a bind shows the st_dev of its source, as on Linux
print(sorted(os.listdir("{mnt}")) == sorted(os.listdir("{tree}")))
d = os.open("{mnt}/sub", os.O_RDONLY)
os.fchdir(d)
print(os.getcwd(), sorted(os.listdir("..")) == sorted(os.listdir("{tmp_path}/mnt")))
"""
    r = sh(f"vumount -t vufs {tree} {mnt} && {sys.executable} -c '{code}' && {mnt}/exec.sh", "-v", *V)
    assert r.stdout.split() == [f"{mnt}/sub/b.bin", "True", "True", "True", "True", f"{mnt}/sub", "True", "hi"], \
        r.stderr
    assert " read(" not in r.stderr and "getdents64(" not in r.stderr  # the kernel's own I/O: no stops


def test_merge_is_a_read_only_union_first_wins(tmp_path):
    a, b, mnt = tmp_path / "a", tmp_path / "b", tmp_path / "mnt"
    for d in (a, b, mnt):
        d.mkdir()
    (a / "both").write_text("from a\n")
    (b / "both").write_text("from b\n")
    (b / "only_b").write_text("b\n")
    (a / "d").mkdir()
    (b / "d").mkdir()
    (a / "d" / "x").write_text("")
    (b / "d" / "y").write_text("")
    r = sh(f"vumount -t vufs -o merge {a}:{b} {mnt} && cat {mnt}/both && ls {mnt} {mnt}/d && "
           f"touch {mnt}/new; echo touch=$?; rm {mnt}/both; echo rm=$?; grep ' {mnt} ' /proc/self/mounts", *V)
    assert r.stdout.split("\n")[:7] == ["from a", f"{mnt}:", "both", "d", "only_b", "", f"{mnt}/d:"], r.stdout
    assert "x\ny\ntouch=1\nrm=1\n" in r.stdout
    assert "Read-only file system" in r.stderr
    assert f"{a}:{b} {mnt} vufs ro,relatime,merge 0 0" in r.stdout


def test_mount_boundaries_behave_like_linux(tmp_path, tree):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (tmp_path / "outside").write_text("out\n")
    code = ERR + f"""
print(err(os.rename, "{mnt}/a.txt", "{tmp_path}/a.txt"))
print(err(os.link, "{mnt}/a.txt", "{tmp_path}/hl"))
print(err(os.rename, "{tmp_path}/outside", "{mnt}/outside"))
print(err(os.rename, "{mnt}/a.txt", "{mnt}/renamed.txt"))
print(os.path.samefile("{mnt}/..", "{tmp_path}"))
os.chdir("{mnt}/sub")
print(os.getcwd(), sorted(os.listdir("../..")) == sorted(os.listdir("{tmp_path}")))
print("mnt" in os.listdir("{tmp_path}"))
os.symlink("{mnt}/renamed.txt", "{tmp_path}/in")      # real -> virtual
print(open("{tmp_path}/in").read().strip())
os.symlink("{tmp_path}/outside", "{mnt}/out")          # virtual -> real
print(open("{mnt}/out").read().strip())
os.symlink("loop2", "{mnt}/loop1"); os.symlink("loop1", "{mnt}/loop2")
print(err(os.stat, "{mnt}/loop1"))
print(err(os.stat, "{mnt}/" + "x" * 4100))
print(err(os.stat, "{mnt}/" + "x" * 300))
"""
    r = sh(f"vumount -t vufs {tree} {mnt} && {sys.executable} -c '{code}'", *V)
    assert r.stdout.split("\n")[:-1] == [
        "EXDEV", "EXDEV", "EXDEV", "ok", "True", f"{mnt}/sub True", "True", "alpha", "out",
        "ELOOP", "ENAMETOOLONG", "ENAMETOOLONG"], r.stderr


def test_ro_and_noexec_mount_options(tmp_path, tree):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = sh(f"vumount -t vufs -o ro,noexec {tree} {mnt}; cat {mnt}/a.txt; echo x > {mnt}/a.txt; echo w=$?; "
           f"mkdir {mnt}/n; echo mkdir=$?; {mnt}/exec.sh; echo exec=$?; "
           f"mount -o remount,rw {mnt} 2>/dev/null || vumount -t vufs -o remount,rw x {mnt}; "
           f"grep ' {mnt} ' /proc/self/mounts", *V)
    assert "alpha\nw=1\nmkdir=1\nexec=126\n" in r.stdout, r.stdout + r.stderr
    assert r.stderr.count("Read-only file system") == 2
    assert "Permission denied" in r.stderr
    assert f"{tree} {mnt} vufs rw,noexec,relatime 0 0" in r.stdout  # remount,rw keeps noexec, as Linux
    assert (tree / "a.txt").read_text() == "alpha\n"


def test_findmnt_df_mtab_and_mountinfo_show_virtual_mounts(tmp_path, tree):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = sh(f"vumount -t vufs -o cow {tree} {mnt} && findmnt -n -o TARGET,SOURCE,FSTYPE {mnt} && "
           f"df --output=target {mnt} | tail -1 && grep -c ' {mnt} ' /etc/mtab && "
           f"awk '$5 == \"{mnt}\" {{print $7, $8, $9}}' /proc/self/mountinfo && stat -f -c %n {mnt} && "
           f"vumount | grep -c ' on {mnt} type vufs'", *V)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(mnt), str(tree), "vufs", str(mnt), "1", "-", "vufs", str(tree), str(mnt), "1"]
    host = open("/proc/self/mountinfo").read()
    assert str(mnt) not in host  # the host never saw it


@pytest.mark.skipif(not ROOT, reason="util-linux mount refuses -t for ordinary users before calling mount(2)")
def test_util_linux_mount_and_umount_as_root(tmp_path, tree):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = sh(f"mount -t vufs -o cow {tree} {mnt} && cat {mnt}/a.txt && findmnt -n -o FSTYPE {mnt} && "
           f"umount {mnt} && ls {mnt} | wc -l && mount --bind {tree} {mnt} && cat {mnt}/with\\ space && "
           f"umount -l {mnt} && echo done", *V)
    assert r.stdout.split() == ["alpha", "vufs", "0", "space", "done"], r.stderr
    assert str(mnt) not in open("/proc/self/mountinfo").read()


def test_raw_mount_and_umount2_errors_match_linux(tmp_path, tree):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code = f"""
import ctypes, errno
def s(p):
    return ctypes.c_char_p(p.encode()) if p is not None else None
def name(ret):
    return "0" if ret == 0 else errno.errorcode[-ret]
print(name(sc(165, s("{tree}"), s("{mnt}"), s("nosuchfs"), 0, s(""))))
print(name(sc(165, s("{tree}"), s("{mnt}"), s("vufs"), 0, s("frobnicate"))))
print(name(sc(165, s("{tree}"), s("{tmp_path}/missing"), s("vufs"), 0, s(""))))
print(name(sc(165, s("{tree}/missing"), s("{mnt}"), s("vufs"), 0, s(""))))
print(name(sc(166, s("{mnt}"), 0)))
print(name(sc(165, s("{tree}"), s("{mnt}"), s("vufs"), 0, s("cow"))))
print(name(sc(165, s("{tree}"), s("{mnt}"), s("vufs"), 0, s(""))))
fd = os.open("{mnt}/sub", os.O_RDONLY)
print(name(sc(166, s("{mnt}"), 0)))
print(name(sc(166, s("{mnt}"), 1 << 10)))
print(name(sc(166, s("{mnt}"), 2)))
print(len(os.listdir(fd)), os.path.exists("{mnt}/a.txt"))
os.close(fd)
"""
    r = py(code, *V)
    assert r.stdout.split() == ["ENODEV", "EINVAL", "ENOENT", "ENOENT", "EINVAL", "0", "EBUSY", "EBUSY",
                                "EINVAL", "0", "2", "False"], r.stderr


def test_umount_after_the_last_user_leaves_and_rmmod_waits(tmp_path, tree):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = sh(f"vumount -t vufs {tree} {mnt}; vu_rmmod vufs; echo rmmod=$?; (cd {mnt}; vuumount {mnt}; echo busy=$?); "
           f"vuumount {mnt}; echo um=$?; vuumount {mnt}; echo again=$?; vu_rmmod vufs; echo rmmod=$?", *V)
    assert "rmmod=1\nbusy=32\num=0\nagain=32\nrmmod=0\n" in r.stdout, r.stdout + r.stderr
    assert "not mounted" in r.stderr


def test_dynamic_loader_loads_libraries_from_virtual_trees(tmp_path):
    """ld.so opens and maps a library under /unreal (a private copy) and under a vufs bind (a real fd)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (tmp_path / "greet.c").write_text('#include <stdio.h>\nvoid greet(void) { puts("greeted"); }\n')
    (tmp_path / "main.c").write_text("void greet(void);\nint main(void) { greet(); return 0; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib / "libgreet.so"), str(tmp_path / "greet.c")], check=True)
    subprocess.run(["gcc", "-o", str(tmp_path / "main"), str(tmp_path / "main.c"), f"-L{lib}", "-lgreet"], check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    hidden = tmp_path / "hidden"
    lib.rename(hidden)  # the library exists only where the views put it
    r = sh(f"LD_LIBRARY_PATH=/unreal{hidden} {tmp_path}/main; vumount -t vufs {hidden} {mnt} && "
           f"LD_LIBRARY_PATH={mnt} {tmp_path}/main; cp {tmp_path}/main {mnt}/ && LD_LIBRARY_PATH={mnt} {mnt}/main",
           "-o", "vufs,unreal")
    assert r.stdout.split() == ["greeted"] * 3, r.stderr


def test_io_uring_is_refused_while_a_view_exists(tmp_path, tree):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code = f"""
import ctypes, errno
params = ctypes.create_string_buffer(120)
print(errno.errorcode.get(-sc(425, 4, params), "fd"))
print(sc(165, ctypes.c_char_p(b"{tree}"), ctypes.c_char_p(b"{mnt}"), ctypes.c_char_p(b"vufs"), 0, None))
print(errno.errorcode.get(-sc(425, 4, params), "fd"))
"""
    r = py(code, *V)
    lines = r.stdout.split()
    assert lines[1:] == ["0", "ENOSYS"], r.stderr
    assert lines[0] != "ENOSYS"  # before anything is mounted the kernel answers


def test_a_private_cow_upper_goes_with_the_session(tmp_path, tree):
    """The mount's root shows the source's mode and times (a tar of it archives them), and the
    changes are in a directory only the session may enter, removed with the session."""
    mnt, tmpdir = tmp_path / "mnt", tmp_path / "tmpdir"
    mnt.mkdir()
    tmpdir.mkdir()
    tree.chmod(0o751)
    os.utime(tree, (1e9, 1e9))
    r = subprocess.run([UMVU, "-o", "vufs", "bash", "-c",
                        f"vumount -t vufs -o cow {tree} {mnt} && stat -c '%a %Y' {mnt} && stat -c %a $TMPDIR/* && "
                        f"echo x > {mnt}/new && cat {mnt}/new && ls $TMPDIR"],
                       capture_output=True, text=True, env=dict(env(), TMPDIR=str(tmpdir)), timeout=60)
    assert r.stdout.startswith("751 1000000000\n700\nx\numvu-cow-"), r.stdout + r.stderr  # a private upper...
    assert not any(p.name.startswith("umvu-cow-") for p in tmpdir.iterdir())  # ...which the session removed
    assert not (tree / "new").exists()


def test_mounting_a_type_loads_its_module_as_the_kernel_does(tmp_path, tree):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = sh(f"vu_lsmod; vumount -t vufs {tree} {mnt} && cat {mnt}/a.txt && vu_lsmod")
    assert r.stdout.startswith("alpha\nvufs "), r.stdout + r.stderr


def test_cow_corner_cases_keep_the_lower_tree_and_linux_errnos(tmp_path):
    low, mnt = tmp_path / "low", tmp_path / "mnt"
    (low / "ro").mkdir(parents=True)
    (low / "ro" / "f").write_text("f\n")
    (low / "ro").chmod(0o555)
    (low / "file").write_text("x\n")
    (low / "meta").write_text("m\n")
    (low / "meta").chmod(0o644)
    (low / "d").mkdir()
    mnt.mkdir()
    before = tree_hash(low)
    code = ERR + f"""
m = "{mnt}"
print(err(os.rmdir, m + "/file"))                       # rmdir of a file: ENOTDIR, and the file stays
print(os.path.exists(m + "/file"))
with open(m + "/ro/f", "a") as f:                       # a file in a 0555 directory can still change
    f.write("more\\n")
print(" ".join(open(m + "/ro/f").read().split()))
fd = os.open(m + "/meta", os.O_RDONLY)                  # a real fd on the lower file...
os.fchmod(fd, 0o600)                                    # ...changes the view, not the lower tree
print(oct(os.stat(m + "/meta").st_mode & 0o777))
print(err(os.rename, m + "/d", m + "/file"))            # a directory over a file: ENOTDIR (the VFS checks it first)
os.mkdir(m + "/new")
print(err(os.rename, m + "/new", m + "/file"))
"""
    uppers = set(glob.glob("/tmp/umvu-cow-*"))
    r = sh(f"vumount -t vufs -o cow {low} {mnt} && {sys.executable} -c '{code}'", *V)
    (low / "ro").chmod(0o755)
    assert r.stdout.split() == ["ENOTDIR", "True", "f", "more", "0o600", "ENOTDIR", "ENOTDIR"], r.stderr
    assert {u for u in glob.glob("/tmp/umvu-cow-*") if os.stat(u).st_uid == os.getuid()} <= uppers  # the
    # private upper went at unmount, copies of 0555 directories included
    (low / "ro").chmod(0o555)
    assert tree_hash(low) == before
    (low / "ro").chmod(0o755)


def test_fchmod_on_a_read_only_bind_is_erofs(tmp_path, tree):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code = f"""import errno, os
fd = os.open("{mnt}/a.txt", os.O_RDONLY)
try:
    os.fchmod(fd, 0o600)
except OSError as e:
    print(errno.errorcode[e.errno])
"""
    r = sh(f"vumount -t vufs -o ro {tree} {mnt} && {sys.executable} -c '{code}'", *V)
    assert r.stdout.split() == ["EROFS"], r.stderr
    assert oct((tree / "a.txt").stat().st_mode & 0o777) == "0o644"


def test_a_script_in_a_view_gets_all_its_arguments(tmp_path):
    """Many arguments: the argv array the interpreter gets is rebuilt across page boundaries."""
    low, mnt = tmp_path / "low", tmp_path / "mnt"
    (low / "venv" / "bin").mkdir(parents=True)
    mnt.mkdir()
    (low / "venv" / "bin" / "py").symlink_to(sys.executable)
    (low / "count").write_text(f"#!{mnt}/venv/bin/py\nimport sys\nprint(len(sys.argv) - 1, sys.argv[-1])\n")
    (low / "count").chmod(0o755)
    r = sh(f"vumount -t vufs -o cow {low} {mnt} && {mnt}/count $(seq 1 3000)", *V)
    assert r.stdout.split() == ["3000", "3000"], r.stderr


def test_private_copies_of_same_named_programs_stay_apart(tmp_path):
    for d, word in (("d1", "one"), ("d2", "two")):
        (tmp_path / d).mkdir()
        (tmp_path / d / "prog").write_text(f"#!/bin/sh\necho {word}\n")
        (tmp_path / d / "prog").chmod(0o755)
    u = f"/unreal{tmp_path}"
    r = sh(f"{u}/d1/prog; echo '#!/bin/sh' > {u}/d1/prog; echo 'echo one again' >> {u}/d1/prog; "
           f"{u}/d1/prog; {u}/d2/prog; {u}/d1/prog", "-o", "unreal")
    assert r.stdout.split("\n")[:4] == ["one", "one again", "two", "one again"], r.stderr


def test_a_real_script_whose_interpreter_only_the_view_has(tmp_path):
    low, mnt = tmp_path / "low", tmp_path / "mnt"
    low.mkdir()
    mnt.mkdir()
    (low / "py").symlink_to(sys.executable)
    script = tmp_path / "hello"
    script.write_text(f"#!{mnt}/py\nimport sys\nprint('hello from', sys.argv[0])\n")
    script.chmod(0o755)
    r = sh(f"vumount -t vufs {low} {mnt} && {script}", *V)
    assert r.stdout.strip() == f"hello from {script}", r.stderr


def test_trailing_slash_on_a_symlink_to_a_directory(tmp_path):
    low, mnt = tmp_path / "low", tmp_path / "mnt"
    (low / "d").mkdir(parents=True)
    (low / "link").symlink_to("d")
    mnt.mkdir()
    code = f"""import errno, os
for call in (os.rmdir, os.unlink):
    try:
        call("{mnt}/link/")
    except OSError as e:
        print(errno.errorcode[e.errno])
print(os.path.isdir("{mnt}/d"), os.path.islink("{mnt}/link"))
"""
    r = sh(f"vumount -t vufs -o cow {low} {mnt} && {sys.executable} -c '{code}'", *V)
    assert r.stdout.split() == ["ENOTDIR", "ENOTDIR", "True", "True"], r.stderr


def test_mountinfo_shows_a_bind_with_its_source_device(tmp_path, tree):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = sh(f"vumount -t vufs {tree} {mnt} && awk '$5 == \"{mnt}\" {{print $3}}' /proc/self/mountinfo && "
           f"stat -c '%Hd:%Ld' {mnt}", *V)
    dev = os.stat(tree).st_dev
    assert r.stdout.split() == [f"{os.major(dev)}:{os.minor(dev)}"] * 2, r.stdout + r.stderr


LONG = """
import os
os.chdir({base!r})
p = "/".join(["d" * 100] * 38)                  # 3,837 bytes of directories
f = p + "/" + "f" * 255                          # 4,093 bytes: Linux takes it, relative to the cwd
os.makedirs(p)
for what, call in (("open", lambda: os.close(os.open(f, os.O_CREAT | os.O_WRONLY, 0o644))),
                   ("stat", lambda: os.stat(f)), ("unlink", lambda: os.unlink(f))):
    try:
        call()
        print(what, "ok")
    except OSError as e:
        print(what, e.strerror)
"""


def test_a_long_relative_path_works_outside_a_view(tmp_path):
    r = py(LONG.format(base=str(tmp_path)), *V)
    assert r.stdout.split("\n")[:3] == ["open ok", "stat ok", "unlink ok"], r.stdout + r.stderr


@pytest.mark.parametrize("mode", ["bind", "cow"])
def test_a_long_relative_path_works_in_a_mount(tmp_path, mode):
    (tmp_path / "src").mkdir()
    (tmp_path / "mnt").mkdir()
    opts = f"-o cow,upper={tmp_path}/up" if mode == "cow" else ""
    code = f"assert os.system('vumount -t vufs {opts} {tmp_path}/src {tmp_path}/mnt') == 0\n"
    r = py(code + LONG.format(base=str(tmp_path / "mnt")), *V)
    assert r.stdout.split("\n")[:3] == ["open ok", "stat ok", "unlink ok"], r.stdout + r.stderr
