"""multiprocessing parity: each test does what a multiprocessing user does and expects what
multiprocessing gives (CPython 3.11's multiprocessing/synchronize.py, sharedctypes.py,
queues.py, shared_memory.py)."""

import multiprocessing as mp
import pickle
import sys
import threading

import numpy as np
import pytest

import shmkit


def _other_thread_acquires(lock, timeout=0.2):
    got = []

    def run():
        ok = lock.acquire(True, timeout)
        got.append(ok)
        if ok:
            lock.release()

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return got[0]


def test_with_value_holds_its_lock_as_multiprocessing_does(name):
    # multiprocessing: SynchronizedBase.__enter__ is self._lock.__enter__(): `with v:` locks.
    ref = mp.Value("i", 0)
    with ref:
        assert not _other_thread_acquires(ref.get_lock())
    v = shmkit.Value("i", 0, name=name)
    with v:
        assert not _other_thread_acquires(v.get_lock()), "`with v:` did not take v's lock"


def test_with_array_holds_its_lock_and_leaves_it_usable(name):
    ref = mp.Array("i", 3)
    with ref:
        ref[0] = 1
        assert not _other_thread_acquires(ref.get_lock())
    assert ref[0] == 1
    a = shmkit.Array("i", 3, name=name)
    with a:
        a[0] = 1
        assert not _other_thread_acquires(a.get_lock()), "`with a:` did not take a's lock"
    assert a[0] == 1  # shmkit: ValueError, the array was closed by __exit__


@pytest.mark.parametrize("kind", ["Lock", "RLock", "Semaphore", "Condition"])
def test_acquire_takes_an_int_block_as_multiprocessing_does(names, kind):
    obj = getattr(shmkit, kind)(names())
    assert obj.acquire(0) is True  # multiprocessing and threading: True
    obj.release()
    assert obj.acquire(1, 1) is True
    obj.release()


def test_cell_lock_acquire_takes_an_int_block(name):
    lock = shmkit.Value("i", 0, name=name).get_lock()
    assert lock.acquire(0) is True
    lock.release()


def test_queue_put_get_take_an_int_block(name):
    q = shmkit.Queue(name, 4096)
    q.put(1, 0)  # multiprocessing.Queue: `if block and timeout is None` (any truthy object)
    assert q.get(0) == 1


def test_char_array_iterates_as_it_indexes(name):
    ref = mp.Array("c", b"abc")
    assert list(ref) == [b"a", b"b", b"c"]
    a = shmkit.Array("c", b"abc", name=name)
    assert [a[i] for i in range(len(a))] == [b"a", b"b", b"c"]
    assert list(a) == [b"a", b"b", b"c"]  # shmkit: [97, 98, 99]
    assert b"a" in a  # shmkit: False


def test_numpy_scalars_are_elements_as_ctypes_takes_them(names):
    # ctypes converts through __index__ / __float__: multiprocessing takes all of these.
    assert mp.Value("q", np.int64(7)).value == 7
    assert mp.Array("i", np.arange(3))[:] == [0, 1, 2]
    v = shmkit.Value("q", 0, name=names())
    v += np.int64(2)  # accepted
    assert v.fetch_add(np.int64(2)) == 2  # accepted
    v.value = np.int64(7)  # TypeError: typecode 'q' needs an int, not int64
    assert v.value == 7
    assert shmkit.Array("i", np.arange(3), name=names())[:] == [0, 1, 2]
    d = shmkit.Array("d", 2, name=names())
    d[:] = np.zeros(2, dtype=np.float32)
    d[0] = np.int64(1)
    assert d[:] == [1.0, 0.0]


def test_shared_memory_pickles_by_name(name):
    # multiprocessing.shared_memory.SharedMemory has __reduce__; the README says every shmkit
    # class "pickles by name"; a spawn child gets its arguments pickled.
    shm = shmkit.SharedMemory(name, create=True, size=16)
    try:
        shm.buf[0] = 7
        other = pickle.loads(pickle.dumps(shm))
        assert other.name == name and other.buf[0] == 7
        other.close()
    finally:
        shm.close()


