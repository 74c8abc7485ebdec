"""shmkit's Python ShareableList beside CPython's `multiprocessing.shared_memory.ShareableList`,
in one run.

    python benches/python/bench_list.py [--seconds S]

(with the package installed: `pip install ./python`). For each of shmkit and CPython, a list
`[12345, 1.5, "sixteen bytes!!!", b"eight by"]`, per operation in one process:

- get int: `sl[0]`; get str: `sl[2]`;
- set int: `sl[0] = 7`; set str: `sl[2] = "sixteen bytes!!!"`;

and, as the floor of the same run, `lst[0]` on a plain Python list (ns). Prints a Markdown
table row: ns per op for shmkit / CPython and the ratio (CPython's time / shmkit's).
"""

import argparse
import os
import time
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import ShareableList as Stock

import shmkit

ITEMS = [12345, 1.5, "sixteen bytes!!!", b"eight by"]


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


def get_loop(sl, i):
    def run(n):
        for _ in range(n):
            sl[i]

    return run


def set_loop(sl, i, v):
    def run(n):
        for _ in range(n):
            sl[i] = v

    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    s = ap.parse_args().seconds
    name = f"bench-pylist-{os.getpid()}"
    mine = shmkit.ShareableList(ITEMS, name=name)
    theirs = Stock(ITEMS, name=name + "-stock")
    try:
        ops = [
            ("get int", lambda sl: get_loop(sl, 0)),
            ("get str", lambda sl: get_loop(sl, 2)),
            ("set int", lambda sl: set_loop(sl, 0, 7)),
            ("set str", lambda sl: set_loop(sl, 2, "sixteen bytes!!!")),
        ]
        cells = []
        for label, make in ops:
            a = per_op(make(mine), s) * 1e9
            b = per_op(make(theirs), s) * 1e9
            cells.append(f"{a:.0f} / {b:.0f} ns ({b / a:.1f}×)")
        floor = per_op(get_loop(list(ITEMS), 0), s) * 1e9
        print("| get int | get str | set int | set str | floor: list[0] |")
        print(f"| {' | '.join(cells)} | {floor:.0f} ns |")
    finally:
        mine.unlink()
        theirs.shm.close()
        theirs.shm.unlink()


if __name__ == "__main__":
    main()
