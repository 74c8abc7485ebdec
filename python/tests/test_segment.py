"""SharedMemory: the buffer protocol, closing with live views, CPython interop."""

import gc
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

import shmkit
from conftest import OldFrombuffer


def test_numpy_view_is_zero_copy_and_shared(name, spawn):
    seg = shmkit.SharedMemory.create(name, 4096)
    assert seg.size == 4096 and len(seg) == 4096
    arr = np.frombuffer(seg.buf, dtype=np.uint32)
    arr[:4] = [1, 2, 3, 4]
    assert bytes(memoryview(seg)[:8]) == b"\x01\x00\x00\x00\x02\x00\x00\x00"
    child = spawn(
        """
        import sys, numpy as np, shmkit
        seg = shmkit.SharedMemory(sys.argv[1])
        a = np.frombuffer(seg, dtype=np.uint32)
        print(int(a[:4].sum()), flush=True)
        a[4] = 99
        del a
        seg.close()
        """,
        name,
    )
    assert child.line() == "10"
    assert child.finish()[0] == 0
    assert arr[4] == 99  # written by the other process, seen through our view
    del arr
    seg.close()
    seg.unlink()


def test_close_with_live_views_raises_and_keeps_them_valid(name):
    seg = shmkit.SharedMemory.create(name, 64)
    view = seg.buf
    arr = np.frombuffer(seg, dtype=np.uint8)
    with pytest.raises(BufferError):
        seg.close()
    view[0] = 5
    assert arr[0] == 5  # both still valid
    view.release()
    with pytest.raises(BufferError):
        seg.close()
    del arr
    seg.close()
    seg.close()  # twice: harmless
    assert seg.buf is None  # as CPython's after close()
    seg.unlink()


def test_buf_is_one_view_that_close_releases_as_cpythons(names):
    # CPython's documented example (multiprocessing.shared_memory): `buffer = shm.buf` is
    # kept, and close() releases it. (Before, each .buf was a new memoryview, so the one
    # kept made close() raise BufferError.)
    import array

    shm_a = shmkit.SharedMemory(names(), create=True, size=10)
    assert type(shm_a.buf) is memoryview
    buffer = shm_a.buf
    assert buffer is shm_a.buf
    assert len(buffer) == 10
    buffer[:4] = bytearray([22, 33, 44, 55])
    buffer[4] = 100
    shm_b = shmkit.SharedMemory(shm_a.name)
    assert array.array("b", shm_b.buf[:5]) == array.array("b", [22, 33, 44, 55, 100])
    shm_b.buf[:5] = b"howdy"
    assert bytes(shm_a.buf[:5]) == b"howdy"
    shm_b.close()
    shm_a.close()
    with pytest.raises(ValueError):
        buffer[0]  # released by close()
    shm_a.unlink()

    # close() still refuses while views derived from buf live: a numpy array over it keeps
    # buf itself; a slice of it keeps the mapping (buf is released, as CPython's).
    shm = shmkit.SharedMemory(names(), create=True, size=16)
    arr = np.frombuffer(shm.buf, dtype=np.uint8)
    with pytest.raises(BufferError):
        shm.close()
    arr[0] = 9
    assert shm.buf[0] == 9  # buf still usable
    del arr
    part = shm.buf[2:4]
    with pytest.raises(BufferError):
        shm.close()
    part[0] = 7
    assert shm.buf[2] == 7  # a new buf
    del part
    shm.close()
    assert shm.buf is None  # as CPython's after close()
    shm.unlink()


def test_context_manager_closes(name):
    with shmkit.SharedMemory(name, create=True, size=16) as seg:
        seg.buf[:3] = b"abc"
    assert seg.buf is None and seg.size == 16  # closed; the size kept, as CPython's
    with shmkit.SharedMemory.open(name) as again:
        assert bytes(again.buf[:3]) == b"abc"
        again.unlink()


