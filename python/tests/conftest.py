"""Shared fixtures: unique object names, separate Python processes, the Rust binaries.

Every name a test uses starts with ``t-py-PID-`` (PID: the pytest process); at the end of the
session no object of that prefix may remain in /dev/shm.
"""

import itertools
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFIX = f"t-py-{os.getpid()}-"
_counter = itertools.count()


def _leftovers():
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(PREFIX))


@pytest.fixture(scope="session", autouse=True)
def nothing_left_in_dev_shm():
    yield
    left = _leftovers()
    for n in left:
        os.unlink(os.path.join("/dev/shm", n))
    assert not left, f"tests left objects in /dev/shm: {left}"


@pytest.fixture
def names():
    """A factory of unique names; every one is removed at the end of the test if it exists."""
    made = []

    def make(tag="obj"):
        n = f"{PREFIX}{tag}-{next(_counter)}"
        made.append(n)
        return n

    yield make
    for n in made:
        try:
            os.unlink(os.path.join("/dev/shm", n))
        except FileNotFoundError:
            pass


@pytest.fixture
def name(names):
    return names()


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Child:
    """A separate Python interpreter running ``code`` (started with subprocess: no fork, no
    inherited state). Lines it prints are read with ``line()``; ``send()`` writes one line to
    its stdin."""

    def __init__(self, code, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # SIGINT as a terminal gives it, whatever this process inherited: a shell runs
            # a background job (`cmd &`) with SIGINT ignored, and a Python started so installs
            # no KeyboardInterrupt handler, so the Ctrl-C tests would wait forever.
            preexec_fn=_default_sigint,
        )
        self.pid = self.proc.pid

    def line(self, timeout=60):
        """The next line the child prints (without its newline). A child that prints no
        line within ``timeout`` seconds is killed and the test fails (AssertionError, with
        what was read so far and its stderr) instead of hanging the run."""
        # Byte by byte from the pipe itself: a buffered readline reads ahead, and the lines it
        # took beyond the first were lost to `finish()` (`communicate` reads the descriptor,
        # not the buffer), which made a test fail when the child printed quickly.
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        out = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.proc.kill()
                try:
                    _, err = self.proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    err = "(unread)"
                raise AssertionError(
                    f"no line from the child within {timeout} s (killed); read so far: "
                    f"{bytes(out)!r}; stderr: {err}"
                )
            b = os.read(fd, 1)
            if not b or b == b"\n":
                break
            out += b
        if not out and not b:
            self.proc.wait(timeout=30)
            raise AssertionError(
                f"child exited ({self.proc.returncode}) without output: {self.proc.stderr.read()}"
            )
        return out.decode()

    def send(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def interrupt_blocked_call(self):
        """Read the child's "calling" line, give it 0.3 s to block in the call that follows,
        send SIGINT (Ctrl-C); the time.monotonic() of the signal."""
        assert self.line() == "calling"
        time.sleep(0.3)
        t = time.monotonic()
        self.signal(signal.SIGINT)
        return t

    def finish(self, timeout=60):
        """Wait for the exit; return (returncode, rest of stdout, stderr)."""
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate()


@pytest.fixture
def spawn():
    """Start child interpreters; any still running at the end of the test is killed."""
    children = []

    def start(code, *args):
        c = Child(code, *args)
        children.append(c)
        return c

    yield start
    for c in children:
        c.close()


def _fork_and_call(fn, timeout=5.0):
    """Run ``fn`` in a fork()ed child: its exit code (0 if ``fn`` returned, 1 if it raised),
    or ``"hung"`` if it had not exited after ``timeout`` seconds (then it is killed)."""
    pid = os.fork()
    if pid == 0:
        try:
            fn()
            os._exit(0)
        except BaseException:
            os._exit(1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"


@pytest.fixture
def fork_call():
    """``fork_call(fn, timeout=5.0)``: run ``fn`` in a fork()ed child (see `_fork_and_call`)."""
    return _fork_and_call


def _target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


@pytest.fixture(scope="session")
def rust_bins():
    """Build the `shmkit` CLI and the `robust_lock` example once; their paths."""
    subprocess.run(
        ["cargo", "build", "-q", "--bin", "shmkit", "--example", "robust_lock"],
        cwd=ROOT,
        check=True,
    )
    debug = _target_dir() / "debug"
    return {"shmkit": debug / "shmkit", "robust_lock": debug / "examples" / "robust_lock"}


@pytest.fixture
def collected_after_kill(spawn, rust_bins):
    """A check that the anonymous object a child makes with ``expr`` (Python source; the
    child prints its ``.name``), left behind when the child is killed with SIGKILL, is
    removed by ``shmkit gc --prefix NAME``; the object is unlinked anyway at the end."""

    def check(expr):
        c = spawn(
            f"""
            import shmkit, sys
            obj = {expr}
            print(obj.name, flush=True)
            sys.stdin.readline()
            """
        )
        name = c.line()
        path = os.path.join("/dev/shm", name)
        try:
            c.signal(signal.SIGKILL)
            c.proc.wait(timeout=30)
            r = subprocess.run(
                [rust_bins["shmkit"], "gc", "--prefix", name], capture_output=True, text=True
            )
            assert not os.path.exists(path), f"gc kept the killed process's {expr}: {r.stdout}"
        finally:
            if os.path.exists(path):
                os.unlink(path)

    return check


@pytest.fixture
def lifetime_of(rust_bins):
    """A function giving the lifetime (``'persistent'`` or ``'owned'``) that ``shmkit ls
    --json`` shows for the object of a name (exactly one entry of that name)."""

    def lifetime(name):
        out = subprocess.run(
            [rust_bins["shmkit"], "ls", "--json"], check=True, capture_output=True, text=True
        ).stdout
        (entry,) = [e for e in json.loads(out) if e["name"] == name]
        return entry["lifetime"]

    return lifetime


class OldFrombuffer:
    """``numpy.frombuffer`` as NumPy before 1.22.4 made it: the array points at the buffer's
    memory and keeps a reference to the object it was given, but the buffer export it took is
    released before it returns (the array then holds no export of that object)."""

    def __init__(self, frombuffer):
        self.frombuffer = frombuffer

    def __call__(self, obj, dtype=float):
        import types

        import numpy as np

        with memoryview(obj) as m:
            probe = self.frombuffer(m, np.uint8)
            addr, nbytes, readonly = probe.ctypes.data, probe.nbytes, m.readonly
            del probe
        dtype = np.dtype(dtype)
        holder = types.SimpleNamespace(
            obj=obj,  # what old NumPy kept: a reference, no export
            __array_interface__={
                "data": (addr, readonly),
                "shape": (nbytes // dtype.itemsize,),
                "typestr": dtype.str,
                "version": 3,
            },
        )
        return np.asarray(holder)
