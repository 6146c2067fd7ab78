"""The tracer: runs a command under ptrace with the seccomp filter, and the loop.

One thread (the one that attached, as ptrace requires) drives every tracee.
The loop reaps stops with waitpid(WNOHANG), and the calls that come as
seccomp user notifications from the listeners (umvu.notify), and busy-polls
both for a short while before it sleeps (ARCHITECTURE.md: 10-19 us per stop
unpinned, against 80 us for a loop that only sleeps on SIGCHLD), then sleeps
in poll() on the listeners, a signalfd (SIGCHLD, and the signals that end a
session) and a pipe fed by module work finishing in other threads.

A stopped system call is handed to umvu.calls (serve).  When its handler needs more
than one stop (let the call run and see its result, make the tracee run
another call first) or waits for a slow module, it is a coroutine: it suspends
on ``NEXT_STOP`` or on an ``Offload``, the tracee stays stopped, and the loop
goes on serving every other tracee.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import select
import signal
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from umvu import arch, bpf, creds, libc, memory, notify, syscalls
from umvu.aio import Offload, Promise, Wait
from umvu.creds import Creds
from umvu.fdtable import FdTable, OpenFile
from umvu.identity import Ids
from umvu.paths import FsView
from umvu.registry import MountRegistry

if TYPE_CHECKING:
    import concurrent.futures

CLONE_FS = 0x200
CLONE_FILES = 0x400
CLONE_VM = 0x100
CLONE_THREAD = 0x10000
NR_CLONE = 56
NR_CLONE3 = 435
NR_SECCOMP = 317
NR_CLOSE = 3
NR_MMAP = syscalls.BY_NAME["mmap"].nr
NR_POLL = 7  # not in the syscall table (never stopped on), but for revoked fds
NR_PPOLL = 271
STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
SYSCALL_TRAP = signal.SIGTRAP | 0x80

OPTIONS = (
    libc.PTRACE_O_TRACESYSGOOD
    | libc.PTRACE_O_TRACEFORK
    | libc.PTRACE_O_TRACEVFORK
    | libc.PTRACE_O_TRACECLONE
    | libc.PTRACE_O_TRACEEXEC
    | libc.PTRACE_O_TRACESECCOMP
    | libc.PTRACE_O_EXITKILL
)

SPIN_SECONDS = 50e-6
_NRS: dict[frozenset[str], frozenset[int]] = {}  # (Tracer.traces: asked at every stop of a process with a page)
INTERRUPT_POLL = 0.05  # how often tracees waiting on a module are checked for signals
# The tid of a thread that is gone.  No thread can have it (the kernel's PID_MAX_LIMIT is 1 << 22),
# so whatever a handler still does with it (ptrace, /proc/TID/mem, kill) fails with ESRCH, and the
# handler's own clean-up runs.  The real tid is free for the kernel to give to a new thread at once
# (pid_max is 32768 on many machines): a handler left holding it could stop, read or resume a
# stranger.
GONE_TID = 1 << 30
# Signals umvu reads itself (see Tracer._session_signal), and how long the processes get to end
# when the session is terminated.
SESSION_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
KILL_AFTER = 5.0
SI_KERNEL = 0x80  # si_code of a signal the kernel sent (a terminal's), not a process


class _NextStop:
    """Awaited by a handler: suspend until this tracee's next ptrace stop."""

    __slots__ = ()

    def __await__(self):
        status = yield self
        return status


NEXT_STOP = _NextStop()
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_SECURE = 11, 12, 13, 14, 23


# A filter every process gets (Tracer.everywhere): its code, what the log calls it, whether it
# comes with a listener (umvu.notify)
Layer = tuple[bytes, str, bool]


class Process:
    """What a thread group shares and the fd table does not: its seccomp layers."""

    def __init__(self, tgid: int, layers: set[int] | None = None) -> None:
        self.tgid = tgid
        self.layers: set[int] = set(layers or ())  # fd numbers with a filter layer
        # fd numbers whose fchmod & co. stop (see bpf.METADATA_CALLS), with the calls stopped for each
        self.meta_layers: dict[int, frozenset[str]] = {}
        # Shared writable maps of private copies of virtual files: start -> (open file, length).
        # Like the kernel's vmas they hold a reference on the open file; munmap and msync stop.
        self.maps: dict[int, tuple[OpenFile, int]] = {}
        self.maps_traced = False
        self.exe: str | None = None  # the running program's path in the view, when the host's differs
        # layers every process gets (Tracer.everywhere: the path filter, claimed calls) still to
        # stack on this one, at its next stop
        self.pending: list[Layer] = []
        # fds whose reads fail with ENODEV, as /dev/fuse's after an unmount (see Tracer.revoke),
        # with what /proc/PID/fd/N names (the number may be reused for another file later)
        self.revoked: dict[int, str] = {}
        self.needs_revoke = False  # their filter layer must still be stacked
        self.on_revoked: list[Callable[[], Any]] = []  # run once it is
        self.revoke_pending: set[int] = set()  # threads interrupted for it, not yet stopped
        # per-process service state, by module name (ModuleContext.state): a new process starts
        # with its creator's values, exec keeps them
        self.state: dict[str, Any] = {}
        self.ids: Ids | None = None  # a virtual identity (umvu.identity); None: the host's
        self.net_pid: int | None = None  # the process whose /proc/PID/net this one's shows (a stack's)
        # where the fast path's library has this process's page (umvu.fast); None: no library
        self.fast_page: int | None = None
        self.fast_shared = False  # its memory is another process's (vfork, CLONE_VM): so is the page
        self.fast_synced: tuple | None = None  # what the page shows was written from (umvu.fast.FastPath.facts)
        self.files_shared = False  # its fd table is another process's too (CLONE_FILES, not a thread)
        self.fast_parent: Process | None = None  # whose page a CLONE_VM child shares
        # its library shows a layered mount's directories with the mount's st_dev at fstat, with
        # no stop (libc's fstat reaches it): a directory handed out there needs no guard for it
        self.fast_fstat = False
        self.fast_marks: int | None = None  # where its library's table of fds opened in layers is
        self.fast_kept: dict[int, tuple[int, int]] = {}  # that table's entries an exec keeps (FastPath.keep_marks)
        # it held a virtual or handed-out fd since its exec: its /proc/self links may show the view's
        # (FastPath.facts; not "plain" on its page until its next exec)
        self.fast_impure = False
        self.fast_cwd: tuple[int, int, bool] | None = None  # (fs, its chdirs, whether the cwd is plain) last read


