"""The tracer with real programs: processes, threads, signals, exit codes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

from conftest import UMVU, env, native, py, sh, umvu


def test_exit_status_is_the_commands():
    assert umvu("true").returncode == 0
    assert umvu("false").returncode == 1
    assert sh("exit 3").returncode == 3


def test_death_by_signal_is_128_plus_n():
    assert sh("kill -TERM $$").returncode == 128 + signal.SIGTERM
    assert sh("kill -KILL $$").returncode == 128 + signal.SIGKILL


def test_output_and_stdin_pass_through():
    r = umvu("bash", "-c", "read x; echo got:$x; echo err >&2", input="hello\n")
    assert r.stdout == "got:hello\n" and r.stderr == "err\n"


def test_a_bash_script_behaves_as_natively():
    script = "set -e; for i in 1 2 3; do echo $i; done | sort -r | tr '\\n' ' '; x=$(ls / | wc -l); echo; echo $x"
    assert sh(script).stdout == native(script).stdout


def test_fork_exec_pipelines_and_subshells():
    script = "(echo a; (echo b | cat) ; bash -c 'echo c') | cat; echo $((6*7))"
    r = sh(script)
    assert r.stdout == "a\nb\nc\n42\n"


def test_python_runs():
    r = umvu("python3", "-c", "import json, os; print(json.dumps({'pid': os.getpid() > 0}))")
    assert r.stdout.strip() == '{"pid": true}'


def test_python_threads():
    r = umvu("python3", "-c", "import threading\nout=[]\n"
             "ts=[threading.Thread(target=lambda: out.append(open('/etc/hostname').read())) for _ in range(8)]\n"
             "[t.start() for t in ts]\n[t.join() for t in ts]\nprint(len(out))")
    assert r.stdout.strip() == "8", r.stderr


def test_pthreads_program(cc):
    exe = cc("threads", "-pthread")
    r = umvu(exe)
    assert r.returncode == 0 and r.stdout.strip() == "400", r.stderr


def test_gcc_and_make_build_a_program(tmp_path):
    src = os.path.join(os.path.dirname(__file__), "data", "hello.c")
    shutil.copy(src, tmp_path / "hello.c")
    (tmp_path / "greet.h").write_text('#define GREETING "hello"\nstatic inline int answer(void) { return 42; }\n')
    (tmp_path / "Makefile").write_text("hello: hello.c greet.h\n\tgcc -O2 -o $@ hello.c\n")
    r = sh(f"cd {tmp_path} && make && ./hello")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("hello, 42")


def test_waits_for_daemons(tmp_path):
    flag = tmp_path / "flag"
    t0 = time.monotonic()
    r = sh(f"(sleep 1; echo done > {flag}) & exit 0")
    assert r.returncode == 0
    assert flag.read_text() == "done\n"  # umvu returned only after the daemon ended
    assert time.monotonic() - t0 >= 0.9


def test_signals_reach_the_program():
    r = sh("trap 'echo caught USR1' USR1; kill -USR1 $$; echo after")
    assert r.stdout == "caught USR1\nafter\n"


def test_stop_and_continue_a_child():
    r = sh("sleep 5 & p=$!; kill -STOP $p; sleep 0.2; ps -o stat= -p $p; kill -CONT $p; kill $p; wait $p; echo $?")
    # stopped: "T" natively, "t" (tracing stop) under any tracer, strace too
    assert r.stdout.split()[0][0] in "Tt"
    assert r.stdout.split()[-1] == str(128 + signal.SIGTERM)


def test_setuid_binary_runs_without_privileges():
    su = shutil.which("su")
    assert su and os.stat(su).st_mode & 0o4000
    r = umvu("su", "--version")
    assert r.returncode == 0 and "su" in r.stdout


def test_unknown_syscall_is_enosys():
    r = py("import errno; print(sc(999) == -errno.ENOSYS, sc(0x40000002, 0) == -errno.ENOSYS)")
    assert r.stdout.split() == ["True", "True"], r.stderr


def test_umvu_kills_its_tracees_when_it_dies(tmp_path):
    p = subprocess.Popen([UMVU, "sleep", "30"], env=env())
    time.sleep(0.5)
    child = int(subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()[0])
    p.kill()
    p.wait()
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the tracee outlived the hypervisor")


def test_missing_command_is_127():
    r = umvu("no-such-command-xyz")
    assert r.returncode == 127 and "no-such-command-xyz" in r.stderr


def test_bad_command_line_is_one_line_and_nonzero(tmp_path):
    ran = tmp_path / "ran"
    for args, says in [(["--no-such-option"], "--no-such-option"),
                       (["-o", "nope"], "unknown module 'nope'"),
                       (["-o", ""], "-o needs module names"),
                       (["-o", ","], "-o needs module names"),
                       (["--stats"], "--stats: expected one argument"),
                       (["--log", str(tmp_path / "no" / "such" / "f")], "cannot open log file"),
                       (["--kill-after", "soon"], "not a number of seconds")]:
        r = umvu(*args, "touch", str(ran)) if args != ["--stats"] else umvu(*args)
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and says in r.stderr, (args, r.stderr)
        assert r.stderr.startswith("umvu: ") and not ran.exists(), args


def test_help_documents_the_options():
    out = umvu("--help").stdout
    for opt in ("--insmod", "--verbose", "--debug", "--log"):
        assert opt in out
    for cmd in ("vu_insmod", "vu_rmmod", "vu_lsmod"):
        r = subprocess.run([os.path.join(os.path.dirname(UMVU), cmd), "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage" in r.stdout


def test_commands_outside_umvu_say_so():
    for cmd in ("vu_insmod unreal", "vu_rmmod unreal", "vu_lsmod"):
        r = native(cmd)
        assert r.returncode != 0
        assert "not running under umvu" in r.stderr


def test_stats_count_the_calls_that_stopped(tmp_path):
    """--stats: what stopped, how often, the hypervisor's time; to a file or, with '-', to stderr."""
    out = tmp_path / "stats.txt"
    r = umvu("--stats", str(out), "-o", "unreal", "bash", "-c", "for i in 1 2 3; do cat /unreal/etc/hostname; done")
    assert r.returncode == 0, r.stderr
    assert r.stdout == open("/etc/hostname").read() * 3
    rows = {line.split(None, 3)[3]: int(line.split()[0]) for line in out.read_text().splitlines()[2:-1]}
    assert rows["read"] >= 3 and rows["openat"] >= 3, out.read_text()  # each cat opens and reads its file
    assert rows["total"] == sum(n for name, n in rows.items() if name != "total")
    assert "hypervisor:" in out.read_text()
    r = umvu("--stats", "-", "true")
    assert "total" in r.stderr and r.returncode == 0
    r = umvu("--stats", str(tmp_path / "no" / "such" / "dir"), "touch", str(tmp_path / "ran"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "cannot write the stats" in r.stderr, r.stderr
    assert not (tmp_path / "ran").exists()  # refused before the command runs, as strace -o does
