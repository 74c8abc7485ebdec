"""A frame reaching a Python subscriber as a numpy array: 64 KiB against 8 MiB (issue 13).

    python benches/python/bench_frames.py [--frames N] [--blocks B]

(with the package installed: `pip install ./python numpy`). A Python publisher process loans
a slot, writes its first and last byte and publishes it; this process receives it
(`FrameSubscriber.recv`), takes `frame.array()` (zero-copy numpy view), reads both bytes,
records `time.monotonic_ns() - frame.mono_ns` (publish to numpy), releases the frame and
acknowledges with a `shmkit.Event`, one frame at a time. Reports the median and p99 per size,
the 8 MiB / 64 KiB ratio (goal: at most 2), and as the floor of the same run a 0-byte frame.
Prints a Markdown table row.

The rows are measured in alternating blocks (ten by default, a fresh publisher process each,
the order of the sizes reversed every other block) and each row pools its blocks: this VM
changes speed for minutes at a time, and a receive that finds the subscriber still spinning
is several microseconds faster than one that wakes it from the futex, so rows measured back
to back (or each taking its best run) compared VM states, not sizes (one such run gave 3.5 µs
for 64 KiB against 7.3 µs for 8 MiB, and 7.7 against 7.3 in the next).
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np

import shmkit

PUBLISHER = """
import sys, shmkit
name, ack, size, n = sys.argv[1], shmkit.Event.open(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ready = shmkit.Event.open(sys.argv[5])
pub = shmkit.FramePublisher.open(name)
ready.set()  # attached
for i in range(n):
    loan = pub.loan()
    if size:
        a = loan.array()
        a[0] = a[size - 1] = i & 0xFF
        del a
    loan.publish(size)
    ack.wait(); ack.clear()
pub.close()
"""


def run(size, frames):
    tag = f"bench-frames-{os.getpid()}-{size}"
    name, ack_name = tag, tag + "-ack"
    creator = shmkit.FramePublisher.create(name, slots=4, max_bytes=max(size, 1), policy="block")
    ack = shmkit.Event.create(ack_name)
    ready = shmkit.Event.create(tag + "-ready")
    sub = shmkit.FrameSubscriber(name)
    creator.close()
    child = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, name, ack_name, str(size), str(frames), tag + "-ready"]
    )
    lat = []
    try:
        assert ready.wait(30)
        for i in range(frames):
            f = sub.recv(timeout=30)
            a = f.array()
            if size:
                assert a[0] == a[size - 1] == i & 0xFF
            lat.append(time.monotonic_ns() - f.mono_ns)
            del a
            f.release()
            ack.set()
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
        sub.close()
        creator.unlink()
        ack.unlink()
        ready.unlink()
    return lat[len(lat) // 10 :]  # the first tenth warms up


def percentiles(lat):
    """(p50, p99) in µs."""
    lat = sorted(lat)
    return lat[len(lat) // 2] / 1e3, lat[int(len(lat) * 0.99)] / 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300, help="frames per row and block")
    ap.add_argument("--blocks", type=int, default=10)
    a = ap.parse_args()
    sizes = [0, 64 << 10, 8 << 20]
    pooled = {size: [] for size in sizes}
    for b in range(a.blocks):
        for size in sizes if b % 2 == 0 else reversed(sizes):
            pooled[size] += run(size, a.frames)
    floor, small, big = (percentiles(pooled[size]) for size in sizes)
    ratio = big[0] / small[0]
    print("| 0 B (floor) p50 / p99 µs | 64 KiB p50 / p99 µs | 8 MiB p50 / p99 µs | 8 MiB / 64 KiB (p50) |")
    print("|---|---|---|---|")
    print(
        f"| {floor[0]:.1f} / {floor[1]:.1f} | {small[0]:.1f} / {small[1]:.1f} | "
        f"{big[0]:.1f} / {big[1]:.1f} | {ratio:.2f} |"
    )


if __name__ == "__main__":
    main()
