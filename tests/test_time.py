"""The time module: a wall clock of the view's own; the host's clock never changes.

No test sets a clock without the module loaded first (``vu_insmod time &&``): run as root, a
clock_settime that reached the kernel would move the host's clock.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from conftest import PY_SYSCALL, sh

Y2030 = 1893456000  # 2030-01-01T00:00:00Z


@pytest.fixture(autouse=True)
def host_clock_unchanged():
    before = time.time()
    yield
    assert abs(time.time() - before) < 120  # the test took less than two minutes of the host's clock


def test_date_sets_the_views_clock_only():
    r = sh("vu_insmod time && TZ=UTC date -s 2030-01-01 >/dev/null && TZ=UTC date +%F && "
           "python3 -c 'import time; print(time.strftime(\"%Y\", time.gmtime()))' && cat /proc/vutime/offset")
    out = r.stdout.split()
    assert out[:2] == ["2030-01-01", "2030"], r.stderr
    assert abs(float(out[2]) - (Y2030 - time.time())) < 60
    assert time.gmtime().tm_year < 2030


def _after_load(tmp_path, code: str, setup: str = "") -> subprocess.CompletedProcess:
    """Python started after the module: a process running before it keeps its vDSO (documented)."""
    script = tmp_path / "t.py"
    script.write_text(PY_SYSCALL + code)
    return sh(f"vu_insmod time && {setup} python3 {script}")


def test_a_stopped_clock_stands_still_and_the_monotonic_one_goes_on(tmp_path):
    code = """
import time
a, m = time.time(), time.monotonic()
time.sleep(0.2)
print(time.time() == a, time.monotonic() - m >= 0.2)
"""
    r = _after_load(tmp_path, code, "echo 0 > /proc/vutime/freq &&")
    assert r.stdout.split() == ["True", "True"], r.stderr


def test_the_kernels_errors_for_setting_it(tmp_path):
    code = """
import ctypes, struct, time
ts = ctypes.create_string_buffer(struct.pack("<qq", 5, 2_000_000_000))
tv = ctypes.create_string_buffer(struct.pack("<qq", 5, 1_000_000))
print(sc(227, 0, ts), sc(227, 0, 16), sc(164, tv, 0), sc(227, 1, ctypes.create_string_buffer(16)))
ts = ctypes.create_string_buffer(struct.pack("<qq", 1893456000, 5))
print(sc(227, 0, ts), int(time.time()) // 100)
"""
    r = _after_load(tmp_path, code)
    # EINVAL (nsec), EFAULT, EINVAL (usec), EINVAL (CLOCK_MONOTONIC cannot be set)
    assert r.stdout.split() == ["-22", "-14", "-22", "-22", "0", str(Y2030 // 100)], r.stderr


def test_unshare_gives_a_clock_of_its_own():
    r = sh("vu_insmod time && TZ=UTC date -s 2030-01-01 >/dev/null && "
           "unshare -T sh -c 'TZ=UTC date -s 2040-05-05 >/dev/null; TZ=UTC date +%F' && TZ=UTC date +%Y")
    assert r.stdout.split() == ["2040-05-05", "2030"], r.stderr


def test_static_programs_get_no_vdso_and_see_the_view(tmp_path):
    src = tmp_path / "now.c"
    src.write_text('#include <stdio.h>\n#include <time.h>\n#include <sys/auxv.h>\n'
                   'int main(void){printf("%ld %lu\\n", (long)time(NULL) / 100, getauxval(AT_SYSINFO_EHDR));}\n')
    subprocess.run(["gcc", "-static", "-O1", "-o", str(tmp_path / "now"), str(src)], check=True)
    r = sh(f"vu_insmod time && date -s @{Y2030} >/dev/null && {tmp_path}/now")
    assert r.stdout.split() == [str(Y2030 // 100), "0"], r.stderr


def test_make_keeps_working_in_a_moved_view(tmp_path):
    (tmp_path / "Makefile").write_text("out: in\n\tcp in out\n")
    (tmp_path / "in").write_text("1")
    r = sh(f"vu_insmod time && date -s 2030-01-01 >/dev/null && cd {tmp_path} && make -s && make && "
           "sleep 1.1 && echo 2 > in && make -s && cat out")
    assert "is up to date" in r.stdout and r.stdout.strip().endswith("2"), r.stdout + r.stderr
