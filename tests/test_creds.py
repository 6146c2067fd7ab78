"""The caller's credentials reach every check: a process that switched to another user, in a session
umvu runs as root, gets in each view what the kernel gives it on a real directory.

Only root can switch users, so these run as root (as CI's first round does); an ordinary user's
processes always have the session's ids, which every other test exercises.  The tree lives in a
directory of our own under /tmp that the other user may search (pytest's are root's, 0700).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import UMVU, env, need

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only root can switch to another user")

USER, GROUP, OTHER, STRANGER = 65534, 1234, 4321, 1235  # the switched-to user, its extra group, and others

SETUP = f"""
cd "$1"
echo data > rootfile; chmod 644 rootfile
echo data > secret; chmod 600 secret
echo g > groupfile; chown 0:{GROUP} groupfile; chmod 660 groupfile
mkdir rootdir; echo x > rootdir/f
mkdir priv; chmod 700 priv; echo x > priv/f
mkdir sticky; chmod 1777 sticky; echo x > sticky/other; chown {STRANGER}:{STRANGER} sticky/other
chmod 666 sticky/other
mkdir sgid; chown 0:{GROUP} sgid; chmod 2777 sgid
mkdir sgid2; chown 0:{OTHER} sgid2; chmod 2777 sgid2
mkdir open; chmod 777 open
mkfifo fifo; chmod 600 fifo
"""

CHECK = """
cd "$1" 2>/dev/null || { echo "cd refused; stat: $(stat "$1" 2>&1 | sed 's/.*: //')"; exit; }
t() { n=$1; shift; if out=$("$@" 2>&1); then echo "$n ok"; else echo "$n ${out##*: }"; fi; }
echo "as $(id -u) $(id -g) $(id -G)"
t chmod chmod 666 rootfile
t chown chown 65534 rootfile
t chgrp-member chgrp 1234 rootfile
t touch-now-ro touch rootfile
t touch-date touch -d 2001-01-01 groupfile
t touch-now-w touch groupfile
t truncate truncate -s 0 rootfile
t read-secret cat secret
t read-group cat groupfile
t append-group sh -c 'echo more >> groupfile'
t access-w test -w rootfile
t access-w-group test -w groupfile
t unlink rm -f rootdir/f
t mkdir-rootdir mkdir rootdir/x
t list-priv ls priv
t stat-in-priv stat priv/f
t fifo sh -c 'exec 3<>fifo'
t sticky-rm rm -f sticky/other
t sticky-mv mv sticky/other sticky/moved
t move-out mv rootdir/f open/f
t hardlink ln secret open/l
t mknod mknod open/null c 1 3
t create touch sticky/mine
t sgid-dir mkdir sgid/d
t sgid-file touch sgid/f
t sgid-keep chmod 2755 sgid/f
t sgid2-file touch sgid2/f
t sgid2-drop chmod 2755 sgid2/f
t own-chgrp-other chgrp 4321 open
t own-chown touch open/mine
t own-chown-away chown 0 open/mine
stat -c '%n %a %u:%g %s' rootfile secret groupfile rootdir rootdir/f sticky/other sticky/mine sgid/d sgid/f \\
    sgid2/f open/mine 2>&1
"""


@pytest.fixture
def base() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="umvu-creds-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _session(base: Path) -> None:
    (base / "setup.sh").write_text(SETUP)
    (base / "check.sh").write_text(CHECK)


AS_USER = f"setpriv --reuid {USER} --regid {USER} --groups {GROUP} -- bash"


def _run(argv: list[str]) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, env=env(), timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    return r.stdout


def _native(base: Path) -> str:
    t = base / "native"
    t.mkdir()
    return _run(["bash", "-c", f"bash {base}/setup.sh {t} && {AS_USER} {base}/check.sh {t}"])


@pytest.mark.parametrize("view", ["unreal", "bind", "cow"])
def test_a_switched_user_gets_the_kernels_answers(base, view):
    need("setpriv")
    _session(base)
    expected = _native(base)
    assert expected.startswith(f"as {USER} {USER} {USER} {GROUP}\n"), expected  # the switch took, group included
    assert "chmod Operation not permitted" in expected and "read-secret Permission denied" in expected, expected
    t = base / "v"
    t.mkdir()
    if view == "unreal":
        run = f"bash {base}/setup.sh /unreal{t} && {AS_USER} {base}/check.sh /unreal{t}"
        got = _run([UMVU, "-o", "unreal", "bash", "-c", run])
    else:
        src, up = base / "src", base / "up"
        src.mkdir()
        up.mkdir()
        if view == "cow":  # the tree is the lower one: every change is a copy-up or a whiteout
            run = f"bash {base}/setup.sh {src} && vumount -t vufs -o cow,upper={up} {src} {t}"
        else:
            run = f"vumount -t vufs {src} {t} && bash {base}/setup.sh {t}"
        got = _run([UMVU, "-o", "vufs", "bash", "-c", f"{run} && {AS_USER} {base}/check.sh {t}"])
    assert got == expected


FUSE_RUN = """
fuse2fs -o rw{opts} {img} {mnt} || exit 1
for i in $(seq 100); do grep -q " {mnt} " /proc/self/mounts && break; sleep 0.05; done
bash {base}/setup.sh {mnt} && {as_user} {base}/check.sh {mnt}
{umount} {mnt}
"""


@pytest.mark.parametrize("opts", [",allow_other", ""], ids=["allow_other", "mounter-only"])
def test_a_switched_user_on_fuse2fs_gets_what_the_kernels_fuse_gives(base, opts):
    """fuse2fs judges by the uid and gid a request carries; without allow_other only the mounter
    may use the mount at all (fuse_allow_current_process)."""
    need("setpriv", "fuse2fs", "mkfs.ext4", "unshare")
    _session(base)
    outs = []
    for name, runner, umount in (("kernel", ["unshare", "-m", "--propagation", "private", "bash", "-c"], "umount"),
                                 ("umvu", [UMVU, "bash", "-c"], "fusermount3 -u")):
        img, mnt = base / f"{name}.img", base / f"{name}.mnt"
        mnt.mkdir()
        subprocess.run(["truncate", "-s", "16M", str(img)], check=True)
        subprocess.run(["/usr/sbin/mkfs.ext4", "-q", str(img)], check=True)
        script = FUSE_RUN.format(opts=opts, img=img, mnt=mnt, base=base, as_user=AS_USER, umount=umount)
        outs.append(_run([*runner, ("vu_insmod fuse && " if name == "umvu" else "") + script]))
        fsck = subprocess.run(["/usr/sbin/e2fsck", "-fn", str(img)], capture_output=True, text=True)
        assert fsck.returncode == 0, (name, fsck.stdout)
    kernel, got = outs
    assert ("cd refused; stat: Permission denied" in kernel) == (not opts), kernel
    assert got == kernel
