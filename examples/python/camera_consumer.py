#!/usr/bin/env python3
"""Consume the Rust camera demo's frames in Python, zero-copy, as numpy arrays.

Start the producer (it creates the frame channel ``shmkit-camera`` and waits for consumers):

    cargo run --release --example camera -- --role producer --wait-consumers 1
    python3 examples/python/camera_consumer.py            # another terminal

(``pip install ./python numpy`` first.) Each frame arrives as a read-only ``(height, width,
3)`` uint8 view of the shared slot; the slot stays pinned while the view lives. Every
``--check-every``-th frame's checksum (the demo's rotate-xor over 64-bit words, stored in the
frame header) is verified. Every second: frames, fps, publish-to-receive latency; at the end
(when the producer exits and removes the channel) a summary. Exit 1 on checksum errors.
"""

import argparse
import struct
import sys
import time

import numpy as np

import shmkit

# The demo's `FrameInfo` (repr(C)): width, height, stride, format (u32), index, checksum (u64).
FRAME_INFO = struct.Struct("<IIIIQQ")
SEED = 0x9E3779B97F4A7C15
MASK = (1 << 64) - 1


def checksum(payload):
    """The demo's checksum: h = rotl(h, 5) ^ word over the little-endian 64-bit words, then
    the same over the remaining bytes. Linear over GF(2), so it is vectorised: word i (of n)
    ends up rotated by 5 * (n - 1 - i) bits, the seed by 5 * n."""
    b = np.frombuffer(payload, dtype=np.uint8)
    n = len(b) // 8
    words = b[: n * 8].view("<u8")
    k = ((5 * (n - 1 - np.arange(n, dtype=np.uint64))) % 64).astype(np.uint64)
    rotated = np.where(k == 0, words, (words << k) | (words >> ((64 - k) % 64)))
    h = int(np.bitwise_xor.reduce(rotated)) if n else 0
    s = (5 * n) % 64
    h ^= ((SEED << s) | (SEED >> (64 - s))) & MASK if s else SEED
    for x in b[n * 8 :]:
        h = (((h << 5) | (h >> 59)) & MASK) ^ int(x)
    return h


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="shmkit-camera", help="the frame channel (default %(default)s)")
    ap.add_argument("--check-every", type=int, default=1, help="verify every N-th checksum (0: none)")
    ap.add_argument("--attach-timeout", type=float, default=30.0, help="seconds to wait for the channel")
    a = ap.parse_args(argv)

    # The name may also still hold the channel of a killed run, whose publisher is dead (recv
    # raises EOFError at once) until the next producer replaces it with a new object: until
    # its first frame, the consumer treats both as "not there yet" and opens the name again.
    deadline = time.monotonic() + a.attach_timeout

    def attach():
        while True:
            try:
                sub = shmkit.FrameSubscriber(a.name)
                break
            except FileNotFoundError:
                if time.monotonic() > deadline:
                    sys.exit(f"camera_consumer: no frame channel {a.name!r} (start the producer)")
                time.sleep(0.05)
        hname, hsize, _ = sub.header_type
        if hsize != FRAME_INFO.size:
            sys.exit(f"camera_consumer: {a.name!r} has header {hname} of {hsize} bytes, not FrameInfo")
        return sub

    sub = attach()
    n = bad = checked = 0
    lat = []
    start = last = time.monotonic()
    while True:
        try:
            frame = sub.recv()
        except EOFError:
            if n:  # the producer is gone and every frame was received
                break
            # No frame yet: a dead run's channel (or a producer that failed before its first
            # frame). Look again under the name.
            sub.close()
            if time.monotonic() > deadline:
                sys.exit(f"camera_consumer: no frame on {a.name!r} within {a.attach_timeout} s: "
                         "no live producer published on it")
            time.sleep(0.05)
            sub = attach()
            start = last = time.monotonic()
            continue
        lat.append(time.monotonic_ns() - frame.mono_ns)
        w, h, stride, fmt, index, want = FRAME_INFO.unpack(frame.header)
        img = frame.array(np.uint8, (h, w, 3))  # zero-copy, read-only
        if a.check_every and index % a.check_every == 0:
            checked += 1
            if checksum(img) != want:
                bad += 1
        del img
        frame.release()  # unpin now (it would be unpinned when the last reference goes)
        n += 1
        now = time.monotonic()
        if now - last >= 1.0:
            recent = sorted(lat[-int(max(1, n / (now - start))) :])
            print(
                f"[py] {n} frames, {n / (now - start):.1f} fps, latency p50 "
                f"{recent[len(recent) // 2] / 1e6:.3f} ms, lost {sub.lost}, checksum errors {bad}",
                flush=True,
            )
            last = now
    secs = max(time.monotonic() - start, 1e-9)
    lat.sort()
    if lat:
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6  # noqa: E731
        print(
            f"[py] done: {n} frames, {n / secs:.1f} fps, publish-to-receive latency p50 {p(0.5):.3f} "
            f"ms, p99 {p(0.99):.3f} ms, max {lat[-1] / 1e6:.3f} ms; lost {sub.lost}; "
            f"checksums verified {checked}, errors {bad}",
            flush=True,
        )
    else:
        print("[py] done: no frames", flush=True)
    sub.close()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