def test_raw_segment_is_cpythons_shared_memory(name, spawn):
    seg = shmkit.SharedMemory.create(name, 32, raw=True)
    seg.buf[0] = 7
    child = spawn(
        """
        import sys
        from multiprocessing import resource_tracker, shared_memory
        shm = shared_memory.SharedMemory(sys.argv[1])
        print(shm.buf[0], flush=True)
        shm.buf[1] = 8
        # CPython's tracker would unlink a segment it merely attached to (gh-82300).
        resource_tracker.unregister(shm._name, "shared_memory")
        shm.close()
        """,
        name,
    )
    assert child.line() == "7"
    assert child.finish()[0] == 0
    assert seg.buf[1] == 8
    seg.close()
    seg.unlink()


def test_bad_input_gives_clear_exceptions(names):
    with pytest.raises(ValueError):
        shmkit.SharedMemory.create(names(), 0)
    with pytest.raises(ValueError):
        shmkit.SharedMemory.create(names(), -5)
    with pytest.raises(ValueError, match="name"):
        shmkit.SharedMemory.create("bad/name", 8)
    with pytest.raises(ValueError):
        shmkit.Lock("")
    with pytest.raises(FileNotFoundError):
        shmkit.SharedMemory.open(names())
    with pytest.raises(FileNotFoundError):
        shmkit.Event.open(names())
    with pytest.raises(ValueError):
        shmkit.Semaphore.create(names(), -1)
    with pytest.raises(ValueError):
        shmkit.Barrier.create(names(), 0)
    sem_name = names()
    sem = shmkit.Semaphore.create(sem_name, 0)
    with pytest.raises(ValueError):
        sem.release(0)
    assert sem.get_value() == 0
    sem.unlink()
    n = names()
    lock = shmkit.Lock.create(n)
    with pytest.raises(FileExistsError):
        shmkit.Lock.create(n)
    with pytest.raises(shmkit.ShmkitError, match="lock"):
        shmkit.Event.open(n)  # another kind of object
    with pytest.raises(shmkit.ShmkitError):
        shmkit.SharedMemory.open(n)
    with pytest.raises(ValueError):
        lock.acquire(timeout=float("nan"))
    assert lock.acquire(timeout=-1)  # negative: 0, as multiprocessing
    lock.release()
    with pytest.raises(TypeError):
        lock.acquire(timeout="soon")
    assert not lock.locked()  # nothing changed by the refused calls
    lock.unlink()


def test_stubs_and_marker_are_installed():
    import importlib.resources as res
    import os

    pkg = os.path.dirname(shmkit.__file__)
    assert os.path.exists(os.path.join(pkg, "py.typed"))
    assert os.path.exists(os.path.join(pkg, "_shmkit.pyi"))
    assert sys.modules["shmkit"].__all__


