"""Command-line entry points: umvu, vu_insmod, vu_rmmod, vu_lsmod."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from umvu import __version__


def _fail(prog: str, message: str, code: int = 1) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return code


def umvu_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="umvu",
        description="Run COMMAND in a partial virtual machine: its processes see the host, plus "
        "whatever modules loaded with vu_insmod (or -o) mount for them. No privileges needed.",
        epilog="Inside, vu_insmod/vu_rmmod/vu_lsmod manage modules. Exit status: COMMAND's "
        "(128+N if a signal N killed it). Example: umvu -o unreal bash",
    )
    p.add_argument("-o", "--insmod", action="append", default=[], metavar="MOD[,MOD]",
                   help="load these modules before COMMAND starts")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log every virtualized call (twice: also the calls left to the kernel)")
    p.add_argument("--debug", action="store_true", help="same as -vv")
    p.add_argument("--log", metavar="FILE", help="write the log to FILE instead of stderr")
    p.add_argument("--pin", action="store_true",
                   help="run the hypervisor and COMMAND on one CPU: each intercepted call costs about a "
                   "third (no cross-CPU wake-ups), but COMMAND's threads and processes share that CPU")
    p.add_argument("--version", action="version", version=f"umvu {__version__}")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]",
                   help="the program to run (default: $SHELL)")
    args = p.parse_args(argv)
    command = args.command or [os.environ.get("SHELL") or "/bin/sh"]
    if command[0] == "--":
        command = command[1:]
    debug = 2 if args.debug else args.verbose
    logfile = None
    if args.log:
        try:
            logfile = open(args.log, "a", buffering=1)
        except OSError as e:
            return _fail("umvu", f"cannot open log file {args.log}: {e.strerror}")
    if args.pin:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # inherited by COMMAND
    from umvu.hypervisor import Hypervisor

    hv = Hypervisor(debug=debug, logfile=logfile)
    preload = [m for group in args.insmod for m in group.split(",") if m]
    if preload:  # the module machinery costs start-up time: only when asked for
        from umvu.modules import ModuleError

        try:
            hv.preload(preload)
        except ModuleError as e:
            return _fail("umvu", str(e))
    # Like a shell waiting for its child: the terminal's signals are for the command.
    for s in (signal.SIGINT, signal.SIGQUIT, signal.SIGTTOU, signal.SIGTTIN):
        signal.signal(s, signal.SIG_IGN)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda sig, _frame: hv.tracer.signal_root(sig))
    try:
        hv.tracer.spawn(command, _command_env())
    except OSError as e:
        return _fail("umvu", e.strerror or str(e))
    return hv.tracer.run()


def _command_env() -> dict[str, str]:
    """The environment of COMMAND: ours, with vu_insmod & co. reachable.

    umvu may be started as .venv/bin/umvu with that directory not on PATH;
    the commands that talk to it live next to it, so append it (appending
    shadows nothing the user chose).
    """
    env = dict(os.environ)
    here = os.path.dirname(os.path.abspath(sys.argv[0] or ""))
    path = env.get("PATH", "/usr/bin:/bin")
    if os.path.exists(os.path.join(here, "vu_insmod")) and here not in path.split(":"):
        env["PATH"] = f"{path}:{here}"
    return env


def _client(prog: str, description: str, argv: list[str] | None, build) -> int:
    from umvu import control

    p = argparse.ArgumentParser(prog=prog, description=description)
    action = build(p)
    args = p.parse_args(argv)
    try:
        return action(args, control.request) or 0
    except control.NotUnderUmvu:
        return _fail(prog, "not running under umvu (start a session with: umvu bash)")
    except control.Refused as e:
        return _fail(prog, str(e))


def insmod_main(argv: list[str] | None = None) -> int:
    def build(p: argparse.ArgumentParser):
        p.add_argument("modules", nargs="+", metavar="MODULE",
                       help="a module name (see vu_lsmod -a) or a path to a .py file")

        def run(args, request):
            for mod in args.modules:
                if mod.endswith(".py") or "/" in mod:
                    try:
                        with open(mod) as f:
                            source = f.read()
                    except OSError as e:
                        return _fail("vu_insmod", f"{mod}: {e.strerror}")
                    name = os.path.splitext(os.path.basename(mod))[0]
                    request("insmod", name=name, source=source, path=os.path.abspath(mod))
                else:
                    request("insmod", name=mod)
            return 0

        return run

    return _client("vu_insmod", "Load umvu modules into the running session.", argv, build)


def rmmod_main(argv: list[str] | None = None) -> int:
    def build(p: argparse.ArgumentParser):
        p.add_argument("modules", nargs="+", metavar="MODULE", help="a loaded module's name")

        def run(args, request):
            for mod in args.modules:
                request("rmmod", name=mod)
            return 0

        return run

    return _client("vu_rmmod", "Remove modules from the running umvu session (EBUSY while in use).", argv, build)


def lsmod_main(argv: list[str] | None = None) -> int:
    def build(p: argparse.ArgumentParser):
        p.add_argument("-a", "--available", action="store_true", help="list the modules that can be loaded")

        def run(args, request):
            if args.available:
                for name in request("available")["modules"]:
                    print(name)
                return 0
            rows = request("lsmod")["modules"]
            if not rows:
                return 0
            width = max(len(r["name"]) for r in rows)
            dwidth = max(len(r["description"]) for r in rows)
            for r in rows:
                n = r["users"]
                print(f"{r['name']:<{width}}   {r['description']:<{dwidth}}   ({n} user{'' if n == 1 else 's'})")
            return 0

        return run

    return _client("vu_lsmod", "List the modules loaded in the running umvu session.", argv, build)


if __name__ == "__main__":
    sys.exit(umvu_main())
