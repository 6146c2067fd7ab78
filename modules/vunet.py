"""vunet: network stacks for processes, made and used with no privilege.

    vu_insmod vunet
    vumount -t vunetns none /dev/net/s1        # a fresh Linux stack of its own: lo only, down
    vumount -t vunetnull none /dev/net/null    # no network: socket() of its families is EAFNOSUPPORT
    vumount -t vunethost none /dev/net/host    # the host's network (for a child of a stack's process)
    vustack [-f inet,inet6,netlink,packet] /dev/net/s1 COMMAND...

A vunetns mount can set its stack up (lo=up, veth=, addr=, gw=; see Setup): the hypervisor does
it with pyroute2 over a netlink socket made inside the stack, which it keeps so that a helper
that dies leaves the stack's links down (its sockets fail as on a downed interface).

A stack is a node in the view (a character device, 0666); a process uses one for some address
families (all four by default), and its children inherit that.  socket(2) of such a family
gives a real socket made inside the stack: a helper process lives in an unprivileged user and
network namespace of its own (the hypervisor cannot enter a namespace another user namespace
owns) and makes it there; the caller takes a copy of it (pidfd_getfd).  Every later call on it
runs natively: bind to port 80, listen, accept, connect, send, poll, and netlink, so `ip` and
`ss` see and change the stack.  Unix sockets stay the host's (abstract names too: a network
namespace would separate those; here they are shared with the session).

Writing "use FAMILIES" to a stack's node makes the writer's process use it (what vustack does).
vuumount of a stack some process still uses is EBUSY.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from umvu.api import CallService, FileSystem, StatFs, hookimpl, host_statfs, take_fd

NODE_MOUNTS = ("vunetns", "vunetnull", "vunethost")
FAMILIES = {"inet": socket.AF_INET, "inet6": socket.AF_INET6, "netlink": socket.AF_NETLINK,
            "packet": socket.AF_PACKET}
NETLINK_ROUTE = 0
SOCK_CLOEXEC = 0o2000000
STACK_MAJOR = 242  # the nodes' device number (Linux's "local/experimental use" range)

# The helper: one line per request on fd 0 ("s FAMILY TYPE PROTO N": make N sockets; "c FD":
# close one, no answer; "h": hello), one line per answer on fd 1; its sockets stay open until the
# hypervisor, which took its copy into the caller, says "c FD".
HELPER = r"""
import os, socket, sys
made = {}
for line in sys.stdin:
    word = line.split()
    try:
        if word[0] == "s":
            fds = []
            try:
                for _ in range(int(word[4])):
                    s = socket.socket(int(word[1]), int(word[2]), int(word[3]))
                    made[s.fileno()] = s
                    fds.append(s.fileno())
            except OSError as e:
                if not fds:
                    raise
            print("ok", *fds, flush=True)
        elif word[0] == "c":
            made.pop(int(word[1])).close()
        elif word[0] == "h":
            print("ok", flush=True)
    except OSError as e:
        print("err", e.errno, flush=True)
    except (KeyError, ValueError, IndexError):
        if word[:1] != ["c"]:
            print("err 9", flush=True)
