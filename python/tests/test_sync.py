"""The sync primitives across separate Python processes."""

import gc
import os
import signal
import sys
import threading
import time
import weakref

import pytest

import shmkit


def test_lock_acquire_release_and_context_manager(name):
    lock = shmkit.Lock.create(name)
    assert lock.name == name
    assert lock.acquire() is True
    assert lock.locked()
    assert lock.acquire(block=False) is False  # not recursive: False, as threading's
    lock.release()
    assert not lock.locked()
    with lock:
        assert lock.locked()
    assert not lock.locked()
    with pytest.raises(RuntimeError):
        lock.release()
    lock.unlink()


def test_lock_held_by_another_process(name, spawn):
    lock = shmkit.Lock(name)
    child = spawn(
        """
        import sys, shmkit
        lock = shmkit.Lock.open(sys.argv[1])
        lock.acquire()
        print("held", flush=True)
        sys.stdin.readline()
        lock.release()
        print("released", flush=True)
        """,
        name,
    )
    assert child.line() == "held"
    assert lock.acquire(block=False) is False
    assert lock.acquire(timeout=0.01) is False
    child.send("go")
    assert lock.acquire(timeout=30) is True
    lock.release()
    assert child.finish()[0] == 0


def test_lock_protects_a_counter_across_processes(names, spawn):
    lock_name, seg_name = names("lock"), names("seg")
    lock = shmkit.Lock.create(lock_name)
    seg = shmkit.SharedMemory.create(seg_name, 8)
    code = """
        import sys, shmkit
        lock = shmkit.Lock.open(sys.argv[1])
        seg = shmkit.SharedMemory.open(sys.argv[2])
        view = seg.buf.cast("Q")
        for _ in range(2000):
            with lock:
                view[0] = view[0] + 1
        view.release()
        seg.close()
        """
    children = [spawn(code, lock_name, seg_name) for _ in range(3)]
    for c in children:
        rc, _, err = c.finish()
        assert rc == 0, err
    view = seg.buf.cast("Q")
    assert view[0] == 6000
    view.release()
    seg.close()
    seg.unlink()
    lock.unlink()


def test_rlock_is_recursive_and_owned(name, spawn):
    r = shmkit.RLock(name)
    assert r.acquire() and r.acquire()
    r.release()
    assert r.locked()
    child = spawn(
        """
        import sys, shmkit
        r = shmkit.RLock.open(sys.argv[1])
        print(r.acquire(block=False), flush=True)
        try:
            r.release()
        except RuntimeError:
            print("not owner", flush=True)
        """,
        name,
    )
    assert child.line() == "False"
    assert child.line() == "not owner"
    r.release()
    assert not r.locked()
    r.unlink()


def test_release_of_a_lock_not_held_raises_what_multiprocessing_and_threading_raise(names):
    # multiprocessing.Lock raises ValueError, multiprocessing.RLock (also the default lock of
    # its Condition and of get_lock()) AssertionError, threading RuntimeError: code written
    # for any of them catches shmkit's. (Before: RuntimeError only.)
    lock, rlock, cond = shmkit.Lock(names()), shmkit.RLock(names()), shmkit.Condition(names())
    value = shmkit.Value("i", 0, name=names())
    cases = [
        (lock.release, ValueError, "LockNotHeld"),
        (rlock.release, AssertionError, "RLockNotOwned"),
        (cond.release, AssertionError, "RLockNotOwned"),
        (value.get_lock().release, AssertionError, "RLockNotOwned"),
        # multiprocessing's Condition asserts that its lock is held (threading's raises
        # RuntimeError): wait and notify without it. (Before: RuntimeError only.)
        (lambda: cond.wait(0), AssertionError, "RLockNotOwned"),
        (cond.notify, AssertionError, "RLockNotOwned"),
        (cond.notify_all, AssertionError, "RLockNotOwned"),
    ]
    for release, mp_type, shmkit_type in cases:
        for caught in (mp_type, RuntimeError):
            with pytest.raises(caught) as e:
                release()
        assert type(e.value).__name__ == shmkit_type
        assert type(e.value) is getattr(shmkit, shmkit_type)
    # The fast path (with-statement exit, no-argument release) raises the same.
    lock.acquire()
    lock.release()
    with pytest.raises(ValueError):
        lock.__exit__(None, None, None)
    # BoundedSemaphore released past its value: ValueError, as both raise.
    with pytest.raises(ValueError):
        shmkit.BoundedSemaphore(names(), 1).release()
    for obj in (lock, rlock, cond, value):
        obj.unlink()


