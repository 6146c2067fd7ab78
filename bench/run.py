"""`make bench`: the same workloads natively, under umvu, strace and PRoot.

Each workload runs several times under each runner; the table reports the
median wall time and its ratio to native, and is written to
docs/benchmarks.md together with the machine it was measured on.  Timings
live here, never in the tests.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV_BIN = Path(sys.executable).parent


STAT_CALLS = 50000  # the in-process timing of one stat (strace and PRoot take ~0.1 ms each)


def build(tmp: Path) -> dict[str, str]:
    """Compile the C helpers once, natively, outside any measurement."""
    out = {}
    for name in ("getppid", "stat", "ctracer"):
        exe = tmp / name
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / f"{name}.c")], check=True)
        out[name] = str(exe)
    (tmp / "prog.c").write_text(
        "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
        "static int cmp(const void *a, const void *b) { return strcmp(a, b); }\n"
        "int main(int argc, char **argv) { char buf[64][32]; for (int i = 0; i < 64; i++)\n"
        "  snprintf(buf[i], 32, \"%d\", i * 7919 % 64); qsort(buf, 64, 32, cmp);\n"
        "  puts(buf[argc]); return 0; }\n")
    return out


def workloads(exe: dict[str, str], tmp: Path) -> list[tuple[str, str, bool]]:
    """(name, shell command, uses /unreal): /unreal becomes the real path outside umvu."""
    return [
        ("200,000 getppid()", f"{exe['getppid']} 200000", False),
        ("20,000 stat() of a real file", f"{exe['stat']} 20000 /etc/hostname", False),
        ("python3 -c pass", "python3 -c pass", False),
        ("tar cf - /usr/include | wc -c", "tar cf - /usr/include 2>/dev/null | wc -c", False),
        ("find /usr/lib -type f | wc -l", "find /usr/lib -type f 2>/dev/null | wc -l", False),
        ("gcc -O2 of a small program", f"gcc -O2 -o {tmp}/prog {tmp}/prog.c", False),
        ("find + cat over /unreal/usr/include",
         "find /unreal/usr/include/linux -type f -exec cat {} + | wc -c", True),
    ]


def runners(exe: dict[str, str]) -> dict[str, list[str] | None]:
    umvu = str(VENV_BIN / "umvu")
    proot = shutil.which("proot")
    strace = shutil.which("strace")
    return {
        "native": [],
        "umvu": [umvu],
        "umvu --no-fast-path -o unreal": [umvu, "--no-fast-path", "-o", "unreal"],
        "umvu --no-fast-path --no-notify -o unreal": [umvu, "--no-fast-path", "--no-notify", "-o", "unreal"],
        "umvu --no-fast-path --pin -o unreal": [umvu, "--no-fast-path", "--pin", "-o", "unreal"],
        "umvu -o unreal": [umvu, "-o", "unreal"],
        "C tracer": [exe["ctracer"]],
        "strace -f": [strace, "-f", "-o", "/dev/null"] if strace else None,
        "proot": [proot] if proot else None,
    }


def command(runner: str, prefix: list[str], cmd: str, unreal: bool) -> list[str]:
    if unreal and runner == "umvu":
        return []  # /unreal does not exist without the module
    if unreal and "unreal" not in runner:
        if runner == "proot":
            prefix = prefix + ["-b", "/usr:/unreal/usr"]  # PRoot's own way to show the same view
        else:
            cmd = cmd.replace("/unreal", "")
    return prefix + ["bash", "-c", cmd]


def vufs_setup(tmp: Path) -> Path:
    """A source tree for the vufs rows: headers under git, a small C project, a 100 MB file."""
    src = tmp / "src"
    shutil.copytree("/usr/include", src / "include", symlinks=True)
    git = ["git", "-c", "user.email=b@example.org", "-c", "user.name=b", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=src, check=True)
    subprocess.run([*git, "add", "include"], cwd=src, check=True)
    subprocess.run([*git, "commit", "-qm", "tree"], cwd=src, check=True)
    proj = src / "cproj"
    proj.mkdir()
    for i in range(24):
        (proj / f"f{i}.c").write_text(f"#include <stdio.h>\n#include <string.h>\nint f{i}(const char *s)"
                                      f"{{ return (int)strlen(s) + {i}; }}\n")
    (proj / "main.c").write_text("int main(void) { return 0; }\n")
    objs = " ".join(f"f{i}.o" for i in range(24))
    (proj / "Makefile").write_text(f"prog: main.o {objs}\n\tgcc -o $@ $^\n%.o: %.c\n\tgcc -O2 -c $<\n"
                                   "clean:\n\trm -f *.o prog\n")
    with open(src / "big", "wb") as f:
        f.write(os.urandom(1 << 20) * 100)
    return src


VUFS_WORKLOADS = [
    ("tar cf - include | wc -c", "tar cf - include | wc -c"),
    ("find include -type f | wc -l", "find include -type f | wc -l"),
    ("git status (repo of /usr/include)", "git status --short | wc -l"),
    ("make of 25 C files", "make -s -C cproj clean && make -s -C cproj"),
]
# dd times its own copy: start-up, mounting and opening are not counted.
READ_100MB = "dd if=big of=/dev/null bs=1M 2>&1 | tail -1"
# Each workload times itself inside the view (bash's clock: no process is started to read it):
# start-up and mounting are not counted, as a 0.02 s workload would measure them and not the view.
SELF_TIMED = 's=$EPOCHREALTIME; {{ {cmd}; }} >/dev/null; e=$EPOCHREALTIME; awk "BEGIN {{ print $e - $s }}"'
VUFS_HEADING = "## File-heavy work in vufs mounts"
VUFS_RUNNERS = ["native", "umvu --no-fast-path vufs bind", "umvu vufs bind", "umvu vufs cow", "proot -b"]


def vufs_rows(tmp: Path, runs: int) -> tuple[list[tuple[str, dict[str, float]]], dict[str, float]]:
    """The file-heavy rows (wall time) and the 100 MB read's throughput (MB/s) per runner."""
    src = vufs_setup(tmp)
    mnt = tmp / "mnt"
    mnt.mkdir()
    rows = []
    for wname, cmd in VUFS_WORKLOADS:
        med = interleaved({r: functools.partial(_measure, a, "time")
                           for r, a in _vufs_variants(src, mnt, SELF_TIMED.format(cmd=cmd)).items()}, runs)
        rows.append((wname, med))
        print(wname, {k: round(v, 4) for k, v in med.items()}, flush=True)
    speed = interleaved({r: functools.partial(_measure, a, "rate")  # MB/s, as dd says it
                         for r, a in _vufs_variants(src, mnt, READ_100MB).items()}, runs)
    print("100 MB read, MB/s", {k: round(v) for k, v in speed.items()}, flush=True)
    return rows, speed


