"""Type stubs for shmkit's native module (re-exported by ``shmkit``)."""

from types import TracebackType
import sys
from typing import Any, Callable, Optional, Tuple, Type, TypeVar, Union, final
from typing import Iterable, Iterator

__all__ = [
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Lock",
    "LockNotRecoverable",
    "OwnerDied",
    "RLock",
    "Semaphore",
    "ShareableList",
    "SharedMemory",
    "ShmkitError",
    "BrokenBarrierError",
]

_T = TypeVar("_T")

class ShmkitError(Exception):
    """Base class of shmkit's own errors: another kind or layout of object under the name, a
    corrupt object, no space in /dev/shm, an operating-system error."""

class OwnerDied(ShmkitError):
    """The lock was acquired, but its previous owner died holding it. The lock IS held by the
    caller: repair the data, call ``lock.make_consistent()``, then ``lock.release()``."""

    lock: Union["Lock", "RLock", "Condition"]
    """The lock that was acquired (held by the calling thread)."""
    previous_pid: Optional[int]
    """The dead owner's process id, if recorded."""

class LockNotRecoverable(ShmkitError):
    """A dead owner's successor released the lock without ``make_consistent()``: nothing can
    acquire it again. Unlink and recreate it."""

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

    def __new__(cls, name: str, *, mode: int = 0o600) -> "Lock": ...
    @staticmethod
    def create(name: str, *, mode: int = 0o600) -> "Lock":
        """Create a new lock; FileExistsError if the name is taken."""
    @staticmethod
    def open(name: str) -> "Lock":
        """Open an existing lock; FileNotFoundError if there is none."""
    def acquire(self, block: bool = True, timeout: Optional[float] = None) -> bool:
        """Acquire; return whether it is held. ``block=False`` tries once; ``timeout`` bounds
        the wait in seconds (None: no limit). Raises OwnerDied (lock held) after a dead
        holder, RuntimeError if this thread already holds it and ``block`` is true."""
    def release(self) -> None:
        """Release; RuntimeError if this thread does not hold it."""
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

    def __new__(cls, name: str, *, mode: int = 0o600) -> "RLock": ...
    @staticmethod
    def create(name: str, *, mode: int = 0o600) -> "RLock":
        """Create a new recursive lock; FileExistsError if the name is taken."""
    @staticmethod
    def open(name: str) -> "RLock":
        """Open an existing recursive lock; FileNotFoundError if there is none."""
    def acquire(self, block: bool = True, timeout: Optional[float] = None) -> bool:
        """Acquire one level (see Lock.acquire)."""
    def release(self) -> None:
        """Release one level; RuntimeError if this thread does not hold it."""
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

    def __new__(cls, name: str, value: int = 1, *, mode: int = 0o600) -> "Semaphore": ...
    @staticmethod
    def create(name: str, value: int = 1, *, mode: int = 0o600) -> "Semaphore":
        """Create a new semaphore with ``value`` permits; FileExistsError if it exists."""
    @staticmethod
    def open(name: str) -> "Semaphore":
        """Open an existing semaphore; FileNotFoundError if there is none."""
    def acquire(self, block: bool = True, timeout: Optional[float] = None) -> bool:
        """Take a permit; return whether one was taken."""
    def release(self, n: int = 1) -> None:
        """Give back ``n`` permits (any process or thread may)."""
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

    def __new__(cls, name: str, value: int = 1, *, mode: int = 0o600) -> "BoundedSemaphore": ...
    @staticmethod
    def create(name: str, value: int = 1, *, mode: int = 0o600) -> "BoundedSemaphore":
        """Create a new bounded semaphore; FileExistsError if it exists."""
    @staticmethod
    def open(name: str) -> "BoundedSemaphore":
        """Open an existing bounded semaphore; FileNotFoundError if there is none."""
    def acquire(self, block: bool = True, timeout: Optional[float] = None) -> bool:
        """Take a permit; return whether one was taken."""
    def release(self, n: int = 1) -> None:
        """Give back ``n`` permits; ValueError past the initial value."""
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

    def __new__(cls, name: str, *, mode: int = 0o600) -> "Event": ...
    @staticmethod
    def create(name: str, *, mode: int = 0o600) -> "Event":
        """Create a new (clear) event; FileExistsError if it exists."""
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

