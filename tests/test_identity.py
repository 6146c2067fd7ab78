"""Who a process is in the view: vusu's virtual ids and their kernel rules, and umvu --fakeroot.

Every test runs as whoever runs the suite (CI: root and an ordinary user); none changes a real
owner or the host's identity, which the tests check where a process claimed to be someone else.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import BIN, ERR, env, py, sh

ME = os.getuid()


def test_vusu_gives_a_root_shell_with_no_privilege(tmp_path):
    r = sh(f"vusu -c 'id -u; id -g; id -G; whoami; grep -E \"^(Uid|Gid|Groups):\" /proc/self/status; "
           f"touch {tmp_path}/made'")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:7] == ["0", "0", "0", "root", "Uid:\t0\t0\t0\t0", "Gid:\t0\t0\t0\t0", "Groups:\t0 "]
    assert (tmp_path / "made").stat().st_uid == ME  # the host's kernel made it as the user


def test_vusu_takes_a_user_by_name_or_number_with_its_groups():
    r = sh("vusu -c 'vusu daemon -s /bin/sh -c \"id -u; id -gn\"; vusu \"#4242\" -s /bin/sh -c \"id -u; id -g\"'")
    assert r.stdout.split() == ["1", "daemon", "4242", "4242"], r.stderr


def test_vusu_outside_umvu_says_so():
    r = subprocess.run([str(BIN / "vusu"), "-c", "id"], capture_output=True, text=True, env=env())
    assert r.returncode != 0 and r.stderr.strip() == "vusu: not running under umvu (start a session with: umvu bash)"


def test_vusu_refuses_an_unknown_user_and_a_bad_option():
    r = sh("vusu nosuchuser -c true; echo $?; vusu --nosuch; echo $?")
    assert r.stdout.split() == ["1", "2"]
    assert "vusu: user nosuchuser does not exist" in r.stderr


def test_the_set_id_calls_follow_the_kernels_rules_for_the_virtual_ids():
    code = ERR + """
print(os.getresuid(), os.getgroups())
print(err(os.setgroups, [5, 7]), os.getgroups())
print(err(os.seteuid, 1000), os.getresuid(), os.geteuid())
print(err(os.setgroups, [1]), err(os.setuid, 1234))   # no capability while euid is 1000
print(err(os.seteuid, 0), os.getresuid())                 # the saved id is 0: back
print(err(os.setresuid, 1000, 1000, 1000), os.getresuid())
print(err(os.setuid, 0), err(os.seteuid, 0), err(os.setgid, 0), os.getuid())  # the gids are still 0
"""
    r = sh(f"vusu -c \"$(cat <<'EOF'\npython3 -c '{code}'\nEOF\n)\"")
    lines = r.stdout.splitlines()
    assert lines[:6] == ["(0, 0, 0) [0]", "ok [5, 7]", "ok (0, 1000, 0) 1000", "EPERM EPERM",
                         "ok (0, 0, 0)", "ok (1000, 1000, 1000)"], r.stdout + r.stderr
    assert lines[6] == "EPERM EPERM ok 1000"


def test_an_ordinary_virtual_user_gets_eperm_for_root_ids():
    code = ERR + "print(err(os.setuid, 0), err(os.setgid, 0), err(os.setgroups, []), os.getuid())"
    r = sh(f"vusu '#4242' -s /bin/sh -c \"python3 -c '{code}'\"")
    assert r.stdout.split() == ["EPERM", "EPERM", "EPERM", "4242"], r.stderr


def test_capget_says_what_a_virtual_root_holds():
    code = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
data = (ctypes.c_uint32 * 6)()
print(libc.capget(hdr, data), hex(data[0] | data[3] << 32))
"""
    r = sh(f"vusu -c \"python3 -c '{code}'\"; vusu '#4242' -s /bin/sh -c \"python3 -c '{code}'\"")
    assert r.stdout.split() == ["0", "0x1ffffffffff", "0", "0x0"], r.stderr


@pytest.fixture(scope="module")
def ids_program(tmp_path_factory):
    d = tmp_path_factory.mktemp("ids")
    src = d / "ids.c"
    src.write_text('#include <stdio.h>\n#include <unistd.h>\n#include <sys/auxv.h>\n'
                   'int main(void){printf("%lu %lu %lu %d %d\\n", getauxval(AT_UID), getauxval(AT_EUID),'
                   ' getauxval(AT_SECURE), getuid(), geteuid()); return 0;}\n')
    subprocess.run(["gcc", "-static", "-O1", "-o", str(d / "ids"), str(src)], check=True)
    shutil.copy(d / "ids", d / "ids_suid")
    os.chmod(d / "ids_suid", 0o4755)
    os.chmod(d, 0o755)
    return d


def test_a_set_user_id_program_runs_with_its_owner_as_effective_id(ids_program):
    """The auxiliary vector says the virtual ids (a static program reads them there), and a
    set-user-ID file, owned by the user here, makes its owner the effective id."""
    r = sh(f"vusu '#4242' -s /bin/sh -c '{ids_program}/ids; {ids_program}/ids_suid'")
    assert r.stdout.splitlines() == ["4242 4242 0 4242 4242", f"4242 {ME} 1 4242 {ME}"], r.stderr