def vufs_section(measured: tuple[list[tuple[str, dict[str, float]]], dict[str, float]], runs: int) -> list[str]:
    rows, speed = measured
    return [VUFS_HEADING, "",
            "The same commands in a source tree (a copy of /usr/include under git, a 25-file C project, a "
            "100 MB file) at its real path, through a vufs bind (with the in-process fast path, the default, "
            "and without it: every path call stops) and a vufs cow mount of it, and through PRoot binding it "
            "at the same place "
            "(`proot -b`).  Each command times itself inside the view (bash's $EPOCHREALTIME before and "
            "after): start-up and mounting are not counted (they are in the first table's start-up line).  "
            f"Median of {runs} runs taken in turns, measured {time.strftime('%Y-%m-%d')}.", "",
            *table(rows, [r for r in VUFS_RUNNERS if any(r in med for _, med in rows)]), "",
            "A 100 MB sequential read (`dd bs=1M` of a file in the page cache, as dd times its own "
            "copy), MB/s and share of native: "
            + ", ".join(f"{n} {v:.0f} ({v / speed['native']:.0%})" for n, v in speed.items()), ""]


def _vufs_variants(src: Path, mnt: Path, cmd: str) -> dict[str, list[str]]:
    umvu = str(VENV_BIN / "umvu")
    proot = shutil.which("proot")
    variants = {
        "native": ["bash", "-c", f"cd {src} && {cmd}"],
        "umvu --no-fast-path vufs bind": [umvu, "--no-fast-path", "-o", "vufs", "bash", "-c",
                                          f"vumount -t vufs {src} {mnt} && cd {mnt} && {cmd}"],
        "umvu vufs bind": [umvu, "-o", "vufs", "bash", "-c", f"vumount -t vufs {src} {mnt} && cd {mnt} && {cmd}"],
        "umvu vufs cow": [umvu, "-o", "vufs", "bash", "-c",
                          f"vumount -t vufs -o cow {src} {mnt} && cd {mnt} && {cmd}"],
        "proot -b": [proot, "-b", f"{src}:{mnt}", "bash", "-c", f"cd {mnt} && {cmd}"] if proot else None,
    }
    return {k: v for k, v in variants.items() if v is not None}


# -- FUSE: the same daemon mounted by the kernel's FUSE, by umvu's /dev/fuse, and (pyfuse3) by vufuse ----------

WAIT = ('waitmnt() { for i in $(seq 400); do grep -q " $1 " /proc/self/mounts && return 0; sleep 0.05; done; '
        'return 1; }; ')