def test_semaphore_across_processes(name, spawn):
    sem = shmkit.Semaphore.create(name, 0)
    assert sem.acquire(block=False) is False
    child = spawn(
        """
        import sys, shmkit
        shmkit.Semaphore.open(sys.argv[1]).release(2)
        """,
        name,
    )
    assert child.finish()[0] == 0
    assert sem.get_value() == 2
    with sem:
        assert sem.get_value() == 1
    assert sem.acquire(timeout=5) and sem.acquire(timeout=5)
    assert sem.acquire(timeout=0.01) is False
    sem.unlink()


def test_bounded_semaphore_refuses_release_past_initial(name):
    sem = shmkit.BoundedSemaphore(name, 2)
    with pytest.raises(ValueError):
        sem.release()
    assert sem.acquire()
    sem.release()
    assert sem.get_value() == 2
    sem.unlink()


def test_release_past_the_maximum_releases_nothing(names):
    # release(n) released one permit at a time until the maximum, then raised: a bounded
    # semaphore kept the permits released before the one too many (CPython's checks first
    # and releases none), and release(2**40) on a Semaphore spent seconds holding the GIL
    # (no Ctrl-C, no other thread) to fill it up to 2**31 - 1 before raising.
    bounded = shmkit.BoundedSemaphore(names(), 3)
    assert bounded.acquire() and bounded.acquire()
    with pytest.raises(ValueError):
        bounded.release(3)
    assert bounded.get_value() == 1
    bounded.release(2)
    assert bounded.get_value() == 3
    sem = shmkit.Semaphore(names(), 0)
    with pytest.raises(ValueError):
        sem.release(2**40)
    assert sem.get_value() == 0
    sem.release(5)
    assert sem.get_value() == 5
    bounded.unlink()
    sem.unlink()


def test_release_of_many_permits_is_one_step(name, spawn):
    # `release(n)` looped n single releases with the GIL held: `release(2**31 - 1)` on a
    # semaphore at 0 (valid: the room is there) held the GIL ~20 s, no other thread ran and
    # Ctrl-C did nothing (threading.Semaphore.release(n) is one addition). Now it is one
    # compare-and-swap: a process watching the value sees it go from 0 to n at once.
    s = shmkit.Semaphore.create(name, 0)
    watcher = spawn(
        """
import sys, shmkit
s = shmkit.Semaphore.open(sys.argv[1])
print("watching", flush=True)
while (v := s.get_value()) == 0:
    pass
print(v, flush=True)
""",
        name,
    )
    assert watcher.line() == "watching"
    s.release(2**31 - 1)
    assert s.get_value() == 2**31 - 1
    assert watcher.line() == str(2**31 - 1)
    assert watcher.finish()[0] == 0
    with pytest.raises(ValueError):
        s.release()  # at SEM_VALUE_MAX
    assert s.get_value() == 2**31 - 1
    s.unlink()


def test_a_barrier_whose_action_is_its_owners_method_is_collected(name):
    # Barrier held its action without telling the garbage collector, so an object holding a
    # barrier whose action is one of its methods (a cycle) was never collected, nor the
    # barrier's mapping unmapped.
    class Worker:
        def __init__(self):
            self.barrier = shmkit.Barrier(name, 1, action=self.sync)

        def sync(self):
            pass

    worker = Worker()
    assert worker.barrier.wait(timeout=5) == 0
    alive = weakref.ref(worker)
    del worker
    gc.collect()
    assert alive() is None
    shmkit.Barrier.open(name).unlink()


def test_event_across_processes(name, spawn):
    ev = shmkit.Event.create(name)
    assert ev.wait(0.01) is False
    child = spawn(
        """
        import sys, shmkit
        ev = shmkit.Event.open(sys.argv[1])
        print(ev.wait(60), flush=True)
        """,
        name,
    )
    ev.set()
    assert child.line() == "True"
    assert ev.is_set() and ev.wait() is True
    ev.clear()
    assert not ev.is_set()
    ev.unlink()


