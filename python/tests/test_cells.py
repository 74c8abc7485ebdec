"""Value and Array (typed cells) across separate Python processes, and with the Rust CLI."""

import os
import pickle
import signal
import subprocess
import time

import numpy as np
import pytest

import shmkit

INCREMENTS = 10_000

# A child that takes the lock of Value argv[1], says "held" and keeps it until killed.
HOLD_LOCK = """
    import sys, shmkit
    v = shmkit.Value.open(sys.argv[1])
    v.get_lock().acquire()
    print("held", flush=True)
    sys.stdin.readline()
    """


def test_locked_increment_under_get_lock_is_exact(name, spawn):
    v = shmkit.Value("q", 0, name=name)
    code = """
        import sys, shmkit
        v = shmkit.Value.open(sys.argv[1])
        for _ in range(int(sys.argv[2])):
            with v.get_lock():
                v.value += 1
        print("done", flush=True)
        """
    kids = [spawn(code, name, INCREMENTS) for _ in range(2)]
    for k in kids:
        assert k.line() == "done"
        assert k.finish()[0] == 0
    assert v.value == 2 * INCREMENTS
    v.unlink()


def test_atomic_fetch_add_is_exact(name, spawn):
    v = shmkit.Value("Q", 0, name=name, mode="atomic")
    code = """
        import sys, shmkit
        v = shmkit.Value.open(sys.argv[1])
        for _ in range(int(sys.argv[2])):
            v.fetch_add(1)
        print("done", flush=True)
        """
    kids = [spawn(code, name, INCREMENTS) for _ in range(2)]
    for k in kids:
        assert k.line() == "done"
        assert k.finish()[0] == 0
    assert v.load() == 2 * INCREMENTS
    assert v.fetch_sub(INCREMENTS) == 2 * INCREMENTS
    assert v.compare_exchange(INCREMENTS, 7) == (True, INCREMENTS)
    assert v.compare_exchange(INCREMENTS, 8) == (False, 7)
    assert v.swap(9) == 7 and v.value == 9
    v.unlink()


@pytest.mark.parametrize("mode", ["atomic", "locked", "seqlock"])
def test_increment_in_one_call_is_exact_in_every_mode(names, spawn, mode):
    # `v += n` and `fetch_add`/`fetch_sub` (Value and Array) from two processes at once: an
    # atomic add in atomic mode, a read and a write under the cell's lock in the others.
    name, arr = names(), names()
    v = shmkit.Value("q", 0, name=name, mode=mode)
    a = shmkit.Array("i", 3, name=arr, mode=mode)
    code = """
        import sys, shmkit
        v = shmkit.Value.open(sys.argv[1])
        a = shmkit.Array.open(sys.argv[2])
        for i in range(int(sys.argv[3])):
            v += 3
            v -= 1
            v.fetch_sub(1)
            a.fetch_add(1, 2)
            a.fetch_sub(-1, 1)
        print("done", flush=True)
        """
    kids = [spawn(code, name, arr, INCREMENTS) for _ in range(2)]
    for k in kids:
        assert k.line() == "done"
        assert k.finish()[0] == 0
    assert v.value == 2 * INCREMENTS
    assert a[:] == [0, 4 * INCREMENTS, -2 * INCREMENTS]
    v.unlink()
    a.unlink()


@pytest.mark.parametrize("mode", ["atomic", "locked", "seqlock"])
def test_increment_wraps_and_refuses_non_integers(names, mode):
    v = shmkit.Value("b", 127, name=names(), mode=mode)
    same = v
    v += 1  # wraps, as C atomics and as fetch_add in atomic mode
    assert v is same and v.value == -128
    assert v.fetch_sub(1) == -128 and v.value == 127
    assert v.fetch_add(2**64 - 1) == 127 and v.value == 126  # adds -1
    with pytest.raises(TypeError):
        v += 1.5
    with pytest.raises(TypeError):
        v -= "1"
    with pytest.raises(OverflowError):
        v.fetch_add(2**64)
    assert v.value == 126
    v.unlink()
    if mode != "atomic":  # floats have no atomic mode
        f = shmkit.Value("d", 1.5, name=names(), mode=mode)
        with pytest.raises(TypeError, match="integer typecode"):
            f += 1
        with pytest.raises(TypeError, match="integer typecode"):
            f.fetch_add(1)
        assert f.value == 1.5
        f.unlink()


