"""Type stubs for shmkit's native module (re-exported by ``shmkit``)."""

from ctypes import _SimpleCData
from types import TracebackType
import sys
from typing import (
    Any,
    Callable,
    Iterable,
    Iterator,
    List,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
    final,
)

__all__ = [
    "Array",
    "Barrier",
    "BoundedSemaphore",
    "CellLock",
    "Condition",
    "Event",
    "Lock",
    "LockNotHeld",
    "LockNotRecoverable",
    "OwnerDied",
    "Queue",
    "RLock",
    "RLockNotOwned",
    "Semaphore",
    "ShareableList",
    "SharedMemory",
    "ShmkitError",
    "BrokenBarrierError",
    "Value",
    "Frame",
    "FrameLoan",
    "FramePublisher",
    "FrameSubscriber",
    "_hold_state_lock",
]

_T = TypeVar("_T")

_TypecodeOrType = Union[str, Type[_SimpleCData[Any]]]
"""A typecode ('i', 'd', ...) or a ctypes simple type with one (``ctypes.c_int``, ...), as
``multiprocessing.Value``/``Array`` take it."""

class ShmkitError(Exception):
    """Base class of shmkit's own errors: another kind or layout of object under the name, a
    corrupt object, no space in /dev/shm, an operating-system error."""

class OwnerDied(ShmkitError):
    """The lock was acquired, but its previous owner died holding it. The lock IS held by the
    caller: repair the data, call ``lock.make_consistent()``, then ``lock.release()``."""

    lock: Union["Lock", "RLock", "Condition", "CellLock"]
    """The lock that was acquired (held by the calling thread)."""
    previous_pid: Optional[int]
    """The dead owner's process id, if recorded."""

class LockNotRecoverable(ShmkitError):
    """A dead owner's successor released the lock without ``make_consistent()``: nothing can
    acquire it again. Unlink and recreate it."""

class LockNotHeld(ValueError, RuntimeError):
    """``Lock.release()`` by a thread that does not hold the lock: a ValueError, as
    ``multiprocessing.Lock`` raises, and a RuntimeError, as ``threading.Lock`` raises."""

class RLockNotOwned(AssertionError, RuntimeError):
    """``release()`` of an RLock, a Condition or a ``get_lock()`` lock by a thread that does
    not hold it, and a Condition's ``wait``/``notify``/``notify_all`` without its lock: an
    AssertionError, as ``multiprocessing`` raises (its RLock, the default lock of its
    Condition and ``get_lock()``, and its Condition's assertions), and a RuntimeError, as
    ``threading`` raises."""

from threading import BrokenBarrierError as BrokenBarrierError

