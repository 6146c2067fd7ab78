"""No fault ends a session: processes SIGKILLed at every kind of stop, while others work on.

The tracer injects a real SIGKILL (umvu/faults.py, armed by UMVU_FAULTS) into
"victim" processes at stops of each kind: a call's entry, a handler's
further stop, a wait for a module's worker thread or a FUSE daemon, exec,
fork, a new child's first stop, signal delivery, group stop.  Other victims
are killed from outside at random moments, as `kill -9` would.  Meanwhile a
witness does checked work through the same views (unreal, a module served
from worker threads, fuse2fs), and the session must end with its status,
its output right, nothing logged as an internal error, the ext4 image clean
under e2fsck, and no process left.

`make test` runs a short round on two CPUs and one with --pin; `make faults`
runs long rounds (FAULT_SECONDS) and asks for thousands of kills.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HERE, UMVU, env, need

SECONDS = int(os.environ.get("FAULT_SECONDS", "12"))
MIN_KILLS = int(os.environ.get("FAULT_MIN_KILLS", "100"))
# Each kind's chance of a kill at such a stop: victims make far more call entries than anything else.
KINDS = {"entry": 0.003, "mid": 0.05, "wait": 0.1, "exec": 0.05, "fork": 0.05, "newborn": 0.05, "signal": 0.05,
         "group": 0.1}

DRIVER = r"""
set -u
B={tmp}/bin; T={tmp}/tree; M={tmp}/mnt; V={victim}; END=$((SECONDS + {seconds}))
vu_insmod fuse {faultfs} || exit 90
fuse2fs -o rw {tmp}/disk.img $M || exit 91
trap 'fusermount3 -u $M 2>/dev/null' EXIT  # a failing run ends with its message: no daemon left to wait for
for i in $(seq 200); do grep -q " $M " /proc/self/mounts && break; sleep 0.05; done
slot() {{ while [ $SECONDS -lt $END ]; do "$@"; done >/dev/null 2>&1; }}
slot $B/victim-py $V io $T $M &
slot $B/victim-py $V io $T &
slot $B/victim-py $V threads $T $B &
slot $B/victim-py $V signals $T &
slot $B/victim-sh -c "while :; do $B/victim-true; (:); done" &
# group stops: a victim stopped and continued over and over
# (the injector may have killed it, and bash reaped it: a pid is signalled only while its name is the victim's,
# else a long round, which wraps pid_max, stops or kills someone else)
mine() {{ local c; read -r c < /proc/$1/comm && [ "$c" = victim-sleep ]; }} 2>/dev/null
(while [ $SECONDS -lt $END ]; do
   $B/victim-sleep 100 & p=$!
   for i in $(seq 20); do mine $p || break; kill -STOP $p; sleep 0.01; mine $p || break; kill -CONT $p; done
   mine $p && kill -KILL $p; wait $p
 done) >/dev/null 2>&1 &
# kills from outside, at whatever moment: timeout(1) kills its own child, which it alone reaps
(while [ $SECONDS -lt $END ]; do
   timeout -s KILL 0.0$((RANDOM % 6 + 1)) $B/victim-py $V io $T
 done) >/dev/null 2>&1 &
witness() {{
  (cd /unreal$T && find . -type f | sort | xargs md5sum)
  md5sum < /faulty/f3
  cp -r $T/sub $M/w && (cd $M/w && md5sum *) && rm -r $M/w; s=$?; [ $s = 0 ] || echo "copy, sum or removal: status $s"
}}
n=0
expected=$(cat {tmp}/expected)
while [ $SECONDS -lt $END ]; do
  out=$(witness 2>&1)
  [ "$out" = "$expected" ] || {{ echo "witness: wrong output:"; echo "$out" | diff {tmp}/expected -; exit 92; }}
  n=$((n + 1))
done
wait
trap - EXIT
fusermount3 -u $M || exit 93
echo "witness ok $n"
"""


def _setup(tmp: Path) -> None:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    # A process's name (/proc/PID/comm) is the name it was run by: these mark the victims.
    for name, target in (("victim-py", sys.executable), ("victim-sh", "/bin/bash"), ("victim-true", "/bin/true"),
                         ("victim-sleep", "/bin/sleep")):
        (bin_dir / name).symlink_to(target)
    tree = tmp / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a").write_text("a\n")
    for i in range(20):
        (tree / "sub" / f"f{i}").write_bytes(os.urandom(100 * i + 1))
    (tree / "sub" / "b").write_text("b\n" * 1000)
    (tmp / "mnt").mkdir()
    img = tmp / "disk.img"
    subprocess.run(["truncate", "-s", "64M", str(img)], check=True)
    subprocess.run(["/usr/sbin/mkfs.ext4", "-q", "-F", "-E", f"root_owner={os.getuid()}:{os.getgid()}", str(img)],
                   check=True)
    # what the witness must print, measured natively
    sub = sorted(p.name for p in (tree / "sub").iterdir())
    expected = subprocess.run(
        f"cd {tree} && find . -type f | sort | xargs md5sum; printf 'f3\\n%.0s' $(seq 100) | md5sum; "
        f"cd sub && md5sum {' '.join(sub)}", shell=True, capture_output=True, text=True, check=True).stdout
    (tmp / "expected").write_text(expected.rstrip("\n") + "\n")


def _left_behind(tmp: Path) -> list[str]:
    """Processes whose command line names this test's directory (victims, the daemon, the driver)."""
    out = subprocess.run(["pgrep", "-af", str(tmp)], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


@pytest.mark.parametrize("pin", [False, True], ids=["two-cpus", "pinned"])
def test_sigkill_at_every_kind_of_stop_ends_no_session(tmp_path, pin):
    need("mkfs.ext4", "fuse2fs", "fusermount3")
    _setup(tmp_path)
    driver = DRIVER.format(tmp=tmp_path, victim=HERE / "data" / "victim.py", faultfs=HERE / "data" / "faultfs.py",
                           seconds=SECONDS)
    e = env()
    e["UMVU_FAULTS"] = f"seed={int(pin)},victims=victim,at={'+'.join(f'{k}:{p}' for k, p in KINDS.items())}"
    log = tmp_path / "umvu.log"
    cmd = [UMVU, *(["--pin"] if pin else []), "-o", "unreal", "--log", str(log), "bash", "-c", driver]
    r = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=SECONDS * 6 + 120)
    text = log.read_text()
    (tmp_path / "driver.out").write_text(r.stdout + r.stderr)  # whole, for a failure's reader
    assert r.returncode == 0 and re.search(r"witness ok [1-9]", r.stdout), (r.returncode, r.stdout[-3000:],
                                                                             r.stderr[-3000:], text[-3000:])
    assert "internal error" not in text and "Traceback" not in text, text[-5000:]
    summary = re.search(r"faults: (\d+) SIGKILLs injected: (.*)", text)
    assert summary, text[-2000:]
    by_kind = dict(kv.split("=") for kv in summary.group(2).split())
    missed = [k for k in KINDS if int(by_kind.get(k, 0)) == 0]
    assert int(summary.group(1)) >= MIN_KILLS and not missed, (summary.group(0), missed)
    # the image every killed writer wrote to is consistent
    fsck = subprocess.run(["/usr/sbin/e2fsck", "-fn", str(tmp_path / "disk.img")], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    for _ in range(50):  # reaped by init a moment after umvu returned
        left = _left_behind(tmp_path)
        if not left:
            break
        time.sleep(0.1)
    assert not left, left
