"""Zero-copy frames: Python and Rust publishers, Python subscribers in separate processes."""

import importlib.util
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import shmkit
from conftest import ROOT, OldFrombuffer, _target_dir


def _camera_module():
    spec = importlib.util.spec_from_file_location(
        "camera_consumer", ROOT / "examples" / "python" / "camera_consumer.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def camera_bin():
    """The Rust camera demo (its producer role is the Rust publisher)."""
    subprocess.run(["cargo", "build", "-q", "--example", "camera"], cwd=ROOT, check=True)
    return _target_dir() / "debug" / "examples" / "camera"


@pytest.mark.parametrize("numpy_before_1_22_4", [False, True])
def test_array_views_hold_an_export_whatever_the_numpy(name, monkeypatch, numpy_before_1_22_4):
    if numpy_before_1_22_4:
        monkeypatch.setattr(np, "frombuffer", OldFrombuffer(np.frombuffer))
    pub = shmkit.FramePublisher.create(name, slots=2, max_bytes=64)
    sub = shmkit.FrameSubscriber(name)
    loan = pub.loan()
    a = loan.array(np.uint8, (8, 8))
    a[:] = 5
    with pytest.raises(BufferError):
        loan.publish(64)  # the array is a view of the loan
    with pytest.raises(BufferError):
        pub.close()
    del a
    assert loan.publish(64) == 1
    f = sub.recv(timeout=5)
    a = f.array()
    f.release()  # the array is a view of the frame: it keeps the slot pinned
    assert f.released and (a == 5).all()
    del a
    sub.close()
    pub.close()
    pub.unlink()


def test_release_with_views_alive_unpins_at_the_last_view(name):
    # One slot, policy block: the publisher can loan it again only once nothing pins it.
    pub = shmkit.FramePublisher.create(name, slots=1, max_bytes=64, policy="block")
    sub = shmkit.FrameSubscriber(name)
    loan = pub.loan()
    loan.array(np.uint8)[:] = 9
    loan.publish(64)
    with sub.recv(timeout=5) as f:
        a = f.array(np.uint8, (8, 8))
        m = memoryview(f)
    # The block ended with views alive: no error, no new view, the slot still pinned.
    assert f.released and "released" in repr(f)
    with pytest.raises(ValueError, match="released"):
        f.array()
    assert pub.try_loan() is None
    del a
    assert pub.try_loan() is None  # the memoryview still pins it
    assert m[0] == 9 and m[63] == 9  # and still reads the frame
    m.release()
    nxt = pub.try_loan()  # the last view went: the slot is free
    assert nxt is not None
    del nxt
    # An exception in the block goes on, whatever views are alive.
    pub.loan().publish(64)
    with pytest.raises(KeyError):
        with sub.recv(timeout=5) as g:
            keep = g.array()
            raise KeyError("the caller's own")
    assert pub.try_loan() is None
    del keep
    assert pub.try_loan() is not None
    sub.close()
    pub.close()
    pub.unlink()


def test_publish_receive_views_and_errors(name):
    pub = shmkit.FramePublisher.create(
        name, slots=2, max_bytes=4096, header_name="Pair", header_size=16, policy="block"
    )
    sub = shmkit.FrameSubscriber(name)
    assert pub.header_type == sub.header_type == ("Pair", 16, 8)
    assert (pub.slots, pub.max_bytes, pub.policy) == (2, 4096, "block")
    loan = pub.loan()
    assert len(loan) == 4096
    a = loan.array(np.uint32, (32, 32))
    a[:] = np.arange(1024, dtype=np.uint32).reshape(32, 32)
    with pytest.raises(BufferError):
        loan.publish(4096)  # a view of the loan is alive
    del a
    assert loan.publish(4096, b"\x07") == 1
    assert not loan.active
    with pytest.raises(ValueError):
        loan.publish(1)  # already published
    frame = sub.recv(timeout=5)
    assert (frame.seq, frame.len, len(frame)) == (1, 4096, 4096)
    assert frame.header == b"\x07" + bytes(15)
    assert frame.mono_ns <= time.monotonic_ns()
    v = frame.array(np.uint32, (32, 32))
    assert (v == np.arange(1024).reshape(32, 32)).all()
    assert not v.flags.writeable
    with pytest.raises(ValueError):
        v[0, 0] = 1  # read-only
    m = memoryview(frame)
    assert m.readonly
    with pytest.raises(TypeError):
        m[0] = 1
    assert np.asarray(frame).nbytes == 4096
    del v, m
    frame.release()
    frame.release()  # twice is harmless
    with pytest.raises(ValueError):
        memoryview(frame)
    # Too large: ValueError, nothing published, the slot comes back.
    with pytest.raises(ValueError):
        pub.loan().publish(4097)
    with pytest.raises(ValueError):
        pub.loan().publish(1, bytes(17))
    assert sub.try_recv() is None
    with pytest.raises(TimeoutError):
        sub.recv(timeout=0.05)
    pub.loan(timeout=5).publish(3, b"")
    assert sub.latest(timeout=5).len == 3
    pub.close()
    with pytest.raises(EOFError):
        sub.recv(timeout=5)
    sub.close()
    pub.unlink()


def test_bad_input(name):
    with pytest.raises(ValueError):
        shmkit.FramePublisher.create(name, policy="sometimes")
    with pytest.raises(ValueError):
        shmkit.FramePublisher.create(name, header_size=4096)
    with pytest.raises(ValueError):
        shmkit.FramePublisher.create(name, slots=-1)
    with pytest.raises(FileNotFoundError):
        shmkit.FrameSubscriber(name)
    lock = shmkit.Lock.create(name)
    with pytest.raises(shmkit.ShmkitError):
        shmkit.FrameSubscriber(name)  # another kind of object
    lock.unlink()


SUBSCRIBER = """
import sys, zlib, numpy as np, shmkit
sub = shmkit.FrameSubscriber(sys.argv[1])
print("ready", flush=True)
n = 0
while True:
    try:
        f = sub.recv(timeout=30)
    except EOFError:
        break
    a = f.array()
    seq = int.from_bytes(f.header[:8], "little")
    crc = int.from_bytes(f.header[8:16], "little")
    assert seq == f.seq, (seq, f.seq)
    assert len(a) == f.len == 1000 + 37 * seq, (len(a), seq)
    assert (a == (seq & 0xFF)).all() and zlib.crc32(a) == crc
    n += 1
print(n, sub.lost, flush=True)
"""


def test_header_alignment_default_fits_any_size_and_a_bad_one_is_refused(names):
    # The default alignment (8) was clamped to the size itself: a 6-, 12- or 3-byte header
    # failed with an error about an alignment the caller never gave, while an explicit 16
    # (not an alignment the channel supports) was silently taken as 8.
    for size, align in [(0, 1), (3, 1), (6, 2), (12, 4), (16, 8), (24, 8)]:
        pub = shmkit.FramePublisher.create(names(), header_size=size)
        assert pub.header_type == ("bytes", size, align)
        pub.close()
        pub.unlink()
    n = names()
    pub = shmkit.FramePublisher.create(n, header_size=8, header_align=2)
    assert pub.header_type == ("bytes", 8, 2)
    pub.close()
    pub.unlink()
    for size, align in [(8, 16), (8, 2**40), (8, 3), (8, 0), (6, 4), (6, 8)]:
        n = names()
        with pytest.raises(ValueError):
            shmkit.FramePublisher.create(n, header_size=size, header_align=align)
        assert not os.path.exists(f"/dev/shm/{n}")


def test_python_publisher_to_python_subscribers(name, spawn):
    import zlib

    pub = shmkit.FramePublisher.create(
        name, slots=3, max_bytes=8192, header_size=16, policy="block"
    )
    kids = [spawn(SUBSCRIBER, name) for _ in range(2)]
    for k in kids:
        assert k.line() == "ready"
    for seq in range(1, 101):
        loan = pub.loan(timeout=30)
        n = 1000 + 37 * seq
        a = np.asarray(loan)
        a[:n] = seq & 0xFF
        crc = zlib.crc32(a[:n])
        del a
        assert loan.publish(n, seq.to_bytes(8, "little") + crc.to_bytes(8, "little")) == seq
    pub.close()
    for k in kids:
        assert k.line() == "100 0"
        rc, _, err = k.finish()
        assert rc == 0, err
    pub.unlink()


def test_rust_camera_producer_read_from_python(name, camera_bin):
    cam = _camera_module()
    producer = subprocess.Popen(
        [camera_bin, "--role", "producer", "--name", name, "--size", "64x48", "--fps", "100",
         "--seconds", "0.5", "--wait-consumers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                sub = shmkit.FrameSubscriber(name)
                break
            except (FileNotFoundError, shmkit.ShmkitError):
                assert time.monotonic() < deadline, "the producer did not create the channel"
                time.sleep(0.01)
        assert sub.header_type[1] == 32
        n = 0
        while True:
            try:
                f = sub.recv(timeout=30)
            except EOFError:
                break
            w, h, stride, fmt, index, want = cam.FRAME_INFO.unpack(f.header)
            assert (w, h, stride, fmt) == (64, 48, 192, 1)
            img = f.array(np.uint8, (h, w, 3))
            assert cam.checksum(img) == want
            # The demo's pattern: red channel is x + 4 t (mod 256).
            assert img[0, 5, 0] == (5 + 4 * index) & 0xFF
            n += 1
        assert n > 0 and n + sub.lost == 50  # reuse-oldest: a slow reader may lose some
    finally:
        out, err = producer.communicate(timeout=60)
    assert producer.returncode == 0, err


def test_stock_cpython_reader_returns_numpy_frames(name, camera_bin, rust_bins):
    """`examples/python/frames_numpy.py` (no extension module) with numpy, which this suite
    always has: the Rust camera's frames come back as (height, width, 3) arrays whose checksum
    matches, with and without `--verify` (tests/frames_cli.rs runs it with the machine's
    python3, which may lack numpy)."""
    producer = subprocess.Popen(
        [camera_bin, "--role", "producer", "--name", name, "--size", "64x48", "--fps", "200",
         "--seconds", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    script = ROOT / "examples" / "python" / "frames_numpy.py"
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(f"/dev/shm/{name}"):
            assert producer.poll() is None, producer.communicate()
            assert time.monotonic() < deadline, "the producer did not create the channel"
            time.sleep(0.01)
        for verify in (True, False):
            args = [sys.executable, str(script), name, "--shmkit", str(rust_bins["shmkit"])]
            out = subprocess.run(
                args + (["--verify"] if verify else []),
                capture_output=True, text=True, timeout=60,
            )
            assert out.returncode == 0, out.stdout + out.stderr
            assert "numpy array (48, 64, 3)" in out.stdout, out.stdout
            assert ("checksum ok" in out.stdout) == verify, out.stdout
    finally:
        producer.terminate()
        producer.communicate(timeout=60)


def test_checksum_matches_sequential_definition():
    cam = _camera_module()
    data = np.random.default_rng(1).integers(0, 256, 1003, dtype=np.uint8)
    h = cam.SEED
    for i in range(0, 1000, 8):
        h = (((h << 5) | (h >> 59)) & cam.MASK) ^ int.from_bytes(bytes(data[i : i + 8]), "little")
    for x in data[1000:]:
        h = (((h << 5) | (h >> 59)) & cam.MASK) ^ int(x)
    assert cam.checksum(data) == h


PUBLISHER = """
import sys, shmkit
pub = shmkit.FramePublisher.open(sys.argv[1])
loan = pub.loan(timeout=30)
loan.array()[:4] = 7
loan.publish(4)
print("published", flush=True)
sys.stdin.readline()
try:
    pub.loan(timeout=0.2)
    print("loaned", flush=True)
except TimeoutError:
    print("pinned", flush=True)
sys.stdin.readline()
pub.loan(timeout=30).publish(1)
print("loaned", flush=True)
"""


def test_a_view_keeps_the_slot_pinned(name, spawn):
    creator = shmkit.FramePublisher.create(name, slots=1, max_bytes=4096, policy="block")
    sub = shmkit.FrameSubscriber(name)
    creator.close()  # the child takes over as publisher
    child = spawn(PUBLISHER, name)
    assert child.line() == "published"
    frame = sub.recv(timeout=30)
    view = frame.array()
    del frame  # only the numpy view remains: it keeps the Frame, and the pin, alive
    child.send("try")
    assert child.line() == "pinned"  # Block policy, one slot, pinned by the view
    assert (view[:4] == 7).all()
    del view  # the last reference: the slot is released
    child.send("go")
    assert child.line() == "loaned"
    assert child.finish()[0] == 0
    assert sub.recv(timeout=30).len == 1
    sub.close()
    creator.unlink()


def test_sigint_interrupts_a_blocking_recv(name, spawn):
    pub = shmkit.FramePublisher.create(name)
    code = """
import sys, shmkit
sub = shmkit.FrameSubscriber(sys.argv[1])
print("calling", flush=True)
try:
    sub.recv()
except KeyboardInterrupt:
    print("interrupted", flush=True)
assert sub.try_recv() is None
print("consistent", flush=True)
"""
    child = spawn(code, name)
    child.interrupt_blocked_call()
    assert child.line() == "interrupted"
    assert child.line() == "consistent"
    rc, _, err = child.finish()
    assert rc == 0, err
    pub.close()
    pub.unlink()


def test_loans_superseded_dropped_and_next_seq(name):
    pub = shmkit.FramePublisher.create(name, slots=1, max_bytes=64, policy="block")
    sub = shmkit.FrameSubscriber(name)
    assert pub.next_seq == 1
    first = pub.loan()
    assert pub.next_seq == 1 and pub.slots == 1  # readable while a loan is out
    view = memoryview(first)
    with pytest.raises(BufferError):
        pub.loan()  # would abandon a loan whose view is alive
    with pytest.raises(BufferError):
        pub.close()
    view.release()
    second = pub.loan()  # the first is abandoned (one slot: it came back)
    assert not first.active and second.active
    with pytest.raises(ValueError):
        first.publish(1)
    del second  # dropped unpublished: the slot is emptied and free again
    assert sub.try_recv() is None
    assert pub.try_loan().publish(2) == 1
    assert pub.next_seq == 2
    assert sub.recv(timeout=5).len == 2
    pub.close()
    pub.close()
    with pytest.raises(ValueError):
        pub.loan()
    pub.unlink()


def test_a_subscriber_inherited_across_fork_does_not_receive(name, spawn):
    # The inherited subscriber shares the parent's record: a frame the child got through it
    # was pinned by the parent's bit, which the parent's own release clears, so the publisher
    # overwrote the child's "pinned" frame under its views. The child must be refused.
    code = """
import os, select, sys, shmkit
name = sys.argv[1]
pub = shmkit.FramePublisher.create(name, slots=2, max_bytes=16, policy="reuse-oldest")
sub = shmkit.FrameSubscriber(name)
loan = pub.loan()
memoryview(loan)[:4] = b"AAAA"
loan.publish(4)
del loan
r1, w1 = os.pipe()
r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        frame = sub.try_recv()
    except shmkit.ShmkitError as e:
        print("refused" if "fork" in str(e) else f"other error {e}", flush=True)
        own = shmkit.FrameSubscriber(name, history=1)  # one of its own works
        print("own", bytes(memoryview(own.recv(timeout=10))), flush=True)
        own.close()
        os.write(w1, b"r")
        os._exit(0)
    os.write(w1, b"1" if frame is not None else b"0")
    if frame is None:
        print("nothing", flush=True)
        os._exit(0)
    before = bytes(memoryview(frame))
    os.read(r2, 1)  # the parent received and released frame 1, and published more
    after = bytes(memoryview(frame))
    print("pinned" if after == before else f"overwritten {before} -> {after}", flush=True)
    os._exit(0)
# The parent: wait for the child's receive (or its refusal), then do what a subscriber does.
select.select([r1], [], [], 30)
frame = sub.try_recv()
assert frame is not None and frame.seq == 1, frame
frame.release()
for i in range(4):
    loan = pub.try_loan()
    memoryview(loan)[:4] = b"B%03d" % i
    loan.publish(4)
os.write(w2, b"1")
os.waitpid(pid, 0)
pub.close()
"""
    child = spawn(code, name)
    rc, out, err = child.finish()
    assert rc == 0, err
    assert out.splitlines() == ["refused", "own b'AAAA'"], out + err


def test_a_frame_received_before_fork_exports_no_view_in_the_child(name, spawn):
    # The frame's pin is the parent's: once the parent releases it, the publisher reuses the
    # slot, so a view the child made read whatever was published there next.
    code = """
import os, sys, shmkit
name = sys.argv[1]
pub = shmkit.FramePublisher.create(name, slots=1, max_bytes=16)
sub = shmkit.FrameSubscriber(name)
loan = pub.loan()
memoryview(loan)[:4] = b"AAAA"
loan.publish(4)
frame = sub.recv(timeout=10)
before = bytes(frame)  # a copy made before fork() is the way to hand it on
pid = os.fork()
if pid == 0:
    try:
        view = memoryview(frame)
        print("view allowed", flush=True)
    except shmkit.ShmkitError as e:
        print("view refused" if "fork" in str(e) else f"other error {e}", flush=True)
    print("copy", before, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent", bytes(frame), flush=True)
frame.release()
pub.close()
"""
    child = spawn(code, name)
    rc, out, err = child.finish()
    assert rc == 0, out + err
    assert out.splitlines() == ["view refused", "copy b'AAAA'", "parent b'AAAA'"], out + err


def test_a_loan_inherited_across_fork_is_the_parents(name, spawn):
    # The inherited loan published as the parent (its sequence number, the parent's slot), so
    # the parent's own publish of that loan was then skipped by every subscriber; dropping it
    # in the child emptied the parent's claimed slot.
    code = """
import gc, os, sys, shmkit
name = sys.argv[1]
pub = shmkit.FramePublisher.create(name, slots=2, max_bytes=16)
sub = shmkit.FrameSubscriber(name)
loan = pub.loan()
pid = os.fork()
if pid == 0:
    out = []
    for what, f in [
        ("view", lambda: memoryview(loan)),
        ("publish", lambda: loan.publish(4)),
        ("loan", lambda: pub.loan(timeout=0.1)),
    ]:
        try:
            f()
            out.append(f"{what} allowed")
        except shmkit.ShmkitError as e:
            out.append(f"{what} refused")
    print(", ".join(out), flush=True)
    del loan, pub  # dropped in the child: must leave the parent's claim alone
    gc.collect()
    os._exit(0)
os.waitpid(pid, 0)
assert sub.try_recv() is None, "the child published"
memoryview(loan)[:4] = b"PRNT"
assert loan.publish(4) == 1
frame = sub.recv(timeout=10)
print(frame.seq, bytes(memoryview(frame))[:4], flush=True)
frame.release()
pub.close()
"""
    child = spawn(code, name)
    rc, out, err = child.finish()
    assert rc == 0, out + err
    assert out.splitlines() == ["view refused, publish refused, loan refused", "1 b'PRNT'"], (
        out + err
    )


def test_daemon_threads_blocked_in_recv_or_loan_at_exit_do_not_crash_the_interpreter(names, spawn):
    # As test_sync's test of the same name, for the frame channel's waits.
    code = """
        import sys, threading, time, shmkit
        pub = shmkit.FramePublisher.create(sys.argv[1], slots=1, max_bytes=8, policy="block")
        subs = [shmkit.FrameSubscriber(sys.argv[1]) for _ in range(6)]
        pub.loan().publish(1)
        frame = subs[0].recv(1)  # pins the only slot: a loan waits
        for s in subs[1:4]:
            s.recv(1)
        for call in [s.recv for s in subs[1:4]] + [subs[4].latest, pub.loan]:
            threading.Thread(target=call, daemon=True).start()
        time.sleep(0.3)
        print("exiting", flush=True)
        """
    for _ in range(5):
        name = names("exit")
        child = spawn(code, name)
        rc, out, err = child.finish(timeout=60)
        os.unlink(os.path.join("/dev/shm", name))
        assert (rc, out) == (0, "exiting\n"), err


def test_sigint_during_a_blocked_loan_or_latest_leaves_no_loan_and_no_pin(name, spawn):
    # Ctrl-C while loan() waits for a slot (the only one pinned) and while latest() waits for
    # a frame: KeyboardInterrupt, no loan left outstanding, no pin leaked; both work after.
    code = """
import gc, sys, shmkit
pub = shmkit.FramePublisher.create(sys.argv[1], slots=1, max_bytes=8, policy="block")
sub = shmkit.FrameSubscriber(sys.argv[1])
pub.loan().publish(1)
frame = sub.recv(1)  # pins the only slot
for call in (pub.loan, sub.latest):
    print("calling", flush=True)
    try:
        call()
        print("returned", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
assert pub.try_loan() is None  # the slot is still pinned by `frame`, nothing else holds it
del frame
gc.collect()
loan = pub.loan(5)  # the pin went with the frame
loan.publish(2)
assert sub.latest(5).seq == 2
pub.close()
sub.close()
print("consistent", flush=True)
"""
    child = spawn(code, name)
    try:
        for _ in range(2):
            child.interrupt_blocked_call()
            assert child.line() == "interrupted"
        assert child.line() == "consistent"
        rc, _, err = child.finish()
        assert rc == 0, err
    finally:
        os.unlink(os.path.join("/dev/shm", name))


def test_views_outlive_closed_and_collected_handles(name, spawn):
    # A view of a received frame stays valid memory after the subscriber is closed and every
    # handle is collected (the frame keeps the mapping); a view of a loan makes close,
    # publish, abandon and the next loan refuse (BufferError), and stays valid after the
    # publisher object is dropped. In a child: a dangling view would crash it.
    child = spawn(
        """
        import gc, sys, shmkit
        pub = shmkit.FramePublisher.create(sys.argv[1], slots=2, max_bytes=16)
        sub = shmkit.FrameSubscriber(sys.argv[1])
        loan = pub.loan()
        memoryview(loan)[:4] = b"abcd"
        loan.publish(4)
        frame = sub.recv(1)
        view, arr = memoryview(frame), frame.array()
        sub.close()
        del sub, frame
        gc.collect()
        loan = pub.loan()
        lv, la = memoryview(loan), loan.array()
        refused = []
        for call in (pub.close, loan.abandon, lambda: loan.publish(1), pub.loan, pub.try_loan):
            try:
                call()
            except BufferError:
                refused.append(True)
        del pub, loan
        gc.collect()
        la[:] = 7
        lv[:2] = b"xy"
        print(bytes(view), arr.tolist(), bytes(lv[:3]), len(refused), flush=True)
        """,
        name,
    )
    try:
        rc, out, err = child.finish()
    finally:
        os.unlink(os.path.join("/dev/shm", name))
    assert rc == 0, err
    assert out == "b'abcd' [97, 98, 99, 100] b'xy\\x07' 5\n"


def test_close_from_another_thread_ends_a_blocked_recv_or_loan(name, spawn):
    # Thread A blocked (GIL released) in sub.recv() / pub.loan(); thread B uses the same
    # handle meanwhile (try_loan: nothing free) and closes it: A raises ValueError, at once.
    child = spawn(
        """
        import sys, threading, time, shmkit
        pub = shmkit.FramePublisher.create(sys.argv[1], slots=1, max_bytes=8, policy="block")
        sub = shmkit.FrameSubscriber(sys.argv[1])
        other = shmkit.FrameSubscriber(sys.argv[1])
        pub.loan().publish(1)
        pinned = other.recv(1)  # the only slot: a loan waits
        sub.recv(1)
        out = []
        def run(call):
            try:
                out.append(("returned", call()))
            except BaseException as e:
                out.append((type(e).__name__,))
        for call, busy, close in ((sub.recv, sub.try_recv, sub.close),
                                  (pub.loan, pub.try_loan, pub.close)):
            t = threading.Thread(target=run, args=(call,))
            t.start()
            time.sleep(0.3)
            assert busy() is None
            close()
            t.join()
        print(out, flush=True)
        """,
        name,
    )
    try:
        rc, out, err = child.finish(timeout=30)
    finally:
        os.unlink(os.path.join("/dev/shm", name))
    assert rc == 0, err
    assert out == "[('ValueError',), ('ValueError',)]\n"


def _calls_done_when_a_wait_ends(wait, call, n=1000):
    """Thread W runs ``wait()`` (a call that waits, GIL released, until its timeout); thread L
    makes ``n`` calls of ``call()`` on the same handle meanwhile, giving up the GIL after each.
    The number of L's calls done when W's wait ended (its end is the reference event: no
    clock is read). A call that has to wait for W's 50 ms wait slice to end completes only
    between two slices, once per slice: about 40 in a 2 s wait."""
    import threading

    done, at_end = [0], []
    started = threading.Event()

    def waiter():
        started.set()
        try:
            wait()
        finally:
            at_end.append(done[0])

    def caller():
        started.wait()
        for _ in range(n):
            call()
            done[0] += 1
            time.sleep(0)  # lets W have the GIL: it need not wait for a switch interval

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=waiter), threading.Thread(target=caller)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    return at_end[0]


def test_calls_on_a_handle_do_not_wait_for_another_thread_s_recv_or_loan(name):
    # Before, a thread waiting in sub.recv() / pub.loan() held the handle's mutex for each
    # 50 ms slice of its wait, so sub.lost / pub.next_seq from another thread blocked on it
    # with the GIL held (every Python thread stopped): about 40 of the 1000 calls had run
    # when a 2 s wait timed out.
    pub = shmkit.FramePublisher.create(name, slots=1, max_bytes=8, policy="block")
    sub = shmkit.FrameSubscriber(name)
    other = shmkit.FrameSubscriber(name)
    try:
        pub.loan().publish(1)
        pinned = other.recv(1)  # the only slot: a loan waits
        sub.recv(1)
        n = 1000

        def no_frame():
            with pytest.raises(TimeoutError):
                sub.recv(timeout=2)

        def no_slot():
            with pytest.raises(TimeoutError):
                pub.loan(timeout=2)

        assert _calls_done_when_a_wait_ends(no_frame, lambda: sub.lost, n) == n
        assert _calls_done_when_a_wait_ends(no_slot, lambda: pub.next_seq, n) == n
        # The non-waiting calls meanwhile: nothing for them, without waiting.
        assert _calls_done_when_a_wait_ends(no_frame, sub.try_recv, n) == n
        assert _calls_done_when_a_wait_ends(no_slot, pub.try_loan, n) == n
        del pinned
    finally:
        for h in (sub, other, pub):
            h.close()
        pub.unlink()


def test_an_inherited_subscriber_fails_in_the_child_even_while_a_thread_waits_in_recv(
    name, fork_call
):
    # Before, the waiting thread held the handle's mutex across its wait, so a child forked
    # meanwhile inherited it locked: its recv hung for ever with the GIL held, instead of the
    # ShmkitError an inherited subscriber gives. Likewise for the publisher and loan().
    import threading

    pub = shmkit.FramePublisher.create(name, slots=1, max_bytes=64, policy="block")
    sub = shmkit.FrameSubscriber(name)
    other = shmkit.FrameSubscriber(name)
    pub.loan().publish(1)
    pinned = other.recv(1)  # the only slot: a loan waits
    errors = []

    def waits(call):
        try:
            with pytest.raises(TimeoutError):
                call(timeout=2)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    def child_recv():
        try:
            sub.recv(timeout=0.5)
        except shmkit.ShmkitError:
            os._exit(0)

    def child_loan():
        try:
            pub.loan(timeout=0.5)
        except shmkit.ShmkitError:
            os._exit(0)

    try:
        sub.recv(1)
        for wait, child in ((sub.recv, child_recv), (pub.loan, child_loan)):
            t = threading.Thread(target=waits, args=(wait,))
            t.start()
            try:
                time.sleep(0.2)
                results = []
                for _ in range(3):
                    time.sleep(0.027)
                    results.append(fork_call(child, timeout=3.0))
                assert results == [0, 0, 0]
            finally:
                t.join()
        assert not errors
        del pinned
    finally:
        for h in (sub, other, pub):
            h.close()
        pub.unlink()


def test_a_handle_whose_state_lock_a_thread_holds_at_fork_fails_in_the_child_at_once(
    name, fork_call
):
    # A thread waiting in recv()/loan() takes and returns the handle under the state's mutex
    # with the GIL released; a fork() landing there left the child's copy locked for good, and
    # every call on the object in the child (even close() and dropping a loan) hung.
    import gc
    import threading

    # Held only through `h`, so that a child can drop its copies of the objects.
    h = {"pub": shmkit.FramePublisher.create(name, slots=2, max_bytes=64)}
    h["sub"] = shmkit.FrameSubscriber(name)
    h["loan"] = h["pub"].loan()

    def child():
        sub, pub, loan = h["sub"], h["pub"], h["loan"]
        for call in (
            lambda: sub.try_recv(),
            lambda: sub.recv(timeout=0.5),
            lambda: sub.lost,
            lambda: pub.try_loan(),
            lambda: pub.loan(timeout=0.5),
            lambda: pub.next_seq,
            lambda: loan.publish(1),
        ):
            with pytest.raises(shmkit.ShmkitError, match="fork"):
                call()
        assert not loan.active
        assert (sub.slots, pub.slots, pub.max_bytes) == (2, 2, 64)
        sub.close()  # the parent's handles: nothing to do here, and no waiting
        pub.close()
        own = shmkit.FrameSubscriber(name)  # one of its own works
        own.close()

    def child_drops():
        h.clear()  # the last references in the child: the objects go
        gc.collect()

    try:
        for holder_of in ("sub", "pub"):
            holder = threading.Thread(
                target=shmkit._shmkit._hold_state_lock, args=(h[holder_of], 3.0)
            )
            holder.start()
            try:
                time.sleep(0.3)  # the holder has the lock now
                assert fork_call(child, timeout=10.0) == 0
                assert fork_call(child_drops, timeout=10.0) == 0
            finally:
                holder.join()
        # The parent's objects are untouched.
        memoryview(h["loan"])[:1] = b"P"
        assert h["loan"].publish(1) == 1
        frame = h["sub"].recv(timeout=5)
        assert bytes(memoryview(frame))[:1] == b"P"
        frame.release()
    finally:
        h["sub"].close()
        h["pub"].close()
        h["pub"].unlink()


@pytest.mark.parametrize("numpy_before_1_22_4", [False, True])
@pytest.mark.parametrize("over", ["frame", "loan"])
def test_numpy_frombuffer_of_a_frame_or_loan_stays_readable_whatever_numpy(
    name, monkeypatch, numpy_before_1_22_4, over, fork_call
):
    # np.frombuffer(frame) / np.frombuffer(loan), not .array(): with NumPy before 1.22.4 the
    # array holds no export, so release/publish/close cannot see it, and they unmapped the
    # channel under it (SIGSEGV). The frame and publisher objects now keep it mapped.
    if numpy_before_1_22_4:
        monkeypatch.setattr(np, "frombuffer", OldFrombuffer(np.frombuffer))

    def child():
        # Everything made in the fork()ed child (handles do not cross fork()), so that a
        # SIGSEGV is an exit code, not the end of pytest.
        pub = shmkit.FramePublisher.create(name, slots=2, max_bytes=1 << 20)
        sub = shmkit.FrameSubscriber(name)
        loan = pub.loan()
        if over == "loan":
            x = np.frombuffer(loan, np.uint8)
            x[:] = 7
            try:
                loan.publish(1 << 20)
                pub.close()
            except BufferError:
                pass  # the array holds an export: refused
        else:
            np.frombuffer(loan, np.uint8)[:] = 7
            loan.publish(1 << 20)
            f = sub.recv(timeout=5)
            x = np.frombuffer(f, np.uint8)
            f.release()
            sub.close()
            pub.close()
        assert (int(x[0]), int(x[-1])) == (7, 7)  # SIGSEGV if the slot was unmapped

    try:
        assert fork_call(child, timeout=10.0) == 0
    finally:
        if os.path.exists(f"/dev/shm/{name}"):
            os.unlink(f"/dev/shm/{name}")


def test_frame_channel_handles_pickle_by_name(name):
    pub = shmkit.FramePublisher.create(name, slots=2, max_bytes=16)
    try:
        sub = shmkit.FrameSubscriber(name)
        assert pickle.loads(pickle.dumps(sub)).name == name
        sub.close()
    finally:
        pub.close()
        pub.unlink()


def test_pickled_subscriber_receives_and_pickled_publisher_takes_over_once_closed(name):
    pub = shmkit.FramePublisher.create(name, slots=2, max_bytes=16)
    try:
        sub = pickle.loads(pickle.dumps(shmkit.FrameSubscriber(name)))
        data = pickle.dumps(pub)
        with pytest.raises(shmkit.ShmkitError):
            pickle.loads(data)  # one publisher per channel: this one is still attached
        pub.close()
        pub2 = pickle.loads(data)  # takes over
        loan = pub2.loan(timeout=5)
        loan.publish(3, b"")
        assert sub.recv(timeout=5).len == 3
        sub.close()
        pub2.close()
    finally:
        pub.unlink()


def test_owned_channel_lifetime(names, lifetime_of):
    a, b = names(), names()
    owned = shmkit.FramePublisher.create(a, slots=2, max_bytes=16, lifetime="owned")
    persistent = shmkit.FramePublisher.create(b, slots=2, max_bytes=16)
    try:
        assert (lifetime_of(a), lifetime_of(b)) == ("owned", "persistent")
        with pytest.raises(ValueError, match="lifetime must be"):
            shmkit.FramePublisher.create(names(), slots=2, max_bytes=16, lifetime="mine")
    finally:
        for p in (owned, persistent):
            p.close()
            p.unlink()


def test_readme_frames_example_runs_as_two_processes_in_order(name):
    """README's Python frames example, as it says: process 1 (the camera) runs and exits, then
    process 2 (the viewer). The viewer gets the frame (the example's subscriber attached
    after the publish had only an EOFError for it) and removes the channel."""
    import re

    text = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S)
                 if "# process 1: the camera" in b)
    head, rest = block.split("# process 1: the camera", 1)
    one, two = rest.split("# process 2", 1)
    assert '"cam"' in one and '"cam"' in two
    for part in (one, "# process 2" + two):
        src = (head + part).replace('"cam"', repr(name))
        out = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("1 128.0 "), out.stdout
    assert not os.path.exists(f"/dev/shm/{name}")
