"""A test module that listens to process events and keeps a state per process: how many forks
below the module's loading it was made (a process made before has none: 0).  Events go to
$PROCWATCH_LOG."""

import os

from umvu.api import hookimpl

LOG = os.environ["PROCWATCH_LOG"]
_vu = None


def note(line):
    with open(LOG, "a") as f:
        f.write(line + "\n")


@hookimpl
def vu_module_describe():
    return "logs fork, exec and exit, with a depth per process"


@hookimpl
def vu_module_load(vu):
    global _vu
    _vu = vu


@hookimpl
def vu_process_fork(parent, child, thread):
    if not thread:
        _vu.set_state(child, (_vu.state(child) or 0) + 1)  # the creator's, carried by the core
    note(f"fork {parent} {child} {'thread' if thread else 'process'} {_vu.state(child)}")


@hookimpl
def vu_process_exec(pid):
    note(f"exec {pid} {_vu.state(pid)}")


@hookimpl
def vu_process_exit(pid):
    note(f"exit {pid} {_vu.state(pid)}")
