"""Path calls answered through seccomp user notifications (umvu/notify.py, issue 18 item 4).

stat, access and readlink calls that reach umvu come as notifications, not ptrace stops, once
anything is mounted.  Each test runs with the fast path off (so the calls reach umvu at all),
compares what programs see with notifications on against ptrace stops (--no-notify) or native,
and checks with --stats that the calls were notified: a mechanism that never ran would pass the
comparisons alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import HERE, UMVU, env

UNREAL = ("-o", "unreal")


def run(argv: list[str], *opts: str, notify: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([UMVU, *opts, *argv], capture_output=True, text=True, timeout=timeout,
                          env={**env(), "UMVU_FAST_PATH": "0", "UMVU_NOTIFY": "1" if notify else "0"})


def notified(stats: str) -> dict[str, int]:
    """The calls --stats counted as notifications, by name."""
    return {m[2]: int(m[1]) for m in re.finditer(r"^\s*(\d+)\s+\S+\s+\S+\s+(\S+) \(notified\)$", stats, re.M)}


def test_calls_in_a_view_are_notified_and_answer_as_with_ptrace_stops(tree, tmp_path):
    stats = tmp_path / "stats"
    script = (f"cd /unreal{tree} && for f in a.txt abs rel dangling nope sub dirlink/b.bin; do "
              "stat -c '%n %s %i %h %F' $f; stat -L -c '%n %s %F' $f; test -r $f && echo r; test -x $f && echo x; "
              "readlink $f; done 2>&1; realpath dirlink/b.bin; cd sub && stat -c '%n %s' ../a.txt deeper/c; /bin/pwd; "
              f"stat -c '%n %s' /unreal{tree}/with\\ space /etc/hostname")
    on = run(["bash", "-c", script], *UNREAL, "--stats", str(stats))
    off = run(["bash", "-c", script], *UNREAL, notify=False)
    assert on.returncode == 0 and on.stdout == off.stdout, on.stdout + on.stderr + off.stdout
    assert "a.txt 6 " in on.stdout and "No such file" in on.stdout and f"/unreal{tree}/sub/b.bin" in on.stdout
    counts = notified(stats.read_text())
    assert counts.get("statx", 0) + counts.get("newfstatat", 0) >= 20, counts
    assert counts.get("readlink", 0) >= 5 and counts.get("faccessat2", 0) + counts.get("access", 0) >= 5, counts
    assert counts.get("getcwd", 0) >= 1 and f"/unreal{tree}/sub\n" in on.stdout, counts
    without = tmp_path / "without"
    run(["bash", "-c", script], *UNREAL, "--stats", str(without), notify=False)
    assert not notified(without.read_text())  # --no-notify: every call stops


def test_rewritten_calls_made_by_umvu_give_the_kernels_answers(tree, cc, tmp_path):
    """With the cwd in a view every relative name is rewritten: umvu makes the call itself
    (notify.perform), and its results, errors and copied buffers are the kernel's."""
    prog = cc("notified")
    native = subprocess.run([prog, str(tree)], capture_output=True, text=True)
    stats = tmp_path / "stats"
    on = run([prog, f"/unreal{tree}"], *UNREAL, "--stats", str(stats))
    off = run([prog, f"/unreal{tree}"], *UNREAL, notify=False)
    assert native.returncode == 0 and "EFAULT" in native.stdout and "EINVAL" in native.stdout, native.stdout
    assert on.stdout == native.stdout, on.stdout + on.stderr
    assert off.stdout == native.stdout
    assert sum(notified(stats.read_text()).values()) >= 25, stats.read_text()


def test_a_chroot_view_is_served_through_notifications(tree, tmp_path):
    """In a chroot every name is rewritten to the host's: umvu makes the calls itself."""
    root = tmp_path / "root"
    (root / "usr").mkdir(parents=True)
    for link in ("bin", "lib", "lib64"):
        if os.path.islink(f"/{link}"):
            (root / link).symlink_to(os.readlink(f"/{link}"))
    abs_target = os.readlink(tree / "abs")
    os.rename(tree, root / "t")
    stats = tmp_path / "stats"
    script = (f"vumount -t vufs /usr {root}/usr && vuchroot {root} /bin/sh -c "
              "'cd /t && stat -c \"%n %s %F\" a.txt abs /t/sub/deeper/c; readlink rel /t/abs; "
              "test -x exec.sh && echo x; stat nope 2>&1 | tail -c 26'")
    on = run(["bash", "-c", script], "-o", "vufs", "--stats", str(stats))
    off = run(["bash", "-c", script], "-o", "vufs", notify=False)
    assert on.returncode == 0 and on.stdout == off.stdout, on.stdout + on.stderr + off.stderr
    assert on.stdout.split("\n") == ["a.txt 6 regular file", f"abs {len(abs_target)} symbolic link",
                                     "/t/sub/deeper/c 5000 regular file", "sub/b.bin", abs_target, "x",
                                     "No such file or directory", ""], on.stdout
    assert sum(notified(stats.read_text()).values()) >= 5, stats.read_text()


