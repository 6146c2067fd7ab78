"""Before and after: the same umvu workloads under an older revision and the working tree, in turns.

    make bench-ab REV=...     (or: .venv/bin/python bench/ab.py REV [-n RUNS] [-o FILE])

A change to the core's hot path must leave no row slower (docs/benchmarks.md).  run.py's table
compares umvu with other tools in one run; this compares umvu with itself, each workload run
by the old and the new code one after the other, so that the machine's drift hits both.  The
old revision is checked out in a temporary git worktree and imported through PYTHONPATH (its
``umvu`` and ``modules`` as ``umvu_modules``), with this checkout's virtualenv.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "tests" / "data" / "hello.c"

WORKLOADS: dict[str, list[str]] = {
    "start-up (umvu true)": ["true"],
    "200,000 getppid()": ["python3", "-c", "import os\nfor _ in range(200000): os.getppid()"],
    "20,000 stat() under -o unreal": ["-o", "unreal", "python3", "-c",
                                      "import os\nfor _ in range(20000): os.stat('/etc/passwd')"],
    "tar cf - /usr/include | wc -c": ["bash", "-c", "tar cf - /usr/include | wc -c"],
    "the same under -o unreal": ["-o", "unreal", "bash", "-c", "tar cf - /usr/include | wc -c"],
    "find /usr/lib -type f under -o unreal": ["-o", "unreal", "bash", "-c", "find /usr/lib -type f | wc -l"],
    "find + cat over /unreal/usr/include/linux": ["-o", "unreal", "bash", "-c",
                                                  "find /unreal/usr/include/linux -type f -exec cat {} + | wc -c"],
    "gcc -O2 of a small program under -o unreal": ["-o", "unreal", "gcc", "-O2", "-o", "/dev/null", str(HELLO)],
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run umvu workloads under an older revision and the working tree, "
                                             "in turns, and print the ratio of their medians.")
    ap.add_argument("rev", help="the older revision (any git revision name)")
    ap.add_argument("-n", "--runs", type=int, default=7, help="runs per workload and side (median is kept)")
    ap.add_argument("-o", "--output", help="also write the table, with how it was made, to this markdown file")
    args = ap.parse_args(argv)
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.rev], capture_output=True,
                         text=True).stdout.strip() or args.rev
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="umvu-ab-") as tmp:
        tree, path = Path(tmp) / "tree", Path(tmp) / "path"
        r = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), args.rev],
                           capture_output=True, text=True)
        if r.returncode:
            print(f"ab.py: cannot check out {args.rev}: {r.stderr.strip()}", file=sys.stderr)
            return 2
        try:
            path.mkdir()
            (path / "umvu").symlink_to(tree / "umvu")
            (path / "umvu_modules").symlink_to(tree / "modules")
            for side in (tree, ROOT):  # both compiled ahead, or a start-up would include compiling
                subprocess.run([sys.executable, "-m", "compileall", "-q", str(side / "umvu"), str(side / "modules")],
                               stdout=subprocess.DEVNULL)
            sides = {"old": str(path), "new": str(ROOT)}
            times: dict[str, dict[str, list[float]]] = {w: {s: [] for s in sides} for w in WORKLOADS}
            for _ in range(args.runs):
                for name, cmd in WORKLOADS.items():
                    for side, pythonpath in sides.items():
                        start = time.monotonic()
                        subprocess.run([sys.executable, "-m", "umvu.cli", *cmd], cwd=tmp,
                                       env={**os.environ, "PYTHONPATH": pythonpath},
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        times[name][side].append(time.monotonic() - start)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    lines = [f"| workload | {rev} (s) | working tree on {head} (s) | new / old |", "|---|---:|---:|---:|"]
    for name, t in times.items():
        old, new = statistics.median(t["old"]), statistics.median(t["new"])
        lines.append(f"| {name.replace('|', chr(92) + '|')} | {old:.3f} | {new:.3f} | {new / old:.2f} |")
    print("\n".join(lines))
    if args.output:
        Path(args.output).write_text(
            "# Before and after\n\nWritten by `make bench-ab REV=...` (bench/ab.py); do not edit by hand.  "
            f"Each workload under umvu at {rev} and at the working tree, in turns, median of {args.runs} runs, "
            f"wall time including umvu's start-up, measured {time.strftime('%Y-%m-%d')}.  A ratio within about ten "
            "per cent of 1 is noise on this machine (one row gave 0.93 and 1.09 in two runs of an hour)."
            + "".join(f"  {k}={os.environ[k]} for both sides." for k in ("UMVU_FAST_PATH", "UMVU_NOTIFY")
                      if k in os.environ)
            + "\n\n"
            + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