@pytest.mark.parametrize("mode", ["atomic", "locked"])
def test_sub_takes_the_operands_add_takes(names, mode):
    # fetch_add / += take any int in -2**63 .. 2**64 (wrapping, as C atomics); the
    # subtracting forms take the same: C's atomic_fetch_sub(&u64, UINT64_MAX) adds 1.
    v = shmkit.Value("Q", 10, name=names(), mode=mode)
    v -= 2**64 - 1
    assert v.value == 11
    assert v.fetch_sub(2**63 + 1) == 11
    assert v.value == (11 - 2**63 - 1) % 2**64
    v -= -(2**63)
    assert v.value == (11 - 2**63 - 1 + 2**63) % 2**64
    for bad in (2**64, -(2**63) - 1):
        with pytest.raises(OverflowError, match=str(bad)):
            v -= bad
    v.unlink()


def test_increment_under_a_held_lock_and_after_a_killed_holder(name, spawn):
    v = shmkit.Value("q", 0, name=name)
    with v.get_lock():  # held by this thread: the add uses it (no deadlock)
        v += 5
        assert v.fetch_add(1) == 5
    child = spawn(HOLD_LOCK, name)
    assert child.line() == "held"
    child.signal(signal.SIGKILL)
    child.finish()
    with pytest.raises(shmkit.OwnerDied) as info:
        v += 1  # nothing added: the lock is now this thread's, the data unrepaired
    lock = info.value.lock
    assert v.value == 6
    v += 1  # under the held lock
    lock.make_consistent()
    lock.release()
    v += 1
    assert v.value == 8
    v.unlink()


def test_seqlock_array_is_never_torn(names, spawn):
    name, stop_name = names(), names()
    a = shmkit.Array("q", 16, name=name, mode="seqlock")
    stop = shmkit.Value("q", 0, name=stop_name, mode="atomic")
    # The writer writes until told to stop, so the reader sees many writes however fast
    # either side runs (a fixed count of writes can all land before the first read).
    writer = spawn(
        """
        import sys, shmkit
        a = shmkit.Array.open(sys.argv[1])
        stop = shmkit.Value.open(sys.argv[2])
        print("ready", flush=True)
        i = 0
        while not stop.load():
            i += 1
            a[:] = [i] * 16
        print("done", flush=True)
        """,
        name,
        stop_name,
    )
    assert writer.line() == "ready"
    seen = set()
    while len(seen) < 100 and writer.proc.poll() is None:
        snap = a[:]
        assert len(set(snap)) == 1, snap  # all sixteen from one write
        seen.add(snap[0])
    stop.store(1)
    assert writer.line() == "done"
    assert writer.finish()[0] == 0
    assert len(seen) >= 100
    a.unlink()
    stop.unlink()


def test_seqlock_wait_changed(name, spawn):
    v = shmkit.Value("d", 0.5, name=name, mode="seqlock")
    seq = v.sequence
    with pytest.raises(TimeoutError):
        v.wait_changed(seq, timeout=0.05)
    child = spawn(
        """
        import sys, shmkit
        v = shmkit.Value.open(sys.argv[1])
        v.value = 2.5
        """,
        name,
    )
    value, new = v.wait_changed(seq, timeout=30)
    assert value == 2.5 and new > seq
    assert child.finish()[0] == 0
    v.unlink()


def test_value_inside_held_lock_does_not_deadlock(name):
    v = shmkit.Value("i", 1, name=name)
    lock = v.get_lock()
    assert lock.acquire() is True
    v.value = v.value + 1  # through the held lock
    assert lock.acquire(block=False) is False  # not recursive
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    assert v.value == 2
    v.unlink()


def test_get_lock_is_one_object_and_threads_increment_exactly(name):
    import threading

    v = shmkit.Value("q", 0, name=name)
    a = shmkit.Array("q", 4, name=name + "-a")
    try:
        assert v.get_lock() is v.get_lock()
        assert a.get_lock() is a.get_lock()

        def work():
            for _ in range(2000):
                with v.get_lock():
                    v.value += 1

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert v.value == 6000
    finally:
        v.unlink()
        shmkit.Array.open(name + "-a").unlink()


