#!/usr/bin/env python3
"""Read the latest frame of a shmkit frame channel from stock CPython (no extension module).

Terminal 1:  cargo run --release --example camera -- --role producer --seconds 60
Terminal 2:  cargo build --release    # the `shmkit` CLI, which the script asks for the layout
             python3 examples/python/frames_numpy.py shmkit-camera --verify --shmkit target/release/shmkit

(Leave `--shmkit` out when `shmkit` is on PATH, e.g. after `cargo install --path .`.)

The offsets come from `shmkit info --json NAME` (its `state.layout`, SPEC.md frames section).
The script maps /dev/shm/NAME read-only and makes a seqlock read: it loads the newest slot's
sequence word, copies the frame, and loads the word again; if the publisher claimed the slot
meanwhile (the word changed), the copy is discarded and the read retried. It pins nothing, so
the publisher is never held up. For true zero-copy with pinning, use the `shmkit` Python
package (`pip install ./python`): `shmkit.FrameSubscriber(NAME).recv().array(dtype, shape)` is
a read-only numpy view of the shared slot, pinned while it lives
(`examples/python/camera_consumer.py`).

With numpy installed the frame is returned as an array (height x width x 3 for the camera
demo's RGB header); without numpy, as bytes. `--verify` recomputes the camera demo's checksum.
"""

import argparse
import json
import mmap
import os
import struct
import subprocess
import sys
import time

CLAIMED = 1 << 63


def layout_of(name, shmkit):
    try:
        r = subprocess.run([shmkit, "info", "--json", name], capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit(f"frames_numpy: no {shmkit!r} to run: pass --shmkit target/release/shmkit "
                 "(after `cargo build --release`), or put shmkit on PATH (`cargo install --path .`)")
    if r.returncode != 0:
        # shmkit's own one-line message: not found, permission denied, corrupt, ...
        sys.exit(f"frames_numpy: {r.stderr.strip()}")
    info = json.loads(r.stdout)
    if info.get("kind") != "frames" or "state" not in info:
        sys.exit(f"frames_numpy: {name} holds kind {info.get('kind')!r}, not a frame channel")
    return info["state"]


def u64(m, off):
    return struct.unpack_from("<Q", m, off)[0]


def read_latest(m, st, retries=1000):
    """(seq, header bytes, frame bytes, retries) of the newest frame, or None if none."""
    lay = st["layout"]
    for attempt in range(retries):
        best = None
        for i in range(st["slots"]):
            s = u64(m, lay["meta_offset"] + i * lay["meta_stride"] + lay["seq_at"])
            if s != 0 and not s & CLAIMED and (best is None or s > best[1]):
                best = (i, s)
        if best is None:
            return None
        i, seq = best
        meta = lay["meta_offset"] + i * lay["meta_stride"]
        n = min(u64(m, meta + lay["len_at"]), st["max_bytes"])
        header = m[meta + lay["header_at"]: meta + lay["header_at"] + st["header_size"]]
        start = lay["data_offset"] + i * lay["stride"]
        data = m[start: start + n]
        if u64(m, meta + lay["seq_at"]) == seq:  # not claimed while we copied
            return seq, header, data, attempt
    raise TimeoutError(f"the publisher overwrote every read for {retries} attempts")


def camera_checksum(data):
    """The camera demo's checksum (examples/camera.rs): rotate-left 5, xor, over u64 words."""
    mask = (1 << 64) - 1
    h = 0x9E3779B97F4A7C15
    words = len(data) // 8
    for w in struct.unpack_from(f"<{words}Q", data):
        h = (((h << 5) | (h >> 59)) & mask) ^ w
    for b in data[words * 8:]:
        h = (((h << 5) | (h >> 59)) & mask) ^ b
    return h


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--shmkit", default="shmkit", help="path of the shmkit binary")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="seconds to wait for a first frame")
    ap.add_argument("--verify", action="store_true",
                    help="check the camera demo's checksum header")
    args = ap.parse_args()

    st = layout_of(args.name, args.shmkit)
    fd = os.open(f"/dev/shm/{args.name}", os.O_RDONLY)
    try:
        m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    deadline = time.monotonic() + args.timeout
    got = read_latest(m, st)
    while got is None and time.monotonic() < deadline:
        time.sleep(0.01)
        got = read_latest(m, st)
    if got is None:
        sys.exit(f"frames_numpy: no frame published in {args.name} within {args.timeout} s")
    seq, header, data, retries = got

    shape = None
    if st["header_size"] >= 32:
        width, height, stride, fmt, index, checksum = struct.unpack_from("<IIIIQQ", header)
        shape = (height, width, 3) if fmt == 1 else None
    if st["header_size"] >= 32 and args.verify:
        ok = camera_checksum(data) == checksum
        print(f"checksum {'ok' if ok else 'WRONG'} (frame index {index})")
        if not ok:
            sys.exit(1)
    try:
        import numpy as np
    except ImportError:
        np = None
    if np is not None:
        arr = np.frombuffer(data, dtype=np.uint8)
        if shape is not None and arr.size == shape[0] * shape[1] * shape[2]:
            arr = arr.reshape(shape)
        print(f"seq {seq}: numpy array {arr.shape} {arr.dtype}, mean {arr.mean():.2f}, "
              f"{retries} retries")
    else:
        print(f"seq {seq}: {len(data)} bytes (numpy not installed), {retries} retries")


if __name__ == "__main__":
    main()