@pytest.mark.parametrize(
    "call", ["shmkit.SharedMemory(name, raw=True)", "shmkit.ShareableList(name=name)"]
)
def test_sigint_interrupts_waiting_for_a_foreign_creator(name, spawn, call):
    # A raw object at 0 bytes (CPython's SharedMemory between its shm_open and its ftruncate,
    # or a creator that died there) is waited for up to 5 s. That wait held the GIL: Ctrl-C
    # did nothing until it gave up (and no other thread ran).
    fd = os.open(f"/dev/shm/{name}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.close(fd)
    code = f"""
import sys, shmkit
name = sys.argv[1]
print("calling", flush=True)
try:
    {call}
    print("opened", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
except shmkit.ShmkitError:
    print("gave up first", flush=True)
sys.stdin.readline()  # the parent has sized it
shm = shmkit.SharedMemory(name, raw=True)
print("then opened", len(shm), flush=True)
"""
    child = spawn(code, name)
    child.interrupt_blocked_call()
    assert child.line() == "interrupted"
    os.truncate(f"/dev/shm/{name}", 4096)
    child.send("sized")
    assert child.line() == "then opened 4096"
    assert child.finish()[0] == 0


@pytest.mark.parametrize("numpy_before_1_22_4", [False, True])
@pytest.mark.parametrize("over", ["buf", "segment"])
def test_an_array_over_the_segment_stays_readable_whatever_close_said(
    name, monkeypatch, numpy_before_1_22_4, over
):
    # NumPy before 1.22.4 keeps a reference to the object an array was made from but no
    # buffer export of it, so close() cannot see the array: it must not unmap under it.
    # (Review finding: with .buf cached and released by close(), the array read unmapped
    # pages, SIGSEGV; np.frombuffer(shm) itself had the same hole.)
    if numpy_before_1_22_4:
        monkeypatch.setattr(np, "frombuffer", OldFrombuffer(np.frombuffer))
    seg = shmkit.SharedMemory.create(name, 1 << 20)
    try:
        a = np.frombuffer(seg.buf if over == "buf" else seg, np.uint8)
        a[:] = 7
        try:
            seg.close()
            closed = True
        except BufferError:
            closed = False  # the array holds an export: refused, as CPython's
        assert closed == numpy_before_1_22_4
        assert (a == 7).all()  # mapped still, in either case
        del a
        seg.close()
    finally:
        seg.unlink()


def test_opening_a_raw_segment_as_a_shmkit_one_says_how_in_python(name):
    from multiprocessing import shared_memory

    raw = shmkit.SharedMemory.create(name, 4096, raw=True)  # as CPython's SharedMemory makes it
    try:
        for open_it in (shmkit.SharedMemory, shmkit.SharedMemory.open):
            with pytest.raises(shmkit.ShmkitError) as e:
                open_it(name)
            msg = str(e.value)
            assert "shmkit.SharedMemory(name, raw=True)" in msg, msg
            assert ".raw(true)" not in msg, msg
        # A lock has no raw form: no hint to open it raw, only what it holds.
        with pytest.raises(shmkit.ShmkitError) as e:
            shmkit.Lock.open(name)
        assert "raw=True" not in str(e.value), str(e.value)
        assert "holds no shmkit object (a raw segment), not a lock" in str(e.value)
        # A raw object smaller than shmkit's header: the other message.
        small = shared_memory.SharedMemory(create=True, size=16)
        try:
            with pytest.raises(shmkit.ShmkitError, match=r"SharedMemory\(name, raw=True\)"):
                shmkit.SharedMemory(small.name)
        finally:
            small.close()
            small.unlink()
    finally:
        raw.close()
        raw.unlink()


def test_lifetime_keyword(names, lifetime_of):
    a, b, c = names(), names(), names()
    segs = [
        shmkit.SharedMemory.create(a, 16, lifetime="owned"),
        shmkit.SharedMemory(b, create=True, size=16, lifetime="owned"),
        shmkit.SharedMemory.create(c, 16),
    ]
    try:
        assert [lifetime_of(n) for n in (a, b, c)] == ["owned", "owned", "persistent"]
        n = names()
        with pytest.raises(ValueError, match="lifetime must be 'persistent' or 'owned'"):
            shmkit.SharedMemory.create(n, 16, lifetime="forever")
        with pytest.raises(ValueError, match="lifetime must be 'persistent' or 'owned'"):
            shmkit.SharedMemory(c, lifetime="forever")  # checked even when only opening
        with pytest.raises(ValueError, match="raw segment has no header"):
            shmkit.SharedMemory.create(n, 16, raw=True, lifetime="owned")
        assert not os.path.exists(f"/dev/shm/{n}")
    finally:
        for s in segs:
            s.close()
            s.unlink()


def test_shared_memory_usable_while_close_runs_python_code(name):
    # `buf = shm.buf; ...; shm.close()` is CPython's documented pattern; close() then calls
    # `weakref.finalize(...)` (Python code). It did so with `&mut self` borrowed, so any code
    # that ran there (a garbage collection's gc.callbacks in this thread, or another thread
    # the GIL switched to) and touched the same SharedMemory got "Already mutably borrowed"
    # (RuntimeError) from len(), and a PanicException from memoryview(shm).
    shm = shmkit.SharedMemory.create(name, 4096)
    buf = shm.buf
    probes = []

    def during_gc(phase, info):
        if phase != "start":
            return
        try:
            buf.nbytes
            return  # close() has not released `buf` yet
        except ValueError:
            pass
        for what, f in (
            ("len", lambda: len(shm)),
            ("memoryview", lambda: memoryview(shm).release()),
            ("buf", lambda: shm.buf),
            ("repr", lambda: repr(shm)),
        ):
            try:
                f()
                probes.append((what, "ok"))
            except (ValueError, BufferError):
                probes.append((what, "ok"))  # closed, or refused: fine
            except BaseException as e:  # PanicException derives from BaseException
                probes.append((what, f"{type(e).__name__}: {e}"))

    old = gc.get_threshold()
    gc.collect()
    gc.callbacks.append(during_gc)
    try:
        gc.set_threshold(1)  # every tracked allocation collects, also those inside close()
        try:
            shm.close()
        except BufferError:
            pass  # a probe's `shm.buf` made a new view meanwhile: refused, as it should be
        finally:
            gc.set_threshold(*old)
    finally:
        gc.callbacks.remove(during_gc)
        del buf
    assert probes, "no collection ran inside close()"
    bad = [p for p in probes if p[1] != "ok"]
    assert not bad, bad
    shm.close()  # whatever the probes left: closes now
    assert shm.buf is None
    shm.unlink()


def test_shared_memory_read_by_another_thread_while_closed(names):
    # The same with threads: thread B reads `len(shm)` / `memoryview(shm)` / `shm.buf` while
    # thread A closes objects whose `buf` is referenced. Only the GIL orders these calls; B
    # must never see a borrow error or a panic, and A's close() either closes or refuses.
    errors = []
    stop = threading.Event()
    current = [None]

    def reader():
        while not stop.is_set():
            s = current[0]
            if s is None:
                continue
            try:
                len(s)
                s.size
                repr(s)
                memoryview(s).release()
                s.buf
            except (ValueError, BufferError):
                pass  # closed, or a view of a released `buf`: fine
            except BaseException as e:
                errors.append(f"{type(e).__name__}: {e}")
                return

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(300):
            if errors:
                break
            s = shmkit.SharedMemory.create(names(), 4096)
            try:
                buf = s.buf
                current[0] = s
                while True:
                    try:
                        s.close()
                        break
                    except BufferError:
                        pass  # the reader's view is alive: again
                assert s.buf is None
                del buf
                current[0] = None
            finally:
                s.unlink()
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)
    assert not errors, errors[:3]


