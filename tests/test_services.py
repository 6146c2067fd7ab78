"""Services chosen by call number and by address family (registry.CallClaim, calls/service.py):
a module claims a call or a family, every process of the session reaches it from then on, and
the host is left as it was."""

from __future__ import annotations

import errno
import os

import pytest
from conftest import HERE, sh

from umvu.registry import CallClaim, MountRegistry

UNAME = HERE / "data" / "vuname.py"
NOINET6 = HERE / "data" / "noinet6.py"


def test_a_module_that_claims_uname_renames_the_machine_for_every_process_of_the_session():
    host = os.uname().nodename
    r = sh(f"""
python3 -c 'import os, time; time.sleep(1.5); print("before", os.uname().nodename)' &
sleep 0.3
vu_insmod {UNAME} || exit 9
uname -n
python3 -c 'import os; print(os.uname().nodename)'
wait
vu_rmmod vuname
uname -n
""")
    assert r.stdout.split("\n")[:4] == ["vubox", "vubox", "before vubox", host], r.stdout + r.stderr
    assert os.uname().nodename == host  # the host's name is the host's


def test_a_module_that_claims_an_address_family_serves_socket_for_it_alone():
    r = sh(f"""
vu_insmod {NOINET6} || exit 9
python3 - <<'PY'
import socket
for fam in (socket.AF_INET6, socket.AF_INET, socket.AF_UNIX):
    try:
        socket.socket(fam, socket.SOCK_STREAM).close()
        print(fam.name, "ok")
    except OSError as e:
        print(fam.name, e.strerror)
try:
    socket.socketpair(socket.AF_INET6)
except OSError as e:
    print("socketpair", e.strerror)
PY
vu_rmmod noinet6
python3 -c 'import socket; socket.socket(socket.AF_INET6).close(); print("again ok")'
""")
    assert r.stdout.splitlines() == ["AF_INET6 Address family not supported by protocol", "AF_INET ok", "AF_UNIX ok",
                                     "socketpair Address family not supported by protocol", "again ok"], \
        r.stdout + r.stderr


def test_a_call_or_family_is_claimed_once():
    reg = MountRegistry()
    a = CallClaim("nr", "uname", object(), "a")
    reg.claim_call(a)
    with pytest.raises(OSError) as e:
        reg.claim_call(CallClaim("nr", "uname", object(), "b"))
    assert e.value.errno == errno.EBUSY
    reg.claim_call(CallClaim("family", 10, object(), "b"))  # families are another space
    assert reg.call("nr", "uname") is a and reg.call("family", 2) is None
    reg.release_call(a)
    assert reg.call("nr", "uname") is None and [c.module for c in reg.calls()] == ["b"]


def test_only_calls_chosen_by_number_may_be_claimed(tmp_path):
    mod = tmp_path / "grabread.py"
    mod.write_text("from umvu.api import CallService, hookimpl\n\n"
                   "@hookimpl\ndef vu_module_load(vu):\n    vu.claim_call('read', CallService())\n")
    r = sh(f"vu_insmod {mod}; echo rc=$?; echo still here")
    assert "rc=0" not in r.stdout and "still here" in r.stdout, r.stdout + r.stderr
    assert "read: not a call a module may claim" in r.stderr, r.stderr
