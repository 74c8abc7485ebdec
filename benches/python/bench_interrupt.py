"""How long Ctrl-C takes to interrupt each blocking call of shmkit's Python package (issue 13:
"Ctrl-C interrupts a blocking call within 100 ms").

    python benches/python/bench_interrupt.py [--reps N] [--pause S]

(with the package installed: `pip install ./python`). For each blocking call, a separate
Python process (started with subprocess, not forked) opens the object by name and blocks in
the call with no timeout, `--reps` times: before each call it prints "calling"; this process
reads that, sleeps `--pause` seconds (so that the child is inside the call), records
`time.monotonic()` and sends SIGINT. The child catches `KeyboardInterrupt` and prints its
`time.monotonic()` (the same system-wide clock); the difference is the latency. Prints one
Markdown table (p50 and max per call, in ms) and whether every latency is under 100 ms.
Every object is unlinked at the end, also on failure.

The calls: Lock / RLock / Semaphore / BoundedSemaphore `acquire()` (the locks held by this
process, the semaphores at 0), `Event.wait()`, `Condition.wait()`, `Barrier.wait()` (2
parties, the child alone; it resets the barrier after each interrupt), `Queue.get()` and
`get_bytes()` on an empty queue, `Queue.put()` on a full one, `FrameSubscriber.recv()` and
`latest()` with no frame published, a seqlock `Value.wait_changed(seq)` with no write, and a
cell's `get_lock().acquire()` while this process holds that lock.
"""

import argparse
import os
import queue
import select
import signal
import statistics
import subprocess
import sys
import time

import shmkit

CHILD = """
import sys, time, shmkit
name, reps = sys.argv[1], int(sys.argv[2])
{setup}
for _ in range(reps):
    {before}
    print("calling", flush=True)
    try:
        {call}
        print("returned", flush=True)
    except KeyboardInterrupt:
        print(time.monotonic(), flush=True)
    {after}
"""


def _held(obj):
    obj.acquire()
    return obj


def _full_queue(name):
    q = shmkit.Queue.create(name, 256)
    while True:
        try:
            q.put_nowait(0)
        except queue.Full:
            return q


def _held_cell_lock(name):
    v = shmkit.Value.create(name, "q", 0)
    v.get_lock().acquire()
    return v


# label: (parent's setup of the object named `name`, child's setup, call, before, after)
CASES = {
    "Lock.acquire()": (
        lambda n: _held(shmkit.Lock.create(n)),
        "obj = shmkit.Lock.open(name)", "obj.acquire()", "", "",
    ),
    "RLock.acquire()": (
        lambda n: _held(shmkit.RLock.create(n)),
        "obj = shmkit.RLock.open(name)", "obj.acquire()", "", "",
    ),
    "Semaphore.acquire()": (
        lambda n: shmkit.Semaphore.create(n, 0),
        "obj = shmkit.Semaphore.open(name)", "obj.acquire()", "", "",
    ),
    "BoundedSemaphore.acquire()": (
        lambda n: shmkit.BoundedSemaphore.create(n, 0),
        "obj = shmkit.BoundedSemaphore.open(name)", "obj.acquire()", "", "",
    ),
    "Event.wait()": (
        shmkit.Event.create, "obj = shmkit.Event.open(name)", "obj.wait()", "", "",
    ),
    "Condition.wait()": (
        shmkit.Condition.create,
        "obj = shmkit.Condition.open(name)", "obj.wait()", "obj.acquire()",
        "obj.release()  # wait() took the lock back before raising",
    ),
    "Barrier.wait()": (
        lambda n: shmkit.Barrier.create(n, 2),
        "obj = shmkit.Barrier.open(name)", "obj.wait()", "",
        "obj.reset()  # the interrupt broke it",
    ),
    "Queue.get() (empty)": (
        lambda n: shmkit.Queue.create(n, 4096),
        "obj = shmkit.Queue.open(name)", "obj.get()", "", "",
    ),
    "Queue.get_bytes() (empty)": (
        lambda n: shmkit.Queue.create(n, 4096),
        "obj = shmkit.Queue.open(name)", "obj.get_bytes()", "", "",
    ),
    "Queue.put() (full)": (
        _full_queue, "obj = shmkit.Queue.open(name)", "obj.put(0)", "", "",
    ),
    "FrameSubscriber.recv()": (
        lambda n: shmkit.FramePublisher.create(n, slots=2, max_bytes=64),
        "obj = shmkit.FrameSubscriber(name)", "obj.recv()", "", "",
    ),
    "FrameSubscriber.latest()": (
        lambda n: shmkit.FramePublisher.create(n, slots=2, max_bytes=64),
        "obj = shmkit.FrameSubscriber(name)", "obj.latest()", "", "",
    ),
    "Value.wait_changed() (seqlock)": (
        lambda n: shmkit.Value.create(n, "q", 0, mode="seqlock"),
        "obj = shmkit.Value.open(name)", "obj.wait_changed(obj.sequence)", "", "",
    ),
    "Value.get_lock().acquire() (held by another process)": (
        _held_cell_lock,
        "obj = shmkit.Value.open(name).get_lock()", "obj.acquire()", "", "",
    ),
}


