"""make lint: what `umvu COMMAND` imports before COMMAND runs leaves out the slow standard modules.

Start-up is a feature (`umvu true` under 50 ms here, where Python alone takes about 18): each of
these costs 2-8 ms to import, and the session's first call needs none of them.  Import them in
the function that needs them.  This checks behaviour (what is imported), never a timing.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("dataclasses", "inspect", "concurrent.futures", "logging", "json", "secrets", "hashlib", "shutil",
         "tempfile", "asyncio", "random", "bz2", "lzma", "socket", "pluggy", "ptrace", "pyroute2")

# a whole `umvu true`, not only the imports: argparse's help formatter imported shutil as it ran
PROBE = ("import sys, umvu.cli\n"
         "sys.argv = ['umvu', 'true']\n"
         "status = umvu.cli.umvu_main()\n"
         f"print(status, ' '.join(m for m in {HEAVY!r} if m in sys.modules))")


def main() -> int:
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return 1
    status, *found = r.stdout.split()
    if status != "0":
        print(f"umvu true ended with status {status}", file=sys.stderr)
        return 1
    if found:
        print(f"start-up imports {', '.join(found)}: import them where they are used", file=sys.stderr)
        return 1
    print("start-up imports none of the slow standard modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
