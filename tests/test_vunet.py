"""vunet: a private network stack per process, with no privilege; the host's network is left alone.

Every script checks that it sees the stack (lo alone) before it listens anywhere: run as root, a
server started on the host's network by mistake would take the host's port 80.
"""

from __future__ import annotations

import socket

import pytest
from conftest import sh

IN_STACK = '[ "$(ip -br link | wc -l)" = 1 ] || { echo "not in the stack"; exit 9; }; '


@pytest.fixture
def host_port_80_free():
    probe = socket.socket()
    try:
        probe.connect(("127.0.0.1", 80))
        pytest.fail("the host has something on port 80 already: this test could not tell")
    except OSError:
        pass
    finally:
        probe.close()
    yield


def test_a_fresh_stack_has_lo_only_and_serves_port_80_to_an_ordinary_user(host_port_80_free):
    inside = (IN_STACK + "ip -br link | cut -d' ' -f1; ip link set lo up && ip -br addr | tr -s ' '; "
              "python3 -m http.server 80 --bind 127.0.0.1 >/dev/null 2>&1 & server=$!; "
              "for i in $(seq 50); do ss -ltn | grep -q ':80 ' && break; sleep 0.1; done; "
              "python3 -c 'import urllib.request as u; print(u.urlopen(\"http://127.0.0.1/\").status)'; "
              "ss -ltnH | tr -s ' ' | cut -d' ' -f4; python3 -c 'import socket; print(socket.if_nameindex())'; "
              "kill $server")
    r = sh(f"vu_insmod vunet && vumount -t vunetns none /dev/net/s1 && vustack /dev/net/s1 bash -c '{_q(inside)}' "
           "&& ss -ltnH | grep -c ':80 '", timeout=90)
    assert r.stdout.splitlines() == ["lo", "lo UNKNOWN 127.0.0.1/8 ::1/128 ", "200", "127.0.0.1:80",
                                     "[(1, 'lo')]", "0"], r.stdout + r.stderr


def test_the_null_stack_and_one_family_at_a_time():
    code = ("import socket\nfor f in (socket.AF_INET, socket.AF_INET6):\n    try:\n        socket.socket(f).close()\n"
            "        print('ok')\n    except OSError as e:\n        print(e.errno)")
    r = sh(f"vu_insmod vunet && vumount -t vunetnull none /dev/net/null && vustack /dev/net/null python3 -c \"{code}\" "
           f"&& vustack -f inet6 /dev/net/null python3 -c \"{code}\" && python3 -c \"{code}\"")
    assert r.stdout.split() == ["97", "97", "ok", "97", "ok", "ok"], r.stderr


def test_a_stack_in_use_cannot_be_unmounted_and_bad_input_gets_one_line(tmp_path):
    (tmp_path / "plain").write_text("")
    r = sh(f"vu_insmod vunet && vumount -t vunetns none /dev/net/s1 && "
           f"(vustack /dev/net/s1 sleep 3 &) && sleep 1 && vuumount /dev/net/s1; echo busy=$?; "
           f"vustack /nonexistent true; echo missing=$?; vustack {tmp_path}/plain true; echo plain=$?; "
           f"vumount -t vunetns -o bogus none /dev/net/s2; echo option=$?; "
           f"sleep 2.5; vuumount /dev/net/s1; echo gone=$?",
           timeout=60)
    assert r.stdout.split() == ["busy=32", "missing=1", "plain=1", "option=32", "gone=0"], r.stdout + r.stderr
    assert "target is busy" in r.stderr and "not a network stack" in r.stderr
    assert (tmp_path / "plain").read_text() == ""  # vustack writes only to a stack's node


def test_vustack_outside_umvu_says_so():
    import subprocess

    from conftest import BIN, env

    r = subprocess.run([str(BIN / "vustack"), "/dev/net/s1", "true"], capture_output=True, text=True, env=env())
    assert r.returncode == 1 and "not running under umvu" in r.stderr


def _q(script: str) -> str:
    return script.replace("'", "'\\''")


def test_socket_ioctls_and_links_are_the_stacks():
    code = ("import fcntl, socket, struct\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "print(struct.unpack('16si', fcntl.ioctl(s, 0x8933, struct.pack('16si', b'lo', 0)))[1])\n"
            "try:\n    fcntl.ioctl(s, 0x8933, struct.pack('16si', b'v0', 0))\nexcept OSError as e:\n"
            "    print(e.errno)")
    inside = (IN_STACK + f"python3 -c \"{code}\" && ip link add v0 type veth peer name v1 && "
              "ip -br link | cut -d' ' -f1 | sort | tr '\\n' ' '")
    r = sh(f"vu_insmod vunet && vumount -t vunetns none /dev/net/s1 && vustack /dev/net/s1 bash -c '{_q(inside)}' "
           "&& echo && ip -br link | grep -c '^v0'")
    assert r.stdout.split() == ["1", "19", "lo", "v0@v1", "v1@v0", "0"], r.stdout + r.stderr