# Each prints its own measure: dd its throughput, the find its elapsed seconds (mounting is not counted).
FIND = ("s=$(date +%s.%N); find {m}/tree -printf '%s %m\\n' | wc -l >/dev/null; "
        "e=$(date +%s.%N); awk \"BEGIN {{ print $e - $s }}\"")
FUSE_WORKLOADS = [
    ("100 MB sequential read (MB/s)", "dd if={m}/big of=/dev/null bs=1M 2>&1 | tail -1", "rate"),
    ("100 MB sequential write (MB/s)", "dd if=/dev/zero of={m}/out bs=1M count=100 2>&1 | tail -1; rm {m}/out", "rate"),
    ("find + stat of {n} files (s)", FIND, "time"),
    # The same on one CPU (taskset -c 0, for the whole tree): no wake-ups of another, idle CPU,
    # which cost tens of microseconds on a VM and make the two-CPU times swing from run to run.
    ("find + stat of {n} files, one CPU (s)", FIND, "time1"),
]


def fuse_setup(tmp: Path) -> tuple[Path, Path, int]:
    """An ext4 image made from a directory (mkfs.ext4 -d: no mount needed): /usr/include and a 100 MB file."""
    data = tmp / "fusedata"
    shutil.copytree("/usr/include", data / "tree", symlinks=True)
    with open(data / "big", "wb") as f:
        f.write(os.urandom(1 << 20) * 100)
    img = tmp / "ext4.img"
    subprocess.run(["/usr/sbin/mkfs.ext4", "-q", "-F", "-d", str(data), str(img), "600M"], check=True)
    files = sum(len(f) for _, _, f in os.walk(data / "tree"))
    return img, data, files


def _fuse_variants(img: Path, data: Path, mnt: Path, work: str) -> dict[str, tuple[str, list[str]]]:
    """(daemon, runner) -> argv; each mounts, runs ``work`` and unmounts."""
    umvu = str(VENV_BIN / "umvu")
    examples = VENV_BIN.parent / "share" / "pyfuse3-examples"
    py = str(VENV_BIN / "python")
    # In the foreground, waited for: the next run mounts the same image only once this daemon closed it.
    fuse2fs = f"fuse2fs -f -o rw {img} {mnt} >/dev/null 2>&1 &"  # its exit message would end the output
    pt = f"{py} {examples}/passthroughfs.py {data} {mnt} &"
    body = f"waitmnt {mnt} && {work}; fusermount3 -u {mnt}; wait"
    # the kernel's mounts are made in a mount namespace of their own when root makes them: the host's
    # mount table is never changed (an ordinary user's fusermount3 mounts are that user's own)
    kernel = ["unshare", "-m", "--propagation", "private"] if os.geteuid() == 0 else []
    out = {
        "fuse2fs, kernel FUSE": [*kernel, "bash", "-c", f"{WAIT} {fuse2fs} {body}"],
        "fuse2fs, umvu /dev/fuse": [umvu, "-o", "fuse", "bash", "-c", f"{WAIT} {fuse2fs} {body}"],
        "passthroughfs, kernel FUSE": [*kernel, "bash", "-c", f"{WAIT} {pt} {body}"],
        "passthroughfs, umvu /dev/fuse": [umvu, "-o", "fuse", "bash", "-c", f"{WAIT} {pt} {body}"],
        "passthroughfs, umvu vufuse": [umvu, "bash", "-c", f"vumount -t vufuse -o fs={examples}/passthroughfs.py:"
                                       f"Operations {data} {mnt} && {work}; vuumount {mnt}"],
    }
    return out


def _measure(argv: list[str], kind: str) -> float:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    try:
        if kind == "rate":  # "104857600 bytes (105 MB, 100 MiB) copied, 0.0123 s, 8.5 GB/s"
            return 100 / float(last.split(", ")[-2].split()[0])
        return float(last)
    except (ValueError, IndexError):
        raise RuntimeError(f"{argv!r}: {r.stdout[-300:]} {r.stderr[-300:]}") from None