def _default_sigint():
    # SIGINT as a terminal gives it: a shell's background job starts with SIGINT ignored,
    # and a Python started so has no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Child:
    def __init__(self, code, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            preexec_fn=_default_sigint,
        )
        self.buf = b""

    def line(self, timeout=30.0):
        """The child's next line; RuntimeError if none comes within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise RuntimeError(f"no line from the child within {timeout} s")
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                self.proc.wait()
                raise RuntimeError(
                    f"child exited ({self.proc.returncode}): {self.proc.stderr.read().decode()}"
                )
            self.buf += chunk
        out, self.buf = self.buf.split(b"\n", 1)
        return out.decode()

    def finish(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def measure(label, name, reps, pause):
    make, setup, call, before, after = CASES[label]
    obj = make(name)
    child = Child(CHILD.format(setup=setup, call=call, before=before, after=after), name, reps)
    try:
        lat = []
        for _ in range(reps):
            if (said := child.line()) != "calling":
                raise RuntimeError(f"{label}: the child said {said!r}")
            time.sleep(pause)
            t = time.monotonic()
            child.proc.send_signal(signal.SIGINT)
            said = child.line(timeout=10.0)
            if said == "returned":
                raise RuntimeError(f"{label}: the call returned instead of blocking")
            lat.append((float(said) - t) * 1e3)
        if child.proc.wait(timeout=30) != 0:
            raise RuntimeError(f"{label}: child failed: {child.proc.stderr.read().decode()}")
        return lat
    finally:
        child.finish()
        if label.startswith("Value.get_lock"):
            obj.get_lock().release()
        elif label.startswith(("Lock.", "RLock.")):
            obj.release()
        obj.unlink()
        if hasattr(obj, "close"):
            obj.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5, help="interrupts per call")
    p.add_argument("--pause", type=float, default=0.2,
                   help="seconds between the child's 'calling' and the SIGINT")
    a = p.parse_args()
    prefix = f"bench-int-{os.getpid()}"
    rows = []
    for i, label in enumerate(CASES):
        lat = measure(label, f"{prefix}-{i}", a.reps, a.pause)
        rows.append((label, statistics.median(lat), max(lat)))
    worst = max(r[2] for r in rows)
    print(f"python {sys.version.split()[0]}, {a.reps} interrupts per call, SIGINT "
          f"{a.pause * 1e3:.0f} ms after the child says it is about to block")
    print("| blocking call | p50 (ms) | max (ms) |")
    print("|---|---|---|")
    for label, p50, mx in rows:
        print(f"| `{label}` | {p50:.1f} | {mx:.1f} |")
    print(f"all under 100 ms: {'yes' if worst < 100 else 'NO'} (worst {worst:.1f} ms)")


if __name__ == "__main__":
    main()