def test_event_and_barrier_are_context_managers_that_keep_the_object(names):
    # As Value (a frozen object with nothing to close): `with` gives the object itself, and
    # leaving the block (normally or by an exception) neither unlinks nor changes it.
    ev_name, b_name = names(), names()
    with shmkit.Event(ev_name) as ev:
        assert isinstance(ev, shmkit.Event) and ev.name == ev_name
        ev.set()
    assert ev.is_set() and shmkit.Event.open(ev_name).is_set()
    with pytest.raises(ZeroDivisionError):
        with shmkit.Event.open(ev_name) as again:
            1 / 0
    assert again.is_set()
    with shmkit.Barrier.create(b_name, 1) as b:
        assert isinstance(b, shmkit.Barrier) and b.wait() == 0
    with pytest.raises(KeyError):
        with shmkit.Barrier.open(b_name) as b2:
            raise KeyError("x")
    assert not b2.broken and shmkit.Barrier.open(b_name).wait() == 0
    ev.unlink()
    b.unlink()


def test_condition_across_processes(names, spawn):
    cond_name, seg_name = names("cond"), names("seg")
    cond = shmkit.Condition.create(cond_name)
    seg = shmkit.SharedMemory.create(seg_name, 1)
    child = spawn(
        """
        import sys, shmkit
        cond = shmkit.Condition.open(sys.argv[1])
        seg = shmkit.SharedMemory.open(sys.argv[2])
        with cond:
            print("waiting", flush=True)
            ok = cond.wait_for(lambda: seg.buf[0] == 1, timeout=60)
        print(ok, flush=True)
        """,
        cond_name,
        seg_name,
    )
    assert child.line() == "waiting"
    with cond:
        seg.buf[0] = 1
        cond.notify_all()
    assert child.line() == "True"
    with cond:
        assert cond.wait(0.01) is False
        assert cond.wait_for(lambda: 0, timeout=0.01) == 0
    with pytest.raises(RuntimeError):
        cond.wait(0)
    with pytest.raises(RuntimeError):
        cond.notify()
    seg.close()
    seg.unlink()
    cond.unlink()


def test_condition_lock_argument_accepts_only_its_own_lock(names):
    name, other_name, lock_name = names("cond"), names("cond"), names("lock")
    cond = shmkit.Condition(name)
    same = shmkit.Condition(name, cond)  # its own lock: the same condition
    with same:
        assert cond.acquire(block=False) is False  # one lock, held through `same`
        same.notify_all()
    other = shmkit.Condition(other_name)
    with pytest.raises(ValueError, match=f"Condition.open\\('{other_name}'\\)"):
        shmkit.Condition(name, lock=other)
    lock = shmkit.Lock(lock_name)
    for foreign in (lock, threading.Lock(), threading.RLock()):
        with pytest.raises(TypeError, match="owns its lock"):
            shmkit.Condition(name, foreign)
    shmkit.Condition(name, None)
    for obj in (cond, other, lock):
        obj.unlink()


def test_barrier_across_processes(name, spawn):
    barrier = shmkit.Barrier.create(name, 3)
    assert barrier.parties == 3 and barrier.n_waiting == 0 and not barrier.broken
    code = """
        import sys, shmkit
        print(shmkit.Barrier.open(sys.argv[1]).wait(60), flush=True)
        """
    children = [spawn(code, name) for _ in range(2)]
    mine = barrier.wait(60)
    indices = sorted([mine] + [int(c.line()) for c in children])
    assert indices == [0, 1, 2]
    barrier.unlink()


def test_barrier_action_runs_once_in_the_last_process_before_anyone_passes(names, spawn):
    name, counter = names("barrier"), names("runs")
    runs = shmkit.Value("q", 0, name=counter)
    barrier = shmkit.Barrier.create(name, 3, lambda: None)
    code = """
        import sys, shmkit
        runs = shmkit.Value.open(sys.argv[2])
        ran = []
        def action():
            ran.append(True)
            runs.value += 1
        b = shmkit.Barrier.open(sys.argv[1], action)
        index = b.wait(60)
        print(index, bool(ran), runs.value, flush=True)
        """
    children = [spawn(code, name, counter) for _ in range(3)]
    seen = sorted(c.line().split() for c in children)
    # The last arrival (index 2) ran its own action; everybody passed after it.
    assert seen == [["0", "False", "1"], ["1", "False", "1"], ["2", "True", "1"]]
    assert runs.value == 1 and not barrier.broken
    barrier.unlink()
    runs.unlink()