def fuse_rows(tmp: Path, runs: int) -> list[str]:
    if not Path("/dev/fuse").exists() or not shutil.which("fusermount3"):
        return ["Kernel FUSE is not available here (/dev/fuse, fusermount3): not measured.", ""]
    img, data, files = fuse_setup(tmp)
    mnt = tmp / "fmnt"
    mnt.mkdir()
    results: dict[str, dict[str, float]] = {}
    for wname, work, kind in FUSE_WORKLOADS:
        wname = wname.format(n=files)
        measures = {}
        for vname, argv_ in _fuse_variants(img, data, mnt, work.format(m=mnt)).items():
            if kind == "time1":
                measures[vname] = functools.partial(_measure, ["taskset", "-c", "0", *argv_], "time")
            else:
                measures[vname] = functools.partial(_measure, argv_, kind)
        for vname, value in interleaved(measures, runs).items():  # a failed cell is NaN, not a lost table
            results.setdefault(vname, {})[wname] = value
            print(wname, vname, round(value, 3), flush=True)
    lines = []
    for daemon in ("fuse2fs", "passthroughfs"):
        names = [v for v in results if v.startswith(daemon)]
        lines += [f"| {daemon}: workload | " + " | ".join(n.split(", ")[1] for n in names) + " |",
                  "|---|" + "---:|" * len(names)]
        for wname, _work, kind in FUSE_WORKLOADS:
            wname = wname.format(n=files)
            base = results[names[0]][wname]
            cells = [f"{base:.3g}"]
            for n in names[1:]:
                v = results[n][wname]
                cells.append(f"{v:.3g} ({v / base:.0%})" if kind == "rate" else f"{v:.3g} ({v / base:.1f}x)")
            lines.append(f"| {wname} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


FUSE_HEADING = "## FUSE: the same daemon under the kernel's FUSE and under umvu"
DEVICE_HEADING = "## Virtual disks (vudev)"
DEVICE_WORKLOADS = [
    # from 1 MiB in: a whole disk's partition table stays for the next run's vumount
    ("100 MB sequential write (MB/s)", "dd if=/dev/zero of={t} bs=1M seek=1 count=100 conv=notrunc 2>&1 | tail -1"),
    ("100 MB sequential read (MB/s)", "dd if={t} of=/dev/null bs=1M skip=1 count=100 2>&1 | tail -1"),
]


def device_rows(tmp: Path, runs: int) -> list[str]:
    """dd through /dev/ram0 and a partition of an image (vudev), and through the image file itself
    under the same umvu (a real fd: the kernel's speed), as MB/s."""
    img, plain = tmp / "disk.img", tmp / "file.img"  # the file is another: writing it must not undo the table
    subprocess.run(["truncate", "-s", "200M", str(img), str(plain)], check=True)
    subprocess.run(["/usr/sbin/sfdisk", "-q", str(img)], input="label: dos\n,150M\n", text=True, check=True)
    setup = (f"vu_insmod vudev && vumount -t vudevramdisk -o size=128M none /dev/ram0 && "
             f"vumount -t vudevpartx {img} /dev/hdb && ")
    targets = {"image file": str(plain), "/dev/ram0": "/dev/ram0", "whole disk /dev/hdb": "/dev/hdb",
               "partition /dev/hdb1": "/dev/hdb1"}
    umvu = str(VENV_BIN / "umvu")
    results: dict[str, dict[str, float]] = {}
    for wname, work in DEVICE_WORKLOADS:
        measures = {t: functools.partial(_measure, [umvu, "bash", "-c", setup + work.format(t=path)], "rate")
                    for t, path in targets.items()}
        for t, value in interleaved(measures, runs).items():
            results.setdefault(wname, {})[t] = value
            print(wname, t, round(value), flush=True)
    return _value_table(results, list(targets))


def _value_table(results: dict[str, dict[str, float]], names: list[str]) -> list[str]:
    """One row per workload, a column per name; in brackets, the share of the first column's value
    (a rate: "MB/s" in the workload's name) or the time relative to it."""
    lines = ["| workload | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for wname, values in results.items():
        base = values[names[0]]
        rate = "MB/s" in wname
        lines.append(f"| {wname} | {base:.0f} | " + " | ".join(
            f"{values[n]:.0f} ({values[n] / base:.0%})" if rate else f"{values[n]:.0f} ({values[n] / base:.1f}x)"
            for n in names[1:]) + " |")
    return [*lines, ""]


def device_section(rows: list[str], runs: int) -> list[str]:
    return [DEVICE_HEADING, "",
            "dd with 1 MiB blocks under `umvu bash` with vudev loaded: through a 128 MB ramdisk, through a "
            "200 MB image (vudevpartx) whole and through its first partition, and through a 200 MB file under "
            "the same umvu (a real fd: the kernel's speed, which the devices are measured against).  The kernel "
            "moves a disk's data (Device.backing): a whole disk's reads do not stop, its writes stop once to be "
            "checked against the end, and a partition's reads and writes stop once each (about 30-60 us here, "
            "against 65 us for the read of 1 MiB itself).  A ramdisk is a memfd, whose pages this kernel copies "
            "slower than an ext4 file's large folios (natively, measured 2026-12-04: 2.3 GB/s for a first write, "
            "which allocates them, 5.6 written again and 5.9 read, against 9.3 and 19 for the file): that is "
            "its ceiling here (each run writes a fresh ramdisk).  A ramdisk read right after "
            "vumount reads holes.  In brackets: share of the image file's throughput.  "
            f"Median of {runs} runs taken in turns, measured {time.strftime('%Y-%m-%d')}.", "", *rows]


STOPS_HEADING = "## One intercepted call, by mechanism"
STOP_KINDS = [("ptrace", "ptrace: seccomp RET_TRACE, PTRACE_CONT at once"),
              ("notify", "user notification, CONTINUE"),
              ("sync", "user notification, CONTINUE, SYNC_WAKE_UP"),
              ("addfd", "user notification, an fd sent with the reply (ADDFD_FLAG_SEND), SYNC_WAKE_UP")]


def stop_rows(tmp: Path, runs: int) -> list[str]:
    """bench/notify.c, unpinned and on one CPU: the median of ``runs`` runs, ns per call."""
    exe = tmp / "notify"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "notify.c")], check=True)
    cols = {}
    for where, arg in (("two CPUs", "free"), ("one CPU", "pin")):
        samples: dict[str, list[float]] = {}
        for _ in range(runs):
            out = subprocess.run([str(exe), arg, "50000"], capture_output=True, text=True, check=True).stdout
            for line in out.splitlines():
                k, v = line.split()
                samples.setdefault(k, []).append(float(v))
        cols[where] = {k: statistics.median(v) for k, v in samples.items()}
    lines = ["| mechanism, ns per call | two CPUs | one CPU |", "|---|---:|---:|",
             f"| native getppid | {cols['two CPUs']['native']:.0f} | {cols['one CPU']['native']:.0f} |"]
    for key, what in STOP_KINDS:
        cells = [f"{cols[w][key]:.0f}" if cols[w][key] > 0 else "n/a (kernel)" for w in ("two CPUs", "one CPU")]
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    return lines