FAKE_TREE = """
mkdir -p tree/etc tree/dev && echo hi > tree/etc/motd
chown -R 0:0 tree; chown 1000:50 tree/etc/motd; chmod 4755 tree/etc/motd; mknod tree/dev/null c 1 3
id -u; whoami; stat -c '%n %u %g %a %F %t,%T' tree/etc/motd tree/dev/null
mkfs.ext4 -q -d tree img 8M && debugfs -R 'stat /etc/motd' img 2>/dev/null | grep -E '^(User|Inode: )'
debugfs -R 'stat /dev/null' img 2>/dev/null | grep -E '^(Inode: |Device)'
python3 -c 'import os; os.setuid(1000); os.setuid(0)' 2>&1 | tail -1
"""


def test_fakeroot_records_what_root_would_make_and_mkfs_takes_it(tmp_path):
    r = sh(f"cd {tmp_path} && {FAKE_TREE}", "--fakeroot", timeout=120)
    out = [ln for ln in r.stdout.splitlines() if not ln.startswith("Creating regular file")]
    assert out[:4] == ["0", "root", "tree/etc/motd 1000 50 4755 regular file 0,0",
                       "tree/dev/null 0 0 644 character special file 1,3"], r.stdout + r.stderr
    assert "User:  1000   Group:    50" in out[5] and "Mode:  04755" in out[4], out
    assert "character special" in out[6] and "01:03" in out[7], out
    assert out[8] == "PermissionError: [Errno 1] Operation not permitted"
    for p in (tmp_path / "tree", tmp_path / "tree/etc/motd", tmp_path / "tree/dev/null"):
        assert (p.lstat().st_uid, p.lstat().st_gid) == (ME, os.getgid())  # the real files stay the user's
    assert (tmp_path / "tree/dev/null").lstat().st_mode & 0o170000 == 0o100000


def test_fakeroot_tar_cpio_and_dpkg_deb_see_the_records(tmp_path):
    script = """
mkdir -p tree/a pkg/DEBIAN pkg/usr/bin && echo x > tree/a/f && echo '#!/bin/sh' > pkg/usr/bin/t
chmod 755 pkg pkg/DEBIAN pkg/usr pkg/usr/bin pkg/usr/bin/t
printf 'Package: t\\nVersion: 1\\nArchitecture: all\\nMaintainer: t <t@t>\\nDescription: t\\n' > pkg/DEBIAN/control
chown -R 2000:4000 tree && mknod tree/a/dev c 42 44 && ln tree/a/f tree/a/hard && mv tree/a/f tree/a/g
tar czf t.tgz tree && tar tvzf t.tgz | awk '{print $1, $2, $3, $6}'
find tree -name dev | cpio -o -H newc 2>/dev/null | cpio -tv 2>/dev/null | awk '{print $1, $3, $4}'
dpkg-deb --build pkg >/dev/null && dpkg-deb -c pkg.deb | awk '{print $2, $6}'
"""
    r = sh(f"cd {tmp_path} && {script}", "--fakeroot", timeout=120)
    out = r.stdout.splitlines()
    assert out[:5] == ["drwxr-xr-x 2000/4000 0 tree/", "drwxr-xr-x 2000/4000 0 tree/a/",
                       "crw-r--r-- root/root 42,44 tree/a/dev", "-rw-r--r-- 2000/4000 2 tree/a/g",
                       "hrw-r--r-- 2000/4000 0 tree/a/hard"], r.stdout + r.stderr
    assert out[5] == "crw-r--r-- root root", out
    assert out[6:] == ["root/root ./", "root/root ./usr/", "root/root ./usr/bin/", "root/root ./usr/bin/t"], out


def test_fakeroot_state_is_saved_and_loaded_and_follows_removal(tmp_path):
    state = tmp_path / "state"
    (tmp_path / "f").write_text("x")
    (tmp_path / "g").write_text("y")
    r = sh(f"cd {tmp_path} && chown 7:8 f && chmod 4711 f && chown 9:9 g && rm g && touch g", "--fakeroot",
           "--fakeroot-state", str(state))
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in state.read_text().splitlines() if not ln.startswith("#")]
    assert len(lines) == 1 and ",mode=104711,uid=7,gid=8," in lines[0], lines  # g's record went with it
    again = sh(f"stat -c '%u %g %a' {tmp_path}/f {tmp_path}/g", "--fakeroot", "--fakeroot-state", str(state))
    assert again.stdout.split("\n")[:2] == ["7 8 4711", "0 0 644"], again.stderr
    plain = sh(f"stat -c '%u %a' {tmp_path}/f")
    assert plain.stdout.split() == [str(ME), "711"]  # outside --fakeroot: the real file, chmod'ed usably