def test_lock_released_through_another_handle_is_taken_again(name):
    # Two handles of one value in one process: the lock taken through one and released
    # through the other; a later access through the first must lock again, not trust its
    # stale note that this thread holds it.
    v1 = shmkit.Value("q", 0, name=name)
    v2 = shmkit.Value.open(name)
    try:
        assert v1.get_lock().acquire()
        v1.value = 5
        v2.get_lock().release()
        v1.value = 6  # takes and releases the lock itself
        assert v2.get_lock().acquire(block=False) is True  # so it is free now
        v2.get_lock().release()
        assert v2.value == 6
    finally:
        v1.unlink()


def test_array_indexing_and_slicing_like_a_list(name):
    a = shmkit.Array("i", [0, 1, 2, 3, 4, 5], name=name)
    ref = [0, 1, 2, 3, 4, 5]
    assert len(a) == 6 and list(a) == ref
    for s in [slice(None), slice(1, 4), slice(None, None, 2), slice(None, None, -1),
              slice(-2, None), slice(4, 1, -2), slice(3, 3)]:
        assert a[s] == ref[s], s
    assert a[-1] == 5 and a[0] == 0
    a[-1] = 50
    ref[-1] = 50
    a[1:3] = [10, 20]
    ref[1:3] = [10, 20]
    a[::-2] = [7, 8, 9]
    ref[::-2] = [7, 8, 9]
    assert a[:] == ref
    with pytest.raises(IndexError):
        a[6]
    with pytest.raises(IndexError):
        a[-7] = 1
    with pytest.raises(ValueError):
        a[0:2] = [1]
    with pytest.raises(TypeError):
        a["x"]
    with pytest.raises(OverflowError):
        a[0:2] = [1, 2**31]  # nothing written
    assert a[:] == ref
    with a.get_lock():
        a[0] += a[1]
    assert a[0] == ref[0] + ref[1]
    a.unlink()


def test_char_array_slices_are_bytes(name):
    a = shmkit.Array("c", b"hello", name=name)
    assert a[:] == b"hello" and a[0] == b"h"
    a[1:3] = b"EL"
    assert a[:] == b"hELlo"
    a.unlink()


def test_numpy_view_is_zero_copy_and_sees_other_processes(name, spawn):
    a = shmkit.Array("d", 4, name=name)
    x = np.asarray(a)
    assert x.dtype == np.float64 and x.shape == (4,)
    x[0] = 1.5
    assert a[0] == 1.5
    m = memoryview(a)
    assert m.format == "d" and m.shape == (4,) and not m.readonly
    child = spawn(
        """
        import sys, shmkit
        a = shmkit.Array.open(sys.argv[1])
        a[2] = 42.0
        """,
        name,
    )
    assert child.finish()[0] == 0
    assert x[2] == 42.0
    with pytest.raises(BufferError):
        a.close()
    m.release()
    del x
    a.close()
    a.close()
    with pytest.raises(ValueError):
        a[0]
    shmkit.Array.open(name).unlink()


def test_numpy_dtypes_follow_the_typecode(names):
    for tc, dt in [("b", np.int8), ("H", np.uint16), ("i", np.int32), ("q", np.int64),
                   ("f", np.float32), ("?", np.bool_)]:
        n = names()
        a = shmkit.Array(tc, 3, name=n)
        assert np.asarray(a).dtype == dt
        a.unlink()


# ctypes simple types as multiprocessing takes them for typecode_or_type, and their typecodes
# (c_longlong is c_long on LP64, as in ctypes; c_size_t is c_ulong).
CTYPES = [
    ("c_byte", "b"), ("c_int8", "b"), ("c_ubyte", "B"), ("c_short", "h"), ("c_ushort", "H"),
    ("c_int", "i"), ("c_int32", "i"), ("c_uint", "I"), ("c_long", "l"), ("c_ulong", "L"),
    ("c_longlong", "l"), ("c_ulonglong", "L"), ("c_int64", "l"), ("c_size_t", "L"),
    ("c_float", "f"), ("c_double", "d"), ("c_char", "c"), ("c_wchar", "u"), ("c_bool", "?"),
]