def stop_section(rows: list[str], runs: int) -> list[str]:
    return [STOPS_HEADING, "",
            "bench/notify.c: 50,000 getppid calls (openat for the fd row) sent to a supervisor written in C "
            "that does nothing but let them go on: the floor of each mechanism on this machine, with no "
            "Python (umvu's hypervisor adds its own work per stop: compare the C tracer column of the first "
            "table).  One CPU: the caller and the supervisor pinned together.  Median of "
            f"{runs} runs, measured {time.strftime('%Y-%m-%d')}; docs/architecture.md says what was "
            "taken from it.", "", *rows, ""]


NET_HEADING = "## Networking: a stack of the view's own (vunet)"
NET_WORKLOADS = [("1 GB over one TCP connection on loopback (MB/s)", "bulk 1024"),
                 ("connect + accept + close on loopback (us each, 2,000)", "conn 2000")]


def net_rows(tmp: Path, runs: int) -> list[str]:
    """bench/netbench.py natively, in a network namespace of the kernel's (`unshare -rn`: the
    stack vunetns makes, with no umvu), under umvu with the host's network, and under umvu in a
    vunetns stack (vustack)."""
    py, umvu, work = shutil.which("python3") or "python3", str(VENV_BIN / "umvu"), str(HERE / "netbench.py")
    results: dict[str, dict[str, float]] = {}
    for wname, args in NET_WORKLOADS:
        cmd = f"{py} {work} {args}"
        variants = {"native": ["bash", "-c", cmd],
                    "unshare -rn": ["unshare", "-rn", "sh", "-c", f"ip link set lo up && {cmd}"],
                    "umvu": [umvu, "bash", "-c", cmd],
                    "umvu, vunetns stack": [umvu, "bash", "-c", "vu_insmod vunet && vumount -t vunetns -o lo=up "
                                            f"none /dev/net/s1 && vustack /dev/net/s1 {cmd}"]}
        measures = {v: functools.partial(_measure, argv_, "time") for v, argv_ in variants.items()}
        for v, value in interleaved(measures, runs).items():
            results.setdefault(wname, {})[v] = value
            print(wname, v, round(value, 1), flush=True)
    return _value_table(results, list(next(iter(results.values()))))


def net_section(rows: list[str], runs: int) -> list[str]:
    return [NET_HEADING, "",
            "bench/netbench.py: one TCP connection carrying 1 GB in 1 MiB writes, and a loop of 2,000 "
            "connect + accept + close, over loopback, each timing itself (start-up not counted).  "
            "**unshare -rn**: a network namespace of the kernel's with no umvu, the kind of stack vunetns "
            "makes.  In a vunetns stack, socket(2) stops and takes a socket the stack's helper made ahead "
            "(pidfd_getfd, made by the caller); every later call on it is native, so a transfer runs at the "
            "kernel's speed.  Setting a connection up does not: socket(2) is a stop (pidfd_open runs in its "
            "place) and two injected calls (pidfd_getfd, then the pidfd's close), and the stack's node is a "
            "mount, so that, as with any mount, connect, close and getsockname stop too (unix socket names "
            "and fds of the view), about 25-35 us each here; the in-process fast path (issue 18) is what "
            "would take those off.  "
            "In brackets: share of native throughput, or time relative to native.  "
            f"Median of {runs} runs taken in turns, measured {time.strftime('%Y-%m-%d')}.", "", *rows]