def test_barrier_of_other_parties_is_refused_not_silently_opened(name):
    shmkit.Barrier(name, 2)
    # Value/Array refuse another typecode/length (ShmkitError) and Queue another capacity
    # (ValueError); a barrier opened for 3 parties silently waits for 2.
    with pytest.raises((ValueError, shmkit.ShmkitError)):
        shmkit.Barrier(name, 3)


def test_condition_notify_takes_any_count(name):
    c = shmkit.Condition(name)
    with c:
        c.notify(sys.maxsize)  # multiprocessing's own notify_all() is notify(sys.maxsize)
        c.notify(2**40)


def test_shareable_list_count_and_index_use_equality(name):
    sl = shmkit.ShareableList([1, b"ab"], name=name)
    # CPython: sum(value == entry for entry in self) / `if value == entry`
    assert sl.count(np.int64(1)) == 1
    assert sl.index(np.int64(1)) == 0
    assert sl.count(bytearray(b"ab")) == 1
    assert sl.index(bytearray(b"ab")) == 1


def test_get_lock_pickles_as_multiprocessing_lets_a_child_get_it(name):
    # multiprocessing: Process(target=f, args=(v.get_lock(),)) works under spawn/forkserver
    # (the RLock pickles while a child is being spawned); shmkit: TypeError.
    v = shmkit.Value("i", 0, name=name)
    lock = pickle.loads(pickle.dumps(v.get_lock()))
    assert lock.acquire(timeout=1)
    lock.release()


# Beyond the review's tests: the rest of each finding, and what the fixes must not break.


def test_with_value_is_an_atomic_increment_across_processes(name, spawn):
    # The review's failing case: `with v: v.value = v.value + 1` in two processes lost
    # updates while `with v:` did not lock.
    n = 3000
    v = shmkit.Value("i", 0, name=name)
    child = spawn(
        """
        import sys, shmkit
        v = shmkit.Value.open(sys.argv[1])
        print("ready", flush=True)
        for _ in range(int(sys.argv[2])):
            with v:
                v.value = v.value + 1
        """,
        name,
        n,
    )
    assert child.line() == "ready"
    for _ in range(n):
        with v:
            v.value = v.value + 1
    assert child.finish()[0] == 0
    assert v.value == 2 * n


def test_value_and_array_acquire_release_are_their_lock(names):
    v = shmkit.Value("i", 0, name=names())
    a = shmkit.Array("d", 2, name=names())
    for obj in (v, a):
        assert obj.acquire(0) is True  # any truth value, as SynchronizedBase.acquire
        assert not _other_thread_acquires(obj.get_lock())
        obj.release()
        assert _other_thread_acquires(obj.get_lock())
        assert obj.acquire(block=True, timeout=1) is True
        obj.release()
        with pytest.raises(RuntimeError):
            obj.release()  # not held: RLockNotOwned, as get_lock().release()


def test_with_on_an_atomic_cell_is_a_clear_error(names):
    # multiprocessing: lock=False gives a RawValue, which has no __enter__ at all.
    v = shmkit.Value("q", 0, name=names(), mode="atomic")
    a = shmkit.Array("i", 2, name=names(), mode="atomic")
    for obj in (v, a):
        with pytest.raises(TypeError, match="atomic"):
            with obj:
                pass
        with pytest.raises(TypeError, match="atomic"):
            obj.acquire()
    v += 1
    assert v.value == 1 and a[:] == [0, 0]


def test_with_array_does_not_close_it(name):
    a = shmkit.Array("i", [1, 2], name=name)
    with a:
        pass
    with a:  # and again
        a[1] = 5
    assert a[:] == [1, 5]
    with a:
        a.close()  # closed inside the block: __exit__ still releases the lock
    other = shmkit.Array.open(name)
    assert _other_thread_acquires(other.get_lock())


@pytest.mark.parametrize("kind", ["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition"])
def test_acquire_block_is_any_truth_value(names, kind):
    obj = getattr(shmkit, kind)(names())
    assert obj.acquire(None) is True  # falsy: one try
    obj.release()
    assert obj.acquire([1], timeout=1) is True  # truthy
    obj.release()
    assert obj.acquire(block=0) is True
    obj.release()