def test_barrier_action_that_raises_breaks_it_and_reraises(name, spawn):
    class Boom(Exception):
        pass

    def action():
        raise Boom("from the action")

    barrier = shmkit.Barrier(name, 2, action, 60)
    assert barrier.action is action
    child = spawn(
        """
        import sys, shmkit
        try:
            shmkit.Barrier.open(sys.argv[1]).wait()
            print("passed", flush=True)
        except shmkit.BrokenBarrierError:
            print("broken", flush=True)
        """,
        name,
    )
    while barrier.n_waiting != 1:
        time.sleep(0.001)
    with pytest.raises(Boom, match="from the action"):
        barrier.wait()
    assert child.line() == "broken"
    assert barrier.broken
    barrier.reset()
    with pytest.raises(TypeError, match="callable"):
        shmkit.Barrier.open(name, 5)
    barrier.unlink()
    # Bad arguments create nothing.
    with pytest.raises(TypeError, match="callable"):
        shmkit.Barrier.create(name, 2, 5)
    with pytest.raises(FileNotFoundError):
        shmkit.Barrier.open(name)


def test_barrier_process_killed_in_its_action_leaves_it_broken_not_wedged(name, spawn):
    barrier = shmkit.Barrier.create(name, 2)
    outcome = []

    def party():
        try:
            outcome.append(barrier.wait(60))
        except shmkit.BrokenBarrierError:
            outcome.append("broken")

    waiter = threading.Thread(target=party)
    waiter.start()
    while barrier.n_waiting != 1:
        time.sleep(0.001)
    child = spawn(
        """
        import sys, time, shmkit
        def action():
            print("in action", flush=True)
            time.sleep(600)
        shmkit.Barrier.open(sys.argv[1], action).wait()
        """,
        name,
    )
    assert child.line() == "in action"
    child.signal(signal.SIGKILL)
    child.finish()
    # The generation is full and never opens: a newcomer's timeout breaks it.
    assert barrier.n_waiting == 2 and not barrier.broken
    with pytest.raises(shmkit.BrokenBarrierError):
        barrier.wait(0.01)
    waiter.join()
    assert outcome == ["broken"] and barrier.broken
    barrier.reset()
    assert not barrier.broken and barrier.n_waiting == 0
    barrier.unlink()


def test_barrier_pickle_keeps_the_action_and_timeout(name, spawn, tmp_path):
    # As multiprocessing.Barrier: a pickled barrier brings its (picklable) action and default
    # timeout, so the process that unpickles it runs the action when it arrives last.
    import functools
    import pathlib
    import pickle

    marker = tmp_path / "ran"
    action = functools.partial(pathlib.Path.touch, marker)
    barrier = shmkit.Barrier.create(name, 1, action, 7.5)
    again = pickle.loads(pickle.dumps(barrier))
    assert again.name == name
    assert again.action.func is action.func and again.action.args == (marker,)
    child = spawn(
        """
        import pickle, sys, shmkit
        b = pickle.loads(bytes.fromhex(sys.argv[1]))
        print(b.wait(), b.action is not None, flush=True)
        """,
        pickle.dumps(barrier).hex(),
    )
    assert child.line() == "0 True"
    assert child.finish()[0] == 0
    assert marker.exists()
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(shmkit.Barrier.open(name, lambda: None))  # the action must pickle too
    barrier.unlink()


def test_barrier_timeout_breaks_it_with_the_stdlib_exception(name):
    barrier = shmkit.Barrier(name, 2, None, 0.01)  # Python's (parties, action, timeout)
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()
    assert barrier.broken and barrier.n_waiting == 0
    with pytest.raises(shmkit.BrokenBarrierError):
        barrier.wait(5)
    barrier.reset()
    assert not barrier.broken
    barrier.abort()
    assert barrier.broken
    barrier.unlink()


def test_blocking_releases_the_gil(name):
    ev = shmkit.Event(name)
    waiter = threading.Thread(target=ev.wait)
    waiter.start()
    # Python code runs here only if the waiting thread released the GIL.
    ev.set()
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    ev.unlink()


