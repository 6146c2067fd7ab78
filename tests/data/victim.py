"""What the fault tests' victims do until they are killed (run as victim-py: its name marks it).

    victim.py io TREE FUSEDIR     stat, open, read, list and write, through /unreal, /faulty and FUSE
    victim.py threads TREE BIN    threads in calls; one of them execs or the process exits meanwhile
    victim.py signals TREE        signals delivered between calls
"""

import os
import random
import signal
import sys
import threading

mode, tree = sys.argv[1], sys.argv[2]
rnd = random.Random()
unreal = "/unreal" + tree


def io_once(fuse):
    os.stat(unreal + "/a")
    with open(unreal + "/sub/b") as f:
        f.read()
    os.listdir(unreal + "/sub")
    name = f"/faulty/f{rnd.randrange(10)}"
    with open(name, "rb") as f:
        f.read()
    if fuse:
        d = f"{fuse}/v{os.getpid()}"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/x", "wb") as f:
            f.write(os.urandom(rnd.randrange(1, 300000)))
        os.rename(f"{d}/x", f"{d}/y")
        os.stat(f"{d}/y")
        os.unlink(f"{d}/y")
        os.rmdir(d)


if mode == "io":
    fuse = sys.argv[3] if len(sys.argv) > 3 else ""
    while True:
        io_once(fuse)
elif mode == "threads":
    bin_dir = sys.argv[3]

    def spin():
        while True:
            os.stat(unreal + "/a")
            try:
                os.listdir("/faulty")
            except OSError:
                pass

    for _ in range(4):
        threading.Thread(target=spin, daemon=True).start()
    threading.Event().wait(rnd.random() * 0.05)
    if rnd.random() < 0.5:
        # exec from a thread that is not the leader: the kernel ends every other thread (de_thread)
        t = threading.Thread(target=os.execv, args=(f"{bin_dir}/victim-true", ["victim-true"]))
        t.start()
        t.join()
    os._exit(0)  # exit_group while other threads are stopped in calls
elif mode == "signals":
    got = [0]

    def on_usr1(signo, frame):
        got[0] += 1
        os.stat(unreal + "/a")

    signal.signal(signal.SIGUSR1, on_usr1)
    while True:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.stat(unreal + "/sub")