IDENTITY_HEADING = "## Who and when: virtual ids, a fake root, a time view"
GETUID = "python3 -c 'import os\nfor _ in range(100000): os.getuid()'"
STATS = "python3 -c 'import os\nfor _ in range(20000): os.stat(\"{f}\")'"
CLOCK = "python3 -c 'import time\nfor _ in range(100000): time.time()'"
TAR = "tar cf /dev/null --owner=0 --group=0 -C {tmp} ids-tree"


def identity_rows(tmp: Path, runs: int) -> list[str]:
    """getuid, a stat of a recorded file, clock reads and a tar of 3,000 files: natively, under
    umvu as the user, in a view (vusu's root, --fakeroot, the time module), under fakeroot(1) and
    proot -0."""
    tree = tmp / "ids-tree"
    for i in range(30):
        d = tree / f"d{i}"
        d.mkdir(parents=True, exist_ok=True)
        for j in range(100):
            (d / f"f{j}").write_text("x")
    f = tree / "d0" / "f0"
    umvu = str(VENV_BIN / "umvu")
    plain = lambda cmd: ["bash", "-c", cmd]  # noqa: E731
    work = {
        "100,000 getuid()": (GETUID, [umvu, "bash", "-c", "vusu -c \"$0\"", GETUID]),
        "20,000 stat() of a recorded file": (STATS.format(f=f), None),
        "100,000 time.time()": (CLOCK, [umvu, "bash", "-c", "vu_insmod time && bash -c \"$0\"", CLOCK]),
        "tar of 3,000 files, --owner": (TAR.format(tmp=tmp), None),
    }
    fakeroot = shutil.which("fakeroot")
    proot = shutil.which("proot")
    names = ["native", "umvu", "umvu view", "umvu --fakeroot", "fakeroot", "proot -0"]
    results: dict[str, dict[str, float]] = {}
    for wname, (cmd, view) in work.items():
        setup = f"chown 7:8 {f} && " if "recorded" in wname else ""
        argvs = {"native": plain(cmd), "umvu": [umvu, *plain(cmd)],
                 "umvu --fakeroot": [umvu, "--fakeroot", *plain(setup + cmd)]}
        if view is not None:
            argvs["umvu view"] = view
        if fakeroot:
            argvs["fakeroot"] = [fakeroot, *plain(setup + cmd)]
        if proot:
            argvs["proot -0"] = [proot, "-0", *plain(setup + cmd)]
        med = interleaved({n: functools.partial(timed, a) for n, a in argvs.items()}, runs)
        results[wname] = med
        print(wname, {k: round(v, 4) for k, v in med.items()}, flush=True)
    return [*table(list(results.items()), names), ""]


def identity_section(rows: list[str], runs: int) -> list[str]:
    return [IDENTITY_HEADING, "",
            "Python loops of getuid, of stat of a file chowned to 7:8 first (a record under a fake root), "
            "and of time.time(); GNU tar of 3,000 small files to /dev/null with `--owner=0 --group=0`.  "
            "**umvu**: no view; **umvu view**: getuid under `vusu` (virtual ids: getuid stops), time.time() "
            "under the time module (no vDSO: each read stops); **umvu --fakeroot**: every stat stops and is "
            "shown with the records.  fakeroot(1) answers through LD_PRELOAD and a daemon; proot -0 through "
            "ptrace.  Start-up included; ratio to native.  "
            f"Median of {runs} runs taken in turns, measured {time.strftime('%Y-%m-%d')}.", "", *rows]


def _replace_section(out: Path, heading: str, section: list[str]) -> bool:
    text = out.read_text() if out.exists() else ""
    head, sep, rest = text.partition(heading)
    tail = rest[rest.index("\n## ") + 1 :] if sep and "\n## " in rest else ""
    if not sep:  # a section the file does not have yet: before the notes
        head, sep2, notes = text.partition("\n## Reading the table")
        tail = ("## Reading the table" + notes) if sep2 else ""
        head += "\n"
    out.write_text(head + "\n".join(section) + "\n" + ("\n" + tail if tail else ""))
    return True