def test_owner_died_after_sigkill(name, spawn):
    lock = shmkit.Lock.create(name)
    child = spawn(
        """
        import sys, time, shmkit
        lock = shmkit.Lock.open(sys.argv[1])
        lock.acquire()
        print("held", flush=True)
        time.sleep(600)
        """,
        name,
    )
    assert child.line() == "held"
    child.signal(signal.SIGKILL)
    child.finish()
    with pytest.raises(shmkit.OwnerDied) as info:
        lock.acquire(timeout=30)
    assert info.value.lock is lock
    assert info.value.previous_pid == child.pid
    assert isinstance(info.value, shmkit.ShmkitError)
    assert lock.locked()  # OwnerDied holds the lock
    lock.make_consistent()
    lock.release()
    with lock:
        pass
    lock.unlink()


def test_owner_died_unrepaired_is_not_recoverable(name, spawn):
    lock = shmkit.RLock.create(name)
    child = spawn(
        """
        import sys, time, shmkit
        shmkit.RLock.open(sys.argv[1]).acquire()
        print("held", flush=True)
        time.sleep(600)
        """,
        name,
    )
    assert child.line() == "held"
    child.signal(signal.SIGKILL)
    child.finish()
    with pytest.raises(shmkit.OwnerDied):
        with lock:  # __enter__ raises, with the lock held
            pass
    lock.release()  # without make_consistent()
    with pytest.raises(shmkit.LockNotRecoverable):
        lock.acquire(block=False)
    lock.unlink()


# Each blocking call, in a child, interrupted by SIGINT: KeyboardInterrupt raised by that call
# (the traceback's innermost line is the call's), and the object still usable.
BLOCKING = {
    "lock": (
        "import shmkit; obj = shmkit.Lock.open(sys.argv[1])",
        "obj.acquire()",
        "assert obj.acquire(block=False) is False  # still the parent's",
    ),
    "rlock": (
        "import shmkit; obj = shmkit.RLock.open(sys.argv[1])",
        "obj.acquire()",
        "assert obj.acquire(block=False) is False  # still the parent's",
    ),
    "semaphore": (
        "import shmkit; obj = shmkit.Semaphore.open(sys.argv[1])",
        "obj.acquire()",
        "assert obj.get_value() == 0",
    ),
    "event": (
        "import shmkit; obj = shmkit.Event.open(sys.argv[1])",
        "obj.wait()",
        "assert not obj.is_set()",
    ),
    "condition": (
        "import shmkit; obj = shmkit.Condition.open(sys.argv[1]); obj.acquire()",
        "obj.wait()",
        "obj.release()  # wait() took the lock back before raising",
    ),
    "barrier": (
        "import shmkit; obj = shmkit.Barrier.open(sys.argv[1])",
        "obj.wait()",
        "assert obj.broken  # as threading.Barrier: an exception in wait breaks it",
    ),
}


@pytest.mark.parametrize("kind", sorted(BLOCKING))
def test_ctrl_c_interrupts_a_blocking_call(kind, name, spawn):
    if kind == "lock":
        obj = shmkit.Lock.create(name)
        obj.acquire()
    elif kind == "rlock":
        obj = shmkit.RLock.create(name)
        obj.acquire()
    elif kind == "semaphore":
        obj = shmkit.Semaphore.create(name, 0)
    elif kind == "event":
        obj = shmkit.Event.create(name)
    elif kind == "condition":
        obj = shmkit.Condition.create(name)
    else:
        obj = shmkit.Barrier.create(name, 2)
    setup, call, after = BLOCKING[kind]
    code = f"""
import sys, traceback
{setup}
try:
    print("calling", flush=True)
    {call}  # THE CALL
    print("returned", flush=True)
except KeyboardInterrupt as e:
    tb = e.__traceback__
    while tb.tb_next:
        tb = tb.tb_next
    print("KeyboardInterrupt at line", tb.tb_lineno, flush=True)
{after}
print("consistent", flush=True)
"""
    call_line = code.splitlines().index(f"    {call}  # THE CALL") + 1
    child = spawn(code, name)
    child.interrupt_blocked_call()
    assert child.line() == f"KeyboardInterrupt at line {call_line}"
    assert child.line() == "consistent"
    rc, _, err = child.finish()
    assert rc == 0, err
    if kind in ("lock", "rlock"):
        obj.release()
    obj.unlink()