class Tracee:
    """One traced thread."""

    # The fast path's page update (umvu.fast.FastPath.sync), run as a thread resumes; None: off
    fast_sync: Callable[[Tracee], None] | None = None

    def __init__(self, tid: int, proc: Process, fs: FsView, files: FdTable) -> None:
        self.tid = tid
        self.gone = False  # it exited or was killed: see vanish()
        self.proc = proc
        self.fs = fs
        self.files = files
        files.users += 1
        self.task: Coroutine | None = None  # handler waiting for this tracee
        self.at_entry = False  # stopped at a call's seccomp stop, the call not yet run
        self.held = False  # in a Wait that signals do not end
        self.on_signal: Callable[[bool], bool] | None = None  # the Wait's, while it waits
        self.exec_view: str | None = None  # the view's name of the program an exec in flight runs
        self.pending_signals: list[int] = []
        self.regs = arch.Regs()
        self._regs_ref = ctypes.byref(self.regs)
        self.stat_name = ""  # --stats: the call its handler serves
        self.creds: Creds | None = None  # its credentials, when known (see caller_creds)
        self.acting: Creds | None = None  # a handler's choice for the call (access(2): the real ids)
        # the notification its call waits in (umvu.notify: listener, id), instead of a ptrace stop:
        # its registers are the notification's copy, and resuming it is answering
        self.notice: tuple[notify.Listener, int] | None = None

    # -- resuming ---------------------------------------------------------------
    def cont(self, sig: int = 0) -> None:
        if self.proc.fast_page is not None and Tracee.fast_sync is not None:
            Tracee.fast_sync(self)  # the fast path's page, before the process runs on (umvu.fast)
        if self.notice is not None:  # the kernel runs the call as it was made
            (listener, ident), self.notice = self.notice, None
            listener.let_go(ident)
            return
        if not self.pending_signals:
            libc.try_ptrace(libc.PTRACE_CONT, self.tid, 0, sig)
            return
        if not sig:
            sig = self.pending_signals.pop(0)
        libc.try_ptrace(libc.PTRACE_CONT, self.tid, 0, sig)
        for extra in self.pending_signals:  # rare: more than one arrived meanwhile
            try:
                os.kill(self.tid, extra)
            except ProcessLookupError:
                break
        self.pending_signals.clear()

    def caller_creds(self) -> Creds:
        """The thread's credentials: read from the kernel the first time after a change
        (a set*id call or an exec: both stop), the session's when nobody can change them."""
        if self.proc.ids is not None:
            if self.creds is None:
                self.creds = self.proc.ids.creds(self._host_creds())
            return self.creds
        if not creds.SWITCHES:
            return creds.SESSION
        if self.creds is None:
            found = Creds.of(self.tid) or creds.SESSION
            self.creds = creds.SESSION if found == creds.SESSION else found  # the same object: no switch
        return self.creds

    def _host_creds(self) -> Creds:
        if not creds.SWITCHES:
            return creds.SESSION
        found = Creds.of(self.tid) or creds.SESSION
        return creds.SESSION if found == creds.SESSION else found

    def answer(self, ret: int, regs: arch.Regs | None = None) -> None:
        """End the call the thread is stopped in at its entry: it returns ``ret`` without the kernel
        running it.  ``regs``: the thread's registers, when the caller has them."""
        if self.notice is None:
            if regs is None:
                regs = self.getregs()
            regs.nr = -1
            regs.ret = ret
            arch.setregs(self.tid, regs)
            self.cont()
            return
        if self.proc.fast_page is not None and Tracee.fast_sync is not None:
            Tracee.fast_sync(self)
        (listener, ident), self.notice = self.notice, None
        listener.answer(ident, ret)

    def getregs(self) -> arch.Regs:
        if self.notice is not None:  # filled from the notification (Tracer._notified)
            return self.regs
        arch.getregs(self.tid, self.regs, self._regs_ref)
        return self.regs

    def vanish(self) -> None:
        """The thread exited or was killed: from now on every operation on it fails with ESRCH."""
        self.gone = True
        self.tid = GONE_TID

    # -- multi-stop primitives for handlers ----------------------------------------
    async def next_syscall_stop(self) -> None:
        """Resume until the next syscall stop (entry or exit) of this thread.

        Signals that arrive meanwhile are held back and delivered when the
        handler resumes the tracee for good.
        """
        if self.notice is not None:
            raise RuntimeError("a call answered through a notification has no further stops")
        self.at_entry = False
        while True:
            libc.try_ptrace(libc.PTRACE_SYSCALL, self.tid, 0, 0)
            status = await NEXT_STOP
            sig = os.WSTOPSIG(status)
            if sig == SYSCALL_TRAP:
                return
            if status >> 16 == 0 and sig != signal.SIGTRAP:
                self.pending_signals.append(sig)

    async def finish_syscall(self, regs: arch.Regs | None = None) -> int:
        """From a seccomp stop: let the (maybe rewritten) call run; its result.

        The tracee is left stopped at the syscall exit.
        """
        if regs is not None:
            arch.setregs(self.tid, regs)
        await self.next_syscall_stop()
        return self.getregs().ret

    async def inject(self, nr: int, *args: int) -> int:
        """At a syscall-exit stop: make the thread run call ``nr`` now.

        Returns its result; the thread is left at that call's exit stop.
        """
        r = self.getregs().copy()
        r.rewind_syscall(nr)
        for i, a in enumerate(args):
            r.set_arg(i, a)
        arch.setregs(self.tid, r)
        await self.next_syscall_stop()  # entry
        await self.next_syscall_stop()  # exit
        return self.getregs().ret

    async def stack_layer(self, code: bytes, what: str, log: Callable[[str], None], at_exit: bool = True,
                          listen: Callable[[int], bool] | None = None) -> bool:
        """Stack seccomp program ``code`` on this thread's process (TSYNC): the one way every layer
        after the first is added (fd layers, guarded fds, maps, the path and revoked-fd filters; the
        first, the child installs on itself before exec).  At a syscall-exit stop (a handler's) the
        call is injected now; at a call's entry stop (the tracer's own layers) seccomp(2) runs in
        place of that call, which is then made again under the new filter.  Whether it was stacked
        (a failure is logged: the process goes on with the layers it has).

        ``listen``: the layer comes with a listener (umvu.notify), whose fd seccomp(2) returns in
        the thread; ``listen(fd)`` takes the hypervisor's copy before the thread's is closed."""
        try:
            fprog = self.place_filter(code)
        except OSError as e:  # no stack room below sp: a page of its own, when a call can be injected
            if not at_exit:
                log(f"[{self.tid}] cannot stack {what}: {e}")
                return False
            page = await self.inject(NR_MMAP, 0, 8192, 3, 0x22, (1 << 64) - 1, 0)
            if -4096 < page < 0:
                log(f"[{self.tid}] cannot map scratch memory for {what}: {os.strerror(-page)}")
                return False
            fprog = self.place_filter(code, at=page)
        flags = libc.SECCOMP_FILTER_FLAG_TSYNC if listen is None else notify.FILTER_FLAGS
        if at_exit:
            ret = await self.inject(NR_SECCOMP, libc.SECCOMP_SET_MODE_FILTER, flags, fprog)
            ret = await self._took_listener(ret, listen, what, log)
        else:
            saved = self.getregs().copy()
            regs = saved.copy()
            regs.nr = NR_SECCOMP
            regs.set_arg(0, libc.SECCOMP_SET_MODE_FILTER)
            regs.set_arg(1, flags)
            regs.set_arg(2, fprog)
            arch.setregs(self.tid, regs)
            await self.next_syscall_stop()  # seccomp(2) ran in place of the call
            ret = await self._took_listener(self.getregs().ret, listen, what, log)
            saved.rewind_syscall(saved.nr)  # the caller's own call, now under the new filter
            arch.setregs(self.tid, saved)
        if ret != 0:
            log(f"[{self.tid}] cannot stack {what}: seccomp returned {ret}")
        return ret == 0

    async def _took_listener(self, ret: int, listen: Callable[[int], bool] | None, what: str,
                             log: Callable[[str], None]) -> int:
        """After seccomp(2) with a listener (at its exit stop): the hypervisor's copy taken, the
        thread's closed; 0 when stacked.  Without a copy the calls the layer sends could never be
        answered, and fail with ENOSYS (said in the log)."""
        if listen is not None and ret == -errno.EBUSY:
            return 0  # it has one already, inherited (a process adopted gets every layer again)
        if listen is None or ret < 0:
            return ret
        if not listen(ret):
            log(f"[{self.tid}] cannot take the listener of {what}: its calls fail with ENOSYS")
        await self.inject(NR_CLOSE, ret)
        return 0

    def place_filter(self, code: bytes, at: int | None = None) -> int:
        """Put a seccomp program and its sock_fprog in the tracee; the fprog's address.

        At ``at`` when given (a page mapped for it), else below the stack.
        Raises OSError when the memory cannot be written.
        """

        if at is None:  # the stack grows down: the fprog goes below the code
            at = self.scratch(self.getregs(), code)[0]
            fprog_addr = (at - 32) & ~15
        else:  # a page of its own: the fprog goes after the code, inside the page
            memory.write(self.tid, at, code)
            fprog_addr = at + ((len(code) + 15) & ~15)
        memory.write(self.tid, fprog_addr, bpf.sock_fprog(code, at))
        return fprog_addr

    def scratch(self, regs: arch.Regs, *blobs: bytes) -> list[int]:
        """Write blobs below the stack's red zone; their addresses.

        The memory below the stack pointer is free while the thread sits in a
        system call; the kernel reads what we put there during the call.
        """

        addr = regs.sp - arch.RED_ZONE
        addrs = []
        for blob in blobs:
            addr = (addr - len(blob)) & ~15
            memory.write(self.tid, addr, blob)
            addrs.append(addr)
        return addrs


