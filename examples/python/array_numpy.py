"""Map a shmkit Array from a stock CPython with numpy: no extension module needed.

    cargo build --release                    # the `shmkit` CLI, which the script asks for the layout
    target/release/shmkit array create temps d 8    # or Array::<f64>::create("temps", 8) in Rust
    target/release/shmkit array set temps 3 21.5
    python3 examples/python/array_numpy.py temps --shmkit target/release/shmkit

(Leave `--shmkit` out, and write `shmkit` for `target/release/shmkit`, when `shmkit` is on
PATH, e.g. after `cargo install --path .`.)

The data of every shmkit cell starts at a fixed, 64-byte-aligned offset of the object
(`shmkit info --json NAME` reports it as state.data_offset, with state.typecode, state.len and
state.mode); numpy's dtype is the typecode itself ('d' -> float64, 'q' -> int64, ...).

Writes from Python bypass the cell's lock: in a locked array, take it from Rust (or accept
racing element writes); in a seqlock array, write only from a shmkit writer. Reads of a
locked array may see a half-finished write of several elements; element reads of 8-byte
aligned types are whole.
"""

import argparse
import json
import subprocess
import sys
from multiprocessing import resource_tracker, shared_memory

import numpy as np

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("name")
ap.add_argument("--shmkit", default="shmkit", help="path of the shmkit binary")
args = ap.parse_args()
name = args.name
try:
    r = subprocess.run([args.shmkit, "info", "--json", name], capture_output=True, text=True)
except FileNotFoundError:
    sys.exit(f"array_numpy: no {args.shmkit!r} to run: pass --shmkit target/release/shmkit "
             "(after `cargo build --release`), or put shmkit on PATH (`cargo install --path .`)")
if r.returncode != 0:
    # shmkit's own one-line message: not found, permission denied, corrupt, ...
    sys.exit(f"array_numpy: {r.stderr.strip()}")
info = json.loads(r.stdout)
if info.get("kind") not in ("value", "array") or "state" not in info:
    sys.exit(f"array_numpy: {name} holds kind {info.get('kind')!r}, not a value or array cell")
state = info["state"]

# Opt out of CPython's resource tracker, which would unlink the segment when this process
# exits (gh-82300; README "Python interop").
if sys.version_info >= (3, 13):
    shm = shared_memory.SharedMemory(name=name, track=False)
else:
    shm = shared_memory.SharedMemory(name=name)
    resource_tracker.unregister(shm._name, "shared_memory")

arr = np.ndarray((state["len"],), dtype=np.dtype(state["typecode"]), buffer=shm.buf,
                 offset=state["data_offset"])
print(f"{state['cell']} ({state['mode']}):", arr)
arr[0] += 1  # visible to every process at once
print("after arr[0] += 1:", arr)
del arr  # release the buffer before closing
shm.close()
