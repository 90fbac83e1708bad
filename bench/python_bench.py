#!/usr/bin/env python3
"""What the Python binding adds to a call: the same calls made from Python and from C++ (loops in
the module, integration._execute_from_cpp / _get_run_from_cpp), in one process, on one platform,
timed the same way from Python, in interleaved blocks.

- execute: a governed run (API-key credential, egress check, breaker, pooled libcurl) against one
  keep-alive vendor on loopback (a separate process), recorded write-behind with deferred
  durability, so that no fsync sits in the timed path of either side; each side then reads what a
  caller typically reads, the run's status and the response's status.
- get_run: a cheap read (one run by id from SQLite): the binding's conversions (arguments in, the
  GIL released and taken back, the run out with datetimes) against the read alone; each side
  reads the run's status and its attempts.
- attribute: `Tenant.tenant_id`, the smallest call through pybind11 (the dispatch floor).

Results are read on both sides so that a result that builds its values when they are read is
charged for them. Each round times one block of calls from each side (which side goes first alternates) and takes
the difference per call; the figures are medians over the rounds, of the wall clock and of the
calling thread's CPU time (the binding's work is all on that thread), with the mean difference and
its standard error. A run's CPU drifts over seconds (the store's state), so many short rounds
(e.g. 1,000 of 20 runs) pin the difference down better than a few long ones.

Usage: PYTHONPATH=build/python /usr/bin/python3 bench/python_bench.py [--rounds R] [--runs N] [--reads N]
(build with -DINTEGRATION_BUILD_PYTHON=ON; figures in bench/README.md, "Python binding")
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import integration

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from governed_run import connect  # noqa: E402  (the example's set-up: provider, client, credential, connection)

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

Block = Callable[[int], int]


def timed(block: Block, n: int) -> tuple[float, float]:
    """Microseconds per call of `block(n)`: wall clock and the calling thread's CPU. The block
    returns how many of its results read as expected: all of them."""
    start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
    ok = block(n)
    elapsed, elapsed_cpu = time.perf_counter_ns() - start, time.thread_time_ns() - start_cpu
    assert ok == n, f"{ok} of {n} results read as expected"
    return elapsed / n / 1000, elapsed_cpu / n / 1000


def compare(name: str, python: Block, cpp: Block, n: int, rounds: int, baseline: str = "from C++") -> None:
    python(max(1, n // 5))  # warm up both: pooled connection, caches, SQLite pages
    cpp(max(1, n // 5))
    py_side, cpp_side = [], []
    for r in range(rounds):
        if r % 2:
            cpp_side.append(timed(cpp, n))
            py_side.append(timed(python, n))
        else:
            py_side.append(timed(python, n))
            cpp_side.append(timed(cpp, n))
    median = statistics.median
    print(f"{name}: {rounds} rounds of {n} calls from each side (us per call, medians over the rounds)")
    for side, xs in ((baseline, cpp_side), ("from Python", py_side)):
        walls = [w for w, _ in xs]
        print(f"  {side:<12}: wall {median(walls):8.2f} (rounds {min(walls):.2f}-{max(walls):.2f})   "
              f"calling thread's CPU {median([c for _, c in xs]):8.2f}")
    wall = [p[0] - c[0] for p, c in zip(py_side, cpp_side)]
    cpu = [p[1] - c[1] for p, c in zip(py_side, cpp_side)]
    # The standard error of the mean says how far the figure may be off from the rounds' noise.
    se = statistics.stdev(cpu) / len(cpu) ** 0.5 if len(cpu) > 1 else float("nan")
    print(f"  binding adds: {median(cpu):.2f} us of CPU per call ({median(wall):.2f} us wall-clock; "
          f"per-round CPU difference {min(cpu):.2f} to {max(cpu):.2f}; mean {statistics.mean(cpu):.2f} +- {se:.2f})")


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--rounds", type=int, default=20, help="blocks from each side, interleaved")
    args.add_argument("--runs", type=int, default=500, help="governed runs per block")
    args.add_argument("--reads", type=int, default=5000, help="reads (and attribute gets) per block")
    opts = args.parse_args()

    vendor = subprocess.Popen([sys.executable, "-c", VENDOR], stdout=subprocess.PIPE, text=True)
    try:
        assert vendor.stdout
        url = f"http://127.0.0.1:{int(vendor.stdout.readline())}"
        with tempfile.TemporaryDirectory() as data, \
                integration.open(data_dir=data, egress_allow=["127.0.0.0/8"], start_workers=False,
                                 durable=False, write_behind=True) as p:
            t = p.tenant("bench")
            conn = connect(t, url)["connection_id"]
            run_id = t.execute(connection_id=conn, operation="sms.send")["run_id"]
            for _ in range(1000):  # recorded behind the call: wait for it (get_run reads it)
                try:
                    t.get_run(run_id)
                    break
                except integration.NotFound:
                    time.sleep(0.01)
            print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

            def execute_py(n: int) -> int:
                ok = 0
                for _ in range(n):
                    run = t.execute(connection_id=conn, operation="sms.send")
                    ok += run["status"] == "Completed" and run["response"]["status"] == 200
                return ok

            def get_run_py(n: int) -> int:
                ok = 0
                for _ in range(n):
                    run = t.get_run(run_id)
                    ok += run["status"] == "Completed" and len(run["run_attempts"]) > 0
                return ok

            def attribute_py(n: int) -> int:
                for _ in range(n):
                    t.tenant_id
                return n

            def loop_only(n: int) -> int:
                for _ in range(n):
                    pass
                return n

            compare("execute", execute_py, lambda n: integration._execute_from_cpp(t, conn, "sms.send", n),
                    opts.runs, opts.rounds)
            compare("get_run", get_run_py, lambda n: integration._get_run_from_cpp(t, run_id, n),
                    opts.reads, opts.rounds)
            compare("attribute", attribute_py, loop_only, opts.reads, opts.rounds, baseline="empty loop")
            print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        vendor.kill()
        vendor.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
