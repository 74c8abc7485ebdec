"""shmkit.Queue: multiprocessing.Queue's surface, across separate Python processes, with the
Rust CLI, under SIGINT and SIGKILL."""

import json
import os
import pickle
import queue
import signal
import subprocess
import threading
import time

import pytest

import shmkit


def test_put_get_round_trip_of_objects(name):
    q = shmkit.Queue.create(name, 4096)
    assert q.name == name
    assert q.capacity_bytes == 4096
    assert q.max_message == 4096 // 2
    assert q.empty() and q.qsize() == 0 and not q.full()
    objs = [None, 1, "two", b"three", [4.0, {"five": (6,)}], {7, 8}]
    for o in objs:
        q.put(o)
    assert not q.empty()
    assert q.qsize() == len(objs)  # each pickles to at most 64 bytes: one cell each
    assert [q.get() for _ in objs] == objs
    q.put_nowait("x")
    assert q.get_nowait() == "x"
    assert q.empty()
    q.unlink()


def test_capacity_is_rounded_up_and_checked(names):
    a = shmkit.Queue.create(names(), 1000)
    assert a.capacity_bytes == 1024
    b = shmkit.Queue.create(names(), 1)
    assert b.capacity_bytes == 256
    with pytest.raises(ValueError):
        shmkit.Queue.create(names(), 0)
    with pytest.raises(ValueError):
        shmkit.Queue.create(names(), -5)
    for q in (a, b):
        q.unlink()


def test_full_and_empty_without_blocking_and_with_timeouts(name):
    q = shmkit.Queue(name, capacity_bytes=256)  # 4 cells: 4 small messages
    with pytest.raises(queue.Empty):
        q.get(block=False)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get(True, 0)
    for i in range(4):
        q.put_nowait(i)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait(4)
    with pytest.raises(queue.Full):
        q.put(4, block=False, timeout=10)  # block=False ignores the timeout, as multiprocessing
    with pytest.raises(queue.Full):
        q.put(4, timeout=0.05)
    assert [q.get() for _ in range(4)] == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        q.get(timeout=float("nan"))
    q.unlink()


def test_too_large_message_is_a_value_error_and_nothing_is_written(name):
    q = shmkit.Queue.create(name, 4096)
    with pytest.raises(ValueError, match="larger than queue .* maximum of 2048 bytes"):
        q.put(b"x" * 4000)
    with pytest.raises(ValueError, match="maximum of 2048 bytes"):
        q.put_bytes(b"x" * 2049)
    assert q.empty()
    q.put_bytes(b"y" * 2048)  # exactly the maximum fits
    assert q.get_bytes() == b"y" * 2048
    q.unlink()


def test_bytes_fast_path(name):
    q = shmkit.Queue(name, 1 << 18)
    q.put_bytes(b"raw")
    q.put_bytes(bytearray(b"from a bytearray"))
    q.put_bytes(memoryview(b"a memoryview"))
    q.put_bytes(b"")
    assert q.get_bytes() == b"raw"
    assert q.get_bytes() == b"from a bytearray"
    assert q.get_bytes() == b"a memoryview"
    assert q.get_bytes(block=False) == b""
    q.put("obj")
    assert pickle.loads(q.get_bytes()) == "obj"  # put pickles; get_bytes does not unpickle
    big = os.urandom(100_000)  # copied with the GIL released
    q.put_bytes(big)
    assert q.get_bytes() == big
    with pytest.raises(TypeError):
        q.put_bytes("not bytes")
    q.unlink()


