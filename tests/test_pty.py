"""An interactive `umvu bash` in a pseudo-terminal: job control must work as in a real terminal."""

import os
import time

import pexpect
import pytest
from conftest import UMVU, env

PROMPT = "PROMPT\\$ "


@pytest.fixture
def shell():
    e = dict(env(), PS1="PROMPT$ ", TERM="dumb")
    child = pexpect.spawn(UMVU, ["bash", "--norc", "--noprofile", "-i"],
                          env=e, encoding="utf-8", timeout=15, dimensions=(24, 200))
    child.expect(PROMPT)
    yield child
    if child.isalive():
        try:
            child.sendline("exit 0")
            child.expect(pexpect.EOF)
            child.close()
        except OSError:  # its terminal is gone already
            child.terminate(force=True)


def started(cmdline: str, timeout: float = 10) -> None:
    """Wait until a process runs ``cmdline``: a key typed before that reaches the shell, not the job."""
    want = cmdline.replace(" ", "\0").encode() + b"\0"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read() == want:
                        return
            except OSError:
                pass
        time.sleep(0.02)
    raise AssertionError(f"{cmdline!r} never started")


def run(child, line):
    child.sendline(line)
    child.expect(PROMPT)
    return child.before


def test_ctrl_c_interrupts_the_foreground_job(shell):
    shell.sendline("sleep 30.5")
    started("sleep 30.5")
    shell.sendintr()
    shell.expect(PROMPT)
    assert run(shell, "echo status=$?").split()[-1] == "status=130"


def test_ctrl_z_stops_and_fg_resumes(shell):
    shell.sendline("cat")
    shell.expect_exact("cat")
    shell.sendline("first")
    shell.expect_exact("first")  # echoed by the tty, then by cat
    shell.sendcontrol("z")
    shell.expect("Stopped")
    shell.expect(PROMPT)
    assert "cat" in run(shell, "jobs")
    shell.sendline("fg")
    shell.expect_exact("cat")
    shell.sendline("second")
    shell.expect("second\r\n.*second")
    shell.sendcontrol("d")  # EOF ends cat
    shell.expect(PROMPT)
    assert run(shell, "echo status=$?").split()[-1] == "status=0"


def test_bg_resumes_in_the_background(shell):
    shell.sendline("sleep 2.5")
    started("sleep 2.5")
    shell.sendcontrol("z")
    shell.expect("Stopped")
    shell.expect(PROMPT)
    assert "Stopped" in run(shell, "jobs")
    run(shell, "bg")
    assert "Running" in run(shell, "jobs")
    assert run(shell, "wait %1; echo w=$?").split()[-1] == "w=0"


def test_exit_status_reaches_the_caller(shell):
    shell.sendline("exit 7")
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.exitstatus == 7


def test_ctrl_c_interrupts_a_read_waiting_on_a_slow_module(shell):
    """The module takes 1.5 s to answer; Ctrl-C ends the wait at once, as the kernel ends a blocked read."""
    run(shell, f"vu_insmod {os.path.dirname(__file__)}/data/slowfs.py")
    shell.sendline("cat /slow/file")
    started("cat /slow/file")
    time.sleep(0.1)
    t0 = time.monotonic()
    shell.sendcontrol("c")
    shell.expect(PROMPT)
    assert time.monotonic() - t0 < 0.8
    assert run(shell, "echo $?").split()[-1] == "130"


def test_a_hangup_ends_the_shell_and_its_jobs(shell):
    """The terminal goes away: its session leader (umvu) gets SIGHUP from the kernel and passes it to
    the shell, which passes it to its jobs, as the shell would as the leader itself."""
    shell.sendline("sleep 300.25 & sleep 200.25")
    started("sleep 200.25")
    started("sleep 300.25")
    os.close(shell.child_fd)  # the master side closed: a hangup, no signal from any process
    deadline = time.monotonic() + 10
    left = ["?"]
    while left and time.monotonic() < deadline:
        left = [pid for pid in filter(str.isdigit, os.listdir("/proc")) if _cmdline(pid) in
                (b"sleep\x00300.25\x00", b"sleep\x00200.25\x00")]
        time.sleep(0.05)
    assert not left, "jobs outlived the terminal"
    assert shell.wait() is not None


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""