def test_proc_net_shows_the_stack():
    code = ("import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 80))\ns.listen()\n"
            "print(open('/proc/net/tcp').read().count('0100007F:0050'), open('/proc/self/net/dev').read().count(':'))")
    inside = IN_STACK + f'ip link set lo up && python3 -c "{code}"'
    r = sh(f"vu_insmod vunet && vumount -t vunetns none /dev/net/s1 && vustack /dev/net/s1 bash -c '{_q(inside)}' "
           "&& grep -c 0100007F:0050 /proc/net/tcp")
    assert r.stdout.split() == ["1", "1", "0"], r.stdout + r.stderr


def test_two_stacks_joined_by_a_veth_pair(host_port_80_free):
    """A server in stack A at 10.7.0.1:80 is reached from stack B at 10.7.0.2; each side's addresses
    are its own (every stack's network namespace belongs to one user namespace: a veth end can move)."""
    a = (IN_STACK + "ip link add va type veth peer name vb netns $(vustack -p /dev/net/b) && "
         "ip addr add 10.7.0.1/24 dev va && ip link set va up && ip link set lo up")
    b = IN_STACK.replace("= 1", "= 2") + "ip addr add 10.7.0.2/24 dev vb && ip link set vb up"
    serve = ("python3 -m http.server 80 --bind 10.7.0.1 >/dev/null 2>&1 & server=$!; "
             "for i in $(seq 50); do ss -ltn | grep -q ':80 ' && break; sleep 0.1; done; "
             "vustack /dev/net/b python3 -c "
             "'import urllib.request as u; print(u.urlopen(\"http://10.7.0.1/\").status)'; "
             "kill $server; ip -br -4 addr show va | tr -s ' '")
    r = sh("vu_insmod vunet && vumount -t vunetns none /dev/net/a && vumount -t vunetns none /dev/net/b && "
           f"vustack /dev/net/a bash -c '{_q(a)}' && vustack /dev/net/b bash -c '{_q(b)}' && "
           f"vustack /dev/net/a bash -c '{_q(serve)}' && vustack /dev/net/b ip -br -4 addr show vb | tr -s ' '",
           timeout=90)
    assert r.stdout.splitlines() == ["200", "va@if2 UP 10.7.0.1/24 ", "vb@if2 UP 10.7.0.2/24 "], r.stdout + r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_host_port_forwarded_into_a_stack(host_port_80_free):
    port = _free_port()
    serve = IN_STACK + "ip link set lo up && exec timeout 4 python3 -m http.server 80 --bind 127.0.0.1 >/dev/null 2>&1"
    fetch = (f"import urllib.request as u, time\nfor i in range(50):\n    try:\n"
             f"        r = u.urlopen('http://127.0.0.1:{port}/'); print(r.status); break\n"
             "    except OSError:\n        time.sleep(0.1)")
    r = sh(f"vu_insmod vunet && vumount -t vunetns -o hostfwd=tcp:127.0.0.1:{port}-127.0.0.1:80 none /dev/net/s1 && "
           f"(vustack /dev/net/s1 bash -c '{_q(serve)}' &) && python3 -c \"{fetch}\"; "
           "vumount -t vunetns -o hostfwd=sctp:127.0.0.1:1-127.0.0.1:2 none /dev/net/s2; echo sctp=$?", timeout=60)
    assert r.stdout.split() == ["200", "sctp=32"], r.stdout + r.stderr
    assert "only tcp and udp are forwarded" in r.stderr


def test_sys_class_net_shows_the_stack():
    inside = (IN_STACK + "ip link add v0 type veth peer name v1 && ls /sys/class/net | tr '\\n' ' ' && "
              "cat /sys/class/net/v0/mtu")
    r = sh(f"vu_insmod vunet && vumount -t vunetns none /dev/net/s1 && vustack /dev/net/s1 bash -c '{_q(inside)}' "
           "&& ls /sys/class/net | grep -c '^v0$'")
    assert r.stdout.split() == ["lo", "v0", "v1", "1500", "0"], r.stdout + r.stderr


