"""A test module: vufs's copy-on-write (-t slowcow), pausing before it writes a whiteout (the last
step of a rename or a removal of a lower name) as a slow disk would: a process looking names up
meanwhile must not see the change half made (tests/test_fastpath.py)."""

import time

from umvu_modules import vufs

from umvu.api import hookimpl


class SlowCow(vufs.Vufs):
    def _whiteout(self, path):
        time.sleep(0.05)
        super()._whiteout(path)


@hookimpl
def vu_filesystems():
    return ["slowcow"]


@hookimpl
def vu_mount(vu, fstype, source, target, options):
    if fstype != "slowcow":
        return None
    fs = vufs.make(source, options)
    return SlowCow(fs.mode, fs.lowers, fs.upper, fs.own_upper)