def test_ctrl_c_interrupts_taking_a_condition_lock_back(name, spawn):
    """A waiter that was notified while someone else keeps the lock is blocked taking the
    lock back: Ctrl-C interrupts that too (as Python's Condition.wait), raising
    KeyboardInterrupt without the lock."""
    import select

    cond = shmkit.Condition.create(name)
    child = spawn(
        """
        import sys, shmkit
        c = shmkit.Condition.open(sys.argv[1])
        c.acquire()
        print("waiting", flush=True)
        try:
            c.wait()
            print("returned", flush=True)
        except KeyboardInterrupt:
            try:
                c.release()
                print("was held", flush=True)
            except RuntimeError:
                print("KeyboardInterrupt without the lock", flush=True)
        sys.stdin.readline()  # until the parent released the lock
        c.acquire()
        c.release()
        print("consistent", flush=True)
        """,
        name,
    )
    assert child.line() == "waiting"
    cond.acquire()  # succeeds once the child waits (wait released the lock)
    cond.notify()
    time.sleep(0.3)  # the child wakes and blocks taking the lock back, which we keep
    child.signal(signal.SIGINT)
    ready, _, _ = select.select([child.proc.stdout], [], [], 20)
    cond.release()  # in any case, so that a child that ignored the signal ends
    assert ready, "Ctrl-C did not interrupt taking the lock back (20 s)"
    assert child.line() == "KeyboardInterrupt without the lock"
    child.send("go")
    assert child.line() == "consistent"
    rc, _, err = child.finish()
    assert rc == 0, err
    cond.unlink()


def test_nothing_is_removed_when_an_attaching_process_exits(names, spawn):
    lock_name, seg_name = names("lock"), names("seg")
    lock = shmkit.Lock.create(lock_name)
    seg = shmkit.SharedMemory.create(seg_name, 16)
    child = spawn(
        """
        import sys, shmkit
        shmkit.Lock.open(sys.argv[1]).acquire()  # and exits holding it
        seg = shmkit.SharedMemory.open(sys.argv[2])
        seg.buf[0] = 9
        seg.close()
        """,
        lock_name,
        seg_name,
    )
    assert child.finish()[0] == 0
    assert shmkit.SharedMemory.open(seg_name).buf[0] == 9
    shmkit.Lock.open(lock_name)  # still there
    seg.close()
    seg.unlink()
    lock.unlink()


def test_pickled_by_name(name):
    import pickle

    ev = shmkit.Event(name)
    copy = pickle.loads(pickle.dumps(ev))
    assert isinstance(copy, shmkit.Event) and copy.name == name
    copy.set()
    assert ev.is_set()
    ev.unlink()


def test_lock_between_threads_of_one_process(name):
    lock = shmkit.Lock(name)
    other = shmkit.Lock.open(name)  # a second handle: the same lock
    got = []
    lock.acquire()

    def contender():
        got.append(other.acquire(block=False))
        try:
            other.release()  # held by the main thread, not this one
        except RuntimeError:
            got.append("not owner")
        got.append(other.acquire(timeout=30))
        other.release()

    t = threading.Thread(target=contender)
    t.start()
    while len(got) < 2:
        time.sleep(0.01)
    lock.release()
    t.join(timeout=60)
    assert got == [False, "not owner", True]
    assert not lock.locked()
    lock.unlink()


def test_condition_owner_died_carries_the_condition(name, spawn):
    cond = shmkit.Condition.create(name)
    child = spawn(
        """
        import sys, time, shmkit
        shmkit.Condition.open(sys.argv[1]).acquire()
        print("held", flush=True)
        time.sleep(600)
        """,
        name,
    )
    assert child.line() == "held"
    child.signal(signal.SIGKILL)
    child.finish()
    with pytest.raises(shmkit.OwnerDied) as info:
        cond.acquire(timeout=30)
    assert info.value.lock is cond
    cond.make_consistent()
    assert cond.wait(0.01) is False  # usable: waits and takes the lock back
    cond.release()
    cond.unlink()