@pytest.mark.parametrize("ctype, code", CTYPES)
def test_ctypes_simple_types_are_typecodes(names, ctype, code):
    import ctypes

    t = getattr(ctypes, ctype)
    init = {"c": b"z", "u": "\u00e9", "?": True, "f": 1.5, "d": 1.5}.get(code, 7)
    n1, n2, n3, n4 = names(), names(), names(), names()
    v = shmkit.Value(t, init, name=n1)
    assert v.typecode == code and v.value == init
    # the same cell as the string form: opening it with either spelling works
    assert shmkit.Value(code, name=n1).value == init
    assert shmkit.Value.create(n2, t, init).typecode == code
    a = shmkit.Array(t, [init, init], name=n3)
    assert a.typecode == code and a[1] == init and len(a) == 2
    b = shmkit.Array.create(n4, t, 3)
    assert b.typecode == code and len(b) == 3
    assert shmkit.Array(code, 3, name=n4).typecode == code
    # a subclass is still that type (as in ctypes)
    sub = type("Sub", (t,), {})
    assert shmkit.Value(sub, name=n1).typecode == code
    for o in (v, a, b):
        o.unlink()
    shmkit.Value.open(n2).unlink()


def test_ctypes_types_without_a_typecode_are_a_clear_type_error(names):
    import ctypes

    class Point(ctypes.Structure):
        _fields_ = [("x", ctypes.c_int)]

    bad = [
        (ctypes.c_char_p, "c_char_p"),
        (ctypes.c_void_p, "c_void_p"),
        (ctypes.c_longdouble, "c_longdouble"),
        (ctypes.c_wchar_p, "c_wchar_p"),
        (ctypes.py_object, "py_object"),
        (Point, "Point"),
        (ctypes.c_int * 3, "c_int_Array_3"),
        (ctypes.POINTER(ctypes.c_int), "LP_c_int"),
        (ctypes.c_int.__ctype_be__, "c_int"),  # byte-swapped: not the cell's native order
        (int, "int"),
    ]
    n = names()
    for t, what in bad:
        for make in (
            lambda: shmkit.Value(t, name=n),
            lambda: shmkit.Value.create(n, t),
            lambda: shmkit.Array(t, 2, name=n),
            lambda: shmkit.Array.create(n, t, 2),
        ):
            with pytest.raises(TypeError, match=what):
                make()
    with pytest.raises(TypeError, match="byte order"):
        shmkit.Value(ctypes.c_int.__ctype_be__, name=n)
    with pytest.raises(TypeError, match="typecode"):
        shmkit.Value(3, name=n)
    assert not os.path.exists(f"/dev/shm/{n}")


def test_a_lock_object_for_lock_is_a_clear_type_error(names):
    import multiprocessing
    import threading

    n = names()
    other = shmkit.Lock(names())
    for lock in (multiprocessing.Lock(), threading.Lock(), other, 1, "yes"):
        for make in (
            lambda: shmkit.Value("i", 0, name=n, lock=lock),
            lambda: shmkit.Value.create(n, "i", 0, lock=lock),
            lambda: shmkit.Array("i", 2, name=n, lock=lock),
            lambda: shmkit.Array.create(n, "i", 2, lock=lock),
        ):
            with pytest.raises(TypeError, match=r"lock= takes True or False.*own segment"):
                make()
    assert not os.path.exists(f"/dev/shm/{n}")
    other.unlink()
    # None, True and False still choose the mode
    assert shmkit.Value.create(n, "i", lock=None).mode == "locked"
    shmkit.Value.open(n).unlink()
    assert shmkit.Value.create(n, "i", lock=False).mode == "atomic"
    shmkit.Value.open(n).unlink()
    assert shmkit.Array.create(n, "d", 1, lock=False).mode == "seqlock"
    shmkit.Array.open(n).unlink()
    assert shmkit.Array.create(n, "d", 1, lock=True).mode == "locked"
    shmkit.Array.open(n).unlink()