def test_an_uplink_reaches_the_hosts_loopback_as_10_0_2_2_and_nothing_else_leaves():
    host = socket.socket()
    host.bind(("127.0.0.1", 0))
    host.listen()
    port = host.getsockname()[1]
    code = (f"import socket\ns = socket.create_connection(('10.0.2.2', {port}), timeout=5)\nprint(s.recv(5).decode())\n"
            f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('left the stack')\n"
            "except OSError as e:\n    print(e.errno)")
    import threading

    def serve():
        conn, _ = host.accept()
        conn.sendall(b"hello")
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    without = (f"import socket\ntry:\n    socket.create_connection(('10.0.2.2', {port}), timeout=2)\n"
               "except OSError as e:\n    print(e.errno)")
    r = sh(f"vu_insmod vunet && vumount -t vunetns -o uplink none /dev/net/s1 && "
           f"vustack /dev/net/s1 python3 -c \"{code}\" && vumount -t vunetns none /dev/net/s2 && "
           f"vustack /dev/net/s2 python3 -c \"{without}\"")
    host.close()
    assert r.stdout.split() == ["hello", "101", "101"], r.stdout + r.stderr


NAME_ADDR = "awk '{print $1, $3}'"  # a veth's state turns UP a moment after it is set up (its carrier)


def test_a_mount_sets_its_stack_up_and_joins_it_to_another(host_port_80_free):
    """lo=up, veth=NAME:PEER@NODE, addr=DEV[@NODE]:ADDR/LEN and gw= (pyroute2 over a netlink
    socket of the stack): socat in stack b reaches nc listening in stack a at 10.7.0.1:80, and ping
    reaches it (ICMP echo sockets are the stack's helper's to make, for any user of the stack)."""
    b = "lo=up,veth=vb:va@/dev/net/a,addr=vb:10.7.0.2/24,addr=va@/dev/net/a:10.7.0.1/24,gw=10.7.0.1"
    serve = ("timeout 10 nc -l 10.7.0.1 80 > /tmp/got-$$ & for i in $(seq 50); do ss -ltn | grep -q 10.7.0.1:80 && "
             "break; sleep 0.1; done; echo through-veth | vustack /dev/net/b socat -u - TCP:10.7.0.1:80,retry=20; "
             "wait; cat /tmp/got-$$; rm /tmp/got-$$")
    r = sh("vu_insmod vunet && vumount -t vunetns -o lo=up none /dev/net/a && "
           f"vumount -t vunetns -o {b} none /dev/net/b && vustack /dev/net/a ip -br -4 addr | {NAME_ADDR} && "
           f"vustack /dev/net/b ip -br -4 addr | {NAME_ADDR} && "
           f"vustack /dev/net/b ip route | head -1 && vustack /dev/net/a bash -c '{_q(serve)}' && "
           "vustack /dev/net/b ping -c1 -W5 10.7.0.1 | grep -o '1 received'", timeout=60)
    assert r.stdout.splitlines() == ["lo 127.0.0.1/8", "va@if2 10.7.0.1/24", "lo 127.0.0.1/8", "vb@if2 10.7.0.2/24",
                                     "default via 10.7.0.1 dev vb proto static ", "through-veth", "1 received"],\
        r.stdout + r.stderr


def test_bad_setup_options_fail_the_mount_with_one_line_and_leave_nothing():
    r = sh("vu_insmod vunet; for o in lo=down addr=x addr=eth9:10.0.0.1/24 veth=q@/dev/net/none gw=nowhere; do "
           "vumount -t vunetns -o $o none /dev/net/c; echo $?; done; ls /dev/net | grep -c '^c$'")
    lines = r.stderr.splitlines()
    assert r.stdout.split() == ["32"] * 5 + ["0"], r.stdout + r.stderr
    assert len(lines) == 5 and all(line.startswith("vumount: mounting none on /dev/net/c: ") for line in lines), lines
    assert "lo=down: only lo=up" in lines[0] and "no link eth9" in lines[2] and "no vunetns stack there" in lines[3]


def test_the_hosts_stack_and_vustack_options():
    """vunethost gives a stack's process's child the host's network back; -s, -v, -f by number."""
    r = sh("vu_insmod vunet && vumount -t vunetns none /dev/net/s1 && vumount -t vunethost none /dev/net/host && "
           "ip -br link | wc -l && vustack /dev/net/s1 sh -c 'ip -br link | wc -l; vustack -s -v /dev/net/host "
           "sh -c \"ip -br link | wc -l\"' && vustack -f 2,inet6 -v /dev/net/s1 true && "
           "vustack -f 99 /dev/net/s1 true; echo bad=$?; vustack -p /dev/net/host; echo pid=$?")
    host, inside, back, bad, pid = r.stdout.split()
    assert int(host) > 1 and inside == "1" and back == host and bad == "bad=1" and pid == "pid=1", r.stdout + r.stderr
    assert ("Using /dev/net/host for the following address families:\n    inet(2) inet6(10) netlink(16) packet(17)"
            in r.stderr and "Using /dev/net/s1 for the following address families:\n    inet(2) inet6(10)\n"
            in r.stderr), r.stderr
    assert "unknown address family '99'" in r.stderr and "not a stack of its own" in r.stderr