@final
class Lock:
    """A named, robust lock shared by processes (``multiprocessing.Lock`` by name).

    ``Lock(name)`` opens or creates it. Only the thread that acquired it can release it.
    If the holder dies, the next ``acquire`` raises ``OwnerDied`` with the lock held."""

    @property
    def name(self) -> str:
        """The object's name (its file is /dev/shm/NAME)."""
    def unlink(self) -> None:
        """Remove the name; open handles keep working, new opens get FileNotFoundError."""
    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        """Pickled by name: unpickling opens the same object."""

    def __new__(
        cls, name: str, *, mode: int = 0o600, lifetime: str = "persistent"
    ) -> "Lock": ...
    @staticmethod
    def create(name: str, *, mode: int = 0o600, lifetime: str = "persistent") -> "Lock":
        """Create a new lock; FileExistsError if the name is taken. ``lifetime``:
        ``'persistent'`` (``shmkit gc`` never removes it) or ``'owned'`` (``gc`` removes it once
        this process is dead and no process maps it). ``Lock(name, ...)`` takes the same; it
        applies only if that call creates the object (an existing one keeps its own lifetime, as
        its mode)."""
    @staticmethod
    def open(name: str) -> "Lock":
        """Open an existing lock; FileNotFoundError if there is none."""
    def acquire(self, block: object = True, timeout: Optional[float] = None) -> bool:
        """Acquire; return whether it is held. ``block=False`` tries once; ``timeout`` bounds
        the wait in seconds (None: no limit). Raises OwnerDied (lock held) after a dead
        holder, RuntimeError if this thread already holds it and ``block`` is true."""
    def release(self) -> None:
        """Release; LockNotHeld (a ValueError and a RuntimeError) if this thread does not
        hold it."""
    def locked(self) -> bool:
        """Whether anyone holds it (a snapshot)."""
    def make_consistent(self) -> None:
        """After OwnerDied: declare the protected data repaired."""
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class RLock:
    """A named, robust, recursive lock (``multiprocessing.RLock`` by name)."""

    @property
    def name(self) -> str:
        """The object's name (its file is /dev/shm/NAME)."""
    def unlink(self) -> None:
        """Remove the name; open handles keep working, new opens get FileNotFoundError."""
    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        """Pickled by name: unpickling opens the same object."""

    def __new__(
        cls, name: str, *, mode: int = 0o600, lifetime: str = "persistent"
    ) -> "RLock": ...
    @staticmethod
    def create(name: str, *, mode: int = 0o600, lifetime: str = "persistent") -> "RLock":
        """Create a new recursive lock; FileExistsError if the name is taken. ``lifetime``:
        ``'persistent'`` (``shmkit gc`` never removes it) or ``'owned'`` (``gc`` removes it once
        this process is dead and no process maps it). ``RLock(name, ...)`` takes the same; it
        applies only if that call creates the object (an existing one keeps its own lifetime, as
        its mode)."""
    @staticmethod
    def open(name: str) -> "RLock":
        """Open an existing recursive lock; FileNotFoundError if there is none."""
    def acquire(self, block: object = True, timeout: Optional[float] = None) -> bool:
        """Acquire one level (see Lock.acquire)."""
    def release(self) -> None:
        """Release one level; RLockNotOwned (an AssertionError and a RuntimeError) if this
        thread does not hold it."""
    def locked(self) -> bool:
        """Whether anyone holds it (a snapshot)."""
    def make_consistent(self) -> None:
        """After OwnerDied: declare the protected data repaired."""
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class Semaphore:
    """A named semaphore (``multiprocessing.Semaphore`` by name)."""

    @property
    def name(self) -> str:
        """The object's name (its file is /dev/shm/NAME)."""
    def unlink(self) -> None:
        """Remove the name; open handles keep working, new opens get FileNotFoundError."""
    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        """Pickled by name: unpickling opens the same object."""

    def __new__(
        cls, name: str, value: int = 1, *, mode: int = 0o600, lifetime: str = "persistent"
    ) -> "Semaphore": ...
    @staticmethod
    def create(
        name: str, value: int = 1, *, mode: int = 0o600, lifetime: str = "persistent"
    ) -> "Semaphore":
        """Create a new semaphore with ``value`` permits; FileExistsError if it exists.
        ``lifetime``: ``'persistent'`` (``shmkit gc`` never removes it) or ``'owned'`` (``gc``
        removes it once this process is dead and no process maps it). ``Semaphore(name, ...)``
        takes the same; it applies only if that call creates the object (an existing one keeps
        its own lifetime, as its mode)."""
    @staticmethod
    def open(name: str) -> "Semaphore":
        """Open an existing semaphore; FileNotFoundError if there is none."""
    def acquire(self, block: object = True, timeout: Optional[float] = None) -> bool:
        """Take a permit; return whether one was taken."""
    def release(self, n: int = 1) -> None:
        """Give back ``n`` permits (any process or thread may); ValueError, releasing none,
        if ``n`` would take the value past its maximum (2**31 - 1)."""
    def get_value(self) -> int:
        """The number of free permits (a snapshot)."""
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class BoundedSemaphore:
    """A named semaphore whose value never exceeds its initial one: releasing past it
    raises ValueError (``multiprocessing.BoundedSemaphore`` by name)."""

    @property
    def name(self) -> str:
        """The object's name (its file is /dev/shm/NAME)."""
    def unlink(self) -> None:
        """Remove the name; open handles keep working, new opens get FileNotFoundError."""
    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        """Pickled by name: unpickling opens the same object."""

    def __new__(
        cls, name: str, value: int = 1, *, mode: int = 0o600, lifetime: str = "persistent"
    ) -> "BoundedSemaphore":
        """Open the bounded semaphore ``name``, or create it with ``value`` permits (its
        bound) and ``lifetime`` (see ``create``). An existing one of another bound is a
        ValueError naming both; its lifetime is kept, as its mode."""
    @staticmethod
    def create(
        name: str, value: int = 1, *, mode: int = 0o600, lifetime: str = "persistent"
    ) -> "BoundedSemaphore":
        """Create a new bounded semaphore; FileExistsError if it exists. ``lifetime``:
        ``'persistent'`` (``shmkit gc`` never removes it) or ``'owned'`` (``gc`` removes it once
        this process is dead and no process maps it)."""
    @staticmethod
    def open(name: str) -> "BoundedSemaphore":
        """Open an existing bounded semaphore; FileNotFoundError if there is none."""
    def acquire(self, block: object = True, timeout: Optional[float] = None) -> bool:
        """Take a permit; return whether one was taken."""
    def release(self, n: int = 1) -> None:
        """Give back ``n`` permits; ValueError, releasing none, past the initial value."""
    def get_value(self) -> int:
        """The number of free permits (a snapshot)."""
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class Event:
    """A named event (``multiprocessing.Event`` by name)."""

    @property
    def name(self) -> str:
        """The object's name (its file is /dev/shm/NAME)."""
    def unlink(self) -> None:
        """Remove the name; open handles keep working, new opens get FileNotFoundError."""
    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        """Pickled by name: unpickling opens the same object."""

    def __new__(
        cls, name: str, *, mode: int = 0o600, lifetime: str = "persistent"
    ) -> "Event": ...
    @staticmethod
    def create(name: str, *, mode: int = 0o600, lifetime: str = "persistent") -> "Event":
        """Create a new (clear) event; FileExistsError if it exists. ``lifetime``:
        ``'persistent'`` (``shmkit gc`` never removes it) or ``'owned'`` (``gc`` removes it once
        this process is dead and no process maps it). ``Event(name, ...)`` takes the same; it
        applies only if that call creates the object (an existing one keeps its own lifetime, as
        its mode)."""
    @staticmethod
    def open(name: str) -> "Event":
        """Open an existing event; FileNotFoundError if there is none."""
    def is_set(self) -> bool:
        """Whether the flag is set."""
    def set(self) -> None:
        """Set the flag and wake every waiter."""
    def clear(self) -> None:
        """Clear the flag."""
    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until set, at most ``timeout`` seconds; return whether it is set."""
    def __enter__(self) -> "Event":
        """The event itself."""
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        """Nothing to do; does not unlink."""

@final
class Condition:
    """A named condition variable bound to its own lock (``multiprocessing.Condition`` by
    name). The lock lives in the condition's segment and the condition is its lock object
    (``acquire``, ``release``, ``with``). ``lock`` may be None or that same lock (a Condition
    of this name); any other lock is a TypeError, another Condition a ValueError: to share
    the lock, share the condition (``Condition.open(name)``). Unlike multiprocessing's
    default (an RLock), the lock is not recursive: ``acquire()`` by the thread that holds it
    raises RuntimeError (``block=False``: returns False) instead of nesting."""

    @property
    def name(self) -> str:
        """The object's name (its file is /dev/shm/NAME)."""
    def unlink(self) -> None:
        """Remove the name; open handles keep working, new opens get FileNotFoundError."""
    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        """Pickled by name: unpickling opens the same object."""

    def __new__(
        cls,
        name: str,
        lock: Optional["Condition"] = None,
        *,
        mode: int = 0o600,
        lifetime: str = "persistent",
    ) -> "Condition": ...
    @staticmethod
    def create(name: str, *, mode: int = 0o600, lifetime: str = "persistent") -> "Condition":
        """Create a new condition; FileExistsError if it exists. ``lifetime``: ``'persistent'``
        (``shmkit gc`` never removes it) or ``'owned'`` (``gc`` removes it once this process is
        dead and no process maps it). ``Condition(name, ...)`` takes the same; it applies only
        if that call creates the object (an existing one keeps its own lifetime, as its mode)."""
    @staticmethod
    def open(name: str) -> "Condition":
        """Open an existing condition; FileNotFoundError if there is none."""
    def acquire(self, block: object = True, timeout: Optional[float] = None) -> bool:
        """Acquire the condition's lock (see Lock.acquire)."""
    def release(self) -> None:
        """Release the condition's lock; RLockNotOwned (an AssertionError and a RuntimeError)
        if this thread does not hold it."""
    def make_consistent(self) -> None:
        """After OwnerDied: declare the protected data repaired."""
    def wait(self, timeout: Optional[float] = None) -> bool:
        """Release the lock, wait for a notify (at most ``timeout`` s), re-take the lock.
        False if the timeout passed. RLockNotOwned (an AssertionError and a RuntimeError)
        if the lock is not held. Taking the lock back is not bounded by the timeout, as in
        Python. Ctrl-C interrupts both steps, as
        in Python: a KeyboardInterrupt during the wait for a notify is raised once the lock
        is held again; one while taking the lock back (someone else keeps it) without it."""
    def wait_for(self, predicate: Callable[[], _T], timeout: Optional[float] = None) -> _T:
        """Wait until ``predicate()`` is true; return its last value."""
    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` of the waiters waiting now. The lock must be held. Any int, as
        multiprocessing's (whose ``notify_all()`` is ``notify(sys.maxsize)``): ``n <= 0``
        wakes nobody, more than 2**32 - 1 wakes every waiter."""
    def notify_all(self) -> None:
        """Wake every waiter. The lock must be held."""
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class Barrier:
    """A named barrier for ``parties`` processes (``multiprocessing.Barrier`` by name).
    ``action``: when this process arrives last it calls ``action()`` before any party is
    released; each process passes its own, and it runs in whichever process arrives last. If
    it raises, the barrier breaks (the others get BrokenBarrierError) and ``wait`` re-raises
    it. ``timeout`` is the default for ``wait``. A pickled Barrier keeps its action and
    timeout, as ``multiprocessing.Barrier`` does (the action must then pickle too)."""

    @property
    def name(self) -> str:
        """The object's name (its file is /dev/shm/NAME)."""
    def unlink(self) -> None:
        """Remove the name; open handles keep working, new opens get FileNotFoundError."""
    def __reduce__(self) -> Tuple[Any, Tuple[str, Optional[Callable[[], object]], Optional[float]]]:
        """Pickled by name with its action and timeout: unpickling opens the same object."""

    def __new__(
        cls,
        name: str,
        parties: int,
        action: Optional[Callable[[], object]] = None,
        timeout: Optional[float] = None,
        *,
        mode: int = 0o600,
        lifetime: str = "persistent",
    ) -> "Barrier":
        """Open the barrier ``name``, or create it for ``parties`` with ``lifetime`` (see
        ``create``). An existing barrier for another number of parties is a ValueError naming
        both (never silently used); its lifetime is kept, as its mode."""
    @staticmethod
    def create(
        name: str,
        parties: int,
        action: Optional[Callable[[], object]] = None,
        timeout: Optional[float] = None,
        *,
        mode: int = 0o600,
        lifetime: str = "persistent",
    ) -> "Barrier":
        """Create a new barrier; FileExistsError if it exists. ``lifetime``: ``'persistent'``
        (``shmkit gc`` never removes it) or ``'owned'`` (``gc`` removes it once this process is
        dead and no process maps it)."""
    @staticmethod
    def open(
        name: str,
        action: Optional[Callable[[], object]] = None,
        timeout: Optional[float] = None,
    ) -> "Barrier":
        """Open an existing barrier; FileNotFoundError if there is none."""
    @property
    def action(self) -> Optional[Callable[[], object]]:
        """The callable this handle runs when its process arrives last (None: none)."""
    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait for all parties; return the arrival index. BrokenBarrierError if broken
        (a timeout breaks it). If this process arrives last, its action runs first (its
        exception is re-raised, and the barrier is broken)."""
    def reset(self) -> None:
        """Back to the initial state; current waiters get BrokenBarrierError."""
    def abort(self) -> None:
        """Break the barrier until reset()."""
    @property
    def parties(self) -> int:
        """The number of parties."""
    @property
    def n_waiting(self) -> int:
        """Parties waiting now (0 while broken)."""
    @property
    def broken(self) -> bool:
        """Whether the barrier is broken."""
    def __enter__(self) -> "Barrier":
        """The barrier itself."""
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        """Nothing to do; does not unlink, break or reset."""

@final
class SharedMemory:
    """A named segment of bytes (``multiprocessing.shared_memory.SharedMemory`` without the
    resource tracker). ``raw=True``: no shmkit header, the same object as CPython's
    SharedMemory of that name. ``buf`` and the buffer protocol are zero-copy;
    ``close()`` with live views raises BufferError."""

    def __new__(
        cls,
        name: str,
        create: bool = False,
        size: int = 0,
        *,
        raw: bool = False,
        mode: int = 0o600,
        lifetime: str = "persistent",
    ) -> "SharedMemory":
        """``create=True``: ``create(name, size, raw=raw, mode=mode, lifetime=lifetime)``.
        Else open the segment (``size``, ``mode`` and ``lifetime`` are ignored; a bad
        ``lifetime`` is still a ValueError)."""
    @staticmethod
    def create(
        name: str,
        size: int,
        *,
        raw: bool = False,
        mode: int = 0o600,
        lifetime: str = "persistent",
    ) -> "SharedMemory":
        """Create a new zeroed segment; FileExistsError if it exists. ``lifetime``:
        ``'persistent'`` (``shmkit gc`` never removes it) or ``'owned'`` (``gc`` removes it once
        this process is dead and no process maps it). A raw segment has no header to record
        ``'owned'`` in: ValueError."""
    @staticmethod
    def open(name: str, *, raw: bool = False) -> "SharedMemory":
        """Open an existing segment; FileNotFoundError if there is none."""
    @property
    def name(self) -> str:
        """The segment's name."""
    @property
    def size(self) -> int:
        """The payload size in bytes (also after ``close()``, as CPython's)."""
    @property
    def buf(self) -> memoryview:
        """A writable memoryview of the payload (zero-copy): one object, kept, which
        ``close()`` releases (as CPython's). None after ``close()``, as CPython's (typed
        ``memoryview``, as typeshed types CPython's)."""
    def __reduce__(self) -> Tuple[Any, Tuple[str, bool, int]]:
        """Pickled by name, as CPython's: unpickling opens the segment (``(name, False, 0)``:
        never creates it), with ``raw=True`` for a raw one."""
    def close(self) -> None:
        """Release ``buf`` and unmap; BufferError while other views (memoryviews, numpy
        arrays, slices of ``buf``) are alive. Closing twice is harmless."""
    def unlink(self) -> None:
        """Remove the name; mappings stay valid."""
    def __enter__(self) -> "SharedMemory": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
    def __len__(self) -> int: ...
    if sys.version_info >= (3, 12):
        def __buffer__(self, flags: int, /) -> memoryview: ...
        def __release_buffer__(self, buffer: memoryview, /) -> None: ...

_Elem = Any
"""An element: int for the integer typecodes, float for 'f'/'d', bytes of length 1 for 'c',
a one-character str for 'u', bool for '?'. Set as ctypes takes them: an integer typecode
takes any object with ``__index__`` (a NumPy integer; not a float), 'f'/'d' any with
``__float__`` or ``__index__`` (a NumPy scalar, an int)."""

@final
class CellLock:
    """A Value's or Array's lock, as ``get_lock()`` returns it (multiprocessing's
    ``get_lock()``): acquire/release hold the cell's own robust lock. While the calling thread
    holds it, that thread's ``.value`` / indexing go through the held lock (no deadlock, no
    RLock needed): ``with v.get_lock(): v.value += 1`` is one atomic increment."""

    def acquire(self, block: object = True, timeout: Optional[float] = None) -> bool:
        """Acquire; return whether it is held (``Lock.acquire``'s outcomes). Raises OwnerDied
        (lock held) after a dead holder, RuntimeError if this thread holds it and ``block``."""
    def release(self) -> None:
        """Release; RLockNotOwned (an AssertionError and a RuntimeError) if this thread does
        not hold it."""
    def make_consistent(self) -> None:
        """After OwnerDied: declare the cell's data repaired."""
    def __reduce__(self) -> Tuple[Any, Tuple[str, bool]]:
        """Pickled by name (``multiprocessing`` passes ``get_lock()`` to a spawned child so):
        unpickling opens the cell again and is its lock."""
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class Value:
    """A named typed value shared by processes: ``multiprocessing.Value`` by name.

    Modes (chosen at creation, recorded): ``'locked'`` (``lock=True``, the default: every
    access under the cell's robust lock), ``'atomic'`` (integer, 'c', 'u', '?' typecodes:
    lock-free ``load``/``store``/``fetch_add``/``+=``/...; ``lock=False`` picks it), ``'seqlock'``
    (lock-free readers that never see a torn value; ``wait_changed``). Values that do not fit
    the typecode raise OverflowError/TypeError/ValueError and write nothing.

    ``typecode_or_type``: a typecode, or a ctypes simple type with one (``ctypes.c_int`` is
    'i'; ``c_char_p``, ``c_longdouble``, structures: TypeError). ``lock``: True, False or
    None only; a lock object is a TypeError (the cell's lock lives in its own segment)."""

    @property
    def name(self) -> str:
        """The object's name (its file is /dev/shm/NAME)."""
    def unlink(self) -> None:
        """Remove the name; open handles keep working, new opens get FileNotFoundError."""
    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        """Pickled by name: unpickling opens the same object."""

    def __new__(
        cls,
        typecode_or_type: _TypecodeOrType,
        init: Optional[_Elem] = None,
        *,
        name: str,
        lock: Optional[bool] = None,
        mode: Optional[str] = None,
        perm: int = 0o600,
        lifetime: str = "persistent",
    ) -> "Value":
        """Create ``name`` holding ``init`` (zero if None), or open it if it exists (its
        typecode and mode must match: else ShmkitError; ``init`` is then ignored)."""
    @staticmethod
    def create(
        name: str,
        typecode_or_type: _TypecodeOrType,
        init: Optional[_Elem] = None,
        *,
        lock: Optional[bool] = None,
        mode: Optional[str] = None,
        perm: int = 0o600,
        lifetime: str = "persistent",
    ) -> "Value":
        """Create a new value; FileExistsError if the name is taken. ``lifetime``:
        ``'persistent'`` (``shmkit gc`` never removes it) or ``'owned'`` (``gc`` removes it once
        this process is dead and no process maps it). ``Value(name, ...)`` takes the same; it
        applies only if that call creates the object (an existing one keeps its own lifetime, as
        its mode)."""
    @staticmethod
    def open(name: str) -> "Value":
        """Open an existing value (typecode and mode as recorded)."""
    @property
    def value(self) -> _Elem:
        """The value (locked: under the lock; seqlock: a consistent snapshot; atomic: a load)."""
    @value.setter
    def value(self, v: _Elem) -> None: ...
    def get_lock(self) -> CellLock:
        """The cell's lock (see CellLock)."""
    def get_obj(self) -> "Value":
        """The shared object (multiprocessing's synchronized wrappers return the ctypes object
        they wrap; a shmkit value is its own object, so this is the value itself)."""
    @property
    def typecode(self) -> str:
        """The typecode ('q')."""
    @property
    def mode(self) -> str:
        """'locked', 'atomic' or 'seqlock'."""
    @property
    def sequence(self) -> int:
        """Seqlock mode: the write sequence."""
    def load(self) -> _Elem:
        """Atomic mode: one atomic load."""
    def store(self, v: _Elem) -> None:
        """Atomic mode: one atomic store."""
    def fetch_add(self, v: int) -> _Elem:
        """Integer typecodes: add (wrapping, as C atomics); the previous value. Atomic mode:
        one atomic add; the other modes: under the cell's lock (the held one if this thread
        holds ``get_lock()``; a dead holder raises OwnerDied, nothing added)."""
    def fetch_sub(self, v: int) -> _Elem:
        """Integer typecodes: subtract (wrapping); the previous value (as ``fetch_add``)."""
    def __iadd__(self, value: int, /) -> "Value":
        """``v += value``: ``fetch_add(value)`` without making the previous value (the
        increment in one call, in every mode); ``v`` still names this value."""
    def __isub__(self, value: int, /) -> "Value":
        """``v -= value``: ``fetch_sub(value)`` without making the previous value."""
    def compare_exchange(self, expected: _Elem, new: _Elem) -> Tuple[bool, _Elem]:
        """Atomic mode: ``(True, expected)`` if replaced, else ``(False, actual)``."""
    def swap(self, v: _Elem) -> _Elem:
        """Atomic mode: store; the previous value."""
    def wait_changed(self, last_seq: int, timeout: Optional[float] = None) -> Tuple[_Elem, int]:
        """Seqlock mode: wait for a write after ``last_seq``; ``(value, seq)``. TimeoutError
        after ``timeout`` seconds. Releases the GIL; Ctrl-C interrupts it."""
    def acquire(self, block: object = True, timeout: Optional[float] = None) -> bool:
        """``get_lock().acquire(block, timeout)``, as multiprocessing's synchronized values.
        An atomic value has no lock: TypeError (as RawValue has no acquire)."""
    def release(self) -> None:
        """``get_lock().release()``."""
    def __enter__(self) -> bool:
        """``with v:`` holds the cell's lock (``get_lock().__enter__()``, as
        multiprocessing's): ``with v: v.value += 1`` is atomic. An atomic value has no lock:
        TypeError. Does not close or unlink anything."""
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class Array:
    """A named fixed-length typed array shared by processes: ``multiprocessing.Array`` by
    name, with list-style indexing and slicing and the buffer protocol:
    ``numpy.asarray(a)`` / ``memoryview(a)`` are zero-copy, writable views of the data.
    Accesses through a view bypass the lock and the seqlock sequence (as multiprocessing's
    ``get_obj()``): hold ``get_lock()`` around them if other processes write. ``close()``
    with live views raises BufferError. Modes, ``typecode_or_type`` and ``lock`` as for
    Value."""

    def __new__(
        cls,
        typecode_or_type: _TypecodeOrType,
        size_or_initializer: Union[int, Iterable[_Elem]],
        *,
        name: str,
        lock: Optional[bool] = None,
        mode: Optional[str] = None,
        perm: int = 0o600,
        lifetime: str = "persistent",
    ) -> "Array":
        """Create ``name`` (zeroed, or holding the initializer's elements), or open it if it
        exists (typecode, mode and length must match: else ShmkitError). A shmkit array has
        at least one element: a size of 0 or an empty initializer is a ValueError (where
        multiprocessing makes an empty array)."""
    @staticmethod
    def create(
        name: str,
        typecode_or_type: _TypecodeOrType,
        size_or_initializer: Union[int, Iterable[_Elem]],
        *,
        lock: Optional[bool] = None,
        mode: Optional[str] = None,
        perm: int = 0o600,
        lifetime: str = "persistent",
    ) -> "Array":
        """Create a new array; FileExistsError if the name is taken. ``lifetime``:
        ``'persistent'`` (``shmkit gc`` never removes it) or ``'owned'`` (``gc`` removes it once
        this process is dead and no process maps it). ``Array(name, ...)`` takes the same; it
        applies only if that call creates the object (an existing one keeps its own lifetime, as
        its mode)."""
    @staticmethod
    def open(name: str) -> "Array":
        """Open an existing array (typecode, mode and length as recorded)."""
    @property
    def name(self) -> str:
        """The array's name."""
    def unlink(self) -> None:
        """Remove the name; open handles keep working."""
    @property
    def typecode(self) -> str:
        """The typecode ('d')."""
    @property
    def mode(self) -> str:
        """'locked', 'atomic' or 'seqlock'."""
    @property
    def sequence(self) -> int:
        """Seqlock mode: the write sequence."""
    def __len__(self) -> int: ...
    def __getitem__(self, key: Union[int, slice], /) -> Any:
        """``a[i]`` or ``a[i:j:k]`` (a list; bytes for typecode 'c'; one consistent copy)."""
    def __setitem__(self, key: Union[int, slice], value: Any, /) -> None:
        """``a[i] = v`` or ``a[i:j:k] = seq`` (same length, else ValueError; nothing written
        on a bad element)."""
    def __iter__(self) -> Iterator[_Elem]:
        """Iterate over a consistent snapshot, the elements as indexing gives them (bytes of
        length 1 for typecode 'c')."""
    def get_lock(self) -> CellLock:
        """The array's lock (see CellLock)."""
    def get_obj(self) -> "Array":
        """The shared object (as ``Value.get_obj``: the array itself)."""
    @property
    def raw(self) -> bytes:
        """Typecode 'c': the whole array as bytes (multiprocessing's char array ``.raw``);
        AttributeError for other typecodes. Setting writes any bytes-like object's bytes
        from the start (ValueError if longer than the array)."""
    @raw.setter
    def raw(self, v: Any) -> None: ...
    @property
    def value(self) -> bytes:
        """Typecode 'c': the bytes up to the first NUL (multiprocessing's char array
        ``.value``); AttributeError for other typecodes. Setting writes the bytes and a NUL if
        there is room (ValueError if longer than the array)."""
    @value.setter
    def value(self, v: bytes) -> None: ...
    def fetch_add(self, i: int, v: int) -> _Elem:
        """Integer typecodes: add to element ``i`` (wrapping); its previous value. Atomic
        mode: one atomic add; the other modes: under the cell's lock (as Value.fetch_add)."""
    def fetch_sub(self, i: int, v: int) -> _Elem:
        """Integer typecodes: subtract from element ``i`` (wrapping); its previous value."""
    def compare_exchange(self, i: int, expected: _Elem, new: _Elem) -> Tuple[bool, _Elem]:
        """Atomic mode: compare-exchange element ``i``."""
    def wait_changed(self, last_seq: int, timeout: Optional[float] = None) -> Tuple[List[_Elem], int]:
        """Seqlock mode: wait for a write after ``last_seq``; ``(elements, seq)``."""
    def close(self) -> None:
        """Close: later calls raise ValueError; the memory is unmapped when the object goes
        (an array NumPy made from it may still point there). BufferError while views are
        alive. Closing twice is harmless."""
    def acquire(self, block: object = True, timeout: Optional[float] = None) -> bool:
        """``get_lock().acquire(block, timeout)``, as multiprocessing's synchronized arrays.
        An atomic array has no lock: TypeError (as RawArray has no acquire)."""
    def release(self) -> None:
        """``get_lock().release()``."""
    def __enter__(self) -> bool:
        """``with a:`` holds the array's lock (``get_lock().__enter__()``, as
        multiprocessing's); ``__exit__`` releases it (and does not close the array: call
        ``close()``). An atomic array has no lock: TypeError."""
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        """Pickled by name: unpickling opens the same array."""
    if sys.version_info >= (3, 12):
        def __buffer__(self, flags: int, /) -> memoryview: ...
        def __release_buffer__(self, buffer: memoryview, /) -> None: ...

@final
class FramePublisher:
    """The publishing end of a zero-copy frame channel (``shmkit::frames``): ``loan()`` a
    slot, write the frame into it, ``publish(len, header)``. One publisher per channel, so
    there is no open-or-create constructor: ``create`` a channel, or ``open`` one as its
    publisher. The
    user header is bytes of the channel's recorded header type (``header_type``). In a
    forked child an inherited publisher is its parent's: every call raises ShmkitError but
    ``close()`` (which does nothing) and the fixed facts (``slots``, ``max_bytes``, ...)."""

    @staticmethod
    def create(
        name: str,
        *,
        slots: int = 4,
        max_bytes: int = 1048576,
        subscribers: int = 16,
        policy: str = "reuse-oldest",
        header_name: str = "bytes",
        header_size: int = 0,
        header_align: Optional[int] = None,
        mode: int = 0o600,
        lifetime: str = "persistent",
    ) -> "FramePublisher":
        """Create the channel and attach as its publisher; ``policy`` is ``'reuse-oldest'``
        or ``'block'``; the header type is recorded as ``header_name`` of ``header_size``
        bytes aligned to ``header_align`` (1, 2, 4 or 8 dividing the size; None: the largest
        that does). ``lifetime``: ``'persistent'`` (``shmkit gc`` never removes it) or
        ``'owned'`` (``gc`` removes it once this process is dead and no process maps it).
        FileExistsError if the name is taken."""
    @staticmethod
    def open(name: str) -> "FramePublisher":
        """Attach to an existing channel as its publisher (taking over from a dead one)."""
    @property
    def name(self) -> str:
        """The channel's name."""
    @property
    def slots(self) -> int:
        """Slots in the channel."""
    @property
    def max_bytes(self) -> int:
        """The largest frame, in bytes (every loan's buffer is this long)."""
    @property
    def policy(self) -> str:
        """``'reuse-oldest'`` or ``'block'``."""
    @property
    def next_seq(self) -> int:
        """The sequence number the next published frame gets."""
    @property
    def header_type(self) -> Tuple[str, int, int]:
        """The user header type: ``(name, size, align)``."""
    def loan(self, timeout: Optional[float] = None) -> "FrameLoan":
        """Loan a free slot, waiting at most ``timeout`` seconds (TimeoutError). A previous
        unpublished loan is abandoned (BufferError if views of it are alive)."""
    def try_loan(self) -> Optional["FrameLoan"]:
        """Loan a free slot without waiting; None if every slot is held (or another thread
        is waiting in ``loan()``)."""
    def close(self) -> None:
        """Detach; an unpublished loan is abandoned. A thread waiting in ``loan()`` gets
        ValueError within 50 ms (the publisher detaches then). Closing twice is harmless."""
    def unlink(self) -> None:
        """Remove the channel's name; handles keep working."""
    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        """Pickled by name: unpickling is ``FramePublisher.open(name)``, which takes over as
        the channel's one publisher: ShmkitError while this publisher is still attached (close
        it first, or its process must be dead)."""
    def __enter__(self) -> "FramePublisher": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class FrameLoan:
    """A loaned slot: a writable, zero-copy buffer of ``max_bytes`` (``memoryview(loan)``,
    ``numpy.asarray(loan)``, ``loan.array(dtype, shape)``). Delete every view before
    ``publish`` (BufferError otherwise): no view outlives the loan. A loan inherited across
    fork() is the parent's: the child can neither view nor publish it (ShmkitError)."""

    @property
    def slot(self) -> int:
        """The loaned slot."""
    @property
    def active(self) -> bool:
        """Whether it can still be written and published."""
    def array(self, dtype: Any = None, shape: Any = None) -> Any:
        """A writable numpy array over the slot (``numpy.frombuffer`` of a ``memoryview``,
        reshaped): a view, so ``publish`` raises BufferError while it lives."""
    def publish(self, len: int, header: bytes = b"") -> int:
        """Publish the first ``len`` bytes with ``header`` (at most the header size, zero
        padded); returns the sequence number. BufferError while views are alive; ValueError
        if too large (the loan is then abandoned) or already published."""
    def abandon(self) -> None:
        """Give the slot back unpublished (emptied). BufferError while views are alive."""
    def __len__(self) -> int: ...
    if sys.version_info >= (3, 12):
        def __buffer__(self, flags: int, /) -> memoryview: ...
        def __release_buffer__(self, buffer: memoryview, /) -> None: ...

@final
class FrameSubscriber:
    """The receiving end of a frame channel: frames are received in place, pinned and
    read-only; attaches whatever the channel's header type. ``history`` also receives up to
    that many frames published before attaching. There is no ``create``: the publisher
    creates the channel. A forked child cannot use an inherited
    subscriber: every call raises ShmkitError but ``close()`` (which does nothing) and the
    fixed facts (``slots``, ``max_bytes``, ``header_type``); it attaches its own."""

    def __new__(cls, name: str, *, history: int = 0) -> "FrameSubscriber": ...
    @staticmethod
    def open(name: str, *, history: int = 0) -> "FrameSubscriber":
        """The same as the constructor."""
    @property
    def name(self) -> str:
        """The channel's name."""
    def recv(self, timeout: Optional[float] = None) -> "Frame":
        """The next frame in order; TimeoutError after ``timeout`` seconds; EOFError once the
        publisher is gone and every frame was received. GIL released; Ctrl-C interrupts.
        Threads receiving at once take turns: each frame goes to one of them."""
    def latest(self, timeout: Optional[float] = None) -> "Frame":
        """The newest frame, skipping older ones (counted in ``lost``); waits as ``recv``."""
    def try_recv(self) -> Optional["Frame"]:
        """The next frame if one is there, else None (also while another thread waits in
        ``recv``/``latest``); EOFError as ``recv``."""
    def try_latest(self) -> Optional["Frame"]:
        """The newest new frame if there is one, else None."""
    @property
    def lost(self) -> int:
        """Frames this subscriber missed (while another thread waits in ``recv``: as of its
        last receive)."""
    @property
    def last_seq(self) -> int:
        """The sequence number of the last frame received (0: none)."""
    @property
    def slots(self) -> int:
        """Slots in the channel."""
    @property
    def max_bytes(self) -> int:
        """The largest frame, in bytes."""
    @property
    def header_type(self) -> Tuple[str, int, int]:
        """The user header type: ``(name, size, align)``."""
    def close(self) -> None:
        """Detach; frames already received stay valid. A thread waiting in ``recv`` gets
        ValueError within 50 ms (the subscriber detaches then)."""
    def unlink(self) -> None:
        """Remove the channel's name; handles keep working."""
    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        """Pickled by name: unpickling is ``FrameSubscriber.open(name)``, a new subscriber of
        the same channel in the unpickling process (its own cursor: it receives the frames
        published from then on)."""
    def __enter__(self) -> "FrameSubscriber": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class Frame:
    """A received frame. Its slot stays pinned while this object or any view of it
    (memoryview, numpy array) lives. The payload is exported read-only: ``memoryview(frame)``,
    ``numpy.asarray(frame)``, ``frame.array(dtype, shape)``, zero-copy. The pin is the
    receiving process's: a forked child gets no new view (ShmkitError; copy it first)."""

    @property
    def seq(self) -> int:
        """Sequence number (from 1)."""
    @property
    def len(self) -> int:
        """Payload length in bytes."""
    @property
    def slot(self) -> int:
        """The slot it occupies."""
    @property
    def mono_ns(self) -> int:
        """CLOCK_MONOTONIC at publish, ns (``time.monotonic_ns()``'s clock)."""
    @property
    def real_ns(self) -> int:
        """CLOCK_REALTIME at publish, ns."""
    @property
    def header(self) -> bytes:
        """The user header's bytes."""
    @property
    def lost(self) -> int:
        """The subscriber's lost count when this frame was received."""
    @property
    def released(self) -> bool:
        """Whether it was released (``release()``, or its ``with`` block ended): no new view."""
    def array(self, dtype: Any = None, shape: Any = None) -> Any:
        """A read-only numpy array over the payload (``numpy.frombuffer`` of a ``memoryview``,
        reshaped): a view, which keeps the slot pinned until it is gone."""
    def release(self) -> None:
        """No new view; the slot is unpinned now, or when the last view made before is
        released. Never raises; releasing twice is harmless. ``with`` releases at its end."""
    def __enter__(self) -> "Frame": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
    def __len__(self) -> int: ...
    if sys.version_info >= (3, 12):
        def __buffer__(self, flags: int, /) -> memoryview: ...
        def __release_buffer__(self, buffer: memoryview, /) -> None: ...

@final
class Queue:
    """A named queue of Python objects shared by processes: ``multiprocessing.Queue``'s
    methods on shmkit's lock-free MPMC bytes queue. Objects are pickled (highest protocol),
    one message each, at most ``max_message`` bytes (half of ``capacity_bytes``).

    ``Queue(name)`` opens the queue or creates it; ``Queue()`` creates one under a unique
    generated name that is removed when this object is garbage-collected in the process
    that made it (a forked child's copy going away leaves it; pass the object, pickled, to
    processes started meanwhile). Such a queue is ``lifetime="owned"`` unless asked
    otherwise: if that process dies without collecting it (killed, or ``os._exit`` as
    multiprocessing's children end), ``shmkit gc`` removes it once no process maps it, so
    give it only to processes that attach while its creator lives (a process that opens it
    by name after the creator's death may find it gone). ``put_bytes``/``get_bytes`` are the
    bytes-only fast path (no pickling; the messages of the Rust API and ``shmkit queue
    push/pop``).

    Security: ``get`` unpickles bytes read from shared memory, and unpickling can run any
    code. Anyone who can write ``/dev/shm/NAME`` (the group too, with ``mode=0o660``) can
    make every process that calls ``get`` on this queue run code of their choosing, as with
    ``multiprocessing``'s connections. With peers you do not trust, use ``put_bytes`` and
    ``get_bytes`` (never unpickled) and parse the bytes yourself.

    Slots: 16 producer and 16 consumer slots. An object attaches a producer on its first
    ``put`` (a consumer on its first ``get``; one more per thread putting or getting at the
    same time) and keeps it while it lives, so the next calls are fast, except a handle
    whose attach left its side no free slot: that one is given back at the end of each
    call. So objects that have gone idle never hold all 16 slots of a side: a ``put`` (or
    ``get``) of a further process waits for a slot only while the others are in calls
    (polling every 5 ms), and at most 16 calls of a side run at once."""

    @property
    def name(self) -> str:
        """The object's name (its file is /dev/shm/NAME)."""
    def unlink(self) -> None:
        """Remove the name; open handles keep working, new opens get FileNotFoundError."""
    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        """Pickled by name: unpickling opens the same queue."""

    def __new__(
        cls,
        name: Optional[str] = None,
        capacity_bytes: Optional[int] = None,
        *,
        mode: int = 0o600,
        lifetime: Optional[str] = None,
    ) -> "Queue": ...
    @staticmethod
    def create(
        name: str,
        capacity_bytes: Optional[int] = None,
        *,
        mode: int = 0o600,
        lifetime: str = "persistent",
    ) -> "Queue":
        """Create a new queue of ``capacity_bytes`` (default 1 MiB; rounded up to a power of
        two, at least 256); FileExistsError if the name is taken. ``lifetime``:
        ``'persistent'`` (``shmkit gc`` never removes it) or ``'owned'`` (``gc`` removes it
        once this process is dead and no process maps it). ``Queue(name, ...)`` takes the
        same (``'persistent'`` when None); ``Queue()`` defaults to ``'owned'``."""
    @staticmethod
    def open(name: str) -> "Queue":
        """Open an existing queue; FileNotFoundError if there is none."""
    @property
    def capacity_bytes(self) -> int:
        """Data bytes in the ring."""
    @property
    def max_message(self) -> int:
        """The longest message (pickled object or bytes) accepted, in bytes."""
    def put(self, obj: Any, block: object = True, timeout: Optional[float] = None) -> None:
        """Put ``obj`` (pickled). ``block=False`` or a passed ``timeout`` raises queue.Full
        when there is no room; ValueError if the pickle is longer than ``max_message``."""
    def get(self, block: object = True, timeout: Optional[float] = None) -> Any:
        """Remove and return the oldest object; queue.Empty if none (``block=False`` or a
        passed ``timeout``)."""
    def put_nowait(self, obj: Any) -> None:
        """``put(obj, False)``."""
    def get_nowait(self) -> Any:
        """``get(False)``."""
    def put_bytes(self, data: Any, block: object = True, timeout: Optional[float] = None) -> None:
        """Put a bytes-like object as one message, not pickled."""
    def get_bytes(self, block: object = True, timeout: Optional[float] = None) -> bytes:
        """Remove and return the oldest message as bytes, not unpickled."""
    def qsize(self) -> int:
        """Approximate: the 64-byte cells in use (the message count when each message is at
        most 64 bytes, an upper bound otherwise); 0 exactly when empty."""
    def empty(self) -> bool:
        """Whether the queue is empty now."""
    def full(self) -> bool:
        """Whether no cell is free now."""
    def close(self) -> None:
        """Detach this object's handles; later put/get (and one blocked in another thread)
        raise ValueError. The queue stays."""
    def join_thread(self) -> None:
        """Does nothing (no feeder thread)."""
    def cancel_join_thread(self) -> None:
        """Does nothing (no feeder thread)."""
    def __enter__(self) -> "Queue": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

_Item = Union[int, float, bool, None, str, bytes]

@final
class ShareableList:
    """A fixed-length list of int (64-bit), float, bool, None, str and bytes in shared memory,
    in CPython's ``ShareableList`` layout: stock Python opens a list made here
    (``ShareableList(name=...)``) and the reverse. shmkit's fixes: str slots sized by UTF-8
    bytes, values read back exactly (trailing NULs kept), shmkit writers atomic for shmkit
    readers, no resource tracker. Unsupported types raise TypeError (CPython: KeyError);
    an int outside int64 raises ``struct.error``, as CPython."""

    def __new__(
        cls,
        sequence: Optional[Iterable[_Item]] = None,
        *,
        name: Optional[str] = None,
        reserve: int = 0,
        mode: int = 0o600,
        lifetime: Optional[str] = None,
    ) -> "ShareableList":
        """With a ``sequence`` (or no ``name``): create a list holding it under ``name`` (a
        random ``psm_XXXXXXXX`` if None), with ``lifetime`` (see ``create``; ``'persistent'``
        when None). Without a name the list is ``lifetime="owned"`` unless asked otherwise:
        if its creator dies (killed, or ``os._exit`` as multiprocessing's children end),
        ``shmkit gc`` removes it once no process maps it, so give it only to processes that
        attach while its creator lives (a process that opens it by name after the creator's
        death may find it gone). With only ``name``: open that list (``reserve``, ``mode``
        and ``lifetime`` are ignored; a bad ``lifetime`` is still a ValueError)."""
    @staticmethod
    def create(
        name: str,
        sequence: Optional[Iterable[_Item]] = None,
        *,
        reserve: int = 0,
        mode: int = 0o600,
        lifetime: str = "persistent",
    ) -> "ShareableList":
        """Create a list holding ``sequence``; FileExistsError if the name is taken.
        ``reserve``: every slot at least that many bytes, so longer str/bytes fit later.
        ``lifetime``: ``'persistent'`` (``shmkit gc`` never removes it) or ``'owned'`` (``gc``
        removes it once this process is dead and no process maps it)."""
    @staticmethod
    def open(name: str) -> "ShareableList":
        """Open an existing list (made by shmkit or by CPython 3.9-3.13)."""
    @property
    def name(self) -> str:
        """The list's name (its file is /dev/shm/NAME)."""
    @property
    def shm(self) -> SharedMemory:
        """A new raw SharedMemory attached to the list's bytes (each access maps again)."""
    @property
    def format(self) -> str:
        """The struct format of every item, joined (as CPython's ``format``)."""
    def __len__(self) -> int: ...
    def __getitem__(self, key: int, /) -> _Item: ...
    def __setitem__(self, key: int, value: _Item, /) -> None: ...
    def __iter__(self) -> Iterator[_Item]:
        """Iterates over a snapshot of the items taken when iteration starts."""
    def count(self, value: object) -> int:
        """How many items equal ``value``."""
    def index(self, value: object) -> int:
        """The first index of ``value``; ValueError if absent."""
    def slot_size(self, index: int) -> int:
        """The size in bytes of item ``index``'s slot: the longest str (UTF-8) or bytes it takes."""
    def close(self) -> None:
        """Close: later calls raise ValueError; the memory is unmapped from this process when
        the object goes (it stays in /dev/shm). Closing twice is harmless."""
    def unlink(self) -> None:
        """Remove the name from the system. Handles already open keep working."""
    def __enter__(self) -> "ShareableList": ...
    def __exit__(self, *_args: object) -> None:
        """Closes (does not unlink)."""
    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        """Pickled by name: unpickling opens the same list."""

def _hold_state_lock(obj: Union[Queue, FrameSubscriber, FramePublisher], seconds: float) -> None:
    """For the test suite only: hold the object's process-local mutex for ``seconds`` with the
    GIL released (as a thread taking or returning a handle does for an instant), so that a
    test can ``fork()`` while it is held."""