def test_open_create_close_context_manager_and_pickle(name):
    with pytest.raises(FileNotFoundError):
        shmkit.Queue.open(name)
    q = shmkit.Queue.create(name)
    assert q.capacity_bytes == 1 << 20
    with pytest.raises(FileExistsError):
        shmkit.Queue.create(name)
    assert repr(q) == f'<shmkit.Queue name="{name}">'
    q2 = pickle.loads(pickle.dumps(q))  # by name: opens the same queue
    assert q2.name == name
    q.put("through the copy")
    assert q2.get() == "through the copy"
    with shmkit.Queue.open(name) as q3:
        q3.put(1)
    with pytest.raises(ValueError, match="closed"):
        q3.put(2)
    with pytest.raises(ValueError, match="closed"):
        q3.get()
    q3.close()  # twice: harmless
    q3.join_thread()
    q3.cancel_join_thread()
    assert q.get() == 1  # closing one object leaves the queue to the others
    q.unlink()
    with pytest.raises(FileNotFoundError):
        shmkit.Queue.open(name)
    assert q2.empty()  # open handles keep working


def test_unnamed_queue_is_removed_when_collected():
    q = shmkit.Queue(capacity_bytes=4096)
    path = os.path.join("/dev/shm", q.name)
    assert os.path.exists(path)
    q.put(1)
    assert q.get() == 1
    del q
    assert not os.path.exists(path)


def test_unnamed_queue_survives_a_forked_child_dropping_its_copy(spawn):
    # The child's copy of the handle unlinked the parent's generated name when it went away,
    # so the queue could no longer be opened by name (pickled to a spawned process).
    code = """
import gc, os, sys, shmkit
q = shmkit.Queue(capacity_bytes=4096)
print(q.name, flush=True)
pid = os.fork()
if pid == 0:
    q.put("from the child")
    del q
    gc.collect()
    os._exit(0)
os.waitpid(pid, 0)
print("exists" if os.path.exists("/dev/shm/" + q.name) else "removed", flush=True)
print(shmkit.Queue.open(q.name).get(timeout=10), flush=True)
path = "/dev/shm/" + q.name
del q
gc.collect()
print("exists" if os.path.exists(path) else "removed", flush=True)
"""
    child = spawn(code)
    qname = child.line()
    try:
        rc, out, err = child.finish()
        assert rc == 0, err
        assert out.splitlines() == ["exists", "from the child", "removed"], out + err
    finally:
        if os.path.exists(f"/dev/shm/{qname}"):
            os.unlink(f"/dev/shm/{qname}")


PRODUCER = """
import sys, shmkit
q = shmkit.Queue.open(sys.argv[1])
tag, n = sys.argv[2], int(sys.argv[3])
for i in range(n):
    q.put((tag, i, {"payload": [i] * (i % 7)}))
print("done", flush=True)
"""

CONSUMER = """
import json, sys, shmkit
q = shmkit.Queue.open(sys.argv[1])
got = []
while True:
    item = q.get(timeout=60)
    if item is None:
        break
    tag, i, body = item
    assert body == {"payload": [i] * (i % 7)}, item
    got.append([tag, i])
print(json.dumps(got), flush=True)
"""


@pytest.mark.parametrize("producers,consumers", [(1, 1), (2, 2)])
def test_processes_exchange_objects_exactly_once(producers, consumers, name, spawn):
    n = 2000
    q = shmkit.Queue.create(name, 4096)  # small: producers wait for room many times
    cons = [spawn(CONSUMER, name) for _ in range(consumers)]
    # Once every producer is done, one None per consumer: each stops at its first None, and
    # every item precedes every None in the queue.
    prods = [spawn(PRODUCER, name, f"p{k}", n) for k in range(producers)]
    for p in prods:
        assert p.line() == "done"
        assert p.finish()[0] == 0
    for _ in range(consumers):
        q.put(None)
    seen = []
    for c in cons:
        seen += [tuple(x) for x in json.loads(c.line())]
        rc, _, err = c.finish()
        assert rc == 0, err
    assert sorted(seen) == sorted((f"p{k}", i) for k in range(producers) for i in range(n))
    assert q.empty()
    q.unlink()


