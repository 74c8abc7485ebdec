"""shmkit's Python sync primitives beside multiprocessing's, in one run.

    python benches/python/bench_sync.py [--seconds S]

(with the package installed: `pip install ./python`). Measures, for each of shmkit and
multiprocessing (spawn context):

- lock: uncontended `acquire()` + `release()` in one process (ns per pair);
- event round trip: two processes ping-pong through two Events (`set` / `wait` / `clear`),
  microseconds per round trip;

and, as the floor of the same run, an empty Python method call (ns) and a one-byte
`os.pipe` round trip between two processes (µs). Prints a Markdown table row.
"""

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time

import shmkit

PONG = """
import sys, shmkit
ping, pong = shmkit.Event.open(sys.argv[1]), shmkit.Event.open(sys.argv[2])
n = int(sys.argv[3])
for _ in range(n):
    ping.wait(); ping.clear(); pong.set()
"""


def per_op(fn, seconds):
    """Run fn(n) with growing n until it takes `seconds`; seconds per op."""
    n = 1000
    while True:
        t = time.perf_counter()
        fn(n)
        dt = time.perf_counter() - t
        if dt >= seconds:
            return dt / n
        n = int(n * max(2.0, min(10.0, seconds / max(dt, 1e-6) * 1.2)))


def lock_loop(lock):
    acquire, release = lock.acquire, lock.release

    def run(n):
        for _ in range(n):
            acquire()
            release()

    return run


def noop_loop():
    class C:
        def m(self):
            pass

    m = C().m

    def run(n):
        for _ in range(n):
            m()
            m()

    return run


def shmkit_event_rt(seconds):
    tag = f"bench-py-{os.getpid()}"
    ping, pong = shmkit.Event.create(tag + "-ping"), shmkit.Event.create(tag + "-pong")
    try:
        def run(n):
            child = subprocess.Popen([sys.executable, "-c", PONG, ping.name, pong.name, str(n)])
            for _ in range(n):
                ping.set()
                pong.wait()
                pong.clear()
            assert child.wait() == 0

        return per_op(run, seconds)
    finally:
        ping.unlink()
        pong.unlink()


def _mp_pong(ping, pong, n):
    for _ in range(n):
        ping.wait()
        ping.clear()
        pong.set()


def mp_event_rt(seconds):
    ctx = mp.get_context("spawn")

    def run(n):
        ping, pong = ctx.Event(), ctx.Event()
        child = ctx.Process(target=_mp_pong, args=(ping, pong, n))
        child.start()
        for _ in range(n):
            ping.set()
            pong.wait()
            pong.clear()
        child.join()

    return per_op(run, seconds)


PIPE_PONG = """
import os, sys
r, w, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    os.read(r, 1)
    os.write(w, b"x")
"""


def pipe_rt(seconds):
    def run(n):
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        child = subprocess.Popen(
            [sys.executable, "-c", PIPE_PONG, str(r1), str(w2), str(n)], pass_fds=(r1, w2)
        )
        for _ in range(n):
            os.write(w1, b"x")
            os.read(r2, 1)
        assert child.wait() == 0
        for fd in (r1, w1, r2, w2):
            os.close(fd)

    return per_op(run, seconds)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    s = p.parse_args().seconds
    name = f"bench-py-{os.getpid()}-lock"
    lock = shmkit.Lock.create(name)
    try:
        shm_lock = per_op(lock_loop(lock), s) * 1e9
    finally:
        lock.unlink()
    mp_lock = per_op(lock_loop(mp.get_context("spawn").Lock()), s) * 1e9
    floor_call = per_op(noop_loop(), s) * 1e9
    shm_rt = shmkit_event_rt(s) * 1e6
    mp_rt = mp_event_rt(s) * 1e6
    floor_rt = pipe_rt(s) * 1e6
    print(f"python {sys.version.split()[0]}")
    print(
        "| lock acquire+release: shmkit / multiprocessing (ratio) | floor: 2 empty method calls "
        "| Event round trip: shmkit / multiprocessing (ratio) | floor: pipe round trip |"
    )
    print("|---|---|---|---|")
    print(
        f"| {shm_lock:.0f} / {mp_lock:.0f} ns ({mp_lock / shm_lock:.2f}×) | {floor_call:.0f} ns "
        f"| {shm_rt:.1f} / {mp_rt:.1f} µs ({mp_rt / shm_rt:.2f}×) | {floor_rt:.1f} µs |"
    )


if __name__ == "__main__":
    main()
