"""A network workload for make bench, run natively, under umvu and in a vunet stack.

    netbench.py bulk MB     one TCP connection over loopback carries MB megabytes: prints MB/s
    netbench.py conn N      N connect + accept + close over loopback: prints microseconds each

Both time only the transfer or the loop, not Python's start-up nor the listener's.
"""

import os
import socket
import sys
import time

mode = sys.argv[1]
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(128)
port = srv.getsockname()[1]
if mode == "bulk":
    total = int(sys.argv[2]) << 20
    pid = os.fork()
    if pid == 0:
        c = socket.create_connection(("127.0.0.1", port))
        buf = bytes(1 << 20)
        for _ in range(total >> 20):
            c.sendall(buf)
        c.close()
        os._exit(0)
    conn, _ = srv.accept()
    t0 = time.perf_counter()
    got, buf = 0, bytearray(1 << 20)
    while True:
        n = conn.recv_into(buf)
        if not n:
            break
        got += n
    t = time.perf_counter() - t0
    os.waitpid(pid, 0)
    print(f"{got / t / 1e6:.0f}")
else:
    n = int(sys.argv[2])
    t0 = time.perf_counter()
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        a, _ = srv.accept()
        a.close()
        c.close()
    print(f"{(time.perf_counter() - t0) / n * 1e6:.1f}")
