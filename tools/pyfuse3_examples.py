"""Unpack the example file systems of the installed pyfuse3's source distribution.

The tests and `make bench` run them unmodified (through /dev/fuse and
through vufuse); pyfuse3's wheel does not ship them.  Run by the Makefile:

    python tools/pyfuse3_examples.py DEST     (DEST/hello.py, DEST/tmpfs.py, ...)
"""

import html
import io
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

import pyfuse3


def main() -> int:
    dest = Path(sys.argv[1])
    if (dest / "hello.py").exists():
        return 0
    # The package index's page names the sdist (pip download would build Cython from source to prepare it)
    index = "https://pypi.org/simple/pyfuse3/"
    with urllib.request.urlopen(index, timeout=60) as r:
        page = r.read().decode()
    name = f"pyfuse3-{pyfuse3.__version__}.tar.gz"
    hrefs = [h.split("#")[0] for h in re.findall(r'href="([^"]+)"', page) if name in h]
    if not hrefs:
        sys.exit(f"{name} is not listed at {index}")
    url = urllib.parse.urljoin(index, html.unescape(hrefs[0]))
    with urllib.request.urlopen(url, timeout=120) as r:
        sdist = r.read()
    with tempfile.TemporaryDirectory() as d:
        with tarfile.open(fileobj=io.BytesIO(sdist)) as tar:
            members = [m for m in tar.getmembers() if "/examples/" in m.name and m.name.endswith(".py")]
            tar.extractall(d, members=members)
        shutil.copytree(next(Path(d).glob("pyfuse3-*/examples")), dest, dirs_exist_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
