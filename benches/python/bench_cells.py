"""shmkit's Python Value / Array beside multiprocessing's, in one run.

    python benches/python/bench_cells.py [--seconds S]

(with the package installed: `pip install ./python`). One process, uncontended, ns per
operation, for each of shmkit and multiprocessing (spawn context, `lock=True`):

- locked increment: shmkit `v += 1` on a locked `Value('q')` (one call: the lock taken, the
  value read and written, the lock released), and multiprocessing's idiom `with
  v.get_lock(): v.value += 1` on both (`multiprocessing.Value` has no other correct
  increment; every shmkit ratio is against this one measurement of it);
- atomic increment: shmkit `v += 1` (one atomic add) and `v.fetch_add(1)` (the same, making
  the previous value's int) on an atomic `Value('q')`;
- Array element get `a[i]` and set `a[i] = x` on a locked `Array('d', 1024)` (both);

Each cell is shmkit / multiprocessing. And, as floors of the same run, two empty Python method calls, and the locked increment's
own shape on in-process C objects: `with threading.Lock(): o.value += 1` (`o` a `__slots__`
object), what no shared-memory value can beat. Prints a Markdown row.
"""

import argparse
import multiprocessing as mp
import os
import sys
import time

import shmkit


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


def locked_increment(v):
    return locked_increment_on(v.get_lock(), v)


def iadd_loop(v):
    def run(n):
        w = v
        for _ in range(n):
            w += 1

    return run


def fetch_add_loop(v):
    fa = v.fetch_add

    def run(n):
        for _ in range(n):
            fa(1)

    return run


def get_loop(a):
    def run(n):
        for _ in range(n):
            a[7]

    return run


def set_loop(a):
    def run(n):
        for _ in range(n):
            a[7] = 1.5

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


def c_locked_increment():
    import threading

    class O:
        __slots__ = ("value",)

    o = O()
    o.value = 0
    return locked_increment_on(threading.Lock(), o)


def locked_increment_on(lock, v):
    def run(n):
        for _ in range(n):
            with lock:
                v.value += 1

    return run


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    s = p.parse_args().seconds
    tag = f"bench-py-{os.getpid()}"
    ctx = mp.get_context("spawn")
    v = shmkit.Value("q", 0, name=tag + "-v")
    va = shmkit.Value("q", 0, name=tag + "-va", mode="atomic")
    a = shmkit.Array("d", 1024, name=tag + "-a")
    try:
        mv, ma = ctx.Value("q", 0), ctx.Array("d", 1024)
        mp_inc = per_op(locked_increment(mv), s)
        r = {
            "locked": (per_op(iadd_loop(v), s), mp_inc),
            "idiom": (per_op(locked_increment(v), s), mp_inc),
            "atomic": (per_op(iadd_loop(va), s), mp_inc),
            "fetch_add": (per_op(fetch_add_loop(va), s), mp_inc),
            "get": (per_op(get_loop(a), s), per_op(get_loop(ma), s)),
            "set": (per_op(set_loop(a), s), per_op(set_loop(ma), s)),
        }
        floor = per_op(noop_loop(), s) * 1e9
        c_floor = per_op(c_locked_increment(), s) * 1e9
    finally:
        for o in (v, va, a):
            o.unlink()
    print(f"python {sys.version.split()[0]}")
    print(
        "| locked `v += 1` | locked `with v.get_lock(): v.value += 1` | atomic `v += 1` "
        "| atomic `v.fetch_add(1)` | Array get | Array set "
        "| floor: 2 empty method calls | floor: `with threading.Lock(): o.value += 1` |"
    )
    print("|---|---|---|---|---|---|---|---|")
    cells = [
        f"{x * 1e9:.0f} / {y * 1e9:.0f} ns ({y / x:.1f}×)"
        for x, y in (r[k] for k in ("locked", "idiom", "atomic", "fetch_add", "get", "set"))
    ]
    print("| " + " | ".join(cells) + f" | {floor:.0f} ns | {c_floor:.0f} ns |")


if __name__ == "__main__":
    main()
