"""The hand-written C entry points (python/src/fastcall.rs) of Value.fetch_add, Value.value,
the cell lock's and Lock's acquire/release/__enter__/__exit__: their edge cases give what
pyo3's wrappers give (wrong self, bad arguments, overflow, keywords, other argument counts),
and the locks work across threads."""

import gc
import inspect
import threading
import weakref

import pytest

import shmkit


@pytest.fixture
def atomic(names):
    v = shmkit.Value("q", 0, name=names("atomic"), lock=False)
    yield v
    v.unlink()


@pytest.fixture
def locked(names):
    v = shmkit.Value("q", 0, name=names("locked"))
    yield v
    v.unlink()


@pytest.fixture
def lock(names):
    l = shmkit.Lock(names("lock"))
    yield l
    l.unlink()


def test_wrong_self_is_a_type_error(atomic, locked, lock):
    with pytest.raises(TypeError, match="doesn't apply"):
        type(atomic).fetch_add(object(), 1)
    with pytest.raises(TypeError):
        type(atomic).value.__get__(object())
    with pytest.raises(TypeError):
        type(atomic).value.__set__(object(), 1)
    # A lock of the other kind is a wrong self too.
    for l, other in ((locked.get_lock(), lock), (lock, locked.get_lock())):
        t = type(l)
        with pytest.raises(TypeError):
            t.acquire(other)
        with pytest.raises(TypeError):
            t.release(other)
        with pytest.raises(TypeError):
            t.__enter__(object())
        with pytest.raises(TypeError):
            t.__exit__(object(), None, None, None)
        assert other.acquire(False) is True  # untouched by the failed calls
        other.release()


def test_iadd_slot_matches_pyo3s(atomic, locked):
    # `v += n` goes to the hand-written nb_inplace_add; `type(v).__iadd__` is still pyo3's
    # wrapper. Same results, same errors, and both return the value itself.
    import operator

    for v in (atomic, locked):
        same = v
        v += 2
        assert v is same
        assert type(v).__iadd__(v, 3) is v
        assert operator.iadd(v, True) is v  # an int subclass: not the exact-int case
        assert v.value == 6
        for bad, exc in ((1.5, TypeError), ("1", TypeError), (2**64, OverflowError)):
            with pytest.raises(exc):
                v += bad
            with pytest.raises(exc):
                type(v).__iadd__(v, bad)
        v += 2**64 - 1  # adds -1
        assert v.value == 5


def test_fetch_add_operands(atomic):
    assert atomic.fetch_add(5) == 0
    assert atomic.fetch_add(True) == 5  # an int subclass: not the exact-int case
    assert atomic.fetch_add(-7) == 6
    assert atomic.value == -1
    with pytest.raises(TypeError):
        atomic.fetch_add("1")
    with pytest.raises(TypeError):
        atomic.fetch_add(1.5)
    with pytest.raises(OverflowError):
        atomic.fetch_add(2**64)
    with pytest.raises(OverflowError):
        atomic.fetch_add(-(2**63) - 1)
    assert atomic.value == -1  # nothing written by the failures
    # Past i64, below 2**64: the 128-bit path, wrapping as C atomics do.
    atomic.value = 0
    assert atomic.fetch_add(2**64 - 1) == 0
    assert atomic.value == -1


def test_fetch_add_other_shapes_go_to_the_full_signature(atomic, locked):
    assert atomic.fetch_add(v=3) == 0
    assert atomic.value == 3
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        atomic.fetch_add()
    with pytest.raises(TypeError):
        atomic.fetch_add(1, 2)
    with pytest.raises(TypeError):
        atomic.fetch_add(w=1)
    assert atomic.value == 3
    # A locked value adds under its lock.
    assert locked.fetch_add(1) == locked.value - 1


def test_value_getter_and_setter(atomic, locked):
    for v in (atomic, locked):
        v.value = 2**63 - 1
        assert v.value == 2**63 - 1
        with pytest.raises(OverflowError):
            v.value = 2**63
        with pytest.raises(TypeError):
            v.value = "x"
        with pytest.raises(TypeError):
            v.value = 1.0
        assert v.value == 2**63 - 1
        with pytest.raises(AttributeError):
            del v.value