def fuse_section(rows: list[str], runs: int) -> list[str]:
    return [FUSE_HEADING, "",
            "fuse2fs serves an ext4 image made with `mkfs.ext4 -d` from a copy of /usr/include and a 100 MB "
            "file; pyfuse3's passthroughfs example serves that directory.  Each is mounted by the kernel's "
            "FUSE (fusermount3; as root, in a mount namespace of its own), by umvu's virtual /dev/fuse, "
            "and (passthroughfs) in-process by vufuse.  "
            "dd reports its own throughput; the find times itself; mounting is not counted.  The one-CPU "
            "row runs the whole tree (umvu, daemon, find) under `taskset -c 0`.  In brackets: "
            f"share of the kernel's throughput, or time relative to it.  Median of {runs} runs taken in "
            "turns, measured "
            f"{time.strftime('%Y-%m-%d')}.", "", *rows]


def table(rows: list[tuple[str, dict[str, float]]], names: list[str]) -> list[str]:
    lines = ["| workload | native (s) | " + " | ".join(n for n in names if n != "native") + " |",
             "|---|---:|" + "---:|" * (len(names) - 1)]
    for wname, med in rows:
        base = med["native"]
        cells = [f"{med[n] / base:.2f}x" if n in med and med[n] == med[n] else "n/a"  # NaN: it failed
                 for n in names if n != "native"]
        lines.append(f"| {wname.replace('|', chr(92) + '|')} | {base:.3f} | " + " | ".join(cells) + " |")
    return lines


def interleaved(measures: dict[str, Callable[[], float]], runs: int) -> dict[str, float]:
    """The median of ``runs`` measures of each, taken in turns (one of each, then again), after a
    warm-up of each: this VM's speed drifts over minutes, and a runner measured all in a row
    would be compared with another measured at another speed.  A measure that fails gives NaN."""
    samples: dict[str, list[float]] = {}
    for name, measure in measures.items():
        try:
            measure()
            samples[name] = []
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"{name} FAILED: {e}", flush=True)
    for _ in range(runs):
        for name in list(samples):
            try:
                samples[name].append(measures[name]())
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                print(f"{name} FAILED: {e}", flush=True)
                del samples[name]
    return {name: statistics.median(samples[name]) if name in samples else float("nan") for name in measures}


def self_timed(argv: list[str]) -> float:
    """What the command prints of itself (bench/stat.c's "time"): a number."""
    r = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"{argv!r} failed ({r.returncode}): {r.stderr[-300:]}")
    return float(r.stdout.split()[-1])


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{argv!r} failed ({r.returncode}): {r.stderr.decode()[-300:]}")
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Compare umvu with native, a minimal C tracer, strace and PRoot.")
    ap.add_argument("-n", "--runs", type=int, default=5, help="runs per workload and runner (median is kept)")
    ap.add_argument("-o", "--output", default=str(ROOT / "docs" / "benchmarks.md"), help="markdown file to write")
    ap.add_argument("--only", choices=["vufs", "stops", "fuse", "devices", "identity", "net"],
                    help="run one section and replace it in the file (the rest of the file stays as it was)")
    args = ap.parse_args(argv)
    # umvu is Python: with no .pyc written, every run would compile its modules again (60 ms of
    # start-up here), and the bench would time that rather than umvu
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    if args.only is not None:  # one section, measured anew and put in place of the old
        rows_of, heading, section = {
            "vufs": (vufs_rows, VUFS_HEADING, vufs_section),
            "stops": (stop_rows, STOPS_HEADING, stop_section),
            "net": (net_rows, NET_HEADING, net_section),
            "identity": (identity_rows, IDENTITY_HEADING, identity_section),
            "devices": (device_rows, DEVICE_HEADING, device_section),
            "fuse": (fuse_rows, FUSE_HEADING, fuse_section),
        }[args.only]
        with tempfile.TemporaryDirectory(prefix="umvu-bench.") as d:
            rows = rows_of(Path(d), args.runs)
        print(rows if args.only == "vufs" else "\n".join(rows))
        _replace_section(Path(args.output), heading, section(rows, args.runs))
        print(f"replaced the section {heading!r} of {args.output}")
        return 0

    with tempfile.TemporaryDirectory(prefix="umvu-bench.") as d:
        tmp = Path(d)
        exe = build(tmp)
        run_with = runners(exe)
        names = [n for n, p in run_with.items() if p is not None]
        rows = []
        for wname, cmd, unreal in workloads(exe, tmp):
            argvs = {rname: command(rname, run_with[rname], cmd, unreal) for rname in names}
            med = interleaved({r: functools.partial(timed, a) for r, a in argvs.items() if a}, args.runs)
            rows.append((wname, med))
            print(wname, {k: round(v, 4) for k, v in med.items()}, flush=True)
        startup = interleaved({r: functools.partial(timed, run_with[r] + ["true"]) for r in names}, args.runs)
        one_stat = interleaved({r: functools.partial(self_timed, run_with[r] + [exe["stat"], str(STAT_CALLS),
                                                                                "/etc/hostname", "time"])
                                for r in names}, args.runs)
        rows.append(("`RUNNER true` (start-up, seconds)", startup))
        vrows, speed = vufs_rows(tmp, args.runs)
        frows = fuse_rows(tmp, args.runs)
        drows = device_rows(tmp, args.runs)
        irows = identity_rows(tmp, args.runs)
        nrows = net_rows(tmp, args.runs)
        srows = stop_rows(tmp, args.runs)


    lines = ["# Benchmarks", "",
             "Written by `make bench` (bench/run.py); do not edit by hand.  Median of "
             f"{args.runs} runs, taken in turns (one run of each runner, then again), wall time, ratio to "
             "native (lower is better).", "",
             f"Machine: {os.cpu_count()} CPUs, kernel {os.uname().release}, Python {sys.version.split()[0]}, "
             f"measured {time.strftime('%Y-%m-%d')}.", "",
             *table(rows[:-1], names)]
    lines += ["", "Start-up (`RUNNER true`, seconds): "
              + ", ".join(f"{n} {v:.3f}" for n, v in startup.items()), "",
              f"One stat() of /etc/hostname, timed in the process ({STAT_CALLS:,} calls after 1,000, bench/stat.c; "
              "start-up apart), nanoseconds, and ratio to native: "
              + ", ".join(f"{n} {v:.0f}" + ("" if n == "native" else f" ({v / one_stat['native']:.2f}x)")
                          for n, v in one_stat.items()), ""]
    lines += vufs_section((vrows, speed), args.runs)
    lines += fuse_section(frows, args.runs)
    lines += device_section(drows, args.runs)
    lines += identity_section(irows, args.runs)
    lines += net_section(nrows, args.runs)
    lines += stop_section(srows, args.runs)
    missing = [n for n, p in run_with.items() if p is None]
    if missing:
        lines += [f"Not installed here, so not measured: {', '.join(missing)}.", ""]
    Path(args.output).write_text("\n".join(lines) + "\n" + NOTES)
    print(f"wrote {args.output}")
    return 0


