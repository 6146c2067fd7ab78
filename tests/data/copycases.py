"""copy_file_range, sendfile, splice and tee, case by case, with raw system calls.

    copycases.py DIR OTHER

Files are made in DIR (a real directory, or its twin in a view) and OTHER (a
real directory either way, for copies between a view and the host).  Each
case prints its name, the call's result (a count or an errno name) and what
it left: the offsets, the pointers' values, the target's contents.  The
output must be the same natively and under umvu.
"""

import ctypes
import errno
import fcntl
import hashlib
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {"sendfile": 40, "splice": 275, "tee": 276, "copy_file_range": 326}
BAD = 1  # an address no process maps


def sc(name, *args):
    ret = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return ret if ret != -1 else errno.errorcode[ctypes.get_errno()]


def loff(v):
    return ctypes.c_longlong(v)


def addr(x):
    return ctypes.addressof(x)


d, other = sys.argv[1], sys.argv[2]
data = bytes(range(256)) * 64  # 16 KiB
out = []


def case(name, result, *extra):
    out.append(f"{name}: {result} {' '.join(str(e) for e in extra)}".rstrip())


def mk(path, content=b"", flags=os.O_RDWR):
    with open(path, "wb") as f:
        f.write(content)
    return os.open(path, flags)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()[:8]


def pos(fd):
    return os.lseek(fd, 0, os.SEEK_CUR)


src = mk(f"{d}/src", data, os.O_RDONLY)
wsrc = os.open(f"{d}/src", os.O_WRONLY)
dirfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)

# -- copy_file_range ---------------------------------------------------------------------
dst = mk(f"{d}/dst")
case("cfr plain", sc("copy_file_range", src, 0, dst, 0, 5000, 0), pos(src), pos(dst), digest(f"{d}/dst"))
a, b = loff(100), loff(7)
case("cfr offsets", sc("copy_file_range", src, addr(a), dst, addr(b), 3000, 0), a.value, b.value, pos(src), pos(dst),
     digest(f"{d}/dst"))
a = loff(len(data) - 10)
case("cfr to eof", sc("copy_file_range", src, addr(a), dst, 0, 1000, 0), a.value, pos(dst))
a = loff(len(data) + 10)
case("cfr past eof", sc("copy_file_range", src, addr(a), dst, 0, 1000, 0), a.value)
case("cfr zero", sc("copy_file_range", src, 0, dst, 0, 0, 0))
a, b = loff(len(data) + 10), loff(1 << 46)  # nothing to copy, past ext4's largest file (tmpfs: none)
case("cfr nothing past the largest file", sc("copy_file_range", src, addr(a), dst, addr(b), 7, 0), b.value)
case("cfr flags", sc("copy_file_range", src, 0, dst, 0, 10, 1))
case("cfr bad in ptr", sc("copy_file_range", src, BAD, dst, 0, 10, 0))
case("cfr bad out ptr", sc("copy_file_range", src, 0, dst, BAD, 10, 0))
case("cfr bad fd out", sc("copy_file_range", src, 0, 999, 0, 10, 0))
case("cfr bad fd in", sc("copy_file_range", 999, 0, dst, 0, 10, 0))
app = os.open(f"{d}/dst", os.O_WRONLY | os.O_APPEND)
case("cfr append", sc("copy_file_range", src, 0, app, 0, 10, 0))
case("cfr wronly in", sc("copy_file_range", wsrc, 0, dst, 0, 10, 0))
case("cfr rdonly out", sc("copy_file_range", src, 0, src, 0, 10, 0))
case("cfr dir", sc("copy_file_range", dirfd, 0, dst, 0, 10, 0))
a = loff(-5)
case("cfr negative", sc("copy_file_range", src, addr(a), dst, 0, 10, 0))
same = mk(f"{d}/same", data)
a, b = loff(0), loff(100)
case("cfr overlap", sc("copy_file_range", same, addr(a), same, addr(b), 1000, 0))
a, b = loff(0), loff(2000)
case("cfr same file apart", sc("copy_file_range", same, addr(a), same, addr(b), 1000, 0), digest(f"{d}/same"))
host = mk(f"{other}/host")
case("cfr into the host", sc("copy_file_range", src, 0, host, 0, 4000, 0), pos(src), digest(f"{other}/host"))
hsrc = mk(f"{other}/hsrc", data[::-1], os.O_RDONLY)
case("cfr from the host", sc("copy_file_range", hsrc, 0, dst, 0, 4000, 0), pos(hsrc), digest(f"{d}/dst"))