def test_block_that_cannot_be_a_truth_value_raises_its_error(names):
    class Bad:
        def __bool__(self):
            raise ZeroDivisionError

    lock = shmkit.Lock(names())
    with pytest.raises(ZeroDivisionError):
        lock.acquire(Bad())
    assert lock.acquire(False) is True  # nothing was taken
    lock.release()


def test_queue_block_is_any_truth_value(name):
    import queue

    q = shmkit.Queue(name, 4096)
    with pytest.raises(queue.Empty):
        q.get(0)  # falsy: no wait
    with pytest.raises(queue.Empty):
        q.get_bytes(block=0)
    q.put_bytes(b"x", 0)
    assert q.get_bytes(1, 1) == b"x"
    q.put("y", block=1)
    assert q.get(block=1, timeout=1) == "y"


def test_char_array_iteration_and_membership_of_a_slice_and_after_writes(name):
    a = shmkit.Array("c", 4, name=name)
    a.value = b"xy"
    assert list(a) == [b"x", b"y", b"\x00", b"\x00"]
    assert b"y" in a and b"z" not in a and 120 not in a
    assert list(iter(a)) == [a[i] for i in range(len(a))]


def test_int_typecodes_take_index_objects_not_floats_as_ctypes(names):
    import ctypes

    class Idx:
        def __index__(self):
            return 5

    # ctypes: __index__ accepted, float refused.
    assert ctypes.c_int(Idx()).value == 5
    with pytest.raises(TypeError):
        ctypes.c_int(1.0)
    for tc in "bBhHiIlLqQ":
        v = shmkit.Value(tc, Idx(), name=names())
        assert v.value == 5
        v.value = np.uint8(7)
        assert v.value == 7
        with pytest.raises(TypeError):
            v.value = 1.0
        with pytest.raises(TypeError):
            v.value = np.float64(1.0)
        with pytest.raises(OverflowError):
            v.value = np.int64(-1) if tc.isupper() else 2**70
        assert v.value == 7  # nothing written by the refused sets
    a = shmkit.Array("q", 3, name=names())
    a[0] = np.int32(-3)
    a[1:] = [np.int8(4), Idx()]
    assert a[:] == [-3, 4, 5]
    a[np.int64(2)] = 9  # an __index__ index, as ctypes arrays take
    assert a[np.int64(-1)] == 9
    assert a.fetch_add(0, np.int64(1)) == -3 and a[0] == -2


def test_float_typecodes_take_float_and_index_objects_as_ctypes(names):
    class Flt:
        def __float__(self):
            return 2.5

    v = shmkit.Value("f", Flt(), name=names())
    assert v.value == 2.5
    v.value = np.float32(0.5)
    assert v.value == 0.5
    v.value = True
    assert v.value == 1.0
    with pytest.raises(TypeError, match="'f' needs a float"):
        v.value = "1.0"
    assert v.value == 1.0
    d = shmkit.Array("d", np.linspace(0, 1, 3), name=names())
    assert d[:] == [0.0, 0.5, 1.0]


def test_shared_memory_pickle_opens_and_never_creates(names):
    n = names()
    shm = shmkit.SharedMemory(n, create=True, size=16)
    fn, args = shm.__reduce__()
    assert fn is shmkit.SharedMemory and args == (n, False, 0)  # CPython's shape
    shm.unlink()
    with pytest.raises(FileNotFoundError):
        pickle.loads(pickle.dumps(shm))  # gone: not created again
    shm.close()
    r = names()
    raw = shmkit.SharedMemory(r, create=True, size=8, raw=True)
    raw.buf[1] = 9
    other = pickle.loads(pickle.dumps(raw))  # a raw segment reopens as raw
    assert other.buf[1] == 9 and other.size == raw.size
    other.close()
    raw.close()


def test_cell_locks_pickle_to_the_same_lock(names):
    v = shmkit.Value("i", 0, name=names())
    a = shmkit.Array("d", 3, name=names())
    for obj in (v, a):
        lock = pickle.loads(pickle.dumps(obj.get_lock()))
        assert type(lock) is shmkit.CellLock
        with lock:
            assert not _other_thread_acquires(obj.get_lock())
        assert _other_thread_acquires(obj.get_lock())