def test_two_threads_put_and_get_concurrently(name, spawn):
    """Two threads of one process on one object: each waits with its own handle (GIL
    released), none blocks the other; another process consumes."""
    n = 2000
    q = shmkit.Queue.create(name, 1024)
    child = spawn(
        """
        import sys, shmkit
        q = shmkit.Queue.open(sys.argv[1])
        total = 0
        for _ in range(int(sys.argv[2])):
            total += q.get(timeout=60)
        print(total, flush=True)
        """,
        name,
        2 * n,
    )

    def put_all(base):
        for i in range(n):
            q.put(base + i, timeout=60)

    threads = [threading.Thread(target=put_all, args=(b,)) for b in (0, 10_000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()
    assert int(child.line()) == sum(range(n)) + sum(range(10_000, 10_000 + n))
    assert child.finish()[0] == 0
    # And two threads getting from one object while this thread puts.
    got = []

    def get_all():
        for _ in range(n):
            got.append(q.get(timeout=60))

    threads = [threading.Thread(target=get_all) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(2 * n):
        q.put(i, timeout=60)
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()
    assert sorted(got) == list(range(2 * n))
    q.unlink()


def _stat(rust_bins, name):
    out = subprocess.run(
        [rust_bins["shmkit"], "queue", "stat", name, "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def test_a_process_that_only_puts_holds_no_consumer_slot(name, spawn, rust_bins):
    q = shmkit.Queue.create(name, 4096)
    child = spawn(
        """
        import os, sys, shmkit
        q = shmkit.Queue.open(sys.argv[1])
        q.put("hello")
        print(os.getpid(), flush=True)
        sys.stdin.readline()
        """,
        name,
    )
    pid = int(child.line())
    st = _stat(rust_bins, name)
    assert [p["pid"] for p in st["producers"]] == [pid]
    assert st["consumers"] == []
    assert q.get() == "hello"
    st = _stat(rust_bins, name)
    assert [c["pid"] for c in st["consumers"]] == [os.getpid()]
    q.close()  # frees this object's consumer slot
    assert _stat(rust_bins, name)["consumers"] == []
    child.send("exit")
    assert child.finish()[0] == 0
    q.unlink()


def test_a_forked_child_gets_and_puts_with_idle_handles_inherited(name, rust_bins, fork_call):
    # Two idle handles of each side in the pools (two threads once used a side at once):
    # in a fork()ed child both are the parent's and report Disconnected. The child's
    # get_nowait() must find the message and put_nowait() the room. (Before, the retry took
    # the second inherited handle instead of attaching one: queue.Empty / queue.Full.)
    q = shmkit.Queue.create(name, 256)
    me = os.getpid()

    def wait_for(side, n):
        deadline = time.monotonic() + 30
        while sum(r["pid"] == me for r in _stat(rust_bins, name)[side]) < n:
            assert time.monotonic() < deadline, f"never {n} {side}"
            time.sleep(0.02)

    # Two threads blocked in get() at once: two consumers attached.
    got = []
    getters = [threading.Thread(target=lambda: got.append(q.get(timeout=30))) for _ in range(2)]
    for t in getters:
        t.start()
    wait_for("consumers", 2)
    q.put(1)
    q.put(2)
    for t in getters:
        t.join()
    assert sorted(got) == [1, 2]
    # Full, then two threads blocked in put() at once: two producers attached.
    n = 0
    while True:
        try:
            q.put_nowait(n)
            n += 1
        except queue.Full:
            break
    putters = [threading.Thread(target=q.put, args=("late",), kwargs={"timeout": 30}) for _ in range(2)]
    for t in putters:
        t.start()
    wait_for("producers", 2)
    drained = [q.get(timeout=5) for _ in range(n + 2)]
    for t in putters:
        t.join()
    assert drained[:n] == list(range(n)) and drained[n:] == ["late", "late"]
    q.put("hello")

    def child_get():
        assert q.get_nowait() == "hello"

    def child_put():
        q.put_nowait("x")

    try:
        assert (fork_call(child_get), fork_call(child_put)) == (0, 0)
        assert q.get_nowait() == "x"
    finally:
        q.close()
        q.unlink()


def test_interop_with_the_cli(names, rust_bins):
    cli = rust_bins["shmkit"]
    # Python creates, the CLI pushes, Python pops the raw bytes.
    a = names()
    qa = shmkit.Queue.create(a, 4096)
    subprocess.run([cli, "queue", "push", a, "hello from rust"], check=True)
    assert qa.get_bytes(timeout=10) == b"hello from rust"
    qa.unlink()
    # The CLI creates, Python pushes bytes, the CLI pops them.
    b = names()
    subprocess.run(
        [cli, "queue", "create", b, "--kind", "mpmc-bytes", "--capacity", "4096"], check=True
    )
    qb = shmkit.Queue.open(b)
    qb.put_bytes(b"hello from python")
    out = subprocess.run(
        [cli, "queue", "pop", b, "--timeout", "10"], check=True, capture_output=True, text=True
    ).stdout
    assert out == "hello from python\n"
    qb.unlink()


def test_wrong_kind_is_refused(name):
    lock = shmkit.Lock.create(name)
    with pytest.raises(shmkit.ShmkitError):
        shmkit.Queue.open(name)
    with pytest.raises(shmkit.ShmkitError):
        shmkit.Queue(name)
    lock.unlink()


BLOCKED = """
import sys, traceback, shmkit
q = shmkit.Queue.open(sys.argv[1])
try:
    print("calling", flush=True)
    q.{call}  # THE CALL
    print("returned", flush=True)
except KeyboardInterrupt as e:
    tb = e.__traceback__
    while tb.tb_next:
        tb = tb.tb_next
    print("KeyboardInterrupt at line", tb.tb_lineno, flush=True)
{after}
print("consistent", flush=True)
"""


@pytest.mark.parametrize(
    "call,after",
    [
        ("get()", "q.put_bytes(b'x'); assert q.get_bytes() == b'x'"),
        ("put(1)", "assert q.full(); assert q.get_bytes() == b'f' * 120"),
    ],
)
def test_ctrl_c_interrupts_a_blocked_get_or_put(call, after, name, spawn):
    q = shmkit.Queue.create(name, 256)
    if call.startswith("put"):
        q.put_bytes(b"f" * 120)  # 2 cells of 4: fill it
        q.put_bytes(b"f" * 120)
    code = BLOCKED.format(call=call, after=after)
    call_line = code.splitlines().index(f"    q.{call}  # THE CALL") + 1
    child = spawn(code, name)
    t = child.interrupt_blocked_call()
    assert child.line() == f"KeyboardInterrupt at line {call_line}"
    elapsed = time.monotonic() - t
    assert child.line() == "consistent"
    rc, _, err = child.finish()
    assert rc == 0, err
    print(f"interrupted after {elapsed * 1000:.0f} ms")
    q.unlink()


def test_a_killed_consumer_does_not_wedge_the_others(name, spawn):
    q = shmkit.Queue.create(name, 1024)
    child = spawn(
        """
        import sys, shmkit
        q = shmkit.Queue.open(sys.argv[1])
        while True:
            print(q.get(), flush=True)
        """,
        name,
    )
    # Keep it busy popping, then kill it mid-stream (possibly inside a pop).
    i = 0
    while True:
        q.put(i, timeout=30)
        i += 1
        if i == 200:
            assert int(child.line()) == 0
            child.signal(signal.SIGKILL)
            child.proc.wait(timeout=30)
            break
    # This process keeps putting and getting through many laps of the small ring: any cell
    # the dead consumer held is freed, nothing waits forever.
    while True:  # what the child did not take
        try:
            assert isinstance(q.get(timeout=0.5), int)
        except queue.Empty:
            break
    for j in range(5000):
        q.put(("after", j), timeout=30)
        assert q.get(timeout=30) == ("after", j)
    q.unlink()


def test_a_killed_producer_does_not_wedge_the_others(name, spawn):
    q = shmkit.Queue.create(name, 1024)
    child = spawn(
        """
        import sys, shmkit
        q = shmkit.Queue.open(sys.argv[1])
        i = 0
        while True:
            q.put(i)
            i += 1
            if i == 10:  # 10 of the ring's 16 cells: the next puts block or not
                print("going", flush=True)
        """,
        name,
    )
    assert child.line() == "going"
    child.signal(signal.SIGKILL)
    child.proc.wait(timeout=30)
    while True:  # drain what it published
        try:
            q.get(timeout=0.5)
        except queue.Empty:
            break
    # No producer alive: a get waits (as multiprocessing's) rather than failing ...
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)
    # ... and a new producer is served at once.
    for j in range(3000):
        q.put(j, timeout=30)
        assert q.get(timeout=30) == j
    q.unlink()


class MyInt(int):
    pass


def _fast_path_objects():
    ints = [0, 1, 255, 256, 65535, 65536, 2**31 - 1, 2**31, -1, -255, -256, -(2**31),
            -(2**31) - 1, 2**32, 2**40 + 7, -(2**40), 2**63 - 1, -(2**63), 2**63, -(2**63) - 1,
            10**30, -(10**30)]
    ints += [s * (2**k + d) for k in range(0, 64) for d in (-1, 0, 1) for s in (1, -1)]
    return ints + [
        None, True, False, 0.0, -0.0, 1.5, float("inf"), float("-inf"), 1e300,
        b"", b"abc", b"\x00" * 255, b"x" * 256, "", "hello", "\u00e9" * 3, "x" * 255,
        "x" * 256, "\u00e9" * 128, "\ud800", MyInt(5), bytearray(b"ab"), (1, 2), [1, "a"],
        {"k": 1.5},
    ]


def test_put_writes_exactly_pickles_and_get_reads_any_pickle(name):
    # put's fast path writes the very bytes pickle.dumps(obj, 5) does; get reads them, and
    # protocol 4 and 5 pickles from elsewhere.
    q = shmkit.Queue.create(name, 1 << 16)
    try:
        for obj in _fast_path_objects():
            q.put(obj)
            assert q.get_bytes() == pickle.dumps(obj, 5), repr(obj)
            for proto in (4, 5):
                q.put_bytes(pickle.dumps(obj, proto))
                got = q.get()
                assert type(got) is type(obj), repr(obj)
                assert got == obj or (got != got and obj != obj), repr(obj)
        nan = float("nan")
        q.put(nan)
        got = q.get()
        assert got != got
        # Not UTF-8 after SHORT_BINUNICODE (pickle reads surrogates written by hand):
        q.put_bytes(b"\x80\x05\x95\x07\x00\x00\x00\x00\x00\x00\x00\x8c\x03\xed\xa0\x80\x94.")
        assert q.get() == "\ud800"
        # Truncated or bad pickles: pickle's own errors.
        for bad in (b"\x80\x05K", b"\x80\x05\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.", b"zz"):
            q.put_bytes(bad)
            with pytest.raises(Exception):
                q.get()
    finally:
        q.unlink()


def test_fast_entry_points_match_the_pyo3_wrappers(name):
    # put(obj) / get() / put_bytes(data) / get_bytes() take C entry points (queue.rs `fast`);
    # every other shape (block/timeout given, keywords) and a wrong self go to pyo3's.
    q = shmkit.Queue.create(name, 4096)
    try:
        big = "x" * 1000  # a pickle longer than the short-message buffer
        for o in (7, -(2**70), "s", big, [1, (2, 3)], None):
            q.put(o)
            assert q.get() == o
        q.put(1, True, 1.0)
        q.put(2, block=False)
        q.put(3, timeout=1.0)
        assert [q.get(True, 1.0), q.get(block=False), q.get(timeout=1.0)] == [1, 2, 3]
        q.put_bytes(bytearray(b"ab"))
        q.put_bytes(b"cd", timeout=1.0)
        assert q.get_bytes() == b"ab"
        assert q.get_bytes(False) == b"cd"
        with pytest.raises(queue.Empty):
            q.get(False)
        with pytest.raises(TypeError):
            q.put()
        with pytest.raises(TypeError):
            q.get(1, 2, 3)
        with pytest.raises(TypeError, match="doesn't apply"):
            shmkit.Queue.put(object(), 1)
        with pytest.raises(TypeError, match="doesn't apply"):
            shmkit.Queue.get(object())
        with pytest.raises(TypeError, match="doesn't apply"):
            shmkit.Queue.get_bytes(object())
        with pytest.raises(ValueError, match="larger than"):
            q.put_bytes(bytes(q.max_message + 1))
        q.close()
        with pytest.raises(ValueError, match="closed"):
            q.get()
        with pytest.raises(ValueError, match="closed"):
            q.put(1)
    finally:
        q.unlink()


class _GetsWhileUnpickled:
    """Unpickling it calls `get_nowait` on the same queue object (re-entrant `get`)."""

    queue = None

    def __init__(self, pad):
        self.pad = pad

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.inner = type(self).queue.get_nowait()


def test_a_get_inside_unpickling_of_a_get_does_not_deadlock(name):
    # The handle pools' locks are never held while Python code runs (unpickling, finalizers).
    q = shmkit.Queue.create(name, 1 << 16)
    try:
        _GetsWhileUnpickled.queue = q
        q.put(_GetsWhileUnpickled("p" * 500))  # a long pickle: not the short-message path
        q.put("inner")
        got = q.get(timeout=5)
        assert got.pad == "p" * 500 and got.inner == "inner"
    finally:
        _GetsWhileUnpickled.queue = None
        q.unlink()


@pytest.mark.parametrize("call", ["get", "get_bytes", "put_bytes"])
def test_close_from_another_thread_ends_a_blocked_get_or_put(call, name, spawn):
    # A thread blocked (GIL released, no timeout) in get/put when another thread closes the
    # object: it raises ValueError (closed) instead of waiting forever, and takes no message
    # meant for the queue's other handles.
    child = spawn(
        """
        import sys, threading, time, shmkit
        q = shmkit.Queue.create(sys.argv[1], 256)
        call = sys.argv[2]
        if call == "put_bytes":
            q.put_bytes(b"x" * 100)
            q.put_bytes(b"x" * 100)  # full: no room for another
            op = lambda: q.put_bytes(b"y" * 100)
        else:
            op = getattr(q, call)
        out = []
        def run():
            try:
                out.append(("returned", op()))
            except BaseException as e:
                out.append((type(e).__name__, str(e)))
        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.3)
        q.close()
        t.join()
        print(out[0][0])
        other = shmkit.Queue.open(sys.argv[1])
        if call == "put_bytes":
            print(other.qsize(), other.get_bytes(timeout=1) == b"x" * 100)
        else:
            other.put(5)
            print(other.qsize(), other.get(timeout=1))
        other.unlink()
        """,
        name,
        call,
    )
    try:
        rc, out, err = child.finish(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a {call} blocked on a closed queue never returned")
    assert rc == 0, err
    lines = out.split()
    assert lines[0] == "ValueError"
    assert lines[1:] == (["4", "True"] if call == "put_bytes" else ["1", "5"])


def test_daemon_threads_blocked_in_get_or_put_at_exit_do_not_crash_the_interpreter(names, spawn):
    # As test_sync's test of the same name: the pthread_exit of a daemon thread taking the GIL
    # back during finalization must not abort the process.
    code = """
        import sys, threading, time, shmkit
        q = shmkit.Queue.create(sys.argv[1], 256)
        full = shmkit.Queue.create(sys.argv[1] + "-full", 256)
        full.put_bytes(b"x" * 100)
        full.put_bytes(b"x" * 100)
        for call in [q.get, q.get_bytes, q.get, lambda: full.put_bytes(b"y" * 100)] * 2:
            threading.Thread(target=call, daemon=True).start()
        time.sleep(0.3)
        print("exiting", flush=True)
        """
    for _ in range(5):
        name = names("exit")
        child = spawn(code, name)
        rc, out, err = child.finish(timeout=60)
        shmkit.Queue.open(name + "-full").unlink()
        shmkit.Queue.open(name).unlink()
        assert (rc, out) == (0, "exiting\n"), err


def test_a_child_forked_while_a_thread_holds_a_handle_pool_can_use_the_queue(name, fork_call):
    # A blocking or large put/get takes and returns its handle with the GIL released, so a
    # fork() from another thread can land while the pool's mutex is held. The child then
    # inherited it locked (its put hung for ever) and the idle list maybe half-changed.
    q = shmkit.Queue.create(name, 4096)
    q.put("before")
    holder = threading.Thread(target=shmkit._shmkit._hold_state_lock, args=(q, 3.0))
    holder.start()

    def child():
        assert q.get(timeout=2) == "before"
        q.put("from the child", timeout=2)
        assert q.get(timeout=2) == "from the child"
        q.put("for the parent", timeout=2)

    try:
        time.sleep(0.3)  # the holder has the pools' locks now
        assert fork_call(child, timeout=10.0) == 0
        holder.join()
        assert q.get(timeout=5) == "for the parent"
    finally:
        holder.join()
        q.close()
        q.unlink()


def test_seventeenth_process_can_put_while_sixteen_others_are_idle(name, spawn):
    # Each object kept the producer slot of its first put while it lived: 16 processes that
    # put once and stayed (a Pool worker keeping the queue in a global) held all 16, and a
    # 17th's put on a nearly empty queue raised queue.Full (or, without a timeout, blocked).
    q = shmkit.Queue(name, capacity_bytes=1 << 16)
    try:
        code = """
            import shmkit, sys
            q = shmkit.Queue.open(sys.argv[1])
            q.put(1, timeout=5)
            print("put", flush=True)
            sys.stdin.readline()
        """
        kids = [spawn(code, name) for _ in range(16)]
        for k in kids:
            assert k.line() == "put"
        assert q.qsize() == 16
        try:
            q.put(2, timeout=2)
        except queue.Full as e:
            raise AssertionError(f"put on a queue with room failed: {e!r}") from e
    finally:
        q.unlink()


def test_seventeenth_process_can_get_while_sixteen_others_are_idle(name, spawn, rust_bins):
    q = shmkit.Queue(name, capacity_bytes=1 << 16)
    try:
        for i in range(17):
            q.put(i)
        code = """
            import shmkit, sys
            q = shmkit.Queue.open(sys.argv[1])
            q.get(timeout=5)
            print("got", flush=True)
            sys.stdin.readline()
        """
        kids = [spawn(code, name) for _ in range(16)]
        for k in kids:
            assert k.line() == "got"
        # An object whose attach left no free consumer slot gave it back after its get (two
        # racing for the last slots may both have): idle objects never hold all 16.
        assert len(_stat(rust_bins, name)["consumers"]) < 16
        try:
            assert q.get(timeout=2) in range(17)
        except queue.Empty as e:
            raise AssertionError(f"get on a queue with a message failed: {e!r}") from e
        assert q.empty()
    finally:
        q.unlink()


def test_anonymous_queue_of_a_killed_process_is_removed_by_gc(collected_after_kill):
    collected_after_kill('shmkit.Queue()')


def test_lifetime_keyword(names, lifetime_of):
    a, b, c = names(), names(), names()
    qs = [
        shmkit.Queue.create(a, 4096, lifetime="owned"),
        shmkit.Queue(b, 4096, lifetime="owned"),
        shmkit.Queue.create(c, 4096),
    ]
    try:
        assert [lifetime_of(n) for n in (a, b, c)] == ["owned", "owned", "persistent"]
        anon = shmkit.Queue(lifetime="persistent")
        try:
            assert lifetime_of(anon.name) == "persistent"
        finally:
            anon.unlink()
        anon = shmkit.Queue()
        assert lifetime_of(anon.name) == "owned"
        del anon  # collected: unlinked
        with pytest.raises(ValueError, match="lifetime must be 'persistent' or 'owned'"):
            shmkit.Queue.create(names(), 4096, lifetime="forever")
    finally:
        for q in qs:
            q.unlink()