def test_threads_calls_are_told_apart(tree, tmp_path):
    """Notifications carry the thread's id: each thread's answer reaches it, its buffers get its data."""
    code = f"""
import os, threading
names = {{"a.txt": 6, "sub/b.bin": 10240, "sub/deeper/c": 5000, "with space": 6}}
bad = []
def work(name, size):
    for _ in range(150):
        if os.stat(f"/unreal{tree}/{{name}}").st_size != size or not os.access(f"/unreal{tree}/{{name}}", os.R_OK):
            bad.append(name)
        if os.readlink(f"/unreal{tree}/rel") != "sub/b.bin":
            bad.append("rel")
ts = [threading.Thread(target=work, args=kv) for kv in names.items()]
[t.start() for t in ts]
[t.join() for t in ts]
print("bad", bad)
"""
    stats = tmp_path / "stats"
    r = run([sys.executable, "-c", code], *UNREAL, "--stats", str(stats))
    assert r.stdout == "bad []\n", r.stdout + r.stderr
    assert notified(stats.read_text()).get("readlink", 0) >= 600, stats.read_text()


def test_a_process_killed_while_umvu_serves_its_notified_call_ends_alone(tmp_path):
    """The module takes 1.5 s to answer a stat; the caller is killed meanwhile: the answer finds no
    one, and the session, the other processes and the listener go on."""
    mod = HERE / "data" / "slowfs.py"
    stats = tmp_path / "stats"
    script = (f"vu_insmod {mod}; stat -c %s /slow/slowstat & pid=$!; sleep 0.3; kill -9 $pid; wait $pid; "
              "echo rc=$?; stat -c '%n %s' /slow/file /etc/hostname; stat -c %s /slow/slowstat; echo end")
    r = run(["bash", "-c", script], "--stats", str(stats))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n") == ["rc=137", "/slow/file 5", f"/etc/hostname {os.path.getsize('/etc/hostname')}",
                                    "5", "end", ""], r.stdout + r.stderr
    assert notified(stats.read_text()), stats.read_text()


def test_a_signal_caught_without_sa_restart_never_makes_a_stat_fail(cc, tmp_path):
    """A signal that comes before umvu took the notification ends the call's wait (-ERESTARTSYS,
    EINTR for a handler without SA_RESTART); Linux's stat is never interrupted, so umvu makes the
    call again after the handler.  A timer's signal every 50 us, 2,000 of them and as many
    stats at least: no EINTR (one call in eight failed before)."""
    prog = cc("sigstat")
    assert subprocess.run([prog, "/etc/hostname", "2000"], capture_output=True, text=True).stdout == \
        "eintr 0 other 0\n"
    stats = tmp_path / "stats"
    r = run([prog, "/unreal/etc/hostname", "2000"], *UNREAL, "--stats", str(stats))
    assert r.stdout == "eintr 0 other 0\n", r.stdout + r.stderr
    counts = notified(stats.read_text())
    assert counts.get("newfstatat", 0) + counts.get("statx", 0) >= 2000, counts


def test_a_signal_ends_a_notified_stat_that_waits_on_a_slow_module(cc):
    """The module takes 1.5 s to answer; a signal comes after 0.3 s: a caught one ends the stat
    with EINTR, as it does in a ptrace stop (Tracer._check_interrupts: the caller would wait for the
    module, a hung daemon's caller for ever); SIGTERM with no handler kills the caller."""
    prog = cc("intstat")
    mod = HERE / "data" / "slowfs.py"
    script = (f"vu_insmod {mod}; {prog} /slow/slowstat & sleep 0.3; kill -INT $!; wait; "
              "stat /slow/slowstat & pid=$!; sleep 0.3; kill -TERM $pid; wait $pid; echo rc=$?; "
              f"{prog} /slow/file")
    for notify in (True, False):
        r = run(["bash", "-c", script], notify=notify)
        assert r.stdout == "stat EINTR\nrc=143\nstat ok\n", (notify, r.stdout + r.stderr)
