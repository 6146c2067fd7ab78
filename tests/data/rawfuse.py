"""A FUSE daemon written against /dev/fuse directly, for the bad-input tests.

It mounts with mount(2) as libfuse does, answers INIT, and answers LOOKUP
of each name in its own way: "ok" properly, "fail" with EACCES, and
"short", "badlen", "badunique" with a malformed reply.  Each write's
result is printed: "NAME ok" or "NAME ERRNO".  Files open; their FLUSH
fails with ENOSPC after 0.3 s (a write-back at close that found the disk
full).  A WRITE is answered 1 s later, and meanwhile the daemon reads on,
as a threaded one would: what it is sent meanwhile is printed "... while
writing".

    python3 rawfuse.py MOUNTPOINT [OPTIONS]   (OPTIONS replace the mount data, for the option tests)
"""

import ctypes
import errno
import os
import select
import struct
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
mnt = sys.argv[1]
fd = os.open("/dev/fuse", os.O_RDWR)
data = sys.argv[2] if len(sys.argv) > 2 else f"fd={fd},rootmode=40000,user_id={os.getuid()},group_id={os.getgid()}"
data = data.replace("FD", str(fd))
if libc.mount(b"raw", mnt.encode(), b"fuse.raw", 0, data.encode()) != 0:
    print("mount", errno.errorcode[ctypes.get_errno()], flush=True)
    sys.exit(1)
print("mounted", flush=True)

ATTR = "<QQQQQQIIIIIIIIII"


def attr(ino, mode):
    return struct.pack(ATTR, ino, 0, 0, 0, 0, 0, 0, 0, 0, mode, 1, os.getuid(), os.getgid(), 0, 4096, 0)


def send(what, unique, body=b"", error=0, length=None, raw=None):
    msg = raw if raw is not None else struct.pack("<IiQ", length or 16 + len(body), error, unique) + body
    try:
        os.write(fd, msg)
        print(what, "ok", flush=True)
    except OSError as e:
        print(what, errno.errorcode[e.errno], flush=True)


writing = None  # (unique, size, when it is answered)
while True:
    if writing:
        if not select.select([fd], [], [], max(0.0, writing[2] - time.monotonic()))[0]:
            send("write", writing[0], struct.pack("<II", writing[1], 0))
            writing = None
            continue
    try:
        req = os.read(fd, 1 << 20)
    except OSError as e:
        print("read", errno.errorcode[e.errno], flush=True)
        break
    length, opcode, unique, node = struct.unpack_from("<IIQQ", req)
    body = req[40:]
    if opcode == 26:  # INIT
        send("init", unique, struct.pack("<IIIIHHIIHH", 7, 31, 65536, 0, 16, 12, 65536, 1, 0, 0) + bytes(28))
    elif opcode == 3:  # GETATTR
        mode = 0o40755 if node == 1 else 0o100644
        send("getattr", unique, struct.pack("<QII", 1, 0, 0) + attr(node, mode))
    elif opcode == 1:  # LOOKUP
        name = body.rstrip(b"\0").decode()
        entry = struct.pack("<QQQQII", 2, 0, 0, 0, 0, 0) + attr(2, 0o100644)
        if name == "ok":
            send(name, unique, entry)
        elif name == "fail":
            send(name, unique, error=-errno.EACCES)
        elif name == "short":
            send(name, unique, raw=b"\x10\0\0\0\0\0")
        elif name == "badlen":
            send(name, unique, entry, length=16 + len(entry) + 8)
        elif name == "badunique":
            send(name, unique + 1000, entry)
        else:
            send(name, unique, error=-errno.ENOENT)
    elif opcode == 14:  # OPEN
        send("open", unique, struct.pack("<QII", 7, 0, 0))
    elif opcode == 25:  # FLUSH
        time.sleep(0.3)
        send("flush while writing" if writing else "flush", unique, error=-errno.ENOSPC)
    elif opcode == 16:  # WRITE
        writing = (unique, struct.unpack_from("<QQI", body)[2], time.monotonic() + 1.0)
        print("write asked", flush=True)
    elif opcode == 18:  # RELEASE
        send("release while writing" if writing else "release", unique)
    elif opcode in (2, 42):  # FORGET, BATCH_FORGET: no reply
        pass
    elif opcode == 38:  # DESTROY
        send("destroy", unique)
    else:
        send(f"op{opcode}", unique, error=-errno.ENOSYS)
