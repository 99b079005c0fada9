#!/usr/bin/env python3
"""Opens N TCP connections to a coordinator's agent port that never start TLS, and reports the
coordinator's resident memory (VmRSS) before, while they are open, after they were closed, and
after the flood had time to subside. Standard library only; Linux (/proc).

    Deploy/tcp_flood.py --pid PID --port 7300 --connections 2000 --hold 3 --settle 5
"""
import argparse
import socket
import sys
import time


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pid", type=int, required=True, help="the coordinator's process id")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="the agent port")
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--hold", type=float, default=3, help="seconds to keep them open (below --handshake-timeout to measure them all open)")
    p.add_argument("--settle", type=float, default=5, help="seconds to wait after closing them")
    a = p.parse_args()

    print(f"before        {rss_mib(a.pid):7.1f} MiB", flush=True)
    sockets, failed = [], 0
    for _ in range(a.connections):
        s = socket.socket()
        try:
            s.connect((a.host, a.port))
            sockets.append(s)
        except OSError:
            failed += 1
            s.close()
    time.sleep(a.hold)
    closed_by_peer = 0
    for s in sockets:
        s.setblocking(False)
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                closed_by_peer += 1
        except BlockingIOError:
            pass
        except OSError:
            closed_by_peer += 1
    print(f"open          {rss_mib(a.pid):7.1f} MiB  ({len(sockets)} connected, {failed} failed, {closed_by_peer} already closed by the coordinator)", flush=True)
    for s in sockets:
        s.close()
    time.sleep(0.5)
    print(f"closed +0.5 s {rss_mib(a.pid):7.1f} MiB", flush=True)
    time.sleep(a.settle)
    print(f"closed +{a.settle + 0.5:.1f} s {rss_mib(a.pid):7.1f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
