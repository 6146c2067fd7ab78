"""The same file-system checks (tests/fsconform.py) on a real directory and through each view.

A difference is a bug, unless it is listed in KNOWN with its reason; the
known ones are reported as expected failures, so they stay visible until
they are fixed (xfail strict: a fixed one fails the run until it is removed).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import HERE, env, sh

CHECKER = HERE / "fsconform.py"

# Differences the views still have, and why.
CWD_IS_A_PATH = "a virtual cwd is a path, not a reference: renaming or removing it from elsewhere loses it"
KNOWN = {
    "rename.across_dirs_open_cwd": CWD_IS_A_PATH,
    "dir.removed_cwd": CWD_IS_A_PATH,
    "open.tmpfile": "linkat of /proc/self/fd/N of an O_TMPFILE into a view: the fd's mount is not known (EXDEV)",
}
PER_MODE = {
    "bind": {"rename.across_dirs_open_cwd", "dir.removed_cwd", "open.tmpfile"},
    "cow": {"rename.across_dirs_open_cwd", "dir.removed_cwd", "open.tmpfile"},
    "unreal": {"rename.across_dirs_open_cwd", "dir.removed_cwd", "open.tmpfile"},
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    base = tmp_path_factory.mktemp("conf")
    for d in ("real", "lower", "bind", "l1", "up", "cow"):
        (base / d).mkdir()
    real = subprocess.run([sys.executable, str(CHECKER), str(base / "real")], capture_output=True, text=True,
                          env=env(), timeout=120)
    assert real.returncode == 0, real.stderr
    out = {"real": json.loads(real.stdout)}
    py = f"{sys.executable} {CHECKER}"
    script = (f"vumount -t vufs {base}/lower {base}/bind && {py} {base}/bind > {base}/bind.json && "
              f"vumount -t vufs -o cow,upper={base}/up {base}/l1 {base}/cow && {py} {base}/cow > {base}/cow.json && "
              f"mkdir {base}/real2 && {py} /unreal{base}/real2 > {base}/unreal.json")
    r = sh(script, "-o", "vufs,unreal", timeout=300)
    assert r.returncode == 0, r.stderr
    for mode in PER_MODE:
        out[mode] = json.loads((base / f"{mode}.json").read_text())
    return out


def _differences(reports, mode):
    real, view = reports["real"], reports[mode]
    return {k: (real[k], view.get(k)) for k in real if real[k] != view.get(k)}


@pytest.mark.parametrize("mode", sorted(PER_MODE))
def test_view_matches_the_real_directory(reports, mode):
    diff = _differences(reports, mode)
    unexpected = {k: v for k, v in diff.items() if k not in PER_MODE[mode]}
    assert not unexpected, f"{mode} differs from a real directory: {unexpected}"
    assert len(reports["real"]) >= 90  # the whole battery ran


@pytest.mark.parametrize("mode,check", sorted((m, c) for m, checks in PER_MODE.items() for c in checks))
def test_known_difference(reports, mode, check):
    diff = _differences(reports, mode)
    if check in diff:
        pytest.xfail(f"{KNOWN[check]}: real={diff[check][0]!r} view={diff[check][1]!r}")
    pytest.fail(f"{check} now matches under {mode}: remove it from PER_MODE")