"""
POOL = 16  # sockets of a common kind made ahead, in one request: one round trip to the helper in 16
POOLED_TYPES = (socket.SOCK_STREAM, socket.SOCK_DGRAM)


class Helper:
    """A process in a user and network namespace of its own, making sockets there."""

    def __init__(self, world: int | None) -> None:
        """``world``: a helper whose user namespace this one's network namespace joins, so that
        links between the stacks can be made (moving a veth end needs CAP_NET_ADMIN over both
        namespaces: one user namespace owns them all); None: a new user namespace."""
        if world is None:
            enter = ["unshare", "--user", "--map-root-user", "--net", "--mount"]
        else:
            enter = ["nsenter", f"--user=/proc/{world}/ns/user", "--preserve-credentials", "unshare", "--net",
                     "--mount"]
        # a sysfs of its own (a mount namespace of its own holds it): /sys/class/net shows the stack's;
        # ICMP echo sockets for its users: the helper (gid 0 in its user namespace) makes them
        icmp = 'echo "0 0" > /proc/sys/net/ipv4/ping_group_range'
        run = f'mount -t sysfs none /sys 2>/dev/null; {icmp}; exec "{sys.executable}" -S -c "$0"'
        try:
            self.proc = subprocess.Popen([*enter, "sh", "-c", run, HELPER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, bufsize=1)
        except OSError as e:
            raise OSError(e.errno or errno.EIO, f"cannot start a network namespace: {e.strerror}") from None
        self.pid = self.proc.pid
        self.lock = threading.Lock()  # the loop's socket calls and the forwarders' threads ask it
        self.stopping = False
        # Unused inet sockets of the kinds asked for before, made ahead in the stack.  An unbound
        # TCP or UDP socket receives nothing and shows nowhere (ss, /proc/net), so one made ahead
        # is the same as one made now; raw, packet and netlink sockets would see traffic: never.
        self.pool: dict[tuple[int, int, int], list[int]] = {}
        # its first answer says it runs in its namespaces (ENETDOWN if it died, ETIMEDOUT if silent)
        self._ask("h")

    def watch(self, died: Any) -> None:
        """Call ``died()`` (in a thread of its own) if the helper ends before ``stop``."""
        def wait() -> None:
            self.proc.wait()
            if not self.stopping:
                died()
        threading.Thread(target=wait, name="vunet-helper-watch", daemon=True).start()

    def _ask(self, line: str) -> str:
        with self.lock:
            return self._ask_now(line)

    def _ask_now(self, line: str, answer: bool = True) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(line + "\n")
            if not answer:
                return ""
            if not select.select([self.proc.stdout], [], [], 5)[0]:
                raise OSError(errno.ETIMEDOUT, "the stack's helper does not answer")
            said = self.proc.stdout.readline()
        except (BrokenPipeError, ValueError):
            said = ""
        if not said:
            raise OSError(errno.ENETDOWN, "the stack's helper is gone")
        return said

    def _made(self, family: int, kind: int, proto: int, count: int) -> list[int]:
        word = self._ask_now(f"s {family} {kind} {proto} {count}").split()
        if word[0] != "ok":
            raise OSError(int(word[1]), os.strerror(int(word[1])))
        return [int(w) for w in word[1:]]

    def make(self, family: int, kind: int, proto: int) -> int:
        """A new socket of the helper's (its fd there), made ahead where it can be."""
        with self.lock:
            if self.proc.poll() is not None:
                raise OSError(errno.ENETDOWN, "the stack's helper is gone")
            if family not in (socket.AF_INET, socket.AF_INET6) or kind & 0xF not in POOLED_TYPES or proto not in (
                    0, socket.IPPROTO_TCP, socket.IPPROTO_UDP):
                return self._made(family, kind, proto, 1)[0]
            pool = self.pool.setdefault((family, kind, proto), [])
            if not pool:
                pool.extend(reversed(self._made(family, kind, proto, POOL)))
            return pool.pop()

    def close(self, fd: int) -> None:
        """The helper's copy of a socket the caller now has (no answer awaited)."""
        try:
            with self.lock:
                self._ask_now(f"c {fd}", answer=False)
        except OSError:
            pass

    def take(self, family: int, kind: int, proto: int) -> socket.socket:
        """A socket made in the stack, as the hypervisor's own."""
        made = self.make(family, kind, proto)
        try:
            return socket.socket(fileno=take_fd(self.pid, made))
        finally:
            self.close(made)

    def stop(self) -> None:
        self.stopping = True
        try:
            self.proc.kill()
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass


HOST_GATEWAY = socket.inet_aton("10.0.2.2")  # slirp's name for the host: its loopback, from a stack


