"""Command-line entry points: umvu, vu_insmod, vu_rmmod, vu_lsmod, vumount, vuumount, vuchroot."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import stat
import sys

from umvu import __version__


def _fail(prog: str, message: str, code: int = 1) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return code


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, sized without importing shutil: argparse builds one per option at
    start-up, and shutil (with the archive modules it imports) was a tenth of ``umvu true``."""

    def __init__(self, prog: str) -> None:
        try:
            width = int(os.environ.get("COLUMNS", "0"))  # as shutil.get_terminal_size
        except ValueError:
            width = 0
        if width <= 0:
            try:
                width = os.get_terminal_size(sys.__stdout__.fileno()).columns
            except (OSError, ValueError, AttributeError):
                width = 80
        super().__init__(prog, width=max(width, 20) - 2)


class _Parser(argparse.ArgumentParser):
    """argparse, with its complaints in one line (the usage is what --help is for)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(formatter_class=_Formatter, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < 1e6:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


def umvu_main(argv: list[str] | None = None) -> int:
    p = _Parser(
        prog="umvu",
        description="Run COMMAND in a partial virtual machine: its processes see the host, plus "
        "whatever modules loaded with vu_insmod (or -o) mount for them. No privileges needed.",
        epilog="Inside, vu_insmod/vu_rmmod/vu_lsmod manage modules. Exit status: COMMAND's "
        "(128+N if a signal N killed it). SIGTERM to umvu ends the session: every process gets SIGTERM, "
        "then SIGKILL after --kill-after seconds. SIGINT, SIGQUIT and SIGHUP sent to umvu go to COMMAND. "
        "Example: umvu -o unreal bash",
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
    p.add_argument("--stats", metavar="FILE",
                   help="at the end, write to FILE ('-': stderr) which calls stopped, how often, and the "
                   "hypervisor's time serving them (like strace -c)")
    p.add_argument("--kill-after", type=_seconds, default=5.0, metavar="SECONDS",
                   help="when umvu gets SIGTERM, how long the processes have to end before SIGKILL (default 5)")
    p.add_argument("--fakeroot", action="store_true",
                   help="every process is root, and chown, chmod and device nodes are recorded, not made "
                        "(as fakeroot, for static programs and direct system calls too)")
    p.add_argument("--fakeroot-state", metavar="FILE",
                   help="with --fakeroot: load the records from FILE if it exists, and save them there at the end")
    fast = p.add_mutually_exclusive_group()
    fast.add_argument("--fast-path", action="store_true",
                      help="the in-process fast path (the default; this fails if it cannot run): processes "
                           "decide with a preloaded library that a path call cannot reach anything virtual, "
                           "or names a host file through a bind, and make it themselves with no stop "
                           "(docs/architecture.md, The in-process fast path)")
    fast.add_argument("--no-fast-path", action="store_true",
                      help="no preloaded library: every path call stops once anything is mounted "
                           "(also UMVU_FAST_PATH=0)")
    p.add_argument("--no-libc-hooks", action="store_true",
                   help="with the fast path: leave libc's own calls (mkstemp's and opendir's open, the stat under "
                        "fstat) to stop, with libc's code as it is (also UMVU_FAST_LIBC=0)")
    p.add_argument("--no-notify", action="store_true",
                   help="the stat, access, readlink and getcwd calls that stop take a ptrace stop, as the other calls "
                        "do, not a seccomp user notification (also UMVU_NOTIFY=0; docs/architecture.md)")
    p.add_argument("--version", action="version", version=f"umvu {__version__}")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]",
                   help="the program to run (default: $SHELL)")
    args = p.parse_args(argv)
    if any(not m.strip() for group in args.insmod for m in group.split(",")):
        p.error(f"-o needs module names: {' '.join(repr(g) for g in args.insmod)}")
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

    stats = None
    if args.stats:  # opened now, as strace -o: a bad place fails before COMMAND runs
        try:
            stats = sys.stderr if args.stats == "-" else open(args.stats, "w")
        except OSError as e:
            return _fail("umvu", f"cannot write the stats to {args.stats}: {e.strerror}")
    hv = Hypervisor(debug=debug, logfile=logfile)
    if stats is not None:
        hv.tracer.keep_stats()
    preload = [m for group in args.insmod for m in group.split(",") if m]
    if preload:  # the module machinery costs start-up time: only when asked for
        from umvu.modules import ModuleError

        try:
            hv.preload(preload)
        except ModuleError as e:
            return _fail("umvu", str(e))
    # Like a shell waiting for its child: the terminal's signals are for the command (the tracer
    # reads SIGINT, SIGQUIT, SIGHUP and SIGTERM itself: Tracer._session_signal).
    for s in (signal.SIGTTOU, signal.SIGTTIN):
        signal.signal(s, signal.SIG_IGN)
    hv.tracer.kill_after = args.kill_after
    if args.fakeroot_state and not args.fakeroot:
        return _fail("umvu", "--fakeroot-state needs --fakeroot")
    if args.fakeroot:
        try:
            hv.fake_root(args.fakeroot_state)
        except (OSError, ValueError) as e:
            return _fail("umvu", f"cannot load the fakeroot state: {e}")
    env = _command_env()
    # -vv stops every call to log it; a fake root changes what the kernel's stat gave, after it
    hv.tracer.notify = not (args.no_notify or os.environ.get("UMVU_NOTIFY") == "0" or debug >= 2 or args.fakeroot)
    # -vv logs every call: the calls the library would make itself must stop to be logged
    asked = args.fast_path or os.environ.get("UMVU_FAST_PATH") == "1"
    if not args.no_fast_path and (asked or os.environ.get("UMVU_FAST_PATH") != "0") and debug < 2:
        try:
            hv.fast_path()
            env = hv.fast.env(env)
            if args.no_libc_hooks:
                env["UMVU_FAST_LIBC"] = "0"
        except OSError as e:
            if asked:
                return _fail("umvu", f"--fast-path: {e.strerror}")
            # by default, a machine where it cannot run (not built, not x86-64) runs with every stop
    try:
        pid = hv.tracer.spawn(command, env)
    except OSError as e:
        hv.shutdown()
        return _fail("umvu", e.strerror or str(e))
    hv.publish_fast()  # spawn knows whether path calls stop from the start (nothing mounted: idle)
    if args.fakeroot:
        from umvu.identity import Ids

        hv.identity.change(hv.tracer.tracees[pid].proc, Ids.of_user(0, 0, (0,)))
    try:
        return hv.tracer.run()
    finally:
        hv.shutdown()
        if args.fakeroot_state and hv.fake is not None:
            try:
                hv.fake.save(args.fakeroot_state)
            except OSError as e:
                _fail("umvu", f"cannot save the fakeroot state to {args.fakeroot_state}: {e.strerror}")
        if stats is not None:
            table = hv.tracer.stats_table()
            if hv.fast is not None:  # on the summary line: the rows above are the stops
                table = table.rstrip("\n") + f"; fast path: {hv.fast.served()} calls made in-process, with no stop\n"
            stats.write(table)
            stats.flush()


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


def _run_command(prog: str, command: list[str], interactive: bool = False) -> int:
    """exec COMMAND (default: $SHELL, then /bin/sh); a one-line error and the shell's status
    (127: not found, 126: not runnable) if it cannot run."""
    shell = ["-i"] if interactive else []
    argv = command or [os.environ.get("SHELL") or "/bin/sh", *shell]
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        if e.errno == errno.ENOENT and not command:
            os.execv("/bin/sh", ["/bin/sh", *shell])
        return _fail(prog, f"failed to run command '{argv[0]}': {e.strerror}", 127 if e.errno == errno.ENOENT else 126)


def _client(prog: str, description: str, argv: list[str] | None, build) -> int:
    from umvu import control

    p = _Parser(prog=prog, description=description)
    action = build(p)
    args = p.parse_intermixed_args(argv) if getattr(p, "intermixed", False) else p.parse_args(argv)
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


def _abs(path: str) -> str:
    return path if path.startswith("/") or not path else os.path.abspath(path)


def _mount_error(prog: str, what: str, err: int, request) -> int:
    """The hypervisor's reason when it has one, else the errno's text; exit 32 as mount(8)."""
    try:
        reason = request("mount_error").get("error") or os.strerror(err)
    except Exception:
        reason = os.strerror(err)
    return _fail(prog, f"{what}: {reason}", 32)


def vumount_main(argv: list[str] | None = None) -> int:
    def build(p: argparse.ArgumentParser):
        p.add_argument("-t", "--types", metavar="TYPE", help="file system type (see vu_lsmod; vufs: bind, merge, cow)")
        p.add_argument("-o", "--options", default="", metavar="OPTS",
                       help="comma-separated options: ro, noexec, ... and the file system's own")
        p.add_argument("-r", "--read-only", action="store_true", help="same as -o ro")
        p.add_argument("source", nargs="?", help="what to mount (a directory for vufs; a:b:c for vufs merge)")
        p.add_argument("target", nargs="?", help="the mount point, an existing directory")

        def run(args, request):
            from umvu import libc

            if args.source is None:  # list the virtual mounts, as mount(8) prints them
                for m in request("mounts")["mounts"]:
                    opts = ",".join(o for o in (m.get("flags", ""), m["options"]) if o)
                    print(f"{m['source']} on {m['point']} type {m['fstype']} ({opts})")
                return 0
            if args.target is None:
                return _fail("vumount", "a SOURCE and a TARGET are needed (see --help)")
            opts = [o for o in args.options.split(",") if o]
            if args.read_only:
                opts.append("ro")
            opts = [f"upper={_abs(o[6:])}" if o.startswith("upper=") else o for o in opts]
            source = args.source
            if (args.types or "") == "vufs":
                source = ":".join(_abs(s) for s in source.split(":"))
            target = _abs(args.target)
            import ctypes

            enc = os.fsencode
            ret = libc.raw_syscall(165, ctypes.c_char_p(enc(source)), ctypes.c_char_p(enc(target)),
                                   ctypes.c_char_p(enc(args.types or "")), 0, ctypes.c_char_p(enc(",".join(opts))))
            if ret < 0:
                return _mount_error("vumount", f"mounting {args.source} on {args.target}", -ret, request)
            return 0

        return run

    return _client("vumount", "Mount a file system in the running umvu session (the host never sees it). "
                   "Without arguments: list the virtual mounts.", argv, build)


def vuumount_main(argv: list[str] | None = None) -> int:
    def build(p: argparse.ArgumentParser):
        p.add_argument("-l", "--lazy", action="store_true",
                       help="detach now; open files keep working until closed (MNT_DETACH)")
        p.add_argument("targets", nargs="+", metavar="TARGET", help="a mount point")

        def run(args, request):
            import ctypes

            from umvu import libc

            request("lsmod")  # fails with a clear message outside umvu
            status = 0
            for target in args.targets:
                ret = libc.raw_syscall(166, ctypes.c_char_p(os.fsencode(_abs(target))), 2 if args.lazy else 0)
                if ret == -22:
                    status = _fail("vuumount", f"{target}: not mounted", 32)
                elif ret < 0:
                    status = _mount_error("vuumount", target, -ret, request)
            return status

        return run

    return _client("vuumount", "Unmount file systems mounted in the running umvu session.", argv, build)


def vuchroot_main(argv: list[str] | None = None) -> int:
    def build(p: argparse.ArgumentParser):
        p.add_argument("root", metavar="DIR", help="the directory COMMAND sees as /")
        p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]",
                       help="run inside (default: $SHELL, then /bin/sh)")

        def run(args, request):
            request("lsmod")  # fails with a clear message outside umvu
            try:
                os.chroot(args.root)
                os.chdir("/")
            except OSError as e:
                return _fail("vuchroot", f"cannot change root directory to '{args.root}': {e.strerror}", 125)
            return _run_command("vuchroot", args.command, interactive=True)

        return run

    return _client("vuchroot", "Run COMMAND with DIR as its root directory, in the running umvu session "
                   "(no privileges needed).", argv, build)


SU_PATH = {True: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           False: "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"}  # su -l's, by root or not


def vusu_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-" in argv:  # su's "-": a login shell (argparse takes a lone "-" for an argument)
        argv[argv.index("-")] = "--login"

    def build(p: argparse.ArgumentParser):
        p.add_argument("-c", "--command", metavar="CMD", help="run CMD with the shell's -c")
        p.add_argument("-l", "--login", action="store_true",
                       help="a login shell: a clean environment, the user's home (also: -)")
        p.add_argument("-s", "--shell", metavar="SHELL", help="run SHELL, not the user's")
        p.add_argument("-m", "-p", "--preserve-environment", dest="keep", action="store_true",
                       help="keep the environment (HOME, SHELL, USER, LOGNAME too)")
        p.add_argument("user", nargs="?", default="root", metavar="USER",
                       help="a name of the view's /etc/passwd, or #UID (default: root)")
        p.add_argument("args", nargs="*", metavar="ARG", help="more arguments for the shell")
        p.intermixed = True  # options anywhere, as su's getopt permutes them

        def run(args, request):
            import pwd

            try:
                if args.user.startswith("#"):
                    uid = int(args.user[1:])
                    try:
                        pw = pwd.getpwuid(uid)
                        name, gid, home, shell = pw.pw_name, pw.pw_gid, pw.pw_dir, pw.pw_shell
                    except KeyError:
                        name, gid, home, shell = str(uid), uid, "/", "/bin/sh"
                else:
                    pw = pwd.getpwnam(args.user)
                    name, uid, gid, home, shell = pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, pw.pw_shell
            except (KeyError, ValueError):
                return _fail("vusu", f"user {args.user} does not exist or the user entry does not contain all "
                             "the required fields")
            try:
                groups = os.getgrouplist(name, gid)
            except OSError:
                groups = [gid]
            if args.keep and not args.login:
                shell = os.environ.get("SHELL") or shell
            shell = args.shell or shell or "/bin/sh"
            request("become", uid=uid, gid=gid, groups=groups)
            env = dict(os.environ)
            if args.login:
                env = {k: v for k, v in os.environ.items() if k in ("TERM", "COLORTERM", "DISPLAY", "XAUTHORITY")}
                env["PATH"] = SU_PATH[uid == 0]
            if args.login or not args.keep:
                env.update(HOME=home, SHELL=shell)
                if uid != 0 or args.login:
                    env.update(USER=name, LOGNAME=name)
            if args.login:
                try:
                    os.chdir(home)
                except OSError as e:
                    print(f"vusu: warning: cannot change directory to {home}: {e.strerror}", file=sys.stderr)
            argv0 = "-" + os.path.basename(shell) if args.login else os.path.basename(shell)
            command = [argv0, *(["-c", args.command] if args.command is not None else []), *args.args]
            try:
                os.execve(shell, command, env)
            except OSError as e:
                return _fail("vusu", f"failed to execute {shell}: {e.strerror}", 127 if e.errno == 2 else 126)

        return run

    return _client("vusu", "Run a shell (or CMD) as another user of the view: no password, no privilege; the "
                   "session's view is the authority on who a process is.", argv, build)


STACK_MAJOR = 242  # vunet's stack nodes (modules/vunet.py)


STACK_FAMILIES = {"inet": 2, "inet6": 10, "netlink": 16, "packet": 17}  # what vunet can serve


def _stack_families(text: str) -> list[str]:
    """-f's list: names or numbers (as vustack of VUOS takes them)."""
    names = {str(n): name for name, n in STACK_FAMILIES.items()}
    chosen = []
    for word in filter(None, text.split(",")):
        name = names.get(word, word)
        if name not in STACK_FAMILIES:
            raise ValueError(f"unknown address family {word!r} (one of {','.join(STACK_FAMILIES)}, or its number)")
        chosen.append(name)
    if not chosen:
        raise ValueError("no address family given")
    return chosen