def _spawned_child(lock, shm, array_lock):
    # Runs in a spawn child: the objects came pickled.
    with lock:
        shm.buf[0] = 42
    with array_lock:
        pass
    shm.close()


def test_spawn_child_gets_shared_memory_and_cell_locks(names):
    v = shmkit.Value("i", 0, name=names())
    a = shmkit.Array("i", 2, name=names())
    shm = shmkit.SharedMemory(names(), create=True, size=4)
    p = mp.get_context("spawn").Process(
        target=_spawned_child, args=(v.get_lock(), shm, a.get_lock())
    )
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert shm.buf[0] == 42
    shm.close()


def test_bounded_semaphore_of_another_bound_is_refused(names):
    name = names()
    s = shmkit.BoundedSemaphore(name, 2)
    with pytest.raises(ValueError, match=r"bound 2.*3"):
        shmkit.BoundedSemaphore(name, 3)
    assert shmkit.BoundedSemaphore(name, 2).get_value() == 2
    assert s.acquire(False)
    assert shmkit.BoundedSemaphore(name, 2).get_value() == 1  # same bound: opened
    # A plain semaphore's value is only its start: another one opens it.
    plain = names()
    assert shmkit.Semaphore(plain, 1).acquire(False)
    assert shmkit.Semaphore(plain, 5).get_value() == 0


def test_barrier_mismatch_names_both_counts(name):
    shmkit.Barrier(name, 2)
    with pytest.raises(ValueError, match=r"2 parties.*3"):
        shmkit.Barrier(name, 3)
    assert shmkit.Barrier(name, 2).parties == 2


def test_condition_notify_counts_as_multiprocessing(name):
    c = shmkit.Condition(name)
    with c:
        c.notify(0)
        c.notify(-1)
        c.notify(-(2**70))
        c.notify(True)
        with pytest.raises(TypeError):
            c.notify(1.5)
    with pytest.raises(RuntimeError):
        c.notify(0)  # not held: refused whatever n is, as multiprocessing asserts first


def test_condition_notify_wakes_a_waiter_with_a_large_count(name):
    c = shmkit.Condition(name)
    woke = []

    def waiter():
        with c:
            woke.append(c.wait(10))

    t = threading.Thread(target=waiter)
    with c:
        t.start()
    while True:  # the waiter waits once it holds no lock and is registered: poll for it
        with c:
            c.notify(2**70)
        t.join(0.05)
        if not t.is_alive():
            break
    assert woke == [True]


def test_shareable_list_count_and_index_fall_back_to_equality(name):
    sl = shmkit.ShareableList([1, 2.5, "a", True, None], name=name)
    assert sl.count(np.float64(2.5)) == 1 and sl.index(np.float64(2.5)) == 1
    assert sl.count(1) == 2  # 1 == True, as CPython's
    assert sl.count(2**70) == 0
    with pytest.raises(ValueError):
        sl.index(2**70)
    with pytest.raises(ValueError):
        sl.index(bytearray(b"zz"))
    sl.close()


def test_minor_findings(names):
    with pytest.raises(ValueError, match="at least one element.*multiprocessing"):
        shmkit.Array("i", 0, name=names())
    with pytest.raises(ValueError, match="at least one element"):
        shmkit.Array("i", [], name=names())
    a = shmkit.Array("c", 4, name=names())
    for key in (2**70, -(2**70)):
        with pytest.raises(IndexError):
            a[key]
        with pytest.raises(IndexError):
            a[key] = b"x"
    with pytest.raises(TypeError):
        a["0"]
    a.raw = memoryview(b"ab")
    a.raw = np.frombuffer(b"xyz", dtype=np.uint8)
    assert a.raw == b"xyz\x00"
    with pytest.raises(TypeError):
        a.raw = "str"
    with pytest.raises(TypeError):
        a.value = memoryview(b"ab")  # as ctypes: .value takes bytes only
    shm = shmkit.SharedMemory(names(), create=True, size=8)
    shm.close()
    assert shm.size == 8 and shm.buf is None
    raw = names()
    shmkit.SharedMemory(raw, create=True, size=8192, raw=True).close()
    with pytest.raises(shmkit.ShmkitError, match=r"raw=True") as e:
        shmkit.SharedMemory(raw)
    assert ".raw(true)" not in str(e.value)