def _host_address(sockaddr: bytes) -> bytes | None:
    """Where a connection a stack cannot route goes on the host's network: 10.0.2.2 is the host's
    own 127.0.0.1 (as slirp4netns names it); the stack's own loopback never leaves it (None);
    any other address is itself."""
    family = struct.unpack_from("<H", sockaddr)[0] if len(sockaddr) >= 2 else 0
    if family == socket.AF_INET and len(sockaddr) >= 8:
        if sockaddr[4:8] == HOST_GATEWAY:
            return sockaddr[:4] + socket.inet_aton("127.0.0.1") + sockaddr[8:]
        return None if sockaddr[4] in (0, 127) else sockaddr
    if family == socket.AF_INET6 and len(sockaddr) >= 24:
        addr = sockaddr[8:24]
        loopback = addr == socket.inet_pton(socket.AF_INET6, "::1") or addr == bytes(16)
        return None if loopback or addr.startswith(bytes(10) + b"\xff\xff\x7f") else sockaddr
    return None


class Forward:
    """hostfwd=tcp:HOSTADDR:HOSTPORT-STACKADDR:STACKPORT: a listener on the host's network whose
    connections are relayed to a connection made inside the stack (as slirp4netns's add_hostfwd).
    hostfwd=udp:...: each host peer's datagrams go out of a socket of its own in the stack,
    connected to STACKADDR:STACKPORT, and the answers come back to that peer."""

    def __init__(self, spec: str) -> None:
        try:
            proto, rest = spec.split(":", 1)
            host, inside = rest.split("-", 1)
            haddr, hport = host.rsplit(":", 1)
            iaddr, iport = inside.rsplit(":", 1)
            haddr, iaddr = haddr.strip("[]"), iaddr.strip("[]")  # [::1]:8080
            self.host, self.inside = (haddr or "127.0.0.1", int(hport)), (iaddr, int(iport))
        except ValueError:
            raise OSError(errno.EINVAL, f"hostfwd={spec}: not tcp|udp:HOSTADDR:PORT-STACKADDR:PORT") from None
        if proto not in ("tcp", "udp"):
            raise OSError(errno.EINVAL, f"hostfwd={spec}: only tcp and udp are forwarded")
        self.kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        self.listener: socket.socket | None = None

    def start(self, stack: Stack) -> None:
        self.stack = stack
        listener = socket.socket(_family(self.host[0]), self.kind)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(self.host)  # on the host's network, as the session's user
            if self.kind == socket.SOCK_STREAM:
                listener.listen(16)
        except OSError as e:
            listener.close()
            raise OSError(e.errno, f"hostfwd: cannot listen on {self.host[0]}:{self.host[1]}: {e.strerror}") from None
        self.listener = listener
        serve = self._accept if self.kind == socket.SOCK_STREAM else self._datagrams
        threading.Thread(target=serve, args=(listener,), name="vunet-hostfwd", daemon=True).start()

    def stop(self) -> None:
        if self.listener is not None:
            try:
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None

    def _datagrams(self, listener: socket.socket) -> None:
        inside: dict[Any, socket.socket] = {}  # a host peer's address: its socket in the stack
        peer: dict[socket.socket, Any] = {}
        try:
            while self.listener is listener:
                ready, _, _ = select.select([listener, *peer], [], [], 0.5)
                for s in ready:
                    try:
                        if s is listener:
                            data, addr = listener.recvfrom(65536)
                            if addr not in inside:
                                out = self.stack.helper.take(_family(self.inside[0]), socket.SOCK_DGRAM, 0)
                                out.connect(self.inside)
                                inside[addr], peer[out] = out, addr
                            inside[addr].send(data)
                        else:
                            listener.sendto(s.recv(65536), peer[s])
                    except OSError:  # nobody there (ECONNREFUSED), or the stack is gone
                        if s is not listener:
                            inside.pop(peer.pop(s), None)
                            s.close()
        except (OSError, ValueError):
            pass  # the listener closed under select: unmounted
        finally:
            for s in peer:
                s.close()

    def _accept(self, listener: socket.socket) -> None:
        while self.listener is listener:
            try:
                outside, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(outside,), name="vunet-relay", daemon=True).start()

    def _relay(self, outside: socket.socket) -> None:
        try:
            inside = self.stack.connect_inside(self.inside)
        except OSError:
            outside.close()  # nobody listens there: the client sees the connection end
            return
        pair = {outside: inside, inside: outside}
        try:
            while pair:
                ready, _, _ = select.select(list(pair), [], [], 60)
                if not ready:
                    continue
                for s in ready:
                    data = s.recv(65536)
                    if data:
                        pair[s].sendall(data)
                        continue
                    other = pair.pop(s)  # EOF one way: pass it on, keep the other way
                    try:
                        other.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    if other not in pair:
                        pair.clear()
        except OSError:
            pass
        finally:
            outside.close()
            inside.close()


