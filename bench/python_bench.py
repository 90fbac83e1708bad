#!/usr/bin/env python3
"""The same governed run executed from Python (Tenant.execute) and from C++ (a loop in the module,
integration._execute_from_cpp), in one process, on one platform, against one keep-alive vendor on
loopback (a separate process). The difference per call is what the binding adds: arguments in,
the GIL released and taken back, the run and the vendor's answer out as a dict.

Usage: PYTHONPATH=build/python /usr/bin/python3 bench/python_bench.py [--iterations N] [--rounds R]
(build with -DINTEGRATION_BUILD_PYTHON=ON; figures in bench/README.md, "Python binding")
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import integration

# A keep-alive vendor: every request gets `200 ok`, on one socket per client, until it closes.
VENDOR = r'''
import socket, sys, threading
def serve(c):
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return
            buf += d
        head, _, buf = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(buf) < length:
            buf += c.recv(65536)
        buf = buf[length:]
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--iterations", type=int, default=5000, help="runs from each side")
    args.add_argument("--durable", action="store_true", help="record each run with an fsync (default: deferred)")
    opts = args.parse_args()

    vendor = subprocess.Popen([sys.executable, "-c", VENDOR], stdout=subprocess.PIPE, text=True)
    try:
        port = int(vendor.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as data, \
                integration.open(data_dir=data, egress_allow=["127.0.0.0/8"], start_workers=False,
                                 durable=opts.durable) as p:
            t = p.tenant("bench")
            provider = t.register_provider(key="acme", display_name="Acme", base_url=url, capabilities=["sms.send"])
            client = t.register_client(provider["provider_id"], assembly_name="Acme.Sms", version="1.0.0",
                                       capabilities=["sms.send"],
                                       operations=[{"operation": "sms.send", "method": "POST", "path": "/v1/messages"}])
            t.activate_client(client["api_client_id"])
            t.activate_provider(provider["provider_id"])
            key = t.create_credential(provider_id=provider["provider_id"], secret=b"bench-key")
            conn = t.create_connection(provider_id=provider["provider_id"], project_id="p1", display_name="Acme",
                                       credential_id=key["credential_id"])["connection_id"]

            def from_python() -> tuple[float, float]:
                start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
                t.execute(connection_id=conn, operation="sms.send")
                return (time.perf_counter_ns() - start) / 1000, (time.thread_time_ns() - start_cpu) / 1000

            def from_cpp() -> tuple[float, float]:  # timed inside C++, around the same call
                wall, cpu = integration._execute_from_cpp(t, conn, "sms.send", 1)
                return wall / 1000, cpu / 1000

            for _ in range(200):  # warm up: pooled connection, caches, SQLite pages
                from_python()
            # One run from each side in turn, so that load from elsewhere falls on both alike.
            # Wall-clock medians show the run; the calling thread's CPU time shows what the
            # binding adds without the waits (vendor, store writer) that other load stretches.
            # Which side goes first alternates too: a run costs more right after another one (the
            # store writer and the blob folders are busy with it).
            cpp, py = [], []
            for i in range(opts.iterations):
                if i % 2:
                    cpp.append(from_cpp())
                    py.append(from_python())
                else:
                    py.append(from_python())
                    cpp.append(from_cpp())
    finally:
        vendor.kill()
        vendor.wait()

    recording = "durable" if opts.durable else "deferred-durability"
    print(f"{opts.iterations} runs from C++ and {opts.iterations} from Python, alternated, {recording} SQLite, "
          f"keep-alive vendor on loopback (us per run)")
    median = statistics.median
    for name, xs in (("from C++", cpp), ("from Python", py)):
        walls = [w for w, _ in xs]
        q = statistics.quantiles(walls, n=10)
        print(f"  {name:<12}: wall median {median(walls):7.1f}  p10 {q[0]:7.1f}  p90 {q[-1]:7.1f}   "
              f"calling thread's CPU median {median([c for _, c in xs]):6.1f}")
    wall = median([w for w, _ in py]) - median([w for w, _ in cpp])
    cpu = median([c for _, c in py]) - median([c for _, c in cpp])
    print(f"  binding adds: {cpu:.1f} us of CPU per run ({wall:.1f} us wall-clock, medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