def test_cli_interop_both_ways(names, rust_bins):
    cli = str(rust_bins["shmkit"])
    n1, n2 = names(), names()
    subprocess.run([cli, "value", "create", n1, "q", "-7"], check=True)
    v = shmkit.Value.open(n1)
    assert v.value == -7 and v.typecode == "q" and v.mode == "locked"
    v.value = 123
    out = subprocess.run([cli, "value", "get", n1], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "123"
    subprocess.run([cli, "value", "set", n1, "5"], check=True)
    assert v.value == 5
    v.unlink()

    a = shmkit.Array("d", [0.5, 1.5, 2.5], name=n2, mode="seqlock")
    out = subprocess.run([cli, "array", "get", n2], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["0.5", "1.5", "2.5"]
    subprocess.run([cli, "array", "set", n2, "1", "9.25"], check=True)
    assert a[:] == [0.5, 9.25, 2.5]
    a.unlink()


def test_sigkilled_holder_gives_owner_died(name, spawn):
    v = shmkit.Value("q", 0, name=name)
    child = spawn(
        """
        import sys, shmkit
        v = shmkit.Value.open(sys.argv[1])
        v.get_lock().acquire()
        v.value = 99
        print("held", flush=True)
        sys.stdin.readline()
        """,
        name,
    )
    assert child.line() == "held"
    child.signal(signal.SIGKILL)
    child.finish()
    with pytest.raises(shmkit.OwnerDied) as info:
        v.value
    lock = info.value.lock
    assert isinstance(lock, shmkit.CellLock)
    assert info.value.previous_pid == child.pid
    assert v.value == 99  # held by this thread now: read through the held lock
    v.value = 0  # repaired
    lock.make_consistent()
    lock.release()
    with v.get_lock():
        v.value += 1
    assert v.value == 1
    v.unlink()


def test_bad_input_writes_nothing(names):
    n = names()
    with pytest.raises(TypeError):
        shmkit.Value("x", 0, name=n)
    with pytest.raises(OverflowError):
        shmkit.Value("b", 128, name=n)
    assert not os.path.exists(f"/dev/shm/{n}")
    with pytest.raises(ValueError):
        shmkit.Value("d", 0.0, name=n, mode="atomic")
    with pytest.raises(ValueError):
        shmkit.Value("i", 0, name=n, mode="bogus")
    with pytest.raises(ValueError):
        shmkit.Value("i", 0, name=n, lock=True, mode="atomic")
    v = shmkit.Value("B", 200, name=n)
    for bad, exc in [(256, OverflowError), (-1, OverflowError), (1.0, TypeError), ("1", TypeError)]:
        with pytest.raises(exc):
            v.value = bad
    assert v.value == 200
    with pytest.raises(OverflowError):
        v.fetch_add(2**64)  # no 64-bit two's-complement form
    with pytest.raises(TypeError):
        v += 1.0
    assert v.value == 200
    c = shmkit.Value("c", b"a", name=names())
    with pytest.raises(ValueError):
        c.value = b"ab"
    u = shmkit.Value("u", "x", name=names())
    assert u.value == "x"
    with pytest.raises(ValueError):
        u.value = "xy"
    f = shmkit.Value("f", 1.0, name=names())
    with pytest.raises(OverflowError):
        f.value = 1e300
    assert f.value == 1.0
    for o in (c, u, f):
        o.unlink()
    # wrong kind, wrong typecode on open
    with pytest.raises(shmkit.ShmkitError):
        shmkit.Array.open(n)
    with pytest.raises(shmkit.ShmkitError):
        shmkit.Value("q", 0, name=n)  # exists as 'B'
    with pytest.raises(FileNotFoundError):
        shmkit.Value.open(names())
    v.unlink()


def test_create_open_pickle_context_manager(name):
    v = shmkit.Value.create(name, "d", 2.5, mode="seqlock")
    with v as held:  # the cell's lock (seqlock: the writers' lock), as multiprocessing's
        assert held is True
        w = pickle.loads(pickle.dumps(v))
        assert w.value == 2.5 and w.mode == "seqlock" and w.name == name
        with pytest.raises(FileExistsError):
            shmkit.Value.create(name, "d")
        v.value = 3.5  # through the held lock
        v.unlink()
    assert v.get_lock().acquire(False) is True  # released by __exit__
    v.get_lock().release()
    a = shmkit.Array.create(name, "H", 3)
    b = pickle.loads(pickle.dumps(a))
    b[1] = 7
    assert a[1] == 7 and repr(a).startswith("<shmkit.Array")
    with a:
        pass
    assert a[1] == 7  # `with` locked and unlocked it; the array stays open
    b.unlink()


def test_nothing_removed_when_an_attaching_process_exits(name, spawn):
    v = shmkit.Value("i", 3, name=name)
    child = spawn(
        """
        import sys, shmkit
        v = shmkit.Value.open(sys.argv[1])
        a = v.value
        """,
        name,
    )
    assert child.finish()[0] == 0
    assert shmkit.Value.open(name).value == 3
    v.unlink()


def test_ctrl_c_interrupts_a_blocked_access(name, spawn):
    v = shmkit.Value("q", 0, name=name)
    holder = spawn(HOLD_LOCK, name)
    assert holder.line() == "held"
    waiter = spawn(
        """
        import sys, shmkit
        v = shmkit.Value.open(sys.argv[1])
        print("waiting", flush=True)
        try:
            v.value
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """,
        name,
    )
    assert waiter.line() == "waiting"
    import time
    time.sleep(0.2)
    waiter.signal(signal.SIGINT)
    assert waiter.line() == "interrupted"
    holder.send("go")
    holder.finish()
    v.unlink()


def test_get_obj_and_char_array_value_raw_as_multiprocessing(name):
    import multiprocessing as mp

    v = shmkit.Value("i", 3, name=name)
    a = shmkit.Array("c", 8, name=name + "-c")
    n = shmkit.Array("i", 2, name=name + "-i")
    m = mp.get_context("spawn").Array("c", 8)
    try:
        assert v.get_obj() is v and v.get_obj().value == 3
        assert a.get_obj() is a
        for arr in (a, m):  # the same outcomes as multiprocessing's char array
            arr.value = b"hi"
            assert arr.value == b"hi" and arr.raw[:3] == b"hi\x00"
            arr.raw = b"abcdefgh"
            assert arr.value == b"abcdefgh" and arr.raw == b"abcdefgh"
            arr.value = b"xy"
            assert arr.raw == b"xy\x00defgh" and arr.value == b"xy"
            with pytest.raises(TypeError):
                arr.value = bytearray(b"zz")
            arr.raw = bytearray(b"xy\x00d")
            with pytest.raises(ValueError):
                arr.value = b"123456789"
            with pytest.raises(ValueError):
                arr.raw = b"123456789"
            with pytest.raises(TypeError):
                arr.value = "str"
            assert arr.raw == b"xy\x00defgh"  # nothing written by the failed sets
        with pytest.raises(AttributeError):
            n.value
        with pytest.raises(AttributeError):
            n.raw = b"x"
    finally:
        v.unlink()
        a.unlink()
        n.unlink()


def test_fetch_add_operands_beyond_i64_wrap_or_overflow(name):
    v = shmkit.Value("Q", 5, name=name, mode="atomic")
    try:
        assert v.fetch_add(2**64 - 1) == 5  # adds -1, wrapping
        assert v.value == 4
        assert v.fetch_sub(-(2**63)) == 4  # subtracting -2**63 adds 2**63
        assert v.value == 4 + 2**63
        with pytest.raises(OverflowError):
            v.fetch_add(2**64)
        with pytest.raises(OverflowError):
            v.fetch_add(-(2**63) - 1)
        assert v.value == 4 + 2**63  # nothing written by the refused ones
    finally:
        v.unlink()


def test_ctrl_c_during_get_lock_acquire_and_wait_changed_leaves_the_cells_usable(names, spawn):
    # SIGINT while get_lock().acquire() waits for another thread's hold, and while
    # wait_changed() waits for a write: KeyboardInterrupt from the call, the lock not taken by
    # the interrupted call (free once the holder releases), and both work afterwards.
    v, a = names(), names()
    child = spawn(
        """
        import sys, threading, shmkit
        v = shmkit.Value("q", 0, name=sys.argv[1])
        a = shmkit.Array("d", 3, name=sys.argv[2], mode="seqlock")
        held, done = threading.Event(), threading.Event()
        def hold():
            v.get_lock().acquire()
            held.set()
            done.wait()
            v.get_lock().release()
        t = threading.Thread(target=hold)
        t.start()
        held.wait()
        for call in (v.get_lock().acquire, lambda: a.wait_changed(a.sequence)):
            print("calling", flush=True)
            try:
                call()
                print("returned", flush=True)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
        done.set()
        t.join()
        assert v.get_lock().acquire(timeout=5)
        v.value = 7
        v.get_lock().release()
        a[1] = 2.5
        assert a.wait_changed(0, 5)[0] == [0.0, 2.5, 0.0]
        print("consistent", v.value, flush=True)
        """,
        v,
        a,
    )
    for _ in range(2):
        child.interrupt_blocked_call()
        assert child.line() == "interrupted"
    assert child.line() == "consistent 7"
    rc, _, err = child.finish()
    assert rc == 0, err


def test_array_close_while_another_thread_waits_in_it_is_not_a_crash(name, spawn):
    # Thread B waits (GIL released) in a[0] for the cell lock thread A holds; the main thread
    # closes the array meanwhile. The close marks it closed without unmapping (B's read
    # completes); later calls raise ValueError. (Before, pyo3's borrow made the close raise
    # RuntimeError "Already borrowed", and for ever in a child forked meanwhile.) A view
    # refuses close, and a lock object keeps working after it.
    child = spawn(
        """
        import sys, threading, time, shmkit
        a = shmkit.Array("q", 3, name=sys.argv[1])
        held, done = threading.Event(), threading.Event()
        def hold():
            lk = a.get_lock()  # kept: a closed array makes no new lock object
            lk.acquire()
            held.set()
            done.wait()
            lk.release()
        out = []
        t = threading.Thread(target=hold)
        t.start()
        held.wait()
        r = threading.Thread(target=lambda: out.append(a[0]))
        r.start()
        time.sleep(0.3)
        a.close()
        done.set()
        t.join()
        r.join()
        b = shmkit.Array.open(sys.argv[1])
        m = memoryview(b)
        try:
            b.close()
        except BufferError:
            out.append("BufferError")
        m[1] = 5
        del m
        lock = b.get_lock()
        b.close()
        assert lock.acquire(timeout=5)  # the lock object keeps the mapping
        lock.release()
        for x in (a, b):
            for call in (lambda: x[0], lambda: memoryview(x), x.get_lock, lambda: x.wait_changed(0, 0)):
                try:
                    call()
                except ValueError:
                    out.append("closed")
        print(out, repr(b), flush=True)
        """,
        name,
    )
    rc, out, err = child.finish(timeout=30)
    os.unlink(os.path.join("/dev/shm", name))
    assert rc == 0, err
    closed = ", 'closed'" * 8
    assert out == f'[0, \'BufferError\'{closed}] <shmkit.Array name="{name}" closed>\n'


@pytest.mark.parametrize(
    "timeout", [float("nan"), float("inf"), -float("inf"), -1.0, 1e300, 2**64, None]
)
def test_wait_changed_and_lock_timeouts_of_every_shape(timeout, names):
    # NaN is a ValueError; a negative timeout is 0; a huge one (or inf) is no limit. The
    # value is written first, so no call here has to wait.
    v = shmkit.Value("q", 0, name=names(), mode="seqlock")
    v.value = 1
    lock = shmkit.Value("q", 0, name=names()).get_lock()
    if timeout != timeout:  # NaN
        with pytest.raises(ValueError):
            v.wait_changed(0, timeout)
        with pytest.raises(ValueError):
            lock.acquire(timeout=timeout)
        return
    assert v.wait_changed(0, timeout)[0] == 1
    assert lock.acquire(timeout=timeout)
    lock.release()


def test_an_array_is_never_seen_without_its_initializer(name, spawn):
    # The initializer is in place before the array exists under its name: an opener never
    # reads zeros or half of it, and a creator killed right after leaves it whole.
    # (Before, the array was created zeroed and the initializer written after: opened as
    # soon as it existed and the creator killed, it stayed zero at the end.)
    n = 2_000_000
    child = spawn(
        """
        import sys, time, shmkit
        n = int(sys.argv[2])
        a = shmkit.Array("q", range(1, n + 1), name=sys.argv[1], lock=False)
        time.sleep(60)
        """,
        name,
        n,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            a = shmkit.Array.open(name)
            break
        except FileNotFoundError:
            assert time.monotonic() < deadline, "the child never created the array"
            assert child.proc.poll() is None, child.finish()
    child.signal(signal.SIGKILL)
    child.proc.wait()
    try:
        assert len(a) == n
        assert a[n - 1] == n
        assert np.array_equal(np.asarray(a), np.arange(1, n + 1, dtype=np.int64))
    finally:
        a.close()
        shmkit.Array.open(name).unlink()


def test_array_with_an_iterator_initializer_opens_an_existing_one(name):
    # The initializer is converted once: opening an existing array with a generator as the
    # initializer (exhausted by the first, failed, create) checks the length against it.
    a = shmkit.Array("i", [1, 2, 3], name=name)
    b = shmkit.Array("i", (x for x in [4, 5, 6]), name=name)
    assert b[:] == [1, 2, 3]  # opened: the initializer is not written
    with pytest.raises(shmkit.ShmkitError):
        shmkit.Array("i", (x for x in [1, 2]), name=name)  # another length
    b.close()
    a.unlink()


@pytest.mark.parametrize("numpy_before_1_22_4", [False, True])
def test_an_array_over_an_Array_stays_readable_whatever_close_said(
    name, monkeypatch, numpy_before_1_22_4, fork_call
):
    # As SharedMemory (test_segment.py): NumPy before 1.22.4 keeps a reference to the object
    # an array was made from but no buffer export of it, so Array.close() saw no export and
    # unmapped under the array (SIGSEGV on the next read).
    from conftest import OldFrombuffer

    if numpy_before_1_22_4:
        monkeypatch.setattr(np, "frombuffer", OldFrombuffer(np.frombuffer))
    a = shmkit.Array("B", 1 << 20, name=name)
    try:
        x = np.frombuffer(a, np.uint8)

        def child():
            x[:] = 7
            try:
                a.close()
            except BufferError:
                pass  # the array holds an export: refused
            # Read without allocating (a new 1 MiB array could be mapped where the cell was).
            assert (int(x[0]), int(x[-1])) == (7, 7)  # SIGSEGV if close() unmapped it

        # In a fork()ed child, so that a SIGSEGV is an exit code, not the end of pytest.
        assert fork_call(child, timeout=10.0) == 0
    finally:
        shmkit.Array.open(name).unlink()


def test_a_child_forked_while_a_thread_waits_in_an_Array_can_close_it(name, fork_call):
    # A call that waits with the GIL released (wait_changed, a read waiting for a writer or
    # the lock) held pyo3's shared borrow of the (then not frozen) object; a fork() from
    # another thread meanwhile left that borrow counted in the child for good, where close()
    # (a mutable borrow) always failed with "Already borrowed". (ShareableList was made
    # frozen for the same reason.)
    import threading

    a = shmkit.Array("q", 4, name=name, mode="seqlock")
    seq = a.sequence

    def wait():
        try:
            a.wait_changed(seq, timeout=2.0)
        except TimeoutError:
            pass

    waiter = threading.Thread(target=wait)
    waiter.start()
    try:
        time.sleep(0.3)  # the waiter is in its call, GIL released

        def child():
            a.close()
            with pytest.raises(ValueError):
                a[0]

        assert fork_call(child, timeout=10.0) == 0
    finally:
        waiter.join()
        a.close()
        a.unlink()


@pytest.mark.parametrize(
    "cls, args", [(shmkit.Value, ("i", 3)), (shmkit.Array, ("i", 4))], ids=["Value", "Array"]
)
def test_lifetime_keyword(cls, args, names, lifetime_of):
    a, b, c = names(), names(), names()
    objs = [
        cls.create(a, *args, lifetime="owned"),
        cls(*args, name=b, lifetime="owned"),
        cls.create(c, *args, perm=0o640),
    ]
    try:
        assert [lifetime_of(n) for n in (a, b, c)] == ["owned", "owned", "persistent"]
        # Opening keeps the cell's lifetime, as its permissions.
        cls(*args, name=c, lifetime="owned")
        assert lifetime_of(c) == "persistent"
        n = names()
        with pytest.raises(ValueError, match="lifetime must be 'persistent' or 'owned'"):
            cls.create(n, *args, lifetime="forever")
        with pytest.raises(ValueError, match="lifetime must be 'persistent' or 'owned'"):
            cls(*args, name=n, lifetime="forever")
        assert not os.path.exists(f"/dev/shm/{n}")
    finally:
        for o in objs:
            o.unlink()


def test_array_numpy_example_says_what_is_wrong_without_a_traceback(names, rust_bins):
    """`examples/python/array_numpy.py` (stock CPython and numpy) maps a cell; given a name
    that does not exist, or an object that is no cell, it says so in one line and exits 1
    (it ended in a `CalledProcessError` or `KeyError` traceback)."""
    import sys

    from conftest import ROOT

    script = str(ROOT / "examples" / "python" / "array_numpy.py")
    cli = str(rust_bins["shmkit"])
    arr, seg, missing = names("arr"), names("seg"), names("missing")
    subprocess.run([cli, "array", "create", arr, "d", "4"], check=True)
    subprocess.run([cli, "create", seg, "--size", "8"], check=True)

    def run(n):
        return subprocess.run([sys.executable, script, n, "--shmkit", cli],
                              capture_output=True, text=True, timeout=60)

    out = run(arr)
    assert out.returncode == 0, out.stderr
    assert "Array<d>[4]" in out.stdout
    for n, says in [(missing, "not found"), (seg, "not a value or array")]:
        out = run(n)
        assert out.returncode == 1, out.stderr
        assert says in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