def test_fakeroot_state_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("nonsense\n")
    r = sh("true", "--fakeroot", "--fakeroot-state", str(bad))
    assert r.returncode != 0 and r.stderr.startswith("umvu: cannot load the fakeroot state:") and \
        r.stderr.count("\n") == 1
    r = sh("true", "--fakeroot-state", str(bad))
    assert r.returncode != 0 and r.stderr == "umvu: --fakeroot-state needs --fakeroot\n"


def test_fakeroot_covers_static_programs_and_direct_calls(tmp_path, ids_program):
    """What LD_PRELOAD misses: a static program's getuid, a raw chown syscall."""
    (tmp_path / "f").write_text("x")
    r = py(f"print(sc(92, {str(tmp_path / 'f')!r}.encode(), 3, 4), os.stat({str(tmp_path / 'f')!r}).st_uid)",
           "--fakeroot")
    assert r.stdout.split() == ["0", "3"], r.stderr
    r = sh(f"{ids_program}/ids", "--fakeroot")
    assert r.stdout.split() == ["0", "0", "0", "0", "0"], r.stderr


def test_a_cow_mount_keeps_the_records_in_its_upper_directory(tmp_path):
    """A later session that mounts the same upper sees the same owners, writes (copy-up) included."""
    for d in ("low/sub", "up", "mnt"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "low/sub/f").write_text("a")
    mount = f"vumount -t vufs -o cow,upper={tmp_path}/up {tmp_path}/low {tmp_path}/mnt && cd {tmp_path}/mnt && "
    r = sh(mount + "chown 33:44 sub/f sub && mknod dev c 4 5 && stat -c '%n %u %g %F' sub sub/f dev",
           "--fakeroot")
    first = r.stdout.splitlines()
    assert first == ["sub 33 44 directory", "sub/f 33 44 regular file", "dev 0 0 character special file"], r.stderr
    again = sh(mount + "echo more >> sub/f && stat -c '%n %u %g %F' sub sub/f dev && ls -a", "--fakeroot")
    assert again.stdout.splitlines() == [*first, ".", "..", "dev", "sub"], again.stderr
    plain = sh(mount + "stat -c '%n %u' sub/f dev")
    assert plain.stdout.split() == ["sub/f", str(ME), "dev", str(ME)], plain.stderr
    assert (tmp_path / "low/sub/f").read_text() == "a"  # the lower tree is never written


XATTRS = """
import errno, os
f = {f!r}
def at(fn, *a):
    try:
        return fn(*a)
    except OSError as e:
        return errno.errorcode[e.errno]
print(at(os.setxattr, f, "trusted.vu", b"t"), at(os.setxattr, f, "trusted.vu", b"2", os.XATTR_CREATE))
print(at(os.setxattr, f, "user.mine", b"u"), sorted(at(os.listxattr, f)), at(os.getxattr, f, "trusted.vu"))
print(at(os.removexattr, f, "trusted.vu"), at(os.getxattr, f, "trusted.vu"), at(os.listxattr, f))
print(at(os.setxattr, f, "security.capability", b"\\x01\\x00\\x00\\x02" + bytes(16)))
"""


@pytest.mark.skipif(os.getuid() == 0, reason="root sets trusted.* and security.* itself: nothing is recorded")
def test_fakeroot_records_the_attributes_only_root_may_set(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    state = tmp_path / "state"
    script = tmp_path / "x.py"
    script.write_text(XATTRS.format(f=str(f)))
    r = sh(f"python3 {script}", "--fakeroot", "--fakeroot-state", str(state))
    assert r.stdout.splitlines() == ["None EEXIST", "None ['trusted.vu', 'user.mine'] b't'",
                                     "None ENODATA ['user.mine']", "None"], r.stdout + r.stderr
    assert os.listxattr(f) == ["user.mine"]  # the real file holds what the user may set
    again = sh(f"python3 -c 'import os; print(os.listxattr(\"{f}\"))'", "--fakeroot", "--fakeroot-state", str(state))
    assert again.stdout.strip() == "['user.mine', 'security.capability']", again.stderr


def test_checks_umvu_makes_use_the_virtual_ids(tmp_path):
    """A module's tree (here a device node, mode 0660, its mounter's) is judged by the virtual ids:
    root passes, another user is refused; a fake root's ordinary user may not chown."""
    node = tmp_path / "ram0"
    r = sh(f"vu_insmod vudev && vumount -t vudevramdisk -o size=1M none {node} && "
           f"vusu -c 'head -c 10 {node} | wc -c' && vusu '#4242' -s /bin/sh -c 'head -c 10 {node} | wc -c'")
    assert r.stdout.split() == ["10", "0"] and "Permission denied" in r.stderr, r.stdout + r.stderr
    (tmp_path / "f").write_text("x")
    r = sh(f"vusu '#4242' -s /bin/sh -c 'chown 4242 {tmp_path}/f; chmod 777 {tmp_path}/f; stat -c %u:%a {tmp_path}/f'",
           "--fakeroot")
    assert r.stdout.split() == ["0:644"] and r.stderr.count("Operation not permitted") == 2, r.stdout + r.stderr