DAEMONS_BLOCKED_AT_EXIT = """
import sys, threading, time, shmkit
p = sys.argv[1]
lock = shmkit.Lock.create(p + "l")
lock.acquire()
rlock = shmkit.RLock.create(p + "r")
rlock.acquire()
cond = shmkit.Condition.create(p + "c")
value = shmkit.Value.create(p + "v", "q", mode="seqlock")
cell = shmkit.Value.create(p + "w", "q")
cell.get_lock().acquire()
calls = [
    lock.acquire,
    rlock.acquire,
    shmkit.Event.create(p + "e").wait,
    shmkit.Semaphore.create(p + "s", 0).acquire,
    shmkit.Barrier.create(p + "b", 3).wait,
    lambda: (cond.acquire(), cond.wait()),
    lambda: value.wait_changed(value.sequence),
    lambda: cell.value,
]
for call in calls:
    threading.Thread(target=call, daemon=True).start()
time.sleep(0.3)  # every thread is in its GIL-released wait
print("exiting", flush=True)
"""


def test_daemon_threads_blocked_in_waits_at_exit_do_not_crash_the_interpreter(names, spawn):
    # Python < 3.14 ends a daemon thread that takes the GIL back during finalization with
    # pthread_exit; the forced unwind through the Rust frames of a GIL-released wait was caught
    # by pyo3's catch_unwind and glibc aborted the process ("FATAL: exception not rethrown",
    # return code -6) about every other run. Several runs: each must exit with 0.
    for _ in range(5):
        prefix = names("exit") + "-"
        child = spawn(DAEMONS_BLOCKED_AT_EXIT, prefix)
        rc, out, err = child.finish(timeout=60)
        for n in os.listdir("/dev/shm"):
            if n.startswith(prefix):
                os.unlink(os.path.join("/dev/shm", n))
        assert (rc, out) == (0, "exiting\n"), err


def _sync_objects(names):
    return {
        "Lock": shmkit.Lock.create(names()),
        "RLock": shmkit.RLock.create(names()),
        "Semaphore": shmkit.Semaphore.create(names(), 1),
        "BoundedSemaphore": shmkit.BoundedSemaphore.create(names(), 1),
        "Event": shmkit.Event.create(names()),
        "Condition": shmkit.Condition.create(names()),
        "Barrier": shmkit.Barrier.create(names(), 1),
    }


def test_sync_objects_after_unlink_pickle_and_subclassing(names):
    # After unlink: the handle keeps working (its mapping stays); a pickle made before or
    # after unpickles to FileNotFoundError. No class can be subclassed, and __init__ called
    # again changes nothing.
    import pickle

    for kind, obj in _sync_objects(names).items():
        made_before = pickle.dumps(obj)
        obj.unlink()
        with pytest.raises(FileNotFoundError):
            obj.unlink()
        for data in (made_before, pickle.dumps(obj)):
            with pytest.raises(FileNotFoundError):
                pickle.loads(data)
        if kind in ("Lock", "RLock", "Condition"):
            assert obj.acquire(timeout=1)
            obj.release()
        elif kind in ("Semaphore", "BoundedSemaphore"):
            assert obj.acquire(timeout=1)
            obj.release()
        elif kind == "Event":
            obj.set()
            assert obj.wait(1)
        else:
            assert obj.wait(1) == 0
        old = obj.name
        obj.__init__(names())
        assert obj.name == old
        with pytest.raises(TypeError):
            type("Sub", (type(obj),), {})


@pytest.mark.parametrize("timeout", [float("nan"), -float("inf"), -1.0, 0, 2**64, "1", None])
def test_blocking_calls_with_timeouts_of_every_shape(timeout, names):
    # NaN: ValueError; a str: TypeError; a negative timeout is 0; a huge int is accepted.
    # The objects are all free / set, so no call here has to wait.
    objs = _sync_objects(names)
    objs["Event"].set()
    calls = [
        lambda: objs["Lock"].acquire(timeout=timeout) and objs["Lock"].release(),
        lambda: objs["RLock"].acquire(timeout=timeout) and objs["RLock"].release(),
        lambda: objs["Semaphore"].acquire(timeout=timeout) and objs["Semaphore"].release(),
        lambda: objs["Event"].wait(timeout),
        lambda: objs["Barrier"].wait(timeout),
    ]
    for call in calls:
        if timeout != timeout:
            with pytest.raises(ValueError):
                call()
        elif isinstance(timeout, str):
            with pytest.raises(TypeError):
                call()
        else:
            call()
    cond = objs["Condition"]
    with cond:
        if timeout != timeout:
            with pytest.raises(ValueError):
                cond.wait(timeout)
        elif isinstance(timeout, str):
            with pytest.raises(TypeError):
                cond.wait(timeout)
        elif timeout is not None and timeout <= 0:
            assert cond.wait(timeout) is False  # nobody notifies: returns at once
    with pytest.raises(ValueError):
        shmkit.Barrier.create(names(), 1, timeout=float("nan"))
    for o in objs.values():
        o.unlink()