# -- sendfile --------------------------------------------------------------------------------
os.lseek(src, 0, os.SEEK_SET)
dst2 = mk(f"{d}/dst2")
case("sendfile plain", sc("sendfile", dst2, src, 0, 6000), pos(src), pos(dst2), digest(f"{d}/dst2"))
a = loff(50)
case("sendfile offset", sc("sendfile", dst2, src, addr(a), 1000), a.value, pos(src), digest(f"{d}/dst2"))
a = loff(-1)
case("sendfile negative", sc("sendfile", dst2, src, addr(a), 10), a.value)
case("sendfile bad ptr", sc("sendfile", dst2, src, BAD, 10))
case("sendfile append", sc("sendfile", app, src, 0, 10))
case("sendfile dir", sc("sendfile", dst2, dirfd, 0, 10))
case("sendfile wronly in", sc("sendfile", dst2, wsrc, 0, 10))
case("sendfile rdonly out", sc("sendfile", src, src, 0, 10))
case("sendfile bad out", sc("sendfile", 999, src, 0, 10))
r, w = os.pipe()
a = loff(0)
case("sendfile to a pipe", sc("sendfile", w, src, addr(a), 3000), a.value,
     hashlib.md5(os.read(r, 65536)).hexdigest()[:8])
fcntl.fcntl(w, fcntl.F_SETFL, os.O_NONBLOCK)
while True:
    try:
        os.write(w, b"x" * 4096)
    except BlockingIOError:
        break
a = loff(0)
case("sendfile to a full pipe", sc("sendfile", w, src, addr(a), 100), a.value)
os.close(r)
os.close(w)
r, w = os.pipe()
os.write(w, b"piped")
a = loff(0)
case("sendfile from a pipe at an offset", sc("sendfile", dst2, r, addr(a), 5), a.value)  # ESPIPE: no pread
case("sendfile from a pipe", sc("sendfile", dst2, r, 0, 5), pos(dst2))
os.close(r)
os.close(w)
case("sendfile into the host", sc("sendfile", host, src, 0, 500), pos(host), digest(f"{other}/host"))

# -- splice ------------------------------------------------------------------------------------
r, w = os.pipe()
os.lseek(src, 0, os.SEEK_SET)
case("splice file to pipe", sc("splice", src, 0, w, 0, 2000, 0), pos(src))
dst3 = mk(f"{d}/dst3")
case("splice pipe to file", sc("splice", r, 0, dst3, 0, 5000, 0), pos(dst3), digest(f"{d}/dst3"))
a = loff(300)
case("splice file offset to pipe", sc("splice", src, addr(a), w, 0, 700, 0), a.value, pos(src))
b = loff(10)
case("splice pipe to file offset", sc("splice", r, 0, dst3, addr(b), 700, 0), b.value, pos(dst3), digest(f"{d}/dst3"))
case("splice pipe offset", sc("splice", r, addr(loff(0)), dst3, 0, 10, 0))
case("splice file to file", sc("splice", src, 0, dst3, 0, 10, 0))
case("splice zero", sc("splice", src, 0, w, 0, 0, 0))
case("splice flags", sc("splice", src, 0, w, 0, 10, 0x100))
case("splice empty nonblock", sc("splice", r, 0, dst3, 0, 10, 2))
case("splice append", sc("splice", r, 0, app, 0, 10, 0))
case("splice wronly in", sc("splice", wsrc, 0, w, 0, 10, 0))
case("splice bad ptr", sc("splice", src, BAD, w, 0, 10, 0))
os.write(w, b"abc")
os.close(w)
case("splice the rest", sc("splice", r, 0, dst3, 0, 100, 0), digest(f"{d}/dst3"))
case("splice at eof", sc("splice", r, 0, dst3, 0, 100, 0))
os.close(r)

# -- tee -----------------------------------------------------------------------------------
r, w = os.pipe()
case("tee file", sc("tee", src, w, 10, 0))
case("tee wronly", sc("tee", wsrc, w, 10, 0))
case("tee zero", sc("tee", src, w, 0, 0))
case("tee flags", sc("tee", src, w, 10, 0x100))

print("\n".join(out))
