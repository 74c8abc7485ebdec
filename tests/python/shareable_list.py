"""The Python side of tests/shareable_list_cpython.rs: CPython's own ShareableList.

usage: python shareable_list.py MODE NAME

  create  build ShareableList(ITEMS, name=NAME), print its items
  read    attach to NAME, print its items
  write   attach to NAME, apply WRITES, print its items
  demo    build the reference demo list (SPEC.md), print nothing

Every attach and create unregisters the segment from this process's resource tracker (see
README, "Python interop"), so Python never unlinks a segment when it exits: the Rust test owns
and removes it. Each item prints as one line TYPE:VALUE (str as UTF-8 hex, bytes as hex, a
bytes item longer than 4096 as its length and whether it equals the expected pattern).
"""
import sys
from multiprocessing import resource_tracker, shared_memory

BIG = 9_999_991


def big():
    """BIG bytes, byte i = i % 251 + 1 (no NUL, so Python's NUL-stripping leaves it whole)."""
    return (bytes(range(1, 252)) * (BIG // 251 + 1))[:BIG]


ITEMS = [  # the last one is replaced by big()
    -(2**63), 2**63 - 1, -0.1, True, False, None, "", b"",
    "hé 💥", b"\x00\x01\xff", "abcdefg", None,
]
WRITES = [(0, "xy"), (2, None), (5, 3.25), (-2, "abcdefgh"), (8, "ü"), (6, 2**63 - 1),
          (-1, b"\x01\x02")]


def enc(v):
    if isinstance(v, bool) or v is None:
        return f"{type(v).__name__}:{v}"
    if isinstance(v, int):
        return f"int:{v}"
    if isinstance(v, float):
        return f"float:{v!r}"
    if isinstance(v, str):
        return "str:" + v.encode().hex()
    if len(v) > 4096:
        return f"bytes:len={len(v)}:ok={v == big()}"
    return "bytes:" + v.hex()


def untrack(sl):
    resource_tracker.unregister(sl.shm._name, "shared_memory")


def main():
    mode, name = sys.argv[1], sys.argv[2]
    if mode == "demo":
        sl = shared_memory.ShareableList([1, 2.5, True, None, "hé", b"ab\x00"], name=name)
        untrack(sl)
        sl.shm.close()
        return
    if mode == "create":
        sl = shared_memory.ShareableList(ITEMS[:-1] + [big()], name=name)
    else:
        sl = shared_memory.ShareableList(name=name)
    untrack(sl)
    if mode == "write":
        for i, v in WRITES:
            sl[i] = v
    for v in sl:
        print(enc(v))
    sl.shm.close()


main()