NOTES = """
## Reading the table

* **umvu** runs with no module loaded; **umvu -o unreal** with the `unreal`
  module, so path calls must be resolved against a mount.  The /unreal row
  compares umvu reading through the module with the others reading the
  same files at their real paths (PRoot binds /usr at /unreal/usr).
* Ratios include each runner's start-up (umvu's is about 0.05 s, a Python
  interpreter starting), which dominates the short workloads: compare the
  start-up line below before reading a 0.05 s workload's ratio.
* umvu runs with the in-process fast path, its default: the processes make
  the path calls that cannot reach anything virtual themselves
  (docs/architecture.md); what still stops is glibc's internal opens (ld.so's
  libraries, setlocale's locale files) and the calls under /unreal.
  **umvu --no-fast-path** is the same view with every path call reaching
  the hypervisor (what a static program or one that drops LD_PRELOAD gets):
  stat, access and readlink as seccomp user notifications, the rest as
  ptrace stops; **--no-notify** makes those stop too (docs/architecture.md,
  "Calls answered through notifications"), and **--pin** runs the
  hypervisor and the workload on one CPU.
* The FUSE rows vary more than the rest between runs on this machine: the
  kernel's own fuse2fs find took from 1.6 to 5.6 s and its 100 MB write
  from 190 to 430 MB/s in runs of the same day (the image is on disk, and
  the 2-CPU VM loses time to steal once both CPUs are busy).  Compare
  ratios from one run, not across runs.  Most of that spread is wake-ups
  of an idle CPU (each request wakes the daemon, each reply the caller):
  the one-CPU row runs the whole tree under `taskset -c 0` (as `umvu
  --pin` does), and there the kernel's fuse2fs find took 1.05 to 1.37 s
  in three runs of the same day, against 1.7 to 5.7 s on two CPUs.
* **C tracer** (bench/ctracer.c) is the smallest seccomp + ptrace tracer
  that stops on the same kind of calls and resumes them at once: the floor
  for any ptrace-based design on this machine.
* A ptrace stop costs most when the tracer and the tracee run on different
  CPUs (a cross-CPU wake-up each way).  umvu does not pin CPUs (that would
  serialise the traced program with the hypervisor); it busy-polls
  `waitpid` for a few tens of microseconds after resuming a tracee, which
  catches the next stop of a tracee that makes calls in quick succession
  without a sleep/wake-up round trip.
"""


if __name__ == "__main__":
    sys.exit(main())