class Setup:
    """What a vunetns mount sets up in its new stack, in the order given (pyroute2, over a netlink
    socket made in the stack):

        lo=up                       lo up (a new stack's is down, as a new network namespace's)
        veth=NAME[:PEER][@NODE]     a veth pair: NAME here, PEER (default NAME) here or in the
                                    stack mounted at NODE (a link between two stacks)
        addr=DEV[@NODE]:ADDR/LEN    an address on DEV (here, or in NODE's stack), and DEV up
        gw=ADDR                     the default route, through ADDR
    """

    NAMES = ("lo", "veth", "addr", "gw")

    def __init__(self) -> None:
        self.steps: list[tuple[str, str]] = []

    def add(self, name: str, value: str) -> None:
        """Check one option's shape now, so that a bad one fails the mount before any stack is made."""
        opt = f"{name}={value}"
        if name == "lo" and value != "up":
            raise OSError(errno.EINVAL, f"{opt}: only lo=up")
        if name == "veth" and not value.partition("@")[0]:
            raise OSError(errno.EINVAL, f"{opt}: not veth=NAME[:PEER][@NODE]")
        if name == "addr":
            dev, _, cidr = value.partition(":")
            address, _, length = cidr.partition("/")
            if not dev or not length.isdigit() or not _is_address(address):
                raise OSError(errno.EINVAL, f"{opt}: not addr=DEV[@NODE]:ADDR/LEN")
        if name == "gw" and not _is_address(value):
            raise OSError(errno.EINVAL, f"{opt}: not an address")
        self.steps.append((name, value))

    def apply(self, stack: Stack) -> None:
        for name, value in self.steps:
            opt = f"{name}={value}"
            try:
                getattr(self, "_" + name)(stack, value)
            except OSError as e:
                raise OSError(e.errno, f"{opt}: {e.strerror}") from None

    @staticmethod
    def _lo(stack: Stack, value: str) -> None:
        with stack.rtnl() as ipr:
            ipr.link("set", index=_link(ipr, "lo"), state="up")

    @staticmethod
    def _veth(stack: Stack, value: str) -> None:
        names, _, node = value.partition("@")
        name, _, peer = names.partition(":")
        spec: dict[str, Any] = {"ifname": peer or name}
        if node:
            spec["net_ns_pid"] = stack.module.stack_at(node).helper.pid
        with stack.rtnl() as ipr:
            ipr.link("add", ifname=name, kind="veth", peer=spec)

    @staticmethod
    def _addr(stack: Stack, value: str) -> None:
        where, _, cidr = value.partition(":")
        dev, _, node = where.partition("@")
        address, _, length = cidr.partition("/")
        with (stack.module.stack_at(node) if node else stack).rtnl() as ipr:
            index = _link(ipr, dev)
            ipr.addr("add", index=index, address=address, prefixlen=int(length))
            ipr.link("set", index=index, state="up")

    @staticmethod
    def _gw(stack: Stack, value: str) -> None:
        with stack.rtnl() as ipr:
            ipr.route("add", dst="::/0" if ":" in value else "0.0.0.0/0", gateway=value)


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _is_address(text: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
            return True
        except OSError:
            pass
    return False


def _link(ipr: Any, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise OSError(errno.ENODEV, f"no link {name}")
    return found[0]


class Stack(FileSystem):
    """A stack, and the node that names it."""

    fstype = "vunet"

    def __init__(self, module: Module, kind: str, target: str, minor: int) -> None:
        self.module, self.kind, self.target, self.minor = module, kind, target, minor
        self.uplink = False
        self.helper = Helper(module.world()) if kind == "vunetns" else None
        # a netlink socket of the stack's, kept: for Setup, and to take its links down when the
        # helper dies (no socket can be made there after that)
        self.control = self.helper.take(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE) if self.helper else None
        self.born = time.time_ns()
        self.forwards: list[Forward] = []

    def start(self, setup: Setup, forwards: list[Forward], uplink: bool) -> None:
        """Set the stack up as the mount's options say; on failure nothing of it is left."""
        self.uplink = uplink
        try:
            setup.apply(self)
            for fwd in forwards:
                fwd.start(self)
                self.forwards.append(fwd)
        except OSError:
            self.unmount()
            raise
        if self.helper is not None:
            self.helper.watch(self._helper_died)

    @contextmanager
    def rtnl(self) -> Iterator[Any]:
        """pyroute2's IPRoute on the stack (imported here: only a stack being set up needs it)."""
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        if self.control is None:
            raise OSError(errno.ENETDOWN, "not a stack of its own")
        ipr = IPRoute(fileno=os.dup(self.control.fileno()), groups=0)
        try:
            yield ipr
        except NetlinkError as e:
            raise OSError(e.code, os.strerror(e.code)) from None
        finally:
            ipr.close()

    def _helper_died(self) -> None:
        """Its sockets go on existing (they hold the namespace), but now fail as on a downed
        interface: every link of the stack goes down; socket(2) gives ENETDOWN."""
        self.module.vu.log(f"the helper of the stack at {self.target} ended: its links are down")
        try:
            with self.rtnl() as ipr:
                for link in ipr.get_links():
                    ipr.link("set", index=link["index"], state="down")
        except Exception as e:  # noqa: BLE001 - a thread of its own: say it, never raise
            self.module.vu.log(f"cannot take the links of {self.target} down: {e}")

    # -- the node ----------------------------------------------------------------------------
    def lstat(self, path: str) -> os.stat_result:
        if path != "/":
            raise OSError(errno.ENOTDIR, "not a directory")
        ns, rdev = self.born, os.makedev(STACK_MAJOR, self.minor)
        return os.stat_result((stat.S_IFCHR | 0o666, rdev, 0, 1, os.getuid(), os.getgid(), 0,
                               ns // 10**9, ns // 10**9, ns // 10**9), {"st_rdev": rdev})

    def statfs(self, path: str) -> StatFs:
        return host_statfs("/dev")

    def open(self, path: str, flags: int, mode: int) -> list:
        return [self]

    def fstat(self, handle: list) -> os.stat_result:
        return self.lstat("/")

    def read(self, handle: list, size: int, offset: int) -> bytes:
        text = f"{self.kind}\nfamilies {','.join(FAMILIES)}\n" + (f"helper {self.helper.pid}\n" if self.helper else "")
        return text.encode()[offset : offset + size]

    def write(self, handle: list, data: bytes, offset: int) -> int:
        word = data.decode(errors="replace").split()
        if len(word) != 2 or word[0] != "use":
            raise OSError(errno.EINVAL, 'write "use FAMILIES" (inet,inet6,netlink,packet)')
        try:
            families = [FAMILIES[f] for f in word[1].split(",")]
        except KeyError as e:
            raise OSError(errno.EINVAL, f"unknown family {e}") from None
        vu = self.module.vu
        pid = vu.calling_pid
        using = dict(vu.state(pid) or {})  # a copy: the parent's stays as it is
        using.update({f: self for f in families})
        vu.set_state(pid, using)
        if socket.AF_INET in families or socket.AF_INET6 in families:  # /proc/net shows the stack's
            vu.show_net(pid, self.helper.pid if self.helper is not None else None)
        return len(data)

    def ftruncate(self, handle: list, length: int) -> None:
        pass

    def busy(self) -> bool:
        return self.module.in_use(self)

    def unmount(self) -> None:
        if self in self.module.stacks:
            self.module.stacks.remove(self)
        for fwd in self.forwards:
            fwd.stop()
        if self.control is not None:
            self.control.close()
        if self.helper is not None:
            self.helper.stop()

    def connect_inside(self, addr: tuple[str, int]) -> socket.socket:
        """A TCP connection made from inside the stack (a forwarded port's other end)."""
        assert self.helper is not None
        s = self.helper.take(_family(addr[0]), socket.SOCK_STREAM, 0)
        s.settimeout(10)
        try:
            s.connect(addr)
        except OSError:
            s.close()
            raise
        s.settimeout(None)
        return s

    # -- its sockets ---------------------------------------------------------------------------
    async def socket(self, call: Any) -> int:
        if self.kind == "vunethost":
            return None  # the kernel's call: the host's network
        if self.helper is None:
            raise OSError(errno.EAFNOSUPPORT, "no network in this stack")
        family, kind, proto = (call.args[k] & 0xFFFFFFFF for k in range(3))
        made = self.helper.make(family, kind & ~SOCK_CLOEXEC, proto)
        uplink = _host_address if self.uplink and family in (socket.AF_INET, socket.AF_INET6) else None
        try:
            got = await call.hand_fd(self.helper.pid, made, bool(kind & SOCK_CLOEXEC), uplink)
        finally:
            self.helper.close(made)
        if got < 0 and self.helper.proc.poll() is not None:  # it died after make
            raise OSError(errno.ENETDOWN, "the stack's helper is gone")
        return got


class Sockets(CallService):
    """socket(2) of a family the caller's stack serves; socketpair(2) of it is the kernel's
    (EOPNOTSUPP for inet), or EAFNOSUPPORT in a null stack."""

    def __init__(self, module: Module) -> None:
        self.module = module

    async def call(self, call: Any) -> int | None:
        using = self.module.vu.state(call.pid)
        stack = using.get(call.args[0] & 0xFFFFFFFF) if using else None
        if stack is None:
            return None
        if call.name == "socketpair":
            if stack.kind == "vunetnull":
                raise OSError(errno.EAFNOSUPPORT, "no network in this stack")
            return None
        return await stack.socket(call)


class Module:
    def __init__(self, vu: Any) -> None:
        self.vu = vu
        self.stacks: list[Stack] = []

    def stack_at(self, node: str) -> Stack:
        """The vunetns stack mounted at ``node`` (another mount's option names it)."""
        for stack in self.stacks:
            if stack.target == os.path.normpath(node) and stack.helper is not None:
                return stack
        raise OSError(errno.ENOENT, f"{node}: no vunetns stack there")

    def world(self) -> int | None:
        """A live helper, whose user namespace owns every stack's network namespace."""
        for stack in self.stacks:
            if stack.helper is not None and stack.helper.proc.poll() is None:
                return stack.helper.pid
        return None

    def in_use(self, stack: Stack) -> bool:
        return any(stack in (self.vu.state(pid) or {}).values() for pid in self.vu.pids())


_module: Module | None = None


@hookimpl
def vu_module_describe() -> str:
    return ("network stacks: a private Linux stack (vunetns), none (vunetnull) or the host's (vunethost), "
            "used with vustack")


@hookimpl
def vu_module_load(vu: Any) -> None:
    global _module
    _module = Module(vu)
    service = Sockets(_module)
    for family in FAMILIES.values():
        vu.claim_family(family, service)


@hookimpl
def vu_module_unload(vu: Any) -> None:
    global _module
    if _module is not None:
        for stack in _module.stacks:
            stack.unmount()
    _module = None


@hookimpl
def vu_filesystems() -> list[str]:
    return list(NODE_MOUNTS)


@hookimpl
def vu_mount(vu: Any, fstype: str, source: str, target: str, options: str) -> FileSystem | None:
    if fstype not in NODE_MOUNTS or _module is None:
        return None
    forwards, uplink, setup = [], False, Setup()
    for opt in filter(None, options.split(",")):
        name, _, value = opt.partition("=")
        if fstype == "vunetns" and name == "hostfwd":
            forwards.append(Forward(value))
        elif fstype == "vunetns" and opt == "uplink":
            uplink = True
        elif fstype == "vunetns" and name in Setup.NAMES and value:
            setup.add(name, value)
        else:
            raise OSError(errno.EINVAL, f"unknown option: {opt}")
    minor = max((s.minor for s in _module.stacks), default=-1) + 1
    stack = Stack(_module, fstype, os.path.normpath(target), minor)
    stack.start(setup, forwards, uplink)
    _module.stacks.append(stack)
    return stack