def vustack_main(argv: list[str] | None = None) -> int:
    def build(p: argparse.ArgumentParser):
        p.add_argument("-f", "--families", "--family", metavar="FAMILIES",
                       help="the address families the stack serves for COMMAND, by name or number "
                            "(default: all of inet,inet6,netlink,packet)")
        p.add_argument("-s", "--supported", action="store_true",
                       help="the families STACK supports (as the stack lists them)")
        p.add_argument("-v", "--verbose", action="store_true", help="print the families chosen")
        p.add_argument("-p", "--pid", action="store_true",
                       help="print the process whose network namespace is STACK's (for `ip link set DEV "
                            "netns PID`: a link between two stacks), and exit")
        p.add_argument("stack", metavar="STACK", help="a stack's node (vumount -t vunetns none NODE)")
        p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]",
                       help="run with the stack (default: $SHELL)")

        def run(args, request):
            request("lsmod")  # fails with a clear message outside umvu
            try:
                st = os.stat(args.stack)
            except OSError as e:
                return _fail("vustack", f"{args.stack}: {e.strerror}")
            if not stat.S_ISCHR(st.st_mode) or os.major(st.st_rdev) != STACK_MAJOR:
                return _fail("vustack", f"{args.stack}: not a network stack (vumount -t vunetns none NODE)")
            try:
                with open(args.stack) as f:
                    said = dict(line.split(None, 1) for line in f.read().splitlines() if " " in line)
            except OSError as e:
                return _fail("vustack", f"{args.stack}: {e.strerror}")
            if args.pid:
                if "helper" not in said:
                    return _fail("vustack", f"{args.stack}: not a stack of its own (no network namespace)")
                print(said["helper"])
                return 0
            supported = said.get("families", ",".join(STACK_FAMILIES)).split(",")
            try:
                families = _stack_families(args.families or ",".join(STACK_FAMILIES))
            except ValueError as e:
                return _fail("vustack", str(e))
            if args.supported:
                families = [f for f in families if f in supported] if args.families else supported
            if args.verbose:
                print(f"Using {args.stack} for the following address families:\n    "
                      + " ".join(f"{f}({STACK_FAMILIES[f]})" for f in families), file=sys.stderr)
            try:
                fd = os.open(args.stack, os.O_WRONLY)
            except OSError as e:
                return _fail("vustack", f"{args.stack}: {e.strerror}")
            try:
                os.write(fd, f"use {','.join(families)}".encode())
            except OSError as e:
                what = "not a stack" if e.errno in (errno.EINVAL, errno.EBADF, errno.EISDIR) else e.strerror
                return _fail("vustack", f"{args.stack}: {what} ({e.strerror})")
            finally:
                os.close(fd)
            return _run_command("vustack", args.command)

        return run

    return _client("vustack", "Run COMMAND with a network stack of the view (vunet) for the address "
                   "families given.", argv, build)


if __name__ == "__main__":
    sys.exit(umvu_main())
