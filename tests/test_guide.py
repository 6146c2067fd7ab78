"""docs/writing-a-module.md's first example, as printed there: a read-only file system that
implements only what the guide says it needs works with ls and cat, and refuses writes."""

from __future__ import annotations

import re

from conftest import HERE, sh

GUIDE = HERE.parent / "docs" / "writing-a-module.md"


def test_the_guides_file_system_in_one_file_works_as_printed(tmp_path):
    text = GUIDE.read_text()
    section = text[text.index("## A file system in one file"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "hello.py").write_text(code)
    r = sh(f"""
vu_insmod {tmp_path}/hello.py || exit 9
ls /hello
cat /hello/hello
stat -c '%A %s' /hello/hello
echo hi > /hello/hello
vu_rmmod hello && ls /hello
""")
    assert r.stdout.splitlines() == ["hello", "hello from a umvu module", "-r--r--r-- 25"], r.stdout + r.stderr
    assert "/hello/hello: Read-only file system" in r.stderr
    assert "cannot access '/hello'" in r.stderr  # gone with its module
