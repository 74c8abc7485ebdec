"""A frame reaching a Python subscriber as a numpy array: 64 KiB against 8 MiB (issue 13).

    python benches/python/bench_frames.py [--frames N] [--rounds R]

(with the package installed: `pip install ./python numpy`). A Python publisher process loans
a slot, writes its first and last byte and publishes it; this process receives it
(`FrameSubscriber.recv`), takes `frame.array()` (zero-copy numpy view), reads both bytes,
records `time.monotonic_ns() - frame.mono_ns` (publish to numpy), releases the frame and
acknowledges with a `shmkit.Event`, one frame at a time. Reports the median and p99 per size,
the 8 MiB / 64 KiB ratio (goal: at most 2), and as the floor of the same run a 0-byte frame.
Prints a Markdown table row.

As `shmkit bench frames` does, the rows are measured in rounds (three by default), each round
running every row once, and each row reports its best round (lowest median): this VM changes
speed for minutes at a time, and a slow spell that hits one row of a back-to-back run (the
8 MiB row alone, say) makes the ratio about the VM, not about the sizes.
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
    warm = lat[len(lat) // 10 :]
    warm.sort()
    return warm[len(warm) // 2] / 1e3, warm[int(len(warm) * 0.99)] / 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1000, help="frames per row and round")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    sizes = (0, 64 << 10, 8 << 20)
    rounds = [[run(size, a.frames) for size in sizes] for _ in range(a.rounds)]
    floor, small, big = (min(r[k] for r in rounds) for k in range(len(sizes)))
    ratio = big[0] / small[0]
    print("| 0 B (floor) p50 / p99 µs | 64 KiB p50 / p99 µs | 8 MiB p50 / p99 µs | 8 MiB / 64 KiB (p50) |")
    print("|---|---|---|---|")
    print(
        f"| {floor[0]:.1f} / {floor[1]:.1f} | {small[0]:.1f} / {small[1]:.1f} | "
        f"{big[0]:.1f} / {big[1]:.1f} | {ratio:.2f} |"
    )


if __name__ == "__main__":
    main()
