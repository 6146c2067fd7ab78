"""Process events reach every module that listens (hookspecs: vu_process_fork, _exec, _exit), and
the state a module keeps per process is carried by the core: a new process starts with its
creator's, exec keeps it, the exit event still sees it (tests/data/procwatch.py)."""

from __future__ import annotations

import os

from conftest import HERE, umvu

SCRIPT = f"""
vu_insmod {HERE / "data" / "procwatch.py"} || exit 9
echo $$
sh -c 'echo $$; exec sh -c "echo \\$\\$; exec python3 -c \\"import os, threading; print(os.getpid()); \\
t = threading.Thread(target=print); t.start(); t.join()\\""'
echo done
"""


def test_fork_exec_and_exit_reach_a_module_with_its_state_per_process(tmp_path):
    log = tmp_path / "events"
    os.environ["PROCWATCH_LOG"] = str(log)
    try:
        r = umvu("bash", "-c", SCRIPT)
    finally:
        del os.environ["PROCWATCH_LOG"]
    assert r.returncode == 0, r.stderr
    shell, child, same, python = r.stdout.split()[:4]
    assert child == same == python  # exec keeps the pid: one process, three programs
    events = log.read_text().splitlines()
    mine = [e for e in events if child in e.split()[1:3]]
    assert mine[0] == f"fork {shell} {child} process 1", events
    assert mine[1:4] == [f"exec {child} 1"] * 3, events  # sh, sh, python3: the state stays
    threads = [e for e in mine if e.endswith(" thread 1")]
    assert len(threads) == 1 and threads[0].startswith(f"fork {child} "), events
    assert mine[-1] == f"exit {child} 1", events  # the thread's end is no process's
    assert events[-1] == f"exit {shell} None", events  # made before the module: no state