@final
class Condition:
    """A named condition variable bound to its own lock (``multiprocessing.Condition`` by
    name; there is no ``lock=`` argument)."""

    @property
    def name(self) -> str:
        """The object's name (its file is /dev/shm/NAME)."""
    def unlink(self) -> None:
        """Remove the name; open handles keep working, new opens get FileNotFoundError."""
    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        """Pickled by name: unpickling opens the same object."""

    def __new__(cls, name: str, *, mode: int = 0o600) -> "Condition": ...
    @staticmethod
    def create(name: str, *, mode: int = 0o600) -> "Condition":
        """Create a new condition; FileExistsError if it exists."""
    @staticmethod
    def open(name: str) -> "Condition":
        """Open an existing condition; FileNotFoundError if there is none."""
    def acquire(self, block: bool = True, timeout: Optional[float] = None) -> bool:
        """Acquire the condition's lock (see Lock.acquire)."""
    def release(self) -> None:
        """Release the condition's lock."""
    def make_consistent(self) -> None:
        """After OwnerDied: declare the protected data repaired."""
    def wait(self, timeout: Optional[float] = None) -> bool:
        """Release the lock, wait for a notify (at most ``timeout`` s), re-take the lock.
        False if the timeout passed. RuntimeError if the lock is not held. Ctrl-C
        interrupts the wait for a notify; the lock is held again when KeyboardInterrupt is
        raised (taking it back is not bounded by the timeout, as in Python)."""
    def wait_for(self, predicate: Callable[[], _T], timeout: Optional[float] = None) -> _T:
        """Wait until ``predicate()`` is true; return its last value."""
    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters (possibly more). The lock must be held."""
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
    """A named barrier for ``parties`` processes (``multiprocessing.Barrier`` by name, no
    ``action``). ``timeout`` is the default for ``wait``."""

    @property
    def name(self) -> str:
        """The object's name (its file is /dev/shm/NAME)."""
    def unlink(self) -> None:
        """Remove the name; open handles keep working, new opens get FileNotFoundError."""
    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        """Pickled by name: unpickling opens the same object."""

    def __new__(
        cls, name: str, parties: int, timeout: Optional[float] = None, *, mode: int = 0o600
    ) -> "Barrier": ...
    @staticmethod
    def create(
        name: str, parties: int, timeout: Optional[float] = None, *, mode: int = 0o600
    ) -> "Barrier":
        """Create a new barrier; FileExistsError if it exists."""
    @staticmethod
    def open(name: str, timeout: Optional[float] = None) -> "Barrier":
        """Open an existing barrier; FileNotFoundError if there is none."""
    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait for all parties; return the arrival index. BrokenBarrierError if broken
        (a timeout breaks it)."""
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
    ) -> "SharedMemory": ...
    @staticmethod
    def create(name: str, size: int, *, raw: bool = False, mode: int = 0o600) -> "SharedMemory":
        """Create a new zeroed segment; FileExistsError if it exists."""
    @staticmethod
    def open(name: str, *, raw: bool = False) -> "SharedMemory":
        """Open an existing segment; FileNotFoundError if there is none."""
    @property
    def name(self) -> str:
        """The segment's name."""
    @property
    def size(self) -> int:
        """The payload size in bytes."""
    @property
    def buf(self) -> memoryview:
        """A writable memoryview of the payload (zero-copy)."""
    def close(self) -> None:
        """Unmap; BufferError while views are alive. Closing twice is harmless."""
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
    ) -> "ShareableList": ...
    @staticmethod
    def create(
        name: str,
        sequence: Optional[Iterable[_Item]] = None,
        *,
        reserve: int = 0,
        mode: int = 0o600,
    ) -> "ShareableList":
        """Create a list holding ``sequence``; FileExistsError if the name is taken.
        ``reserve``: every slot at least that many bytes, so longer str/bytes fit later."""
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
        """Unmap the list from this process (it stays in /dev/shm)."""
    def unlink(self) -> None:
        """Remove the name from the system. Handles already open keep working."""
    def __enter__(self) -> "ShareableList": ...
    def __exit__(self, *_args: object) -> None:
        """Closes (does not unlink)."""
    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        """Pickled by name: unpickling opens the same list."""
