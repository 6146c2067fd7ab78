"""Every x86_64 Linux system call, and how umvu treats it: the coverage page, and the -vv log.

umvu's own table (syscalls.py) lists only the calls it may serve.  The rest
come from python-ptrace's tables (names and C prototypes), and, for numbers
newer than those, from the system's <asm/unistd_64.h>: nothing here is a
hand-kept list of calls.  How a call is treated is read off the code: the
table's row (its family, its argument kinds), the filter's rules
(syscalls.ALWAYS_TRACED, bpf's shortcuts), and the family handler's own
docstring.  A call that is not in the table but whose prototype names a path
or an fd is reported as unseen: umvu does not stop it, so what it names is
the host's (a path) or the placeholder of a virtual fd.

``python -m umvu.catalog`` (``make docs``) writes docs/syscalls.md; a test
fails when the page and the code disagree.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from typing import NamedTuple

from umvu import arch, notify, syscalls

UNISTD = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
X32_FIRST = 512  # python-ptrace's x86_64 table also holds the x32 ABI's own numbers, from here on
# Prototype parameters that name a path or an fd (python-ptrace's spelling of the kernel's names).
PATH_PARAMS = frozenset({"filename", "pathname", "path", "oldname", "newname", "old", "new", "library", "dev_name",
                         "dir_name", "specialfile", "special", "new_root", "put_old"})
FD_PARAMS = re.compile(r"^(fd|dfd|dirfd|olddfd|newdfd|oldfd|newfd|fd_in|fd_out|fdin|fdout|in_fd|out_fd|ufd|epfd|"
                       r"sockfd|mount_fd|fanotify_fd|group_fd)$")


class Call(NamedTuple):
    nr: int
    name: str
    prototype: tuple[str, tuple[tuple[str, str], ...]] | None  # (return type, ((type, name), ...))


@functools.cache
def calls() -> dict[int, Call]:
    """Every x86_64 call umvu knows the name of, by number."""
    from ptrace.syscall.linux.x86_64 import SYSCALL_NAMES
    from ptrace.syscall.prototypes import SYSCALL_PROTOTYPES

    names = {nr: name for nr, name in SYSCALL_NAMES.items() if nr < X32_FIRST}
    try:
        with open(UNISTD) as f:
            for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", f.read()):
                names.setdefault(int(m.group(2)), m.group(1))
    except OSError:
        pass
    if arch.NAME == "x86_64":
        for nr, sc in syscalls.BY_NR.items():
            if nr != syscalls.VU_CONTROL_NR:
                names.setdefault(nr, sc.name)
    return {nr: Call(nr, name, SYSCALL_PROTOTYPES.get(name)) for nr, name in sorted(names.items())}


def _paths(params: tuple[tuple[str, str], ...]) -> list[str]:
    """The parameters that name a path (a ``name`` right after a dirfd is one: name_to_handle_at)."""
    out = []
    for k, (typ, name) in enumerate(params):
        after_dirfd = k > 0 and params[k - 1][1] in ("dfd", "dirfd")
        if "char *" in typ and (name in PATH_PARAMS or after_dirfd and name == "name"):
            out.append(name)
    return out


def _names_fd(param: tuple[str, str]) -> bool:
    typ, name = param
    return typ in ("int", "unsigned int", "unsigned long") and bool(FD_PARAMS.match(name))


CHOSEN = {"fd": "chosen by its fd", "ioctl": "chosen by its fd, then its request", "path": "chosen by its path",
          "nr": "chosen by its number", "family": "chosen by its address family",
          "custom": "chosen by its handler"}  # syscalls.py's choice column


class Treatment(NamedTuple):
    stops: str  # when the call stops
    virtual: str  # what umvu does when it involves something virtual
    kind: str  # never, fd, path, always, placeholder, unseen, unknown


def treatment(c: Call) -> Treatment:
    """How umvu treats call ``c``, read off its table, its filter and its handlers."""
    sc = syscalls.BY_NR.get(c.nr) if arch.NAME == "x86_64" else None
    if sc is None:
        if c.prototype is None:
            return Treatment("never", "not in umvu's table, and python-ptrace knows no prototype for it: "
                             "whatever it names is the host's", "unknown")
        params = c.prototype[1]
        paths = _paths(params)
        fds = [p[1] for p in params if _names_fd(p)]
        if paths:
            return Treatment("never", f"unseen: its path ({', '.join(paths)}) is the host's, even in a virtual tree",
                             "unseen")
        if any(typ in ("struct pollfd *", "fd_set *") for typ, _n in params):
            return Treatment("never", "a virtual fd in its sets is its placeholder: ready at once as a "
                             "regular file is, or what its service's poll says (umvu.readiness)", "placeholder")
        if fds:
            return Treatment("never", f"given a virtual fd ({', '.join(fds)}), it acts on the fd's placeholder "
                             "(/dev/null open for reading, an eventfd, or a disk's own file): the kernel's "
                             "answer for a file that is no socket or pipe", "placeholder")
        return Treatment("never", "nothing it names can be virtual", "never")
    what = f"{CHOSEN[sc.choice]}: {_family_note(sc.family)}"
    if sc.family == "service":
        return Treatment("once a module claims it", what, "claimed")
    if sc.family in syscalls.ALWAYS_TRACED:
        return Treatment("always" + (", a notification once anything is mounted" if sc.name in notify.CALLS else ""),
                         what, "always")
    if sc.path_args or sc.addr_args or sc.family in syscalls.MOUNTED_FAMILIES:
        when = "once anything is mounted"
        if sc.addr_args and sc.arg_index("ptr") is not None:
            when += " (with an address)"
        if sc.fd_args:
            when += ", or on a virtual fd"
        if sc.name in notify.CALLS:
            when += " (a notification)"
        return Treatment(when, what, "path")
    return Treatment("on a virtual fd", what, "fd")


def _family_note(family: str) -> str:
    from umvu import calls  # the handlers say what they do (their docstrings' first line)

    handler = calls.FAMILIES.get(family)
    doc = (handler.__doc__ or "").strip().split("\n\n")[0] if handler is not None else ""
    return " ".join(doc.split()) or f"served by the {family} family"


def _known_top() -> int:
    """The highest number python-ptrace or the system's header names (umvu's own table aside)."""
    ours = {sc.nr for sc in syscalls.BY_NR.values()} if arch.NAME == "x86_64" else set()
    return max(nr for nr in calls() if nr not in ours or calls()[nr].prototype is not None or nr < 451)


def signature(c: Call) -> str:
    """The C prototype (python-ptrace's), or umvu's table's argument kinds when it has none."""
    if not c.prototype:
        sc = syscalls.BY_NR.get(c.nr) if arch.NAME == "x86_64" else None
        return f"{c.name}({', '.join(sc.args) if sc else '?'})"
    ret, params = c.prototype
    return f"{ret} {c.name}({', '.join(f'{t} {n}'.replace('* ', '*') for t, n in params)})"


def page() -> str:
    """docs/syscalls.md."""
    rows = [(c, treatment(c)) for c in calls().values()]
    counts: dict[str, int] = {}
    for _c, t in rows:
        counts[t.kind] = counts.get(t.kind, 0) + 1
    table = [s.nr for s in syscalls.BY_NR.values() if s.nr != syscalls.VU_CONTROL_NR]
    out = [
        "# System calls: what umvu does with each",
        "",
        "Written by `make docs` (`python -m umvu.catalog`) from the code; do not edit by hand.",
        "Names and prototypes: python-ptrace's tables, then the system's `<asm/unistd_64.h>` for newer",
        f"numbers, then umvu's own table.  x86_64 only; {len(rows)} calls.",
        "",
        "* **never** stops: the kernel serves it with no cost (a seccomp filter lets it through).",
        f"  {counts.get('never', 0)} calls.",
        "* **on a virtual fd**: stops only in a process that holds a virtual fd, and only when an fd",
        "  argument is one (a filter layer per fd number).  "
        f"{counts.get('fd', 0)} calls.",
        "* **once anything is mounted**: path calls stop from the first mount on, and umvu resolves the",
        "  path in the caller's view; a real one goes to the kernel (rewritten when the caller's cwd,",
        "  dirfd or root is virtual).  So do the calls that name an AF_UNIX socket by a path, and those",
        f"  that answer with one.  {counts.get('path', 0)} calls.  "
        f"{', '.join(sorted(notify.CALLS))} reach umvu as seccomp user notifications, not ptrace stops",
        "  (docs/architecture.md, \"Calls answered through notifications\").",
        f"* **always**: they change the view itself.  {counts.get('always', 0)} calls.",
        "* **once a module claims it**: a module may serve the call (`vu.claim_call`) or an address",
        "  family (`vu.claim_family`: socket and socketpair); from then on it stops in every process.",
        f"  {counts.get('claimed', 0)} calls.",
        "* **placeholder**: never stops, though it takes an fd: a virtual fd is an fd the kernel holds",
        "  too (a placeholder), so the call fails as it would on a plain file (a socket call: ENOTSOCK).",
        f"  {counts.get('placeholder', 0)} calls.",
        "* **unseen**: not in umvu's table although the prototype names a path: a path in a virtual",
        f"  tree reaches the host's name.  {counts.get('unseen', 0)} calls.",
        "* **unknown**: not in umvu's table, and python-ptrace has no prototype for it.  "
        f"{counts.get('unknown', 0)} calls.",
        "",
        f"Calls newer than those sources (numbers above {_known_top()} that are not in umvu's table) are",
        "not listed; umvu does not stop them.",
        "",
        "Other ABIs (i386 `int 0x80`, x32) get ENOSYS from the filter; numbers no kernel has get ENOSYS",
        f"from the kernel.  umvu's table has {len(table)} calls; `vu_control` (number "
        f"{syscalls.VU_CONTROL_NR:#x}) is umvu's own, for vu_insmod and friends.",
        "",
        "| nr | call | stops | when it involves something virtual |",
        "|---:|---|---|---|",
    ]
    for c, t in rows:
        out.append(f"| {c.nr} | `{signature(c)}` | {t.stops} | {t.virtual.replace('|', '/')} |")
    return "\n".join(out) + "\n"


# -- the -vv log: calls that stop without a row in umvu's table ------------------------------

def describe(nr: int, args: tuple[int, ...], read_str: Callable[[int], str]) -> str:
    """``name(arg, ...)`` for a call umvu has no row for, formatted by its prototype."""
    c = calls().get(nr)
    if c is None:
        return f"syscall_{nr}({', '.join(hex(a) for a in args)})"
    params = c.prototype[1] if c.prototype else tuple(("long", f"arg{i}") for i in range(6))
    parts = []
    for (typ, name), v in zip(params, args, strict=False):
        if typ in ("const char *", "char *") and v and name not in ("buf", "optval", "shmaddr", "list"):
            try:
                parts.append('"' + read_str(v) + '"')
            except OSError:
                parts.append(hex(v))
        elif "*" in typ:
            parts.append(hex(v) if v else "NULL")
        elif "mode" in name:
            parts.append(oct(v & 0o7777))
        elif "flag" in name or "mask" in name or "prot" in name or name in ("start", "addr", "brk", "len") \
                and typ == "unsigned long" and name != "len":
            parts.append(hex(v & 0xFFFFFFFF if typ in ("int", "unsigned int") else v))
        elif typ in ("int", "pid_t", "uid_t", "gid_t") or _names_fd((typ, name)):
            v &= 0xFFFFFFFF
            parts.append(str(v - (1 << 32) if v & 0x80000000 else v))
        else:
            parts.append(str(v - (1 << 64) if v >= 1 << 63 else v))
    return f"{c.name}({', '.join(parts)})"


if __name__ == "__main__":
    import sys

    text = page()
    if len(sys.argv) > 1:
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(text)
        os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    else:
        sys.stdout.write(text)
