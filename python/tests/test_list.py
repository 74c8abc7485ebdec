"""ShareableList: CPython's semantics, interop with stock CPython's ShareableList both ways
(separate interpreters), with the Rust CLI, atomic updates for shmkit readers, bad input."""

import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap

import pytest

import shmkit

# Every type, unicode, empty values, bytes with trailing NULs, the int64 limits.
VALUES = [
    0,
    -(2**63),
    2**63 - 1,
    2.5,
    float("-inf"),
    True,
    False,
    None,
    "",
    "hé ✓ 😀",
    b"",
    b"ab\x00\x00",
    b"\x00",
]

# A stock CPython process; the resource tracker would unlink what it did not create when it
# exits, so it is told to forget the list.
STOCK_OPEN = """
import sys, ast
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import ShareableList
sl = ShareableList(name=sys.argv[1])
resource_tracker.unregister(sl.shm._name, "shared_memory")
"""


def stock(code, *args):
    """Run `code` after STOCK_OPEN in a fresh stock interpreter; its stdout."""
    return subprocess.run(
        [sys.executable, "-c", STOCK_OPEN + textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_basic_semantics(name):
    sl = shmkit.ShareableList([1, 2.0, "x", b"y", None, True], name=name)
    try:
        assert len(sl) == 6
        assert sl[0] == 1 and sl[-1] is True and sl[4] is None
        assert list(sl) == [1, 2.0, "x", b"y", None, True]
        assert sl.format == "q" + "d" + "8s" + "8s" + "xxxxxx?x" + "xxxxxxx?"
        assert sl.count(1) == 2 and sl.count("nope") == 0 and sl.count([1]) == 0
        assert sl.index(2) == 1 and sl.index(b"y") == 3
        with pytest.raises(ValueError):
            sl.index("absent")
        with pytest.raises(IndexError):
            sl[6]
        with pytest.raises(IndexError):
            sl[-7] = 1
        sl[0] = "now str"  # any type replaces any other
        assert sl[0] == "now str"
        assert repr(sl) == f"ShareableList(['now str', 2.0, 'x', b'y', None, True], name={name!r})"
        again = pickle.loads(pickle.dumps(sl))
        assert again[0] == "now str" and again.name == name
        shm = sl.shm
        assert shm.name == name and shm.size > 0
        shm.close()
    finally:
        sl.unlink()


def test_str_slots_are_utf8_bytes_and_exact(name):
    sl = shmkit.ShareableList(["ééé"], name=name)  # 6 UTF-8 bytes: an 8-byte slot
    try:
        assert sl.slot_size(0) == 8
        sl[0] = "éééé"  # exactly 8 bytes fits
        assert sl[0] == "éééé"
        with pytest.raises(ValueError):
            sl[0] = "ééééé"
        sl[0] = b"a\x00"
        assert sl[0] == b"a\x00"  # trailing NUL kept (CPython strips it)
    finally:
        sl.unlink()


def test_reserve_and_context_manager(name):
    with shmkit.ShareableList.create(name, ["a"], reserve=100) as sl:
        assert sl.slot_size(0) == 104
        sl[0] = "x" * 100
    with pytest.raises(ValueError):
        len(sl)  # closed
    with shmkit.ShareableList(name=name) as sl:
        assert sl[0] == "x" * 100
        sl.unlink()
    with pytest.raises(FileNotFoundError):
        shmkit.ShareableList.open(name)


def test_bad_input(name):
    with pytest.raises(struct.error):
        shmkit.ShareableList([2**63], name=name)
    with pytest.raises(struct.error):
        shmkit.ShareableList([-(2**63) - 1], name=name)
    with pytest.raises(TypeError):
        shmkit.ShareableList([[1]], name=name)
    with pytest.raises(TypeError):
        shmkit.ShareableList([1j], name=name)
    with pytest.raises(ValueError):
        shmkit.ShareableList([b"x" * 10_000_000], name=name)
    sl = shmkit.ShareableList([1], name=name)
    try:
        with pytest.raises(FileExistsError):
            shmkit.ShareableList([1], name=name)
        with pytest.raises(struct.error):
            sl[0] = 2**64
        with pytest.raises(TypeError):
            sl[0] = object()
        with pytest.raises(ValueError):
            sl[0] = "123456789"
        assert sl[0] == 1
    finally:
        sl.unlink()
    with pytest.raises(FileNotFoundError):
        shmkit.ShareableList.open(name)


def test_default_name_is_random_psm():
    sl = shmkit.ShareableList([1])
    try:
        assert sl.name.startswith("psm_")
    finally:
        sl.unlink()


@pytest.mark.parametrize("i", range(len(VALUES)))
def test_shmkit_created_stock_reads_and_writes(name, i):
    v = VALUES[i]
    sl = shmkit.ShareableList([v, "padding-padding-"], name=name)
    try:
        expect = v.rstrip(b"\x00") if isinstance(v, bytes) else v  # CPython's reading
        fmt_here = sl.format
        out = stock("print(repr(sl[0])); print(sl.format); sl[1] = sl[0]", name)
        got, fmt = out.splitlines()
        assert got == repr(expect)
        assert fmt == fmt_here
        assert sl[1] == expect
    finally:
        sl.unlink()


@pytest.mark.parametrize("i", range(len(VALUES)))
def test_stock_created_shmkit_reads_and_writes(name, i):
    v = VALUES[i]
    code = """
import pickle, sys
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import ShareableList
v = pickle.loads(bytes.fromhex(sys.argv[2]))
sl = ShareableList([v, v], name=sys.argv[1])
resource_tracker.unregister(sl.shm._name, "shared_memory")
print(repr(sl[0]))
"""
    out = subprocess.run(
        [sys.executable, "-c", code, name, pickle.dumps(v).hex()],
        capture_output=True, text=True, check=True,
    ).stdout
    sl = shmkit.ShareableList(name=name)
    try:
        # What stock Python itself reads back (CPython sizes a str slot by characters, so it
        # truncates non-ASCII text itself, gh-88336): shmkit reads the same.
        assert repr(sl[0]) == out.strip() and type(sl[0]) is type(v)
        sl[1] = 7
        assert stock("print(sl[1])", name).strip() == "7"
    finally:
        sl.unlink()


def test_reader_never_sees_a_torn_value(name, spawn):
    a, b = "a" * 64, "b" * 64
    sl = shmkit.ShareableList([a], name=name)
    writer = spawn(
        """
        import sys, shmkit
        sl = shmkit.ShareableList.open(sys.argv[1])
        print("ready", flush=True)
        vals = ["a" * 64, "b" * 64]
        i = 0
        while True:
            sl[0] = vals[i & 1]
            i += 1
        """,
        name,
    )
    try:
        assert writer.line() == "ready"
        seen = set()
        reads = 0
        # At least 100 000 reads, and on until both values were seen (a loaded machine may
        # leave the writer unscheduled for a while); bounded so that a stuck writer fails.
        while (reads < 100_000 or len(seen) < 2) and reads < 20_000_000:
            v = sl[0]
            assert v in (a, b), v
            seen.add(v)
            reads += 1
        assert seen == {a, b}
    finally:
        writer.close()
        sl.unlink()


def test_rust_cli_interop(name, rust_bins):
    cli = str(rust_bins["shmkit"])
    subprocess.run(
        [cli, "list", "create", name, '[1, "hé", {"hex": "6100"}, null]'],
        check=True,
        capture_output=True,
    )
    sl = shmkit.ShareableList.open(name)
    try:
        assert list(sl) == [1, "hé", b"a\x00", None]
        sl[0] = -5
        sl[3] = 1.5
        out = subprocess.run([cli, "list", "get", name, "0"], capture_output=True, text=True, check=True)
        assert json.loads(out.stdout) == -5
        subprocess.run([cli, "list", "set", name, "1", '"ü"'], check=True, capture_output=True)
        assert sl[1] == "ü"
        out = subprocess.run([cli, "list", "get", name, "9"], capture_output=True, text=True)
        assert out.returncode == 1
    finally:
        sl.unlink()


def test_lifetime_keyword(names, lifetime_of):
    a, b, c = names(), names(), names()
    lists = [
        shmkit.ShareableList.create(a, [1], lifetime="owned"),
        shmkit.ShareableList([1], name=b, lifetime="owned"),
        shmkit.ShareableList.create(c, [1]),
    ]
    try:
        assert [lifetime_of(n) for n in (a, b, c)] == ["owned", "owned", "persistent"]
        anon = shmkit.ShareableList([1], lifetime="persistent")
        try:
            assert lifetime_of(anon.name) == "persistent"
        finally:
            anon.unlink()
        anon = shmkit.ShareableList([1])
        try:
            assert lifetime_of(anon.name) == "owned"
        finally:
            anon.unlink()
        n = names()
        with pytest.raises(ValueError, match="lifetime must be 'persistent' or 'owned'"):
            shmkit.ShareableList.create(n, [1], lifetime="forever")
        with pytest.raises(ValueError, match="lifetime must be 'persistent' or 'owned'"):
            shmkit.ShareableList([1], name=n, lifetime="forever")
        with pytest.raises(ValueError, match="lifetime must be 'persistent' or 'owned'"):
            shmkit.ShareableList(name=c, lifetime="forever")  # checked even when only opening
        assert not os.path.exists(f"/dev/shm/{n}")
    finally:
        for sl in lists:
            sl.unlink()


def test_anonymous_list_of_a_killed_process_is_removed_by_gc(collected_after_kill):
    collected_after_kill('shmkit.ShareableList([1, "two"])')


def _stuck_writer(sl_name, lock):
    """Leave item 0 of the shmkit list `sl_name` as a live writer mid-update leaves it (a
    writer process stopped half-way, or a peer that keeps the writer lock): the trailer's
    writer lock names this (live) process, whose token is copied from `lock`, a shmkit
    `Lock` this process holds, and item 0's `seq` is odd (SPEC, ShareableList trailer)."""
    assert lock.acquire(False)
    with open(f"/dev/shm/{lock.name}", "rb") as f:
        lockbytes = f.read()
    owner = lockbytes[128 + 8 : 128 + 16]  # payload: LockState {magic, depth, owner, ...}
    assert owner != bytes(8)
    path = f"/dev/shm/{sl_name}"
    with open(path, "rb") as f:
        data = f.read()
    t = next(o for o in range(0, len(data), 64) if data[o : o + 8] == b"\x89SHMKIT\n")
    with open(path, "r+b") as f:
        f.seek(t + 160 + 8)  # the writer lock's owner word
        f.write(owner)
        f.seek(t + 192)  # item 0's seq
        f.write((1).to_bytes(8, "little"))


@pytest.mark.parametrize(
    "call", ["sl[0]", "list(sl)", "sl.count(7)", "sl.index(7)", "repr(sl)", "7 in sl"]
)
def test_list_reads_waiting_for_a_writer_are_interruptible(names, spawn, call):
    # `sl[i]` waits for a writer's update of item i with the GIL released, in slices, and
    # Ctrl-C interrupts it. Every other read of the items (iteration, count, index, repr,
    # `in`) waited in the library's unbounded `get` with the GIL held: no other thread of
    # the reading process ran, and Ctrl-C did nothing, for as long as the writer took.
    sl_name, lock_name = names(), names()
    sl = shmkit.ShareableList([1, 2, 3], name=sl_name)
    lock = shmkit.Lock.create(lock_name)
    try:
        _stuck_writer(sl_name, lock)
        child = spawn(
            f"""
import sys, threading, time, shmkit
sl = shmkit.ShareableList(name=sys.argv[1])
ticks = []
threading.Thread(target=lambda: [ticks.append(time.sleep(0.01)) for _ in range(1000)],
                 daemon=True).start()
print("calling", flush=True)
try:
    {call}
    print("returned", flush=True)
except KeyboardInterrupt:
    print("interrupted", len(ticks) > 10, flush=True)
""",
            sl_name,
        )
        child.interrupt_blocked_call()
        # The other thread ran meanwhile (the GIL was released), and Ctrl-C got through.
        assert child.line() == "interrupted True"
        rc, _, err = child.finish()
        assert rc == 0, err
    finally:
        lock.release()
        sl.close()
