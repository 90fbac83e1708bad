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
    args.add_argument("--iterations", type=int, default=2000, help="runs per loop")
    args.add_argument("--rounds", type=int, default=7, help="C++ and Python loops, alternated")
    opts = args.parse_args()

    vendor = subprocess.Popen([sys.executable, "-c", VENDOR], stdout=subprocess.PIPE, text=True)
    try:
        port = int(vendor.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as data, \
                integration.open(data_dir=data, egress_allow=["127.0.0.0/8"], start_workers=False) as p:
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

            def from_python(n: int) -> float:
                start = time.perf_counter_ns()
                for _ in range(n):
                    t.execute(connection_id=conn, operation="sms.send")
                return (time.perf_counter_ns() - start) / n / 1000

            def from_cpp(n: int) -> float:
                return integration._execute_from_cpp(t, conn, "sms.send", n) / n / 1000

            from_python(min(opts.iterations, 200))  # warm up: pooled connection, caches, SQLite pages
            cpp, py, diff = [], [], []
            for _ in range(opts.rounds):
                c = from_cpp(opts.iterations)
                q = from_python(opts.iterations)
                cpp.append(c)
                py.append(q)
                diff.append(q - c)
    finally:
        vendor.kill()
        vendor.wait()

    print(f"{opts.rounds} rounds of {opts.iterations} runs, durable SQLite, keep-alive vendor on loopback")
    print(f"  from C++    : median {statistics.median(cpp):8.1f} us/run   (rounds: {' '.join(f'{x:.1f}' for x in cpp)})")
    print(f"  from Python : median {statistics.median(py):8.1f} us/run   (rounds: {' '.join(f'{x:.1f}' for x in py)})")
    print(f"  binding adds: median {statistics.median(diff):8.1f} us/run   (per round: {' '.join(f'{x:.1f}' for x in diff)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
