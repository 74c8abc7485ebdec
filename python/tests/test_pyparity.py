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
