"""A device whose data comes from elsewhere: /dev/vutick (char 241:0) reads a line per tick.

A thread of the module makes a tick every ``TICK`` seconds and calls the ``wake`` the core gave
``poll``, so that processes waiting in poll, select or epoll on the device wake (in the kernel:
umvu.readiness).  An empty device reads EAGAIN when opened O_NONBLOCK, and otherwise waits for
the next tick, the way a tty without input does.
"""

import concurrent.futures
import errno
import os
import select
import threading

from umvu.api import Device, Wait, hookimpl

MAJOR, TICK = 241, 0.3


class Ticker(Device):
    def __init__(self):
        self.lock = threading.Lock()
        self.opened = []  # one dict per open file

    def open(self, rdev, flags):
        h = {"queued": bytearray(), "wakes": [], "waiting": [], "nonblock": bool(flags & os.O_NONBLOCK)}
        with self.lock:
            self.opened.append(h)
        return h

    def close(self, h):
        with self.lock:
            self.opened.remove(h)

    def tick(self, n):
        with self.lock:
            for h in self.opened:
                h["queued"] += b"tick %d\n" % n
                for wake in h["wakes"]:
                    wake()
                for fut in h["waiting"]:
                    fut.set_result(None)
                h["waiting"].clear()

    async def read(self, h, size, offset):
        while not h["queued"]:
            if h["nonblock"]:
                raise OSError(errno.EAGAIN, "no tick yet")
            fut = concurrent.futures.Future()
            with self.lock:
                h["waiting"].append(fut)
            await Wait(fut)
        data = bytes(h["queued"][:size])
        del h["queued"][:size]
        return data

    def write(self, h, data, offset):
        raise OSError(errno.EINVAL, "ticks only")

    def poll(self, h, wake):
        if wake not in h["wakes"]:
            h["wakes"].append(wake)
        return select.POLLIN if h["queued"] else 0


TICKER = Ticker()
STOP = threading.Event()


def _run():
    n = 0
    while not STOP.wait(TICK):
        n += 1
        TICKER.tick(n)


@hookimpl
def vu_module_load(vu):
    vu.claim_device("c", MAJOR, range(1), TICKER)
    vu.device_node("/dev/vutick", "c", os.makedev(MAJOR, 0), 0o444)
    STOP.clear()
    threading.Thread(target=_run, daemon=True, name="vutick").start()


@hookimpl
def vu_module_unload(vu):
    STOP.set()