class Tracer:
    """Runs one command tree; ``hv`` (the hypervisor) serves its calls."""

    def __init__(self, on_syscall: Callable[[Tracee], Coroutine | None], log: Callable[[str], None]) -> None:
        self.on_syscall = on_syscall
        self.log = log
        self.tracees: dict[int, Tracee] = {}
        self.early: dict[int, int] = {}  # stops of children whose parent's event has not come yet
        self.debug_events = False  # -vv: log the rare events of process life (adoptions)
        self.trace_everything = False  # -vv: every call stops, to be logged
        self.died_early: set[int] = set()  # children that died before their parent's event was seen
        self.ended_by_exec: set[int] = set()  # threads an exec ended, forgotten then: their report is late
        self._recent: dict[int, Tracee] = {}  # processes gone lately, by tgid: the view an orphan gets
        self.root_tid = 0
        self.exit_status: int | None = None
        self.registry = MountRegistry()
        # process events for the modules (fork, exec, exit): (what, pid, child, thread)
        self.on_event: Callable[[str, int, int, bool], None] | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # SIGCHLD comes with every ptrace stop.  Delivered, it costs a signal frame, a write to the
        # wake-up pipe and a Python handler call each time, though the loop mostly finds the stop by
        # polling waitpid; blocked (here, before any thread starts: they inherit the mask), it only
        # makes a signalfd readable, which the loop sleeps on.  Tracees get the old mask back.
        #
        # The signals that end a session are read the same way (see _session_signal): a Python
        # handler would run between two stops, at any point of a handler's work.
        self._sigmask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, *SESSION_SIGNALS})
        self._signals = libc.signalfd({signal.SIGCHLD, *SESSION_SIGNALS})
        self.kill_after = KILL_AFTER  # seconds between SIGTERM and SIGKILL when the session is ended
        self._kill_at: float | None = None  # when the processes left get SIGKILL (the session is ending)
        self._killing = False  # SIGKILL was sent: every thread that shows up now gets it too
        self._done: deque[tuple[Tracee, Coroutine, Any]] = deque()
        self._loop_thread = threading.get_ident()  # run() is called from the thread that made us
        self.current: Tracee | None = None  # the thread whose handler is running (a request's caller)
        self._soon: deque[Callable[[], Any]] = deque()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.release_file: Callable[[OpenFile], None] = lambda of: None
        self.unmap_file: Callable[[OpenFile], None] = lambda of: None
        # a file's attributes as the view shows them (a fake root's recorded owner and mode)
        self.view_stat: Callable[[os.stat_result], os.stat_result] = lambda st: st
        self.paths_traced = True  # path calls stop in every process (see trace_paths)
        self._everywhere: list[Layer] = []  # filters stacked on every process since start
        # the calls of umvu.notify.CALLS come as user notifications once path calls stop (off: they
        # stop as the rest do; Hypervisor sets it, not under a fake root or -vv)
        self.notify = False
        self.listeners: dict[int, notify.Listener] = {}  # by the hypervisor's fd
        self._notified_nrs = frozenset(syscalls.BY_NAME[n].nr for n in notify.CALLS)
        self._listening = select.poll()  # the listeners, polled between stops
        self._sleep = select.poll()  # the listeners and the wakers, slept on
        for fd in (self._wake_r, self._signals):
            self._sleep.register(fd, select.POLLIN)
        self._calls_traced: set[int] = set()  # claimed calls' numbers that stop (trace_calls)
        self._waiting: dict[Tracee, Coroutine] = {}  # tracees whose handler waits on a worker thread
        self._next_check = 0.0  # when the waiting tracees are next checked for signals
        self.stats: dict[str, list[int]] | None = None  # what stopped: name -> [stops, ns serving them]
        self.stat_name = ""  # the call the stop being served is for (set by on_syscall)
        self._elapsed = 0.0  # how long run() ran
        from umvu.faults import Faults

        self.faults = Faults.from_environment()  # tests only: SIGKILL at chosen stops (umvu/faults.py)

    # -- start ---------------------------------------------------------------------
    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> int:
        self.paths_traced = bool(self.registry)
        filt = bpf.base_filter(paths=self.paths_traced, everything=self.trace_everything)
        prog_code = ctypes.create_string_buffer(filt, len(filt))
        fprog = ctypes.create_string_buffer(bpf.sock_fprog(filt, ctypes.addressof(prog_code)), 16)
        r, w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: wait to be seized, filter itself, exec
            try:
                os.close(w)
                os.read(r, 1)
                os.close(r)
                for s in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
                    signal.signal(s, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, self._sigmask)
                libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
                ret = libc.raw_syscall(NR_SECCOMP, libc.SECCOMP_SET_MODE_FILTER, 0, fprog)
                if ret < 0:
                    os.write(2, f"umvu: cannot install the seccomp filter: {os.strerror(-ret)}\n".encode())
                    os._exit(126)
                if env is None:
                    os.execvp(argv[0], argv)
                else:
                    os.execvpe(argv[0], argv, env)
            except OSError as e:
                os.write(2, f"umvu: {argv[0]}: {e.strerror}\n".encode())
                os._exit(127 if e.errno == errno.ENOENT else 126)
            finally:
                os._exit(127)
        os.close(r)
        try:
            libc.ptrace(libc.PTRACE_SEIZE, pid, 0, OPTIONS)
        except OSError as e:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise OSError(e.errno, f"cannot trace: {e.strerror} (is ptrace allowed here?)") from None
        os.write(w, b"go")
        os.close(w)
        # The command keeps the caller's umask.  The hypervisor's own becomes 0: what modules make
        # on the host for a process has the umask of that process applied already (dispatch), and
        # the host must not apply the hypervisor's on top (what a module makes for itself gives
        # its mode explicitly).
        umask = os.umask(0)
        self.root_tid = pid
        self.tracees[pid] = Tracee(pid, Process(pid), FsView(umask=umask), FdTable())
        if self.paths_traced and self.notify:
            self._everywhere.append(self._notify_layer())
        self.tracees[pid].proc.pending = list(self._everywhere)  # layers asked for before it ran
        return pid

    # -- the loop -------------------------------------------------------------------
    def run(self) -> int:
        """Serve until every tracee has gone; the root's exit status, shell style."""
        libc.keep_freed_memory()
        self._loop_thread = threading.get_ident()
        waitpid = os.waitpid
        listening = self._listening.poll
        flags = os.WNOHANG | libc.WALL
        handle = self._handle if self.stats is None else self._handle_counted
        if self.faults is not None:
            handle = self._handle_faulted
        started = time.monotonic()
        try:
            while self.tracees:
                try:
                    tid, status = waitpid(-1, flags)
                except ChildProcessError:
                    break
                if tid:
                    handle(tid, status)
                    continue
                if self.listeners and (ready := listening(0)):
                    self._notices(ready)
                    continue
                if self._done or self._soon:
                    self._finish_offloads()
                    continue
                if self._waiting and time.monotonic() >= self._next_check:  # busy or not, on time
                    self._check_interrupts()
                # Nothing now: spin a little (a stop is usually microseconds away)
                deadline = time.perf_counter() + SPIN_SECONDS
                ready = []
                while time.perf_counter() < deadline:
                    libc.sched_yield()
                    tid, status = waitpid(-1, flags)
                    if tid or self.listeners and (ready := listening(0)):
                        break
                if tid:
                    handle(tid, status)
                    continue
                if ready:
                    self._notices(ready)
                    continue
                timeout = INTERRUPT_POLL if self._waiting else None  # a tracee waiting on a module: its signals
                if self._kill_at is not None:
                    left = self._kill_at - time.monotonic()
                    if left <= 0:
                        self._kill_all()
                        continue
                    timeout = left if timeout is None else min(timeout, left)
                events = self._sleep.poll(None if timeout is None else max(0, int(timeout * 1000) + 1))
                if not events:
                    if self._waiting:
                        self._check_interrupts()
                    continue
                if self.listeners:
                    self._notices(events)
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                self._read_signals()
        finally:
            if self._pool:
                self._pool.shutdown(wait=False, cancel_futures=True)
        self._elapsed = time.monotonic() - started
        if self.faults is not None:
            self.log(self.faults.summary())
        status = self.exit_status or 0
        return status

    # -- fault injection (umvu/faults.py) ---------------------------------------------------
    def _handle_faulted(self, tid: int, status: int) -> None:
        assert self.faults is not None
        self.faults.at_report(self.tracees.get(tid), tid, status, self._kind_of(tid, status))
        (self._handle if self.stats is None else self._handle_counted)(tid, status)

    def _kind_of(self, tid: int, status: int) -> str | None:
        """What kind of stop a report is (faults.KINDS), None for an exit."""
        if not os.WIFSTOPPED(status):
            return None
        t = self.tracees.get(tid)
        if t is None:
            return "newborn"
        if t.task is not None:
            return "mid" if t.task is not _WAITING_OFFLOAD else None
        event, sig = status >> 16, os.WSTOPSIG(status)
        if event == libc.PTRACE_EVENT_SECCOMP:
            return "entry"
        if event in (libc.PTRACE_EVENT_FORK, libc.PTRACE_EVENT_VFORK, libc.PTRACE_EVENT_CLONE):
            return "fork"
        if event == libc.PTRACE_EVENT_EXEC:
            return "exec"
        if event == libc.PTRACE_EVENT_STOP and sig in STOP_SIGNALS:
            return "group"
        if event == 0 and sig not in (SYSCALL_TRAP, signal.SIGTRAP):
            return "signal"
        return None

    # -- signals sent to umvu itself ------------------------------------------------------
    def _read_signals(self) -> None:
        while True:
            try:
                data = os.read(self._signals, 128 * 16)
            except BlockingIOError:
                return
            for at in range(0, len(data) - 127, 128):  # struct signalfd_siginfo
                signo, _errno, code, pid = struct.unpack_from("<IiiI", data, at)
                if signo != signal.SIGCHLD:
                    self._session_signal(signo, code, pid)

    def _session_signal(self, signo: int, code: int, pid: int) -> None:
        """SIGTERM ends the session in order; SIGINT, SIGQUIT and SIGHUP go to the command.

        A terminal sends Ctrl-C, Ctrl-\\ and a hangup to its whole foreground process group
        (the kernel's own: SI_KERNEL), which holds the traced processes that are in it: they have
        their signal already, as they would without umvu.  Sent to umvu alone (kill), it goes on
        to the command, as if umvu were the command.  A hangup of the terminal goes to its session's
        leader alone: when that is umvu (started as a terminal's first process), the command, which
        would have been the leader, gets it (an interactive shell passes it on to its jobs).
        """
        if signo == signal.SIGTERM:
            if self.debug_events:
                self.log(f"SIGTERM{f' from pid {pid}' if pid else ''}: ending the session "
                         f"(SIGTERM to every process, SIGKILL after {self.kill_after:g} s)")
            self.terminate()
        elif code != SI_KERNEL or signo == signal.SIGHUP and os.getsid(0) == os.getpid():
            self.signal_root(signo)

    def terminate(self) -> None:
        """End the session: SIGTERM (and SIGCONT, for the stopped) to every process, SIGKILL to
        what is left after ``kill_after`` seconds.  umvu then exits with the command's status
        as always (143 when SIGTERM killed it, 137 when SIGKILL had to)."""
        if self._kill_at is not None or self._killing:
            return
        self._kill_at = time.monotonic() + self.kill_after
        for tgid in {t.proc.tgid for t in self.tracees.values() if not t.gone}:
            for sig in (signal.SIGTERM, signal.SIGCONT):
                try:
                    os.kill(tgid, sig)
                except ProcessLookupError:
                    pass

    def _kill_all(self) -> None:
        self._kill_at = None
        self._killing = True
        for tid in [*self.tracees, *self.early]:
            try:
                os.kill(tid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- --stats ----------------------------------------------------------------------
    def keep_stats(self) -> None:
        """Count the stops and time serving them, by call (umvu --stats): which calls cost."""
        self.stats = {}

    def _handle_counted(self, tid: int, status: int) -> None:
        t = self.tracees.get(tid)
        if status >> 16 == libc.PTRACE_EVENT_SECCOMP:
            self.stat_name = "(seccomp stop)"
        elif t is not None and t.task is not None and t.stat_name:  # a handler's further stops
            self.stat_name = t.stat_name + " (its further stops)"
        else:
            self.stat_name = "(exit, event or signal)"
        start = time.perf_counter_ns()
        self._handle(tid, status)
        spent = time.perf_counter_ns() - start
        assert self.stats is not None
        if t is not None and status >> 16 == libc.PTRACE_EVENT_SECCOMP:
            t.stat_name = self.stat_name
        self._count(self.stat_name, spent)

    def _count(self, name: str, spent: int) -> None:
        """One more stop (or notification) of ``name``, served in ``spent`` ns."""
        assert self.stats is not None
        entry = self.stats.setdefault(name, [0, 0])
        entry[0] += 1
        entry[1] += spent

    def stats_table(self) -> str:
        """The table --stats writes: stops per call, the hypervisor's time on them, and its CPU time."""
        rows = sorted((self.stats or {}).items(), key=lambda kv: -kv[1][1])
        stops = sum(n for _, (n, _ns) in rows)
        busy = sum(ns for _, (_n, ns) in rows)
        cpu = os.times()
        lines = [f"{'stops':>9} {'ms':>9} {'us/stop':>8}  call", f"{'-' * 9} {'-' * 9} {'-' * 8}  {'-' * 20}"]
        for name, (n, ns) in rows:
            lines.append(f"{n:9d} {ns / 1e6:9.1f} {ns / n / 1e3:8.1f}  {name}")
        lines.append(f"{stops:9d} {busy / 1e6:9.1f} {busy / max(stops, 1) / 1e3:8.1f}  total")
        lines.append(f"hypervisor: {self._elapsed:.2f} s running, {busy / 1e9:.2f} s serving stops, "
                     f"CPU {cpu.user:.2f} s user + {cpu.system:.2f} s system")
        return "\n".join(lines) + "\n"

    def _handle(self, tid: int, status: int) -> None:
        """One report of waitpid.  Nothing a tracee does, or suffers, ends the session.

        A thread may vanish at any moment (SIGKILL at a stop, its thread group exiting, an exec
        by another thread): then ptrace and its memory answer ESRCH, and its exit report is on
        the way, which forgets it.  Any other exception is a bug of the hypervisor's: logged with
        its traceback, and the call being served, if any, fails with EIO.
        """
        try:
            self._on_report(tid, status)
        except Exception as e:
            if not _vanished(e):
                self._internal_error(self.tracees.get(tid), status, "serving a stop")

    def _on_report(self, tid: int, status: int) -> None:
        t = self.tracees.get(tid)
        if t is None:
            if os.WIFSTOPPED(status):
                self._unknown_stop(tid, status)
            elif tid in self.ended_by_exec:
                self.ended_by_exec.discard(tid)  # forgotten at the exec already
            else:  # a child that died before its parent's fork event was seen
                self.early.pop(tid, None)
                if len(self.died_early) > 4096:  # children of parents that vanished too: stale
                    self.died_early.clear()
                self.died_early.add(tid)
            return
        if not os.WIFSTOPPED(status):  # exited or killed
            self._gone(t, status)
            return
        if t.proc.revoke_pending and status >> 16 == libc.PTRACE_EVENT_STOP:
            self._revoke_progress(t.proc, t.tid)  # even when a handler holds the thread
        if t.task is not None:
            if status >> 16 == libc.PTRACE_EVENT_EXEC:
                # Another thread exec'd and took this tid (the leader's): its handler is the old
                # leader's, which is gone (_exec), never a step of the new program.
                self._exec(t)
            elif t.task is not _WAITING_OFFLOAD:
                self._step(t, t.task, status)
            return
        sig = os.WSTOPSIG(status)
        event = status >> 16
        t.at_entry = event == libc.PTRACE_EVENT_SECCOMP
        if t.proc.pending and event in (libc.PTRACE_EVENT_SECCOMP, libc.PTRACE_EVENT_STOP) \
                and sig not in STOP_SIGNALS:
            self._step(t, self._stack_pending(t, event == libc.PTRACE_EVENT_SECCOMP), None)
        elif t.proc.needs_revoke and event in (libc.PTRACE_EVENT_SECCOMP, libc.PTRACE_EVENT_STOP) \
                and sig not in STOP_SIGNALS:
            self._step(t, self._stack_revoke_filter(t, event == libc.PTRACE_EVENT_SECCOMP), None)
        elif event == libc.PTRACE_EVENT_SECCOMP:
            coro = self.on_syscall(t)
            if coro is not None:
                self._step(t, coro, None)
        elif event == 0:
            if sig == SYSCALL_TRAP or sig == signal.SIGTRAP:
                t.cont()
            else:
                if self.listeners:
                    self._restart_notified(t)
                t.cont(sig)  # signal-delivery-stop: deliver it
        elif event == libc.PTRACE_EVENT_STOP:
            if t.proc.revoke_pending:
                self._revoke_progress(t.proc, t.tid)
            if sig in STOP_SIGNALS:  # group-stop: stay stopped, but tell us of SIGCONT
                libc.try_ptrace(libc.PTRACE_LISTEN, tid, 0, 0)
            else:
                t.cont()
        elif event in (libc.PTRACE_EVENT_FORK, libc.PTRACE_EVENT_VFORK, libc.PTRACE_EVENT_CLONE):
            self._new_child(t, event)
            t.cont()
        elif event == libc.PTRACE_EVENT_EXEC:
            self._exec(t)
        else:
            t.cont()

    # -- driving handler coroutines -------------------------------------------------
    def _step(self, t: Tracee, coro: Coroutine, value: Any) -> None:
        """Run ``t``'s handler to its next suspension, as ``t`` (creds.py: the host's checks are the caller's)."""
        outer, self.current = self.current, t
        caller = None
        if creds.SWITCHES or t.proc.ids is not None:  # whose call it is: said only once someone not the
            who = t.acting or t.creds or t.caller_creds()  # session's user called, or ids are virtual
            if who is not creds.SESSION or creds.serving_others():
                caller = creds.serve(who)
        try:
            req = coro.send(value)
        except StopIteration:
            t.task = None
            if t.notice is not None:  # a handler that never answered: the caller must not wait forever
                self.log(f"[{t.tid}] internal error: a notified call ended unanswered")
                t.answer(-errno.EIO)
            return
        except Exception as e:
            t.task = None
            if not t.gone and not _vanished(e):  # a bug in a handler: the call fails, the session goes on
                self._internal_error(t, "in a handler")
            return
        finally:
            self.current = outer
            if caller is not None:
                creds.serve(caller)
        t.task = coro
        if t.gone and not isinstance(req, (Offload, Wait)):  # a stop that will never come
            t.task = None
            coro.close()
            return
        if isinstance(req, Offload):
            if self._pool is None:
                self._pool = _thread_pool()
            fut = self._pool.submit(_acting, t.acting or t.caller_creds(), req.fn, *req.args)
            t.task = _WAITING_OFFLOAD  # before the callback: it runs here if fn is already done
            t.held, t.on_signal = False, None
            self._waiting[t] = coro
            if self.faults is not None:
                self.faults.maybe_kill(t.tid, "wait")
            fut.add_done_callback(lambda f, t=t, coro=coro: self._offload_done(t, coro, f))
        elif isinstance(req, Wait):
            t.task = _WAITING_OFFLOAD
            t.held, t.on_signal = not req.interruptible, req.on_signal
            self._waiting[t] = coro
            if self.faults is not None:
                self.faults.maybe_kill(t.tid, "wait")
            if isinstance(req.future, Promise):  # set in this thread: the caller goes on at once
                req.future.add_done_callback(lambda p, t=t, coro=coro: self._resume(t, coro, p._value))
            else:
                req.future.add_done_callback(lambda f, t=t, coro=coro: self._offload_done(t, coro, f))

    def _check_interrupts(self) -> None:
        """End with EINTR the calls of waiting tracees that have a deliverable signal pending.

        A tracee stopped by ptrace does not act on a signal until resumed, so
        Ctrl-C on a program blocked in a slow module would wait for the module;
        the kernel interrupts such waits, and so does umvu.  The worker thread
        finishes on its own; its result is dropped.
        """
        self._next_check = time.monotonic() + INTERRUPT_POLL
        for t, coro in list(self._waiting.items()):
            # (a notified call waits killably: the kernel holds even a fatal signal for it, as for
            # a thread in a ptrace stop)
            if t.gone or t.task is not _WAITING_OFFLOAD or not (t.at_entry or t.notice) or t.held:
                continue
            pending = _signal_pending(t.tid)
            if not pending or t.on_signal is not None and not t.on_signal(pending == "fatal"):
                continue
            del self._waiting[t]
            t.task = None
            coro.close()
            try:
                t.answer(-errno.EINTR)
            except OSError:
                continue  # killed meanwhile: its exit is on the way

    def _offload_done(self, t: Tracee, coro: Coroutine, fut: concurrent.futures.Future) -> None:
        result = _outcome(fut)
        if threading.get_ident() == self._loop_thread:
            # Done already, or by the loop itself: the waiting caller goes on at once.
            self._resume(t, coro, result)
            return
        self._done.append((t, coro, result))
        self._wake()

    def detach(self, coro: Coroutine, what: str) -> None:
        """Run a coroutine that no process waits for (a write-back when a process exits with a file
        still mapped) to its end, in the loop's thread: its Waits and Offloads are served as a
        handler's; an exception is logged."""
        def step(value: Any) -> None:
            try:
                req = coro.send(value)
            except StopIteration:
                return
            except Exception:
                self._internal_error(None, what)
                return
            if isinstance(req, Offload):
                if self._pool is None:
                    self._pool = _thread_pool()
                fut: Any = self._pool.submit(req.fn, *req.args)
            elif isinstance(req, Wait):
                fut = req.future
            else:
                coro.close()
                self.log(f"{what}: a stop was asked, and no process waits")
                return
            if isinstance(fut, Promise):
                fut.add_done_callback(lambda p: step(p.result()))
            else:
                fut.add_done_callback(lambda f: self.call_soon(lambda: step(_outcome(f))))

        step(None)

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` in the loop's thread (the one that may use ptrace); safe from any thread."""
        self._soon.append(fn)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass

    def _finish_offloads(self) -> None:
        while self._soon:
            fn = self._soon.popleft()
            try:
                fn()
            except Exception as e:
                self.log(f"internal error in a deferred call: {e!r}")
        while self._done:
            self._resume(*self._done.popleft())

    def _resume(self, t: Tracee, coro: Coroutine, result: Any) -> None:
        """The work a handler waited for is done: it goes on.

        If its thread vanished meanwhile it goes on all the same, with the
        result, until it next touches the thread (ESRCH): so what the result
        holds (a file the module opened for it) is released by the handler's
        own clean-up rather than leaked.
        """
        if self._waiting.get(t) is coro and t.task is _WAITING_OFFLOAD:
            del self._waiting[t]
            self._step(t, coro, result)
        else:
            coro.close()  # a signal ended its call meanwhile

    # -- process life ------------------------------------------------------------------
    def _new_child(self, parent: Tracee, event: int) -> None:
        try:
            child_tid = libc.geteventmsg(parent.tid)
        except OSError:
            return  # the parent vanished at this stop: its child is adopted when it stops (_adopt_orphans)
        if child_tid in self.died_early:
            self.died_early.discard(child_tid)
            if _status_state(child_tid) in (None, "Z", "X"):
                return  # killed before this event was seen (else a new thread has the tid already)
        try:
            flags = self._clone_flags(parent)
        except OSError:  # the parent vanished meanwhile: /proc still says whether the child is a thread
            tgid = _status_ids(child_tid)[0]
            flags = CLONE_THREAD | CLONE_FS | CLONE_FILES if tgid not in (None, child_tid) else 0
        if event == libc.PTRACE_EVENT_VFORK:
            flags |= CLONE_VM
        self._add_child(child_tid, parent.proc, parent.fs, parent.files, flags, parent.creds)

    def _clone_flags(self, parent: Tracee) -> int:
        regs = parent.getregs()
        if regs.nr == NR_CLONE:
            return regs.rdi
        if regs.nr == NR_CLONE3:
            try:
                return int.from_bytes(memory.read(parent.tid, regs.rdi, 8), "little")
            except OSError as e:
                if e.errno == errno.ESRCH:
                    raise
                return 0
        return 0  # fork, vfork

    def _add_child(self, child_tid: int, pproc: Process, pfs: FsView, pfiles: FdTable, flags: int,
                   creds: Creds | None = None) -> None:
        if flags & CLONE_THREAD:
            proc = pproc
        else:
            proc = Process(child_tid, pproc.layers)
            proc.meta_layers = dict(pproc.meta_layers)
            proc.maps_traced = pproc.maps_traced
            for start, (of, length) in pproc.maps.items():  # fork copies the mappings
                of.refs += 1
                proc.maps[start] = (of, length)
            proc.pending = list(pproc.pending)  # its first stop will do it
            proc.state = dict(pproc.state)
            proc.ids = pproc.ids
            proc.net_pid = pproc.net_pid
            proc.fast_page = pproc.fast_page  # fork copies the page
            proc.fast_fstat, proc.fast_marks = pproc.fast_fstat, pproc.fast_marks
            proc.fast_shared = bool(flags & CLONE_VM)  # vfork shares it with the parent (umvu.fast)
            proc.fast_synced = pproc.fast_synced
            proc.fast_parent = pproc if flags & CLONE_VM else None
            if flags & CLONE_FILES:
                proc.files_shared = pproc.files_shared = True
        fs = pfs if flags & CLONE_FS else pfs.copy()
        files = pfiles if flags & CLONE_FILES else pfiles.copy()
        child = Tracee(child_tid, proc, fs, files)
        child.creds = creds  # a new task's are a copy of its creator's
        self.tracees[child_tid] = child
        if self._killing:  # born while the session ends: it goes too
            try:
                os.kill(child_tid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.on_event is not None:
            self.on_event("fork", pproc.tgid, child_tid, bool(flags & CLONE_THREAD))
        early = self.early.pop(child_tid, None)
        if early is not None:
            self._handle(child_tid, early)

    def _unknown_stop(self, tid: int, status: int) -> None:
        """A stop of a thread not known yet: a new child whose creator's fork event is not seen yet.

        Normally that event follows.  If the creator vanished at it, or before the kernel could
        report it (a SIGKILL in between), it never comes, and the child would stay stopped for
        good: it is adopted instead (_adopt_orphans).
        """
        self.early[tid] = status
        if self._killing:
            try:
                os.kill(tid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        ids = _status_ids(tid)
        if ids[0] == tid and not self._alive(ids[1]):
            self._adopt_orphans()

    def _alive(self, tgid: int | None) -> bool:
        """Whether the process ``tgid`` is traced and not gone (its fork events will come)."""
        t = self.tracees.get(tgid) if tgid is not None else None
        return t is not None and not t.gone

    def _adopt_orphans(self, creator: Tracee | None = None) -> None:
        """Serve the new processes whose creator is gone (or, with ``creator``, just went).

        They get their creator's view (cwd, root, umask, filter layers) when it is known: the
        one whose pid they name as parent, or the last process to go (a parent's children are
        given to init when it dies, so their parent pid no longer names it).  Threads are left:
        a thread's creator going means its whole group goes.
        """
        for tid in list(self.early):
            tgid, ppid = _status_ids(tid)
            if tgid is None:
                del self.early[tid]  # gone too: its exit report follows
                continue
            if tgid != tid or self._alive(ppid):
                continue
            like = creator if creator is not None and ppid in (creator.proc.tgid, 1) else self._recent.get(ppid)
            if like is None and self._recent:
                like = next(reversed(self._recent.values()))
            if like is None:
                umask = _status_umask(tid)
                like = Tracee(GONE_TID, Process(tid), FsView(umask=0o022 if umask is None else umask), FdTable())
                like.proc.pending = list(self._everywhere)  # its creator's are unknown: all of them
            if self.debug_events:
                self.log(f"[{tid}] adopted: its parent {like.proc.tgid} vanished before its fork was seen")
            self._add_child(tid, like.proc, like.fs, like.files if like is creator else FdTable(), 0)

    # -- the path filter, stacked when the first mount appears ----------------------------
    def trace_paths(self) -> None:
        """From now on path calls stop in every process: stack the full base filter on each.

        A process is interrupted (PTRACE_INTERRUPT) and made to run seccomp(2)
        in place of its next system call, which then runs again under the new
        filter; a blocked call is restarted by the kernel as after a signal.
        """
        if self.paths_traced:
            return
        self.paths_traced = True
        self.everywhere(bpf.base_filter(paths=True), "the path filter")
        if self.notify:
            self.everywhere(*self._notify_layer())

    @staticmethod
    def _notify_layer() -> Layer:
        return bpf.notify_layer(notify.CALLS), "the notification layer", True

    def _listen(self, t: Tracee, fd: int) -> bool:
        """Take a copy of the listener ``t``'s process was given as fd ``fd``, and poll it."""
        got = notify.fetch(t.tid, fd)
        if got < 0:
            return False
        self.listeners[got] = notify.Listener(got)
        self._listening.register(got, select.POLLIN)
        self._sleep.register(got, select.POLLIN)
        return True

    def _drop_listener(self, fd: int) -> None:
        """Every process of its layer is gone (the listener hung up)."""
        self._listening.unregister(fd)
        self._sleep.unregister(fd)
        self.listeners.pop(fd).close()

    def _notices(self, events: list[tuple[int, int]]) -> None:
        """Serve one notification from each listener ``events`` says is ready."""
        for fd, ev in events:
            listener = self.listeners.get(fd)
            if listener is None:
                continue
            if ev & select.POLLIN:
                self._notified(listener)
            elif ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                self._drop_listener(fd)

    def _restart_notified(self, t: Tracee) -> None:
        """At a signal-delivery stop: a signal that ended a notified call's wait before umvu took
        the notification leaves -ERESTARTSYS, which a handler without SA_RESTART turns into
        EINTR; those calls never fail so natively (a stat is not interrupted), so the call is
        made again after the handler, whatever its flags (-ERESTARTNOINTR)."""
        regs = t.getregs()
        if regs.ret == -libc.ERESTARTSYS and regs.nr in self._notified_nrs:
            regs.ret = -libc.ERESTARTNOINTR
            arch.setregs(t.tid, regs)

    def _notified(self, listener: notify.Listener) -> None:
        """A call sent as a notification: served as a stopped one, answered through ``listener``."""
        n = listener.receive()
        if n is None:
            return
        t = self.tracees.get(n.pid)
        if t is None or t.task is not None or t.notice is not None:
            listener.let_go(n.id)  # not a thread umvu serves now (none can be: it would be stopped)
            return
        t.notice = (listener, n.id)
        t.at_entry = False  # its wait is killable only: no signal to end it with (_check_interrupts)
        regs = t.regs
        regs.orig_rax = n.nr
        regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9 = n.args
        regs.rip = n.ip
        regs.rsp = 0  # not in the notification: nothing may be put below it (Call.put_scratch)
        regs.rax = (-errno.ENOSYS) & 0xFFFFFFFFFFFFFFFF
        if self.stats is not None:
            self.stat_name = "(notification)"
            start = time.perf_counter_ns()
        try:
            coro = self.on_syscall(t)
            if coro is not None:
                self._step(t, coro, None)
        except Exception as e:
            if not _vanished(e):
                self._internal_error(t, "serving a notification")
        if self.stats is not None:
            self._count(self.stat_name + " (notified)", time.perf_counter_ns() - start)

    def trace_calls(self, names: set[str]) -> None:
        """From now on the calls ``names`` (claimed by a module: registry.CallClaim) stop in every
        process, as trace_paths makes path calls stop.  Calls that stop already are left alone."""
        nrs = {syscalls.BY_NAME[n].nr for n in names if n in syscalls.BY_NAME} - self._calls_traced
        nrs -= syscalls.base_traced(paths=False)
        if nrs:
            self._calls_traced |= nrs
            names = sorted(syscalls.BY_NR[nr].name for nr in nrs)
            self.everywhere(bpf.calls_layer(names), "the filter for " + ", ".join(names))

    def traces(self, names: frozenset[str]) -> bool:
        """Whether the calls ``names`` stop in every process (trace_calls), once its pending filters
        are in place."""
        nrs = _NRS.get(names)
        if nrs is None:
            nrs = _NRS[names] = frozenset(syscalls.BY_NAME[n].nr for n in names)
        return nrs <= self._calls_traced

    def everywhere(self, code: bytes, what: str, listen: bool = False) -> None:
        """Stack filter ``code`` on every process, now and to come (what fork does not carry: a
        process adopted without its creator gets them all).

        A process is interrupted (PTRACE_INTERRUPT) and made to run seccomp(2)
        in place of its next system call, which then runs again under the new
        filter; a blocked call is restarted by the kernel as after a signal.
        """
        self._everywhere.append((code, what, listen))
        chosen: dict[Process, Tracee] = {}
        for t in self.tracees.values():
            if t.proc not in chosen or (chosen[t.proc].task is not None and t.task is None):
                chosen[t.proc] = t
        for proc, t in chosen.items():
            proc.pending.append((code, what, listen))
            # A thread held in a stop by a handler gets the interrupt when resumed.
            libc.try_ptrace(libc.PTRACE_INTERRUPT, t.tid, 0, 0)

    def revoke(self, inode: int, then: Callable[[], Any] = lambda: None) -> None:
        """Reads and writes on every fd of the socket ``inode`` fail with ENODEV from now on.

        What the kernel does to /dev/fuse fds once their file system is
        unmounted: libfuse's loop ends cleanly on ENODEV.  The fds are real
        sockets whose calls never stop, so each process holding one gets a
        filter layer for them, stacked by interrupting one of its threads;
        the other threads are interrupted after, so a read they are blocked
        in restarts under the layer.  ``then()`` runs once every layer is in
        place (the fuse module hangs up its end then: a daemon waiting in
        poll wakes, and reads ENODEV).
        """
        name = f"socket:[{inode}]"
        seen: set[Process] = set()
        chosen_procs: list[Process] = []
        for t in list(self.tracees.values()):
            if t.proc in seen:
                continue
            seen.add(t.proc)
            fds = set()
            try:
                for n in os.listdir(f"/proc/{t.tid}/fd"):
                    try:
                        if os.readlink(f"/proc/{t.tid}/fd/{n}") == name:
                            fds.add(int(n))
                    except OSError:
                        pass
            except OSError:
                continue
            if not fds:
                continue
            t.proc.revoked.update(dict.fromkeys(fds, name))
            t.proc.needs_revoke = True
            chosen_procs.append(t.proc)
            chosen = next((x for x in self.tracees.values() if x.proc is t.proc and x.task is None), t)
            libc.try_ptrace(libc.PTRACE_INTERRUPT, chosen.tid, 0, 0)
        left = [len(chosen_procs)]

        def one_done() -> None:
            left[0] -= 1
            if left[0] == 0:
                then()

        for proc in chosen_procs:
            proc.on_revoked.append(one_done)
        if not chosen_procs:
            then()

    async def _stack_revoke_filter(self, t: Tracee, at_entry: bool) -> None:
        proc = t.proc
        if not proc.needs_revoke:
            t.cont()
            return
        proc.needs_revoke = False
        done, proc.on_revoked = proc.on_revoked, []
        code = bpf.fd_layer(proc.revoked, only=frozenset({"read", "readv", "write", "writev", "close"}),
                            also=(NR_POLL, NR_PPOLL))
        await self._stack_filter(t, at_entry, code, "the revoked-fd filter")
        # Blocked reads restart under the new layer.  ``done`` waits until every such
        # thread has stopped: a read still blocked when the fuse module hangs up would see EOF.
        for other in self.tracees.values():
            if other.proc is proc and other is not t and other.task is None:
                if libc.try_ptrace(libc.PTRACE_INTERRUPT, other.tid, 0, 0) == 0:
                    proc.revoke_pending.add(other.tid)
        proc.on_revoked = done
        self._revoke_progress(proc, 0)

    def _revoke_progress(self, proc: Process, tid: int) -> None:
        proc.revoke_pending.discard(tid)
        if not proc.revoke_pending and proc.on_revoked and not proc.needs_revoke:
            done, proc.on_revoked = proc.on_revoked, []
            for fn in done:
                fn()

    async def _stack_pending(self, t: Tracee, at_entry: bool) -> None:
        layers, t.proc.pending = t.proc.pending, []  # another thread may have done it (TSYNC): none
        for code, what, listen in layers:
            if not at_entry:  # an interrupt stop, or the last layer's seccomp(2): to the call's entry
                await t.next_syscall_stop()
            await t.stack_layer(code, what, self.log, at_exit=False,
                                listen=functools.partial(self._listen, t) if listen else None)
            at_entry = False
        t.cont()

    async def _stack_filter(self, t: Tracee, at_entry: bool, code: bytes, what: str) -> None:
        """Stack ``code`` on ``t``'s process before its next call (Tracee.stack_layer), then go on."""
        if not at_entry:  # an interrupt stop: run to the next system call's entry
            await t.next_syscall_stop()
        await t.stack_layer(code, what, self.log, at_exit=False)
        t.cont()

    def _exec(self, t: Tracee) -> None:
        try:
            former = libc.geteventmsg(t.tid)
        except OSError:
            former = t.tid
        memory.forget(t.tid)  # a new address space: the kept /proc/TID/mem shows the old one
        memory.forget(former)
        if self.faults is not None and former != t.tid:
            self.faults.forget(former)
        if former == t.tid and t.task is not None and t.task is not _WAITING_OFFLOAD:
            task, t.task = t.task, None  # no handler of the old program outlives it
            task.close()
        if former != t.tid and former in self.tracees:
            # a non-leader thread exec'd: it takes the leader's tid
            old = self.tracees.pop(t.tid)
            t = self.tracees.pop(former)
            t.tid = old.tid
            self.tracees[t.tid] = t
            self._forget(old, GONE_TID)  # its tid is t's now: nothing of it may be dropped by tid
        t.creds = None  # a set-user-ID program changes them
        if t.proc.ids is not None:
            self._exec_ids(t)
        if t.proc.maps:  # exec replaced the address space
            self._drop_maps(t.proc)
        t.proc.exe, t.exec_view = t.exec_view, None
        for other in [x for x in self.tracees.values() if x.proc is t.proc and x is not t]:
            self.ended_by_exec.add(other.tid)  # de_thread() killed the other threads
            self._forget(other, other.tid)
        t.files.consumers.clear()  # CLOEXEC may have closed them
        if t.files.users > 1:  # exec unshares the fd table
            shared = t.files
            t.files = shared.copy()
            t.files.users = 1
            shared.users -= 1
        if t.files:
            # The kernel closed the CLOEXEC placeholders: keep what is still open.
            try:
                still = {int(n) for n in os.listdir(f"/proc/{t.tid}/fd")}
            except OSError:
                still = set()
            for of in t.files.on_exec(still):
                self.release_file(of)
        t.proc.tgid = t.tid
        parent = t.proc.fast_parent
        t.proc.fast_page, t.proc.fast_shared, t.proc.fast_parent = None, False, None  # a new image registers anew
        t.proc.fast_fstat, t.proc.fast_marks = False, None
        if parent is not None and parent.fast_synced is None and Tracee.fast_sync is not None:
            # the vfork child turned the shared page off; the parent runs on now: its page anew,
            # not at its next stop (with the fast path it may make none for long: make, a shell)
            for p in self.tracees.values():
                if p.proc is parent and not p.gone:
                    Tracee.fast_sync(p)
                    break
        if self.on_event is not None:
            self.on_event("exec", t.tid, 0, False)
        t.cont()

    def _exec_ids(self, t: Tracee) -> None:
        """A process with virtual ids ran a program: a set-user-ID or set-group-ID one changes
        them (its owner as the view shows it), and the auxiliary vector says the virtual ones."""
        try:
            st = self.view_stat(os.stat(f"/proc/{t.tid}/exe"))
            nosuid = bool(os.statvfs(f"/proc/{t.tid}/exe").f_flag & os.ST_NOSUID)
            ids = t.proc.ids = t.proc.ids.exec_as(st.st_mode, st.st_uid, st.st_gid, nosuid)
            memory.patch_auxv(t.tid, t.getregs().sp, {AT_UID: ids.ruid, AT_EUID: ids.euid, AT_GID: ids.rgid,
                                                      AT_EGID: ids.egid, AT_SECURE: int(ids.secure)})
        except OSError:
            pass  # gone already

    def _drop_files(self, t: Tracee) -> None:
        t.files.users -= 1
        if t.files.users == 0:
            for of in t.files.release_all():
                self.release_file(of)

    def _drop_maps(self, proc: Process) -> None:
        """The process's mappings went (exit, exec): write back, and drop their references."""
        maps, proc.maps = proc.maps, {}
        for of, _length in maps.values():
            self.unmap_file(of)

    def _gone(self, t: Tracee, status: int) -> None:
        tid = t.tid
        self._forget(t, tid)
        if tid == self.root_tid:
            if os.WIFEXITED(status):
                self.exit_status = os.WEXITSTATUS(status)
            else:
                self.exit_status = 128 + os.WTERMSIG(status)

    def process(self, pid: int) -> Process | None:
        """The process of thread ``pid``, traced or gone lately (an exit event's), if known."""
        t = self.tracees.get(pid) or self._recent.get(pid)
        return t.proc if t is not None else None

    def _forget(self, t: Tracee, tid: int) -> None:
        """Thread ``t`` (whose tid was ``tid``) is gone: exited, killed, or ended by another's exec.

        Its handler, if one was running for it, ends: one waiting for its next stop is closed
        now (its clean-up runs), one waiting for a module or a daemon gets the answer when it
        comes and fails at its next step (see _resume).
        """
        if self.tracees.get(tid) is t:
            del self.tracees[tid]
        memory.forget(tid)
        t.vanish()
        proc = t.proc
        alone = not any(x.proc is proc for x in self.tracees.values())
        if alone:  # the whole process went: children whose fork event it never showed are adopted
            self._recent[proc.tgid] = t
            while len(self._recent) > 16:
                del self._recent[next(iter(self._recent))]
            if self.on_event is not None and tid != GONE_TID:
                self.on_event("exit", proc.tgid, 0, False)  # its state is still found (process())
            if self.early:
                self._adopt_orphans(creator=t)
            if proc.maps:
                self._drop_maps(proc)
        if t in self._waiting:
            if t.on_signal is not None:  # killed: what a fatal signal does to the wait (FUSE: INTERRUPT)
                try:
                    t.on_signal(True)
                except Exception:
                    self._internal_error(None, "telling a module its caller was killed")
        elif t.task is not None:
            task, t.task = t.task, None
            try:
                task.close()
            except Exception:
                self._internal_error(None, "ending the handler of a vanished thread")
        self._drop_files(t)
        if proc.revoke_pending or proc.on_revoked:
            if alone:
                proc.revoke_pending.clear()
                proc.needs_revoke = False
            self._revoke_progress(proc, tid)

    def _internal_error(self, t: Tracee | None, where: str) -> None:
        """A bug of the hypervisor's (an exception other than a vanished thread's): logged with its
        traceback; the call ``t`` is stopped in, if any, fails with EIO, and ``t`` goes on."""
        import traceback

        who = f"[{t.tid}] " if t is not None else ""
        self.log(f"{who}internal error {where}:\n{traceback.format_exc().rstrip()}")
        if t is None or t.gone:
            return
        if t.task is not None and t.task is not _WAITING_OFFLOAD:
            task, t.task = t.task, None
            try:
                task.close()
            except Exception:
                pass
        if t.task is _WAITING_OFFLOAD:
            return  # its handler waits on: it ends the call when it is done
        try:
            if t.at_entry or t.notice is not None:  # the call has not run: it fails
                t.answer(-errno.EIO)
            else:
                t.cont()
        except OSError:
            return

    def signal_root(self, sig: int) -> None:
        if self.root_tid in self.tracees:
            try:
                os.kill(self.root_tid, sig)
            except ProcessLookupError:
                pass


def _vanished(e: BaseException) -> bool:
    """Whether ``e`` says a thread is gone (ptrace, /proc/TID/mem: ESRCH), not that umvu has a bug."""
    return isinstance(e, OSError) and e.errno == errno.ESRCH


def _status_ids(tid: int) -> tuple[int | None, int | None]:
    """(Tgid, PPid) of a thread, from /proc/TID/status; (None, None) if it is gone."""
    tgid = ppid = None
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Tgid:"):
                    tgid = int(line[5:])
                elif line.startswith(b"PPid:"):
                    ppid = int(line[5:])
                    break
    except (OSError, ValueError):
        return None, None
    return tgid, ppid


def _status_state(tid: int) -> str | None:
    """The one-letter state of a thread (R, S, Z...), from /proc/TID/stat; None if it is gone."""
    try:
        with open(f"/proc/{tid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0].decode()
    except (OSError, IndexError):
        return None


def _thread_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that run modules' blocking work (imported at the first: start-up does not pay)."""
    import concurrent.futures

    return concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="umvu-module")


def _outcome(fut: concurrent.futures.Future) -> Any:
    """A finished future's result, or its exception (delivered as the result: Wait raises it)."""
    if fut.cancelled():
        return OSError(errno.EINTR, "cancelled")
    exc = fut.exception()
    return exc if exc is not None else fut.result()


def _acting(who: Creds, fn: Callable[..., Any], *args: Any) -> Any:
    """A module's work in a worker thread, done for the caller whose call it serves."""
    creds.serve(who)
    try:
        return fn(*args)
    finally:
        creds.serve(creds.SESSION)


def _status_umask(tid: int) -> int | None:
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line[6:], 8)
    except (OSError, ValueError):
        pass
    return None


_QUIET_BY_DEFAULT = sum(1 << (s - 1) for s in (signal.SIGCHLD, signal.SIGURG, signal.SIGWINCH, signal.SIGCONT,
                                               signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU))


def _signal_pending(tid: int) -> str | None:
    """Whether ``tid`` has a signal pending that it neither blocks nor ignores (/proc/TID/status):
    "fatal" if one of them kills it (not caught, terminating by default), else "caught", else None."""
    fields = {}
    try:
        with open(f"/proc/{tid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"):
                    fields[key] = int(value, 16)
    except (OSError, ValueError):
        return None
    pending = fields.get("SigPnd", 0) | fields.get("ShdPnd", 0)
    pending &= ~fields.get("SigBlk", 0) & ~fields.get("SigIgn", 0)
    caught = fields.get("SigCgt", 0)
    # Signals whose default is to be ignored or to stop do not end a system call unless caught.
    if pending & ~caught & ~_QUIET_BY_DEFAULT:
        return "fatal"
    return "caught" if pending & caught else None


class _WaitingOffload:
    """Marks a tracee whose handler waits for a worker thread, not for a stop."""

    def close(self) -> None:
        pass


_WAITING_OFFLOAD: Any = _WaitingOffload()