def test_opening_a_foreign_object_as_a_typed_one_says_what_it_holds(names):
    """New-user walkthrough: a ShareableList (CPython's or shmkit's) or a raw segment opened as
    a lock, an event, a value, a queue or a frames subscriber said 'corrupt: magic is [06, 00,
    ...]'. It says what the object holds, as `shmkit ls` names it, as a ShmkitError (a kind
    mismatch, not a ValueError or a corruption)."""
    import re
    from multiprocessing import shared_memory

    cpy = shared_memory.ShareableList([6])  # made by CPython (its unlink() below unregisters it)
    ours = shmkit.ShareableList([6], name=names(), lifetime="persistent")
    raw = shmkit.SharedMemory.create(names(), 4096, raw=True)
    raw.buf[:8] = bytes([6] * 8)
    try:
        for name, holds in (
            (cpy.shm.name, "a ShareableList made by CPython"),
            (ours.name, "a shareable-list"),
            (raw.name, "no shmkit object (a raw segment)"),
        ):
            for open_it, what in (
                (shmkit.Lock.open, "a lock"),
                (shmkit.Event.open, "an event"),
                (shmkit.Queue, "an mpmc-bytes queue"),
                (shmkit.FrameSubscriber, "a frames channel"),
            ):
                with pytest.raises(shmkit.ShmkitError) as e:
                    open_it(name)
                msg = str(e.value)
                assert not isinstance(e.value, ValueError), msg
                assert f"holds {holds}, not {what}" in msg, msg
                assert "corrupt" not in msg, msg
            with pytest.raises(shmkit.ShmkitError, match=re.escape(f"holds {holds}, asked for a value")):
                shmkit.Value.open(name)
    finally:
        raw.close()
        raw.unlink()
        ours.close()
        ours.unlink()
        cpy.shm.close()
        cpy.shm.unlink()
