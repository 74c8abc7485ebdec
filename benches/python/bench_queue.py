"""shmkit.Queue beside multiprocessing.Queue and Pipe, in one run.

    python benches/python/bench_queue.py [--n N] [--shm-n SHM_N]

(with the package installed: `pip install ./python`). Separate processes started with
subprocess (shmkit) or the spawn context (multiprocessing):

- throughput: small objects (an int) through one queue with 1 producer x 1 consumer and
  2 x 2, messages per second: N in total through multiprocessing.Queue, SHM_N (5 N by
  default: N takes shmkit only ~0.1 s, a few scheduler time slices) through shmkit. Each
  process reports `time.perf_counter()` (CLOCK_MONOTONIC, one clock for all processes) at
  the end of its loop; the rate is the messages over the time from the start signal to the
  last report, so interpreter start and exit are not counted on either side;
- the same throughput through `put_bytes` / `get_bytes` (8-byte messages, no pickling: the
  SimpleQueue-style bytes-only path), against the same run's multiprocessing.Queue;
- round trip: ping-pong of an int over two shmkit queues, beside a multiprocessing.Pipe
  (duplex) ping-pong, microseconds per round trip.

Prints a Markdown table row: shmkit and multiprocessing figures and their ratios.
"""

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time

import shmkit

# The loops run inside a function (local variables), as multiprocessing's `_mp_put` /
# `_mp_get` targets do; at module level every iteration would store a global.
PUT = """
import sys, time, shmkit
def main(q, n):
    sys.stdin.readline()
    for i in range(n):
        q.put(i)
    print(time.perf_counter(), flush=True)
main(shmkit.Queue.open(sys.argv[1]), int(sys.argv[2]))
"""
GET = """
import sys, time, shmkit
def main(q, n):
    sys.stdin.readline()
    for _ in range(n):
        q.get()
    print(time.perf_counter(), flush=True)
main(shmkit.Queue.open(sys.argv[1]), int(sys.argv[2]))
"""
# The bytes-only fast path (SimpleQueue-style): 8-byte messages, no pickling.
PUT_BYTES = """
import sys, time, shmkit
def main(q, n):
    msg = b"12345678"
    sys.stdin.readline()
    for i in range(n):
        q.put_bytes(msg)
    print(time.perf_counter(), flush=True)
main(shmkit.Queue.open(sys.argv[1]), int(sys.argv[2]))
"""

GET_BYTES = """
import sys, time, shmkit
def main(q, n):
    sys.stdin.readline()
    for _ in range(n):
        q.get_bytes()
    print(time.perf_counter(), flush=True)
main(shmkit.Queue.open(sys.argv[1]), int(sys.argv[2]))
"""

PONG = """
import sys, time, shmkit
def main(a, b, n):
    for _ in range(n):
        b.put(a.get())
main(shmkit.Queue.open(sys.argv[1]), shmkit.Queue.open(sys.argv[2]), int(sys.argv[3]))
"""


def shm_throughput(k, n, codes=(PUT, GET)):
    name = f"bench-q-{os.getpid()}"
    q = shmkit.Queue.create(name, 1 << 16)
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, name, str(n // k)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for code in codes
            for _ in range(k)
        ]
        time.sleep(0.5)  # imports done
        t = time.perf_counter()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        ends = [float(p.stdout.readline()) for p in procs]
        for p in procs:
            assert p.wait() == 0
        return (n // k * k) / (max(ends) - t)
    finally:
        q.unlink()


def _mp_put(q, n, ev, ends):
    ev.wait()
    for i in range(n):
        q.put(i)
    ends.put(time.perf_counter())


def _mp_get(q, n, ev, ends):
    ev.wait()
    for _ in range(n):
        q.get()
    ends.put(time.perf_counter())


def mp_throughput(k, n):
    ctx = mp.get_context("spawn")
    q, ev, ends = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=f, args=(q, n // k, ev, ends)) for f in (_mp_put, _mp_get) for _ in range(k)]
    for p in procs:
        p.start()
    time.sleep(0.5)
    t = time.perf_counter()
    ev.set()
    end = max(ends.get() for _ in procs)
    for p in procs:
        p.join()
        assert p.exitcode == 0
    return (n // k * k) / (end - t)


def shm_round_trip(n):
    a_name, b_name = f"bench-qa-{os.getpid()}", f"bench-qb-{os.getpid()}"
    a, b = shmkit.Queue.create(a_name, 4096), shmkit.Queue.create(b_name, 4096)
    try:
        p = subprocess.Popen([sys.executable, "-c", PONG, a_name, b_name, str(n + 10)])
        for i in range(10):  # warm-up: the child is running
            a.put(i)
            b.get()
        t = time.perf_counter()
        for i in range(n):
            a.put(i)
            b.get()
        dt = time.perf_counter() - t
        assert p.wait() == 0
        return dt / n * 1e6
    finally:
        a.unlink()
        b.unlink()


def _mp_pong(conn, n):
    for _ in range(n):
        conn.send(conn.recv())


def mp_round_trip(n):
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    p = ctx.Process(target=_mp_pong, args=(there, n + 10))
    p.start()
    for i in range(10):
        here.send(i)
        here.recv()
    t = time.perf_counter()
    for i in range(n):
        here.send(i)
        here.recv()
    dt = time.perf_counter() - t
    p.join()
    return dt / n * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--shm-n", type=int, default=None, help="messages through shmkit (5 N)")
    args = ap.parse_args()
    n = args.n
    shm_n = args.shm_n or 5 * n
    rows = []
    for k in (1, 2):
        s, m = shm_throughput(k, shm_n), mp_throughput(k, n)
        b = shm_throughput(k, shm_n, (PUT_BYTES, GET_BYTES))
        rows.append(f"{k}x{k}: shmkit {s / 1e3:.0f} k/s, mp.Queue {m / 1e3:.0f} k/s, {s / m:.1f}x")
        rows.append(f"{k}x{k} put_bytes/get_bytes: {b / 1e3:.0f} k/s ({b / m:.1f}x mp.Queue)")
    rt_n = max(1000, n // 20)
    s, m = shm_round_trip(rt_n), mp_round_trip(rt_n)
    rows.append(f"round trip: shmkit {s:.1f} us, mp.Pipe {m:.1f} us, {m / s:.1f}x")
    print("| " + " | ".join(rows) + " |")


if __name__ == "__main__":
    main()