def test_signatures_and_docs_are_pyo3s():
    p = inspect.signature(shmkit.Value.fetch_add).parameters
    assert list(p) == ["self", "v"]
    assert "Acquire the lock" in shmkit.Lock.acquire.__doc__
    p = inspect.signature(shmkit.Lock.acquire).parameters
    assert list(p) == ["self", "block", "timeout"]
    assert list(inspect.signature(shmkit.Lock.__exit__).parameters) == [
        "self",
        "exc_type",
        "exc",
        "tb",
    ]
    assert "value" in (shmkit.Value.value.__doc__ or "")


@pytest.mark.parametrize("kind", ["cell", "lock"])
def test_lock_argument_shapes(kind, locked, lock):
    l = locked.get_lock() if kind == "cell" else lock
    assert l.acquire() is True
    assert l.acquire(False) is False  # positional: pyo3's path
    assert l.acquire(block=False) is False
    l.release()
    assert l.acquire(True, 0.5) is True
    l.release()
    assert l.acquire(timeout=0.5) is True
    with pytest.raises(TypeError):
        l.__exit__()
    with pytest.raises(TypeError):
        l.__exit__(None, None, None, None)
    # Keywords: pyo3's path, which accepts them.
    l.__exit__(exc_type=None, exc=None, tb=None)
    with pytest.raises(RuntimeError):
        l.release()
    with pytest.raises(RuntimeError):
        l.__exit__(None, None, None)
    with pytest.raises(ValueError):
        l.acquire(timeout=float("nan"))


@pytest.mark.parametrize("kind", ["cell", "lock"])
def test_lock_from_two_threads(kind, locked, lock):
    l = locked.get_lock() if kind == "cell" else lock
    held = threading.Event()
    go = threading.Event()
    out = {}

    def other():
        with l:  # the fast __enter__/__exit__
            held.set()
            go.wait()
        # Blocking acquire() with no argument: the fast path's first attempt fails while
        # the main thread holds it, then the GIL-releasing wait.
        out["acquired"] = l.acquire()
        try:
            l.release()
        except RuntimeError:
            out["release"] = "error"
        out["release"] = out.get("release", "ok")

    t = threading.Thread(target=other)
    t.start()
    assert held.wait(10)
    assert l.acquire(timeout=0.05) is False  # held by the other thread
    with pytest.raises(RuntimeError):
        l.release()  # not this thread's
    go.set()
    assert l.acquire() is True  # waits for the other thread's __exit__
    # The other thread now waits in acquire(); release lets it in.
    l.release()
    t.join(10)
    assert not t.is_alive()
    assert out == {"acquired": True, "release": "ok"}


def test_locked_increment_from_threads_with_the_fast_paths(locked):
    l = locked.get_lock()

    def work():
        for _ in range(3000):
            with l:
                locked.value += 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert locked.value == 12000


def test_fast_paths_leave_no_objects_in_pyo3s_pool(names):
    # A fast entry point runs without pyo3's GIL count, so a Python object it drops waits in
    # pyo3's reference pool until some pyo3 wrapper runs. fetch_add(2**63) and put(10**20)
    # made and dropped an OverflowError on their way to the 128-bit / pickle path, and put of
    # a str with a lone surrogate a UnicodeEncodeError: a loop of fast calls kept every one
    # alive (2M fetch_add grew the process by 500 MB).
    v = shmkit.Value("Q", 0, name=names("u64"), lock=False)
    q = shmkit.Queue.create(names("queue"), 1 << 16)

    def errors():
        return sum(type(o) in (OverflowError, UnicodeEncodeError) for o in gc.get_objects())

    before = errors()
    for _ in range(100):
        v.fetch_add(2**63)
        q.put(10**20)
        assert q.get() == 10**20
        q.put("\udcff")  # no UTF-8 form: pickled by pickle.dumps
        assert q.get() == "\udcff"
    assert errors() == before
    assert v.value == 0  # 200 * 2**63 wraps to 0

    class Index:
        """An operand whose conversion fails with an error that holds the operand."""

        def __index__(self):
            raise ValueError(self)

    operand = Index()
    alive = weakref.ref(operand)
    with pytest.raises(ValueError):
        v.fetch_add(operand)
    del operand
    assert alive() is None  # no dropped error (waiting in the pool) keeps it
    v.unlink()
    q.unlink()