def test_a_helper_that_dies_leaves_the_stack_down_and_the_session_going_on():
    """Sockets made before go on existing, as on a downed interface (every link down: a connect to
    its loopback gets no answer); socket(2) in the stack is ENETDOWN; the session and vuumount go on."""
    code = ("import os, socket, subprocess, time\nsrv = socket.socket()\nsrv.bind(('127.0.0.1', 80))\nsrv.listen()\n"
            "c = socket.create_connection(('127.0.0.1', 80))\nprint('before', srv.accept()[0].fileno() > 0)\n"
            "spare = socket.socket()\nspare.settimeout(1)\n"
            "helper = subprocess.run(['vustack', '-p', '/dev/net/s1'], capture_output=True, text=True).stdout\n"
            "os.kill(int(helper), 9)\ntime.sleep(0.5)\n"
            "try:\n    socket.socket()\nexcept OSError as e:\n    print('socket', e.errno)\n"
            "try:\n    spare.connect(('127.0.0.1', 80))\nexcept OSError as e:\n    print('connect', type(e).__name__)\n"
            "print(subprocess.run(['ip', '-br', 'link'], capture_output=True, text=True).stderr.strip())")
    r = sh("vu_insmod vunet && vumount -t vunetns -o lo=up none /dev/net/s1 && "
           f"vustack /dev/net/s1 python3 -c \"{code}\"; echo on; vuumount /dev/net/s1; echo unmounted=$?", timeout=60)
    assert r.stdout.splitlines() == ["before True", "socket 100", "connect TimeoutError",
                                     "Cannot open netlink socket: Network is down", "on",
                                     "unmounted=0"], r.stdout + r.stderr
    assert "the helper of the stack at /dev/net/s1 ended: its links are down" in r.stderr


def test_no_socket_of_a_stack_is_left_after_unmount():
    """The hypervisor holds none of a stack's sockets (its netlink socket, forwarders, relays) once
    the stack is unmounted, whatever went through it."""
    port = _free_port()
    count = "ls -l /proc/$hv/fd | grep -c socket"
    r = sh("hv=$(awk '/TracerPid/{print $2}' /proc/$$/status); " + count + "; vu_insmod vunet && "
           f"vumount -t vunetns -o lo=up,hostfwd=tcp:127.0.0.1:{port}-127.0.0.1:7 none /dev/net/a && "
           "vumount -t vunetns -o veth=x:y@/dev/net/a none /dev/net/b && " + count + " && "
           "(vustack /dev/net/a timeout 5 socat TCP-LISTEN:7,bind=127.0.0.1 EXEC:cat &) && sleep 0.5 && "
           f"echo relayed | nc -N -w2 127.0.0.1 {port} && vuumount /dev/net/a && vuumount /dev/net/b && " + count,
           timeout=60)
    before, mounted, relayed, after = r.stdout.split()
    assert (before, relayed, after) == ("0", "relayed", "0") and int(mounted) >= 2, r.stdout + r.stderr


def test_udp_forwarded_into_a_stack_and_connected_udp_through_the_uplink():
    port, back = _free_port(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.bind(("127.0.0.1", 0))
    import threading

    def echo():
        data, addr = back.recvfrom(100)
        back.sendto(data.upper(), addr)

    threading.Thread(target=echo, daemon=True).start()
    uplink = (f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(5)\n"
              f"s.connect(('10.0.2.2', {back.getsockname()[1]}))\ns.send(b'up')\nprint(s.recv(9).decode())")
    r = sh(f"vu_insmod vunet && vumount -t vunetns -o lo=up,uplink,hostfwd=udp:127.0.0.1:{port}-127.0.0.1:53 none "
           "/dev/net/s1 && (vustack /dev/net/s1 timeout 5 socat UDP-RECVFROM:53,bind=127.0.0.1 EXEC:'tr a-z A-Z' &) "
           f"&& sleep 0.5 && echo datagram | nc -u -w1 127.0.0.1 {port} && vustack /dev/net/s1 python3 -c \"{uplink}\"",
           timeout=60)
    back.close()
    assert r.stdout.split() == ["DATAGRAM", "UP"], r.stdout + r.stderr
