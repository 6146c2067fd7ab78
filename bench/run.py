"""`make bench`: the same workloads natively, under umvu, strace and PRoot.

Each workload runs several times under each runner; the table reports the
median wall time and its ratio to native, and is written to
docs/benchmarks.md together with the machine it was measured on.  Timings
live here, never in the tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV_BIN = Path(sys.executable).parent


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
        "umvu -o unreal": [umvu, "-o", "unreal"],
        "umvu --pin -o unreal": [umvu, "--pin", "-o", "unreal"],
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
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="umvu-bench.") as d:
        tmp = Path(d)
        exe = build(tmp)
        run_with = runners(exe)
        names = [n for n, p in run_with.items() if p is not None]
        rows = []
        for wname, cmd, unreal in workloads(exe, tmp):
            med: dict[str, float] = {}
            for rname in names:
                argv_ = command(rname, run_with[rname], cmd, unreal)
                if not argv_:
                    continue
                timed(argv_)  # warm the page cache
                med[rname] = statistics.median(timed(argv_) for _ in range(args.runs))
            rows.append((wname, med))
            print(wname, {k: round(v, 4) for k, v in med.items()}, flush=True)
        startup = {rname: statistics.median(timed(run_with[rname] + ["true"]) for _ in range(args.runs))
                   for rname in names}
        rows.append(("`RUNNER true` (start-up, seconds)", startup))

    # per-stop cost: the stat workload minus native, per call
    stat_row = next(med for wname, med in rows if wname.startswith("20,000 stat()"))
    per_stop = {k: (v - stat_row["native"]) / 20000 * 1e6 for k, v in stat_row.items() if k != "native"}

    lines = ["# Benchmarks", "",
             "Written by `make bench` (bench/run.py); do not edit by hand.  Median of "
             f"{args.runs} runs, wall time, ratio to native (lower is better).", "",
             f"Machine: {os.cpu_count()} CPUs, kernel {os.uname().release}, Python {sys.version.split()[0]}, "
             f"measured {time.strftime('%Y-%m-%d')}.", "",
             "| workload | native (s) | " + " | ".join(n for n in names if n != "native") + " |",
             "|---|---:|" + "---:|" * (len(names) - 1)]
    for wname, med in rows[:-1]:
        base = med["native"]
        cells = [f"{med[n] / base:.2f}x" if n in med else "n/a" for n in names if n != "native"]
        lines.append(f"| {wname.replace('|', chr(92) + '|')} | {base:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "Start-up (`RUNNER true`, seconds): "
              + ", ".join(f"{n} {v:.3f}" for n, v in startup.items()), "",
              "Cost of one intercepted call (the stat workload, minus native, per call, microseconds): "
              + ", ".join(f"{n} {v:.1f}" for n, v in per_stop.items()), ""]
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
* Ratios include each runner's start-up (umvu's is about 0.15 s, a Python
  interpreter starting), which dominates the short workloads: compare the
  start-up line below before reading a 0.05 s workload's ratio.
* **umvu --pin** runs the hypervisor and the workload on one CPU.
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