SYNC_CLASSES = [
    (shmkit.Lock, ()),
    (shmkit.RLock, ()),
    (shmkit.Semaphore, (2,)),
    (shmkit.BoundedSemaphore, (2,)),
    (shmkit.Event, ()),
    (shmkit.Condition, ()),
    (shmkit.Barrier, (2,)),
]


@pytest.mark.parametrize("cls, args", SYNC_CLASSES, ids=[c.__name__ for c, _ in SYNC_CLASSES])
def test_lifetime_keyword(cls, args, names, lifetime_of):
    a, b, c = names(), names(), names()
    objs = [
        cls.create(a, *args, lifetime="owned"),
        cls(b, *args, lifetime="owned"),
        cls.create(c, *args),
    ]
    try:
        assert [lifetime_of(n) for n in (a, b, c)] == ["owned", "owned", "persistent"]
        # Opening keeps the object's lifetime, as its mode (the library's open_or_create).
        cls(c, *args, lifetime="owned")
        cls(a, *args, lifetime="persistent")
        assert [lifetime_of(n) for n in (a, c)] == ["owned", "persistent"]
        for make in (cls.create, cls):
            n = names()
            with pytest.raises(ValueError, match="lifetime must be 'persistent' or 'owned'"):
                make(n, *args, lifetime="forever")
            assert not os.path.exists(f"/dev/shm/{n}")
    finally:
        for o in objs:
            o.unlink()


def _pulse_while_the_waiter_queues_for_the_gil(ev):
    """A thread waits in ev.wait(2.0); this thread keeps the GIL past the waiter's first 50 ms
    slice (the waiter has left its slice and queues for the GIL to run the signal handlers),
    then pulses the event (set, then clear) while the waiter is still inside wait(). Returns
    what wait() returned."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(5.0)  # this thread keeps the GIL while it spins
    try:
        result = []
        started = threading.Event()

        def waiter():
            started.set()
            result.append(ev.wait(2.0))

        t = threading.Thread(target=waiter)
        t.start()
        started.wait()
        time.sleep(0.02)  # the waiter is in its first slice, GIL released
        end = time.monotonic() + 0.2
        while time.monotonic() < end:  # past the 50 ms slice, holding the GIL
            pass
        ev.set()
        ev.clear()
        t.join()
        return result[0]
    finally:
        sys.setswitchinterval(old)


def test_threading_event_pulse_releases_a_waiter():
    # The reference: threading.Event releases everyone waiting at the set, even if clear()
    # follows at once (SPEC 6.5.2 promises the same).
    assert _pulse_while_the_waiter_queues_for_the_gil(threading.Event()) is True


def test_event_pulse_between_two_wait_slices_releases_the_waiter(name):
    # Review finding (syncadv): each 50 ms slice of wait() read the event afresh, so a pulse
    # while the waiter was between slices was lost (wait(2.0) returned False; wait() hung).
    ev = shmkit.Event.create(name)
    try:
        assert _pulse_while_the_waiter_queues_for_the_gil(ev) is True
    finally:
        ev.unlink()


def test_notify_one_notifies_one_of_four_parked_waiters(name):
    # Review finding (syncadv): every parked waiter returned True within 20 ms of one
    # notify(1). threading.Condition and multiprocessing.Condition: True for one waiter, False
    # (its timeout passed) for the three others.
    c = shmkit.Condition.create(name)
    try:
        results = []

        def waiter():
            with c:
                results.append(c.wait(3.0))

        ts = [threading.Thread(target=waiter) for _ in range(4)]
        for t in ts:
            t.start()
        time.sleep(0.3)  # all four parked in wait()
        with c:
            c.notify(1)
        for t in ts:
            t.join()
        assert sorted(results) == [False, False, False, True], results
    finally:
        c.unlink()
